"""An append-only, fsync'd journal of predictions, so a response with cards is sent only once its prediction is durable.

The database write happens off the request path; until the database has the prediction durably, it lives in this
journal. Appends are group-committed (one write + one fdatasync for every record waiting), so concurrent requests share
the cost of the sync: whoever finds nobody writing writes every record queued at that moment, the others wait for it.
A request's worker thread makes its own record durable with `write` (no hand-off to another thread on the request
path); `append` hands the record to the journal's thread and returns a Future. Both tell which segment holds the
record. Records are pseudonymised before they are journalled: the journal holds the HMAC'd patient and encounter keys,
never the raw ids.

The journal is a chain of segment files. Once the current segment is longer than `max_bytes` the next write opens a
new one; a closed segment is forgotten (its file removed) once every record in it is settled — in the database or the
spool — and the owner has made the database's copy durable (`forgettable`, then `forget`). So the database may commit
predictions without syncing each commit, and pays one sync per segment instead, however busy the service is: no
moment with nothing in flight is needed. The segment being written stays locked (`flock`) while its process lives;
at start-up the segments whose lock is free — those of a process that died, and full ones — are replayed into the
store — idempotently, since a prediction id is written once — and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)
_STOP = object()


class JournalError(OSError):
    """The journal could not make a record durable."""


@dataclass
class _Segment:
    """One journal file: how many records it holds, and how many of those the database or the spool has."""

    number: int
    path: Path
    fh: BinaryIO = field(repr=False)
    appended: int = 0
    settled: int = 0
    size: int = 0  # bytes of whole, acknowledged batches
    closed: bool = False  # no more writes: a newer segment took over


class Journal:
    """One process's journal: `write` returns once lines are on disk (fdatasync'd) and names their segments; `append`
    returns a Future resolved with the segment then."""

    def __init__(self, folder: Path, max_batch: int = 512, max_bytes: int = 1 << 20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._max_batch = max_batch
        self._max_bytes = max_bytes  # a segment longer than this is closed, and a new one takes the next write
        self._lock = threading.Lock()  # the segments' counts and the table of segments
        self._turn = threading.Condition()  # group commit: records waiting, and whether someone is writing them
        self._pending: list[list[tuple[bytes, Future[int]]]] = []  # one group per caller, never split between writes
        self._writing = False
        self._closed = False  # sealed: every later write fails
        self._segments: dict[int, _Segment] = {}
        self._next_number = 0
        self.appended = 0  # records made durable
        self.fsyncs = 0
        self.rotations = 0  # segments closed because they grew past max_bytes
        self.forgotten = 0  # segment files removed once their records were durable elsewhere
        self._current = self._open_segment()
        self._thread = threading.Thread(target=self._run, name="cds-onnx-journal", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        """The file the next write goes to."""
        return self._current.path

    def paths(self) -> list[Path]:
        """Every segment file this journal still holds, oldest first."""
        with self._lock:
            return [seg.path for _, seg in sorted(self._segments.items())]

    def _open_segment(self) -> _Segment:
        number = self._next_number
        self._next_number += 1
        path = self.folder / f"journal-{os.getpid()}-{time.time_ns()}-{number:06d}.jsonl"
        # created under a name no replay looks for, locked, then renamed: a worker starting meanwhile can never take
        # the new file for an orphan (between open and flock it would be unlocked) and remove it under us
        fresh = path.with_name(f".{path.name}.new")
        fh = open(fresh, "ab", buffering=0)  # noqa: SIM115 - held open (and locked) until full or forgotten
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells other processes we are alive
            os.rename(fresh, path)
            sync_directory(self.folder)  # the new file's name survives a power loss, not only its data
        except BaseException:  # nothing was written to it: leave no file behind, hidden or not
            fh.close()
            fresh.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise
        segment = _Segment(number, path, fh)
        with self._lock:
            self._segments[number] = segment
        return segment

    def append(self, line: str) -> Future[int]:
        """Queue a record for the journal's thread; the Future resolves with its segment once it is on disk (or
        fails)."""
        fut: Future[int] = Future()
        self._queue.put((line.encode("utf-8") + b"\n", fut))
        return fut

    def write(self, *lines: str) -> list[int]:
        """Make records durable from the calling thread; returns each one's segment once they are on disk, raises
        JournalError if they cannot be. Concurrent callers share one write and one sync; one caller's records are
        written together (one segment, one outcome), so a failure never leaves part of a call journalled."""
        items: list[tuple[bytes, Future[int]]] = [(line.encode("utf-8") + b"\n", Future()) for line in lines]
        if not items:
            return []
        self._commit(items)
        return [fut.result() for _, fut in items]

    def settle(self, segment: int, count: int = 1) -> None:
        """`count` records of `segment` are now in the database or the spool."""
        with self._lock:
            if segment in self._segments:
                self._segments[segment].settled += count

    def forgettable(self) -> list[int]:
        """Closed segments whose every record is settled: once the database's copy is durable they may go."""
        with self._lock:
            return [n for n, seg in sorted(self._segments.items()) if seg.closed and seg.settled >= seg.appended]

    def forget(self, segments: list[int]) -> None:
        """Remove segments the caller has made durable elsewhere (their records are settled and synced). A full
        segment is no longer locked by this process, so a worker starting meanwhile may be replaying it: the file is
        removed under its lock, and left to that worker when it holds the lock."""
        for number in segments:
            with self._lock:
                seg = self._segments.get(number)
                if seg is None or not seg.closed or seg.settled < seg.appended:
                    continue
                del self._segments[number]
            seg.fh.close()
            with claimed(seg.path) as held:  # not held: being replayed (that worker removes it), or already gone
                if held:
                    seg.path.unlink()
                    self.forgotten += 1

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

    def _commit(self, items: list[tuple[bytes, Future[int]]]) -> None:
        """Queue `items` and return once each is resolved: if nobody is writing, this caller writes what is queued
        (whole groups, about max_batch records at a time) until its own items are done; otherwise it waits."""
        with self._turn:
            self._pending.append(items)
        last = items[-1][1]
        while True:
            with self._turn:
                while not last.done() and self._writing:
                    self._turn.wait()
                if last.done():
                    return
                if self._closed:  # sealed: nothing more is written, and nobody waits for ever
                    failed, self._pending = self._pending, []
                    for group in failed:
                        for _, fut in group:
                            _resolve(fut, error=JournalError("prediction journal is closed"))
                    self._turn.notify_all()
                    continue
                self._writing = True
                taken = 0
                batch: list[tuple[bytes, Future[int]]] = []
                while self._pending and (not batch or taken + len(self._pending[0]) <= self._max_batch):
                    group = self._pending.pop(0)
                    batch.extend(group)
                    taken += len(group)
            try:
                self._write_batch(batch)
            finally:
                with self._turn:
                    self._writing = False
                    self._turn.notify_all()

    def _write_batch(self, batch: list[tuple[bytes, Future[int]]]) -> None:
        try:
            segment = self._current
            if segment.size >= self._max_bytes:
                segment = self._rotate()
            self._append(segment, b"".join(data for data, _ in batch))
            self.fsyncs += 1
        except BaseException as exc:  # OSError, a write after close (ValueError), anything: every waiter is told
            log.error("prediction journal write failed: %s", exc)
            for _, fut in batch:
                _resolve(fut, error=JournalError(f"prediction journal write failed: {exc}"))
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            self.appended += len(batch)
            segment.appended += len(batch)
        for _, fut in batch:
            _resolve(fut, segment.number)

    def _append(self, segment: _Segment, data: bytes) -> None:
        """Write `data` at the segment's end and fdatasync it. On failure the segment is cut back to its last whole
        batch, so the next batch never follows a torn line (a replay would skip both) and refused records are not
        replayed as if they had been answered; if even the cut fails, the segment takes no more writes."""
        fd = segment.fh.fileno()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)  # data and length reach the disk; other metadata need not
        except BaseException:
            try:
                os.ftruncate(fd, segment.size)
                os.fdatasync(fd)
            except OSError:
                segment.size = self._max_bytes  # full: the next write starts a new segment
            raise
        segment.size += len(data)

    def _rotate(self) -> _Segment:
        """Close the current segment (its records may still be in flight to the database) and start the next.

        The full segment's file is closed, which also gives up its lock: a process holds one journal file open
        however long the database stays away. A worker starting meanwhile may replay the full segment and remove it;
        that is safe, since a replay commits each prediction with a sync of its own (or spools it) and the database
        keeps the first copy of a prediction id, and this journal's own `forget` then finds the file gone."""
        old = self._current
        self._current = self._open_segment()
        with self._lock:
            old.closed = True
        old.fh.close()
        self.rotations += 1
        return self._current

    def seal(self) -> None:
        """Refuse every later write (JournalError) and return once no write is in progress, so the counts are final."""
        with self._turn:
            self._closed = True
            while self._writing:
                self._turn.wait()
            self._turn.notify_all()

    def close(self, remove_if_settled: bool = True) -> None:
        """Seal and stop; with `remove_if_settled`, remove the segments whose every record is settled (the caller has
        made the database's copy durable first). The others stay for the next start to replay."""
        self.seal()
        self._queue.put(_STOP)
        self._thread.join(10)
        with self._lock:
            segments = list(self._segments.values())
            self._segments.clear()
        for seg in segments:
            if remove_if_settled and seg.settled >= seg.appended:
                seg.path.unlink(missing_ok=True)
            seg.fh.close()


