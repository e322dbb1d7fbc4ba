"""Recording with the database write off the request path, and nothing accepted ever lost.

`record` pseudonymises the record (HMAC keys, no raw ids) and writes it to an fsync'd journal (store/journal.py) from
the calling thread, returning once it is on disk; the service answers only then (`submit` does the same through the
journal's thread and returns a Future). A writer thread then
puts the record in the database; when the queue is full or the database is failing, the record goes to a JSONL spool
file (fsync'd) that the writer replays once the database answers again. At every start, journals left by a killed
process and the spool are replayed (idempotently: a prediction id is written once).

Since the journal holds every record until the database's copy is durable, the writer commits predictions without a
sync per commit (`Store.write_predictions(..., deferred_sync=True)`); when a journal segment is full and all of its
records are in the database, one `Store.sync_predictions` makes them durable there and only then is the segment
removed. A busy service so syncs the database once per segment (1 MiB of records), not once per write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import DataError, IntegrityError

from store.journal import Journal, orphaned_journals, replay_journal, still_named, sync_directory, unclaimed_files
from store.records import CardRecord, PredictionRecord
from store.store import Store

log = logging.getLogger(__name__)
_STOP = object()
#: Predictions written in one transaction at most: under load the writer takes what has queued up since its last
#: write, so the database's write lock is taken once per batch rather than once per prediction.
MAX_BATCH = 64
#: How long the writer waits for more records after the first of a batch. A batch of five costs half the CPU per
#: record of five single writes (benchmarks: 0.26 against 0.56 ms), and that CPU holds the GIL the request path
#: needs. The journal already holds every record durably; only the database copy waits (`flush` and `stop` end the
#: wait; the details view flushes before it reports a prediction unknown).
BATCH_LINGER_SECONDS = 0.05
#: Spooled predictions the database refused outright (not for being down), kept beside the spool for an operator.
REJECTED = "rejected.jsonl"
#: Spool files renamed for replay (`replaying-<ns>.jsonl`), held by one worker at a time while replayed.
REPLAYING = "replaying-*.jsonl"


def append_durably(path: Path, text: str) -> None:
    """Append `text` (whole lines) to the file named `path` and fsync it, under the file's `flock`.

    The workers of one machine share the spool: a replayer renames the spool away under the same lock, so an append
    that opened the old file waits, sees the name now belongs to another file (or none), and appends to that one
    instead of a file already read. A worker killed mid-append leaves a line without its end: the next append ends
    that line first, so its own records are never glued onto a torn one (which a replay would skip as unreadable).
    A new file's name is synced too, so the file survives a power loss."""
    data = text.encode("utf-8")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not still_named(path, fd):
                continue  # renamed for replay meanwhile: closing gives the lock back; open the new spool
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end the torn line a killed writer left
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if size == 0:
                sync_directory(path.parent)
            return
        finally:
            os.close(fd)


def record_to_json(rec: PredictionRecord) -> str:
    """One JSON line (orjson: dataclasses and datetimes natively, several times faster than json + asdict)."""
    return orjson.dumps(rec).decode("utf-8")


def record_from_json(line: str) -> PredictionRecord:
    data = json.loads(line)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["cards"] = [CardRecord(**c) for c in data.get("cards", [])]
    return PredictionRecord(**data)


