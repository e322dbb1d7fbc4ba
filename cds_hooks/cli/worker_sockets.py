"""One listening socket per worker of `serve --workers N` (SO_REUSEPORT), so the kernel spreads connections evenly.

Why: uvicorn's workers share one listening socket, and the worker that wakes first accepts every pending connection.
A client or load balancer that opens a few keep-alive connections at once (wrk with 8 or 16, an EHR's connection
pool) could find all of them on one worker while the other idled: `--workers 2` measured 0.98x the throughput of one
worker in such runs (docs/performance.md). With SO_REUSEPORT each worker listens on its own socket bound to the same
address, and the kernel hashes each new connection to one of them.

The parent binds the N sockets and hands the whole list to every worker (uvicorn's supervisor passes one list to
each). While the list is unpickled in the new worker process, the worker claims a free slot — an exclusive `flock` on
`slot-<i>` in a private directory, held for the worker's life and released by the kernel when it dies — and keeps
only socket i. A worker that uvicorn starts to replace a dead one takes the slot the dead one left. On SIGHUP the
workers are replaced one at a time, each stopped before its successor starts (uvicorn's own order, successor first,
would leave the successor without a free socket); connections arriving in between wait in that socket's queue.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from uvicorn.supervisors.multiprocess import Multiprocess, Process

#: How long a new worker waits for a slot (only a replacement started before its predecessor ended ever waits).
CLAIM_TIMEOUT_SECONDS = 60.0
_claimed: list[int] = []  # the slot's lock file, open for the life of this worker process


def bind_reuseport(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` listening sockets on one address, each with SO_REUSEPORT (port 0: the first one's port for all)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this platform; run one worker per process instead")
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            if address[1] == 0:
                address = (address[0], sock.getsockname()[1], *address[2:])
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class WorkerSockets(list):  # type: ignore[type-arg]
    """The N sockets as uvicorn's supervisor passes them; in each worker process it becomes that worker's one socket."""

    def __init__(self, sockets: list[socket.socket], slot_dir: Path) -> None:
        super().__init__(sockets)
        self.slot_dir = slot_dir
        for index in range(len(sockets)):
            (slot_dir / f"slot-{index}").touch()

    def __reduce__(self) -> tuple[Any, ...]:
        return _claim, (str(self.slot_dir), list(self))


def new_slot_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cds-onnx-workers-"))


def _claim(slot_dir: str, sockets: list[socket.socket]) -> list[socket.socket]:
    """Runs in the worker while it unpickles its arguments: take a free slot, keep that slot's socket only."""
    deadline = time.monotonic() + CLAIM_TIMEOUT_SECONDS
    while True:
        for index, sock in enumerate(sockets):
            fd = os.open(os.path.join(slot_dir, f"slot-{index}"), os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _claimed.append(fd)
            for other in sockets:
                if other is not sock:
                    other.close()  # this process's copy only; the parent and the other workers keep theirs
            return [sock]
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free worker slot in {slot_dir} after {CLAIM_TIMEOUT_SECONDS:g} s")
        time.sleep(0.1)


class ReusePortSupervisor(Multiprocess):
    """uvicorn's supervisor, with SIGHUP's rolling restart in the order one socket per worker needs."""

    def restart_all(self) -> None:
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            old_process.terminate()
            old_process.join()
            new_process = Process(self.config, self.sockets)
            new_process.start()
            self.processes[idx] = new_process
