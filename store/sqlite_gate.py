"""One writer at a time on an embedded SQLite store, handed over at once instead of by SQLite's sleeping busy handler.

Why: SQLite lets one connection write at a time. When a second one finds the file locked, its busy handler sleeps and
retries (1, 2, 5, 10 … 100 ms steps), so under load the prediction recorder, the replay cache and the JWK Set cache of
one process — and the workers of `serve --workers N`, which share the file — queued behind each other's sleeps: p99
reached 1.4 s and a second worker added no throughput (docs/performance.md). The gate makes writers wait on a
lock that wakes them the moment the holder commits: a thread lock inside the process and an `flock` on a file beside
the database across processes.

It is attached to the engine through SQLAlchemy events and needs nothing from the code that writes: Python's sqlite3
starts a transaction implicitly just before the first INSERT/UPDATE/DELETE/REPLACE (reads run outside it in WAL mode),
so the gate is taken right then, and given back when the connection returns to the pool (after the commit, or the
pool's rollback). A connection kept open across several transactions keeps its turn until it is returned.
PostgreSQL has row locks and is never gated.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, event

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_HELD = "cds_onnx_gate_held"


class WriterGate:
    """A process-wide lock plus an exclusive flock on `<database>.write-lock`, opened once per process.

    The lock belongs to the connection that took it, not to a thread: the pool may check a connection in from another
    thread. A connection that waits longer than `timeout` seconds inside the process gets SQLite's own "database is
    locked" error, as the busy timeout would give it.
    """

    def __init__(self, lock_path: str, timeout: float) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        self.waiting = 0  # connections of this process waiting for their turn (tests and diagnostics read it)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child must not share the parent's open file
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        self.waiting += 1
        try:
            turn = self._lock.acquire(timeout=self.timeout)
        finally:
            self.waiting -= 1
        if not turn:
            raise sqlite3.OperationalError(f"database is locked (no write turn within {self.timeout:g} s)")
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)  # blocks in the kernel, without the GIL
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.locked()


def database_file(engine: Engine) -> str | None:
    """The path of a file-based SQLite engine's database; None for in-memory, URI-form and non-SQLite engines."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def attach(engine: Engine, timeout: float = 30.0, gate: WriterGate | None = None) -> WriterGate | None:
    """Gate the write transactions of a file-based SQLite engine; None (nothing attached) for anything else. A second
    engine on the same file (other pragmas) shares the first one's `gate`, so one of them writes at a time."""
    database = database_file(engine)
    if database is None:
        return None
    gate = gate or WriterGate(f"{database}.write-lock", timeout)

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        info = conn.connection.info
        if not info.get(_HELD) and statement.lstrip()[:7].upper().startswith(_WRITES):
            gate.acquire()
            info[_HELD] = True

    def _give_back(info: dict[str, Any]) -> None:
        if info.pop(_HELD, False):
            gate.release()

    # Given back when the connection returns to the pool: after its commit (or the pool's rollback) has finished.
    # The "commit" event would be too early: it fires before the commit runs.
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _give_back(record.info)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(_dbapi_connection: Any, record: Any, _exc: Any) -> None:
        _give_back(record.info)

    return gate
