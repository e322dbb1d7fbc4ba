"""uvicorn's HTTP/1.1 protocol (httptools), writing a response's head and its first body part in one send.

Why: uvicorn writes the status line and headers to the socket when the app sends `http.response.start`, and the body
in a second write when it sends `http.response.body`. The first write wakes the reader (the EHR or a load balancer),
and the scheduler often runs the reader at once, so the server can sit between the two writes for a time slice. A
replica killed there (SIGKILL, OOM killer, node loss) leaves the balancer holding a response head with no body: too
late to retry the call elsewhere, so the EHR gets a broken answer (tests/test_multi_replica.py caught this once).
Written together, an answer is in the kernel whole or not at all, and a balancer retries a call it got nothing for.
It also saves a send and a wake-up per answer.

Only the head is held, and only until the app's first `http.response.body` message (or the connection closes): a
streamed response's later parts are written as they come, exactly as uvicorn writes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeldWrites:
    """Stands in for the connection's transport while a response head waits for its body: writes are kept."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def release(self) -> None:
        """Write what was kept, in one send (nothing when the connection is already closing)."""
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            if not self.real.is_closing():
                self.real.write(data)

    def close(self) -> None:
        self.release()
        self.real.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading …: the real transport's
        return getattr(self.real, name)


class OneWriteCycle(RequestResponseCycle):
    """One request/response of uvicorn's httptools protocol whose head goes out with the first body part."""

    async def send(self, message: Any) -> None:  # the ASGI send of this cycle
        held = self.transport if isinstance(self.transport, _HeldWrites) else None
        if held is None:
            if message.get("type") != "http.response.start" or self.response_started or self.disconnected:
                await super().send(message)
                return
            real = self.transport
            self.transport = _HeldWrites(real)  # type: ignore[assignment]
            try:
                await super().send(message)
            except BaseException:
                self.transport = real
                raise
            return
        try:
            await super().send(message)
        finally:
            self.transport = held.real
            held.release()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose request/response cycles are `OneWriteCycle`s (`uvicorn.run(http=…)`)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # the cycle just made; its ASGI task has not run yet
            self.cycle.__class__ = OneWriteCycle
