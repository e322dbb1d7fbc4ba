"""The served HTTP protocol writes an answer's head and body in one send (cds_hooks/http_protocol.py).

A replica killed between two writes leaves a load balancer holding a head without a body, too late to retry the call
elsewhere. The tests drive uvicorn's real protocol class with a transport that records every write, and check the
plain uvicorn protocol writes twice on the same exchange (so the recording would see the difference).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from cds_hooks.cli.serve import uvicorn_options
from cds_hooks.http_protocol import OneWriteHttpToolsProtocol
from cds_hooks.settings import ServerSettings
from tests.service_process import start_service

BODY = b'{"cards": []}'


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.closed_by_server = False  # before the test ends the connection

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


async def streamed(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for part in (b"one", b"two"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def failing_after_start(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    raise RuntimeError("the app broke after its head")


def exchange(protocol_class: type[HttpToolsProtocol], app: Any, request: bytes) -> RecordingTransport:
    async def run() -> RecordingTransport:
        config = Config(app, log_config=None, access_log=False)
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(50):
            if protocol.cycle is not None and (protocol.cycle.response_complete or transport.closed):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        transport.closed_by_server = transport.closed
        protocol.connection_lost(None)
        return transport

    return asyncio.run(run())


POST = (b"POST /cds-services/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}")


def test_the_head_and_the_body_of_an_answer_go_out_in_one_write() -> None:
    plain = exchange(HttpToolsProtocol, answer, POST)
    assert len(plain.writes) == 2 and plain.writes[1] == BODY  # uvicorn's own: head, then body

    ours = exchange(OneWriteHttpToolsProtocol, answer, POST)
    assert len(ours.writes) == 1
    head, _, body = ours.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 13" in head.lower() and body == BODY
    assert not ours.closed_by_server  # kept alive, as before


def test_two_answers_on_one_kept_alive_connection_are_one_write_each() -> None:
    ours = exchange(OneWriteHttpToolsProtocol, answer, POST + POST)
    assert len(ours.writes) == 2
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(BODY) for w in ours.writes)


def test_a_closing_answer_is_written_whole_before_the_close() -> None:
    request = POST.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r\n")
    ours = exchange(OneWriteHttpToolsProtocol, answer, request)
    assert len(ours.writes) == 1 and ours.writes[0].endswith(BODY) and b"connection: close" in ours.writes[0]
    assert ours.closed_by_server


def test_a_streamed_answer_sends_its_head_with_the_first_part_and_the_rest_as_they_come() -> None:
    ours = exchange(OneWriteHttpToolsProtocol, streamed, POST)
    assert len(ours.writes) == 3
    assert ours.writes[0].startswith(b"HTTP/1.1 200 OK") and ours.writes[0].endswith(b"3\r\none\r\n")
    assert ours.writes[1] == b"3\r\ntwo\r\n" and ours.writes[2] == b"0\r\n\r\n"


def test_an_app_failing_after_its_head_still_sends_the_head_and_closes() -> None:
    ours = exchange(OneWriteHttpToolsProtocol, failing_after_start, POST)
    assert ours.closed_by_server
    assert len(ours.writes) == 1 and ours.writes[0].startswith(b"HTTP/1.1 200 OK")  # as uvicorn does: head, close


def test_serve_runs_uvicorn_with_this_protocol() -> None:
    assert uvicorn_options(ServerSettings())["http"] is OneWriteHttpToolsProtocol


# ---- X-Forwarded-* only from configured proxies ----------------------------------------------------------------
def test_forwarded_headers_are_off_unless_a_proxy_is_configured() -> None:
    assert uvicorn_options(ServerSettings())["proxy_headers"] is False
    options = uvicorn_options(ServerSettings(forwarded_allow_ips=["10.0.0.7", "192.168.0.0/16"]))
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == "10.0.0.7/32,192.168.0.0/16"


@pytest.mark.parametrize("value", ["*", "proxy.internal", "10.0.0.300"])
def test_a_forwarded_allow_ips_entry_that_is_not_an_address_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="forwarded_allow_ips") as err:
        ServerSettings(forwarded_allow_ips=[value])
    assert "not an IP address or CIDR network" in str(err.value)


def test_a_local_peer_stays_local_whatever_x_forwarded_for_says(tmp_path: Path) -> None:
    """The preview token endpoint answers loopback peers only. uvicorn's default applies X-Forwarded-For from
    127.0.0.1, so the peer address would be whatever the header said; the service ignores the header unless
    `server.forwarded_allow_ips` names the proxy, and then it applies it."""
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    body = {"service": "ascvd-pce-10y"}
    (tmp_path / "plain").mkdir()
    (tmp_path / "proxied").mkdir()
    plain = start_service(tmp_path / "plain", name="plain")
    try:
        assert httpx.post(f"{plain.base}/preview/token", json=body, headers=forwarded).status_code == 200
    finally:
        plain.stop()
    proxied = start_service(tmp_path / "proxied", name="proxied",
                            extra_env={"CDS_ONNX_SERVER__FORWARDED_ALLOW_IPS": '["127.0.0.1"]'})
    try:
        resp = httpx.post(f"{proxied.base}/preview/token", json=body, headers=forwarded)
        assert resp.status_code == 403 and "loopback" in resp.json()["issue"][0]["diagnostics"]
        assert httpx.post(f"{proxied.base}/preview/token", json=body).status_code == 200
    finally:
        proxied.stop()


def test_a_served_head_request_gets_the_get_head_and_no_body(tmp_path: Path) -> None:
    """Through the served protocol (uvicorn with the one-write head): HEAD /healthz and /readyz answer as their GET
    does, Content-Length included, with no body, and the connection stays usable for the next request."""
    served = start_service(tmp_path, name="head")
    try:
        with httpx.Client(base_url=served.base) as client:
            for path in ("/healthz", "/readyz"):
                got = client.get(path)
                head = client.head(path)
                assert head.status_code == got.status_code == 200, (path, head.status_code, got.status_code)
                assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"]
            assert client.get("/healthz").status_code == 200  # the same keep-alive connection, in step
    finally:
        served.stop()
