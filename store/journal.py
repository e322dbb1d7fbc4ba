"""An append-only, fsync'd journal of predictions, so a response with cards is sent only once its prediction is durable.

The database write happens off the request path; until it commits, the prediction lives in this journal. Appends are
group-committed (one write + one fdatasync for every record waiting), so concurrent requests share the cost of the
sync: whoever finds nobody writing writes every record queued at that moment, the others wait for it. A request's
worker thread makes its own record durable with `write` (no hand-off to another thread on the request path);
`append` hands the record to the journal's thread and returns a Future. Records are pseudonymised before they are
journalled: the journal holds the HMAC'd patient and encounter keys, never the raw ids. Once every journalled record is
in the database and the file has grown past `max_bytes` it is truncated (truncating after every record would cost a
second sync per request); at start-up journals left by a process that died (their lock is free) are replayed into
the store — idempotently, since a prediction id is written once — and removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)
_STOP = object()


class JournalError(OSError):
    """The journal could not make a record durable."""


class Journal:
    """One process's journal file: `write` returns once a line is on disk (fdatasync'd); `append` returns a Future
    resolved then."""

    def __init__(self, folder: Path, max_batch: int = 512, max_bytes: int = 1 << 20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"journal-{os.getpid()}-{time.time_ns()}.jsonl"
        self._fh: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - held open for the process's life
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells other processes we are alive
        self._queue: queue.Queue[Any] = queue.Queue()
        self._max_batch = max_batch
        self._max_bytes = max_bytes  # a settled journal is emptied once it is this long
        self._lock = threading.Lock()
        self._turn = threading.Condition()  # group commit: records waiting, and whether someone is writing them
        self._pending: list[tuple[bytes, Future[None]]] = []
        self._writing = False
        self.appended = 0  # records made durable
        self.settled = 0  # records the database (or the spool) holds, so the journal may forget them
        self.fsyncs = 0
        self.truncations = 0
        self._thread = threading.Thread(target=self._run, name="cds-onnx-journal", daemon=True)
        self._thread.start()

    def append(self, line: str) -> Future[None]:
        """Queue a record for the journal's thread; the Future resolves once it is on disk (or fails)."""
        fut: Future[None] = Future()
        self._queue.put((line.encode("utf-8") + b"\n", fut))
        return fut

    def write(self, *lines: str) -> None:
        """Make records durable from the calling thread, in one write; returns once they are on disk, raises
        JournalError if they cannot be. Concurrent callers share one write and one sync."""
        items: list[tuple[bytes, Future[None]]] = [(line.encode("utf-8") + b"\n", Future()) for line in lines]
        if not items:
            return
        self._commit(items)
        for _, fut in items:
            fut.result()

    def settle(self, count: int = 1) -> None:
        """`count` journalled records are now in the database or the spool."""
        with self._lock:
            self.settled += count

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, items: list[tuple[bytes, Future[None]]]) -> None:
        """Queue `items` and return once each is resolved: if nobody is writing, this caller writes everything queued
        (up to max_batch at a time) until its own items are done; otherwise it waits for the writer."""
        with self._turn:
            self._pending.extend(items)
        last = items[-1][1]
        while True:
            with self._turn:
                while not last.done() and self._writing:
                    self._turn.wait()
                if last.done():
                    return
                self._writing = True
                batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
            try:
                self._write_batch(batch)
            finally:
                with self._turn:
                    self._writing = False
                    self._turn.notify_all()

    def _write_batch(self, batch: list[tuple[bytes, Future[None]]]) -> None:
        try:
            self._maybe_truncate()
            self._fh.write(b"".join(data for data, _ in batch))
            self._fh.flush()
            os.fdatasync(self._fh.fileno())  # data and length reach the disk; other metadata need not
            self.fsyncs += 1
        except Exception as exc:  # OSError, or a write after close (ValueError): every waiter gets the failure
            log.error("prediction journal write failed: %s", exc)
            for _, fut in batch:
                fut.set_exception(JournalError(f"prediction journal write failed: {exc}"))
            return
        with self._lock:
            self.appended += len(batch)
        for _, fut in batch:
            fut.set_result(None)

    def _maybe_truncate(self) -> None:
        """Forget what the database already holds: once the file is long and every appended record is settled, empty
        it. Until then a replay after a crash rewrites records the database has, which it ignores (written once)."""
        if self._fh.tell() < self._max_bytes:
            return
        with self._lock:
            done = self.appended > 0 and self.settled >= self.appended
        if done:
            self._fh.truncate(0)
            self._fh.seek(0)
            os.fsync(self._fh.fileno())
            self.truncations += 1

    def close(self, remove_if_settled: bool = True) -> None:
        self._queue.put(_STOP)
        self._thread.join(10)
        with self._lock:
            settled = self.settled >= self.appended
        self._fh.close()
        if remove_if_settled and settled:
            self.path.unlink(missing_ok=True)


def orphaned_journals(folder: Path) -> Iterator[Path]:
    """Journal files whose writer process is gone (their lock can be taken); each is yielded while locked."""
    for path in sorted(Path(folder).glob("journal-*.jsonl")):
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()  # a live process (another worker) owns it
            continue
        try:
            yield path
        finally:
            fh.close()


def replay_journal(path: Path, write: Callable[[str], None]) -> tuple[int, int]:
    """Write every complete line of a journal through `write`; returns (written, unreadable). A torn last line (the
    process died mid-write, before fsync returned) was never acknowledged, so it is skipped."""
    written = unreadable = 0
    data = path.read_bytes()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            write(raw.decode("utf-8"))
            written += 1
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            unreadable += 1
    return written, unreadable