class Recorder:
    def __init__(self, store: Store, max_queue: int = 10_000, spool_dir: Path | None = None,
                 retry_seconds: float = 1.0, durable: bool = True, journal_max_bytes: int = 1 << 20,
                 linger_seconds: float = BATCH_LINGER_SECONDS) -> None:
        self.store = store
        self.journal_max_bytes = journal_max_bytes
        self.durable = durable
        self.journal: Journal | None = None
        self._in_journal = 0  # submitted, not yet durable (then queued)
        self.spool_dir = Path(spool_dir or "var/spool")
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool = self.spool_dir / "predictions.jsonl"
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()  # the spool file of this process (appends, and its rename for replay)
        # `_in_journal` and `_flushing`: a lock of their own, so request threads never wait for a spool fsync
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._retry = retry_seconds
        self._linger = linger_seconds
        self._flushing = 0  # callers waiting in flush(): the writer writes what it has without lingering
        self.queued = self.written = self.spooled = self.failed = self.rejected = 0
        self.store_syncs = 0  # syncs of the database that let journal segments go
        self._replay_kept = False  # a journal being replayed held a record that could go nowhere else

    # ---- producer side ------------------------------------------------------------------------------------------
    def submit(self, rec: PredictionRecord) -> Future[int]:
        """Accept a prediction: the Future resolves (with its journal segment) once it is durable, or fails if it
        cannot be."""
        rec = self.store.pseudonymise(rec)
        if self.journal is None:  # not durable (tests of the queue itself), or not started yet
            done: Future[int] = Future()
            self._enqueue(rec, segment=None)
            done.set_result(-1)
            return done
        with self._count_lock:
            self._in_journal += 1
        fut = self.journal.append(record_to_json(rec))

        def durable(f: Future[int]) -> None:
            try:
                if f.exception() is None:
                    self._enqueue(rec, segment=f.result())
            finally:
                with self._count_lock:
                    self._in_journal -= 1

        fut.add_done_callback(durable)
        return fut

    def record(self, *records: PredictionRecord) -> None:
        """Accept a call's predictions from a worker thread: returns once they are durable (journalled in one write,
        group-committed with other threads' records), raises JournalError if they cannot be. The database write
        follows, with the call's records queued together."""
        pseudonymised = [self.store.pseudonymise(rec) for rec in records]
        if self.journal is None:
            for rec in pseudonymised:
                self._enqueue(rec, segment=None)
            return
        with self._count_lock:
            self._in_journal += len(pseudonymised)
        try:
            segments = self.journal.write(*(record_to_json(rec) for rec in pseudonymised))
            for rec, segment in zip(pseudonymised, segments, strict=True):
                self._enqueue(rec, segment=segment)
        finally:
            with self._count_lock:
                self._in_journal -= len(pseudonymised)

    def _enqueue(self, rec: PredictionRecord, segment: int | None) -> None:
        """Queue a record for the database; `segment` is the journal segment holding it (None: not journalled)."""
        try:
            self._queue.put_nowait((rec, segment))
            self.queued += 1
        except queue.Full:
            if self._to_spool(rec):
                self._settle(segment)  # otherwise only the journal holds it: the segment stays for the next start

    def _settle(self, segment: int | None) -> None:
        if segment is not None and self.journal is not None:
            self.journal.settle(segment)

    def _forget_synced_segments(self) -> None:
        """Full journal segments whose records are all in the database (or the spool) go, once the database's copy
        is durable: one sync of the store per segment."""
        journal = self.journal
        if journal is None:
            return
        done = journal.forgettable()
        if not done:
            return
        if self._store_synced():  # otherwise the segments stay until a later sync succeeds
            journal.forget(done)
            self.store_syncs += 1

    def _to_spool(self, rec: PredictionRecord) -> bool:
        """Append a record to the spool, durably; False if even that failed (the caller keeps its copy)."""
        try:
            line = record_to_json(rec) + "\n"
            with self._lock:
                append_durably(self._spool, line)
            self.spooled += 1
            return True
        except Exception:  # last resort: the disk failed too; say so loudly, never fail the response
            self.failed += 1
            log.exception("prediction %s could not be spooled", rec.prediction_id)

    # ---- writer side --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._replay_journals()
        if self.durable:
            self.journal = Journal(self.spool_dir, max_bytes=self.journal_max_bytes)
        self._thread = threading.Thread(target=self._run, name="cds-onnx-recorder", daemon=True)
        self._thread.start()

    def _replay_journals(self) -> None:
        """Journals of processes that died (killed, crashed) hold predictions that were answered: write them."""
        for path in orphaned_journals(self.spool_dir):
            self._replay_kept = False
            unreadable_lines: list[str] = []
            written, unreadable = replay_journal(path, self._write_line, unreadable_lines.append)
            if written:
                log.info("replayed %d journalled prediction(s) from %s", written, path.name)
            # A prediction the store already had (committed by the dead process without a sync of its own) makes the
            # replay's insert a no-op, and a no-op commit syncs nothing: the file goes only once the store has synced.
            if self._replay_kept:
                log.error("journal %s kept: a prediction could be neither stored nor spooled", path.name)
            elif not self._store_synced():
                log.warning("journal %s kept: the store could not confirm its predictions are durable", path.name)
            elif self._set_aside_all(unreadable_lines, f"{unreadable} unreadable line(s) in journal {path.name} (a "
                                                       "torn last line was never answered)"):
                path.unlink(missing_ok=True)

    def _set_aside_all(self, lines: list[str], why: str) -> bool:
        """Set lines aside in rejected.jsonl just before their file goes (so a kept file never sets them aside
        twice); False, and the file is kept, if that fails."""
        if not lines:
            return True
        try:
            append_durably(self.spool_dir / REJECTED, "".join(line + "\n" for line in lines))
        except OSError as exc:
            log.error("%s could not be set aside (%s); their file is kept", why, exc)
            return False
        self.rejected += len(lines)
        log.error("%s; kept in %s", why, REJECTED)
        return True

    def _store_synced(self) -> bool:
        """Whether every prediction the store has committed is now durable (False if the store cannot say)."""
        try:
            return self.store.sync_predictions()
        except Exception as exc:  # the database is down: whoever holds a copy keeps it
            log.warning("store sync failed (%s)", type(exc).__name__)
            return False

    def _write_line(self, line: str) -> None:
        rec = record_from_json(line)
        try:
            self.store.write_prediction(rec)
            self.written += 1
        except Exception as exc:  # database down at start-up: keep it durable in the spool
            log.warning("store unavailable (%s); journalled prediction spooled", type(exc).__name__)
            if not self._to_spool(rec):
                self._replay_kept = True  # the journal file stays: it is the only copy

    def _run(self) -> None:
        self._guarded(self._replay_spool)
        last_replay = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self._retry)
            except queue.Empty:
                if self._spool_waiting() and time.monotonic() - last_replay > self._retry:
                    self._guarded(self._replay_spool)
                    last_replay = time.monotonic()
                continue
            batch = [item]
            linger_until = time.monotonic() + self._linger
            while item is not _STOP and len(batch) < MAX_BATCH:  # what queues up meanwhile goes in the same write
                # no waiting while someone flushes: under steady load a lingering writer would keep the queue busy
                wait = 0.0 if self._flushing else max(0.0, linger_until - time.monotonic())
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
                batch.append(item)
            records = [entry for entry in batch if entry is not _STOP]
            try:
                if records:
                    kept = self._write([rec for rec, _segment in records])
                    for rec, segment in records:
                        if id(rec) not in kept:
                            self._settle(segment)
                    self._guarded(self._forget_synced_segments)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(records) < len(batch):
                return

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a housekeeping step of the writer thread; an error is logged, and the thread goes on writing."""
        try:
            step()
        except Exception:
            log.exception("recorder step %s failed; it is tried again later", step.__name__)

    def _write(self, records: list[PredictionRecord]) -> set[int]:
        """Write records to the database, or else to the spool; returns the ids (`id()`) of records neither took,
        which stay unsettled so that their journal segment is kept."""
        try:
            self.store.write_predictions(records, deferred_sync=True)  # the journal holds them until a sync
            self.written += len(records)
            return set()
        except Exception as exc:
            log.warning("store unavailable (%s); %d prediction(s) spooled, first %s", type(exc).__name__,
                        len(records), records[0].prediction_id)
            return {id(rec) for rec in records if not self._to_spool(rec)}

    def _spool_waiting(self) -> bool:
        """Spooled predictions wait: the spool itself, or a replay that could not finish (or the folder cannot be
        read: the replay, which logs its errors, then says why)."""
        try:
            return self._spool.exists() or any(self.spool_dir.glob(REPLAYING))
        except OSError:
            return True

    def _replay_spool(self) -> None:
        """Write spooled predictions to the database. The workers of one machine share the spool folder: the spool is
        renamed for replay under its lock (no append can be half done), and each file being replayed is held by one
        worker at a time (`unclaimed_files`); a worker that died mid-replay leaves its file to the next."""
        with self._lock:
            if self._spool.exists():
                with open(self._spool, "ab") as fh:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                    if still_named(self._spool, fh):
                        os.rename(self._spool, self.spool_dir / f"replaying-{time.time_ns()}.jsonl")
        for path in unclaimed_files(self.spool_dir, REPLAYING):
            try:  # records end at b"\n" only: str.splitlines would also cut them at U+2028, U+2029 and U+0085
                lines = [raw.decode("utf-8", "replace") for raw in path.read_bytes().split(b"\n") if raw.strip()]
            except FileNotFoundError:
                continue
            aside: list[str] = []  # set aside only once this file goes, so a kept file is never set aside twice
            for line in lines:
                try:
                    rec = record_from_json(line)
                except (ValueError, TypeError, KeyError):
                    aside.append(line)  # unreadable (say, a record of another version)
                    continue
                try:
                    self.store.write_prediction(rec)
                    self.written += 1
                except (IntegrityError, DataError) as exc:
                    # the database answers but refuses this record: set it aside (kept, counted, logged) so that
                    # it does not hold back every record spooled after it
                    log.error("spooled prediction %s refused by the database (%s)", rec.prediction_id,
                              type(exc).__name__)
                    aside.append(line)
                except Exception as exc:
                    # database down: the file stays as it is (on disk, replayed idempotently next time)
                    log.warning("store unavailable (%s); %s kept for a later replay", type(exc).__name__, path.name)
                    return
            if not self._store_synced():  # as for journals: a no-op insert of a row committed unsynced syncs nothing
                return  # kept; replayed again (idempotently) at the next attempt
            if self._set_aside_all(aside, f"{len(aside)} spooled line(s) unreadable or refused in {path.name}"):
                path.unlink(missing_ok=True)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued (and spooled, if the database answers) is written. The writer does not
        linger for more records meanwhile."""
        with self._count_lock:
            self._flushing += 1
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                idle = self._queue.unfinished_tasks == 0 and self._in_journal == 0
                if idle and not self._spool_waiting():
                    return True
                time.sleep(0.01)
            return False
        finally:
            with self._count_lock:
                self._flushing -= 1

    def stop(self, timeout: float = 10.0) -> None:
        """Drain the queue into the database (or the spool), then stop the writer."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        writer_alive = self._thread.is_alive()  # it outlived the join: it may still commit
        while True:  # anything still queued (the writer timed out) goes to the spool, never lost
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rec, segment = item
                if self._to_spool(rec):
                    self._settle(segment)
        if writer_alive:  # the drain took its stop signal: it ends once its commit returns
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
        self._thread = None
        if self.journal is not None:
            # the journal's files go only once the database's copy of what they hold is durable, and never while
            # the writer may still commit; otherwise they stay for the next start to replay
            self.journal.close(remove_if_settled=not writer_alive and self._store_synced())
            self.journal = None