def _resolve(fut: Future[int], segment: int = -1, error: BaseException | None = None) -> None:
    """Give a waiting caller its answer; a Future its caller cancelled (`append`) has nobody to tell."""
    try:
        if error is None:
            fut.set_result(segment)
        else:
            fut.set_exception(error)
    except InvalidStateError:
        log.debug("journal write answered after its caller cancelled it")


def sync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def orphaned_journals(folder: Path) -> Iterator[Path]:
    """Journal files whose writer process is gone, or that it has filled (their lock can be taken), oldest first;
    each is yielded while locked."""
    return unclaimed_files(folder, "journal-*.jsonl")


def unclaimed_files(folder: Path, pattern: str) -> Iterator[Path]:
    """Files in `folder` matching `pattern` that no process holds (their `flock` can be taken), in name order; each
    is yielded while this process holds its lock. A file removed after it was listed — by a process that held it
    first — is skipped, even when it was opened before it went (the lock is then on a file that no longer has the
    name)."""
    for path in sorted(Path(folder).glob(pattern)):
        with claimed(path) as held:
            if held:
                yield path


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[bool]:
    """Whether this process now holds the `flock` of the file named `path`, until the block ends: False when the file
    is gone, another process holds it, or the name went to another file between the open and the lock."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield still_named(path, fh)


def still_named(path: Path, fh: Any) -> bool:
    """Whether `path` still names the file open as `fh` (a file object or a descriptor)."""
    try:
        return os.stat(path).st_ino == os.fstat(fh if isinstance(fh, int) else fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def replay_journal(path: Path, write: Callable[[str], None],
                   set_aside: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Write every complete line of a journal through `write`; returns (written, unreadable). A line that cannot be
    read goes to `set_aside` (a torn last line — the process died mid-write, before fsync returned — was never
    acknowledged; any other was, and must not vanish with the file)."""
    written = unreadable = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # replayed and removed by another worker meanwhile
        return 0, 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            write(raw.decode("utf-8"))
            written += 1
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            unreadable += 1
            if set_aside is not None:
                set_aside(raw.decode("utf-8", "replace"))
    return written, unreadable
