"""A card goes out only once its prediction is durable, and making it durable costs the request one sync.

The request's worker thread writes its own record to the journal (no hand-off to the journal's thread and back), and
concurrent writers share one write and one fdatasync. A journal that cannot write refuses the card (503). The
journal is emptied only once it has grown long, so a quiet service does not pay a second sync per request to
truncate it. Interleavings are controlled with events, never with sleeps.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

import fhirfactory as F
import store.journal as journal_module
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import KEYS, SignedClient, make_settings, running_where, wait_for
from store.journal import Journal, JournalError, orphaned_journals
from store.recorder import Recorder, record_to_json
from store.store import Store
from test_store import SECRET, FlakyStore, die, next_start, prediction

SERVICE = "ascvd-pce-10y"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[SignedClient]:
    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key

    with TestClient(create_app(make_settings(tmp_path))) as client:
        yield SignedClient(client, load_local_key(KEYS / "local"))


def call(api: SignedClient) -> Any:
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == SERVICE)["prefetch"]
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    body = {"hook": "patient-view", "hookInstance": "0d8e7a62-5a43-4f0e-9b7e-6c1b2f3a4d55", "context": context,
            "prefetch": prefetch_from_resources(templates, F.pce_record(gender="male", race="white"), context)}
    return api.post(f"/cds-services/{SERVICE}", json=body)


def _queued(journal: Journal) -> int:
    """Records waiting for the writer (every caller's group)."""
    with journal._turn:
        return sum(len(group) for group in journal._pending)


def test_the_request_thread_makes_its_own_record_durable_before_the_answer(
        api: SignedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_by: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced_by.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    resp = call(api)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["cards"]) == 1
    journal = api.app.state.cds.recorder.journal
    assert synced_by and "cds-onnx-journal" not in synced_by  # no hand-off to the journal's thread
    assert journal.fsyncs == len(synced_by)
    # what the answer stands on is on disk: the journal holds the one prediction (pseudonymised)
    lines = journal.path.read_text().splitlines()
    assert len(lines) == 1 and '"service_id":"ascvd-pce-10y"' in lines[0] and '"patient_id":"p1"' not in lines[0]


def test_a_journal_that_cannot_write_refuses_the_card(api: SignedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fdatasync", broken)
    resp = call(api)
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["code"] == "transient" and issue["expression"] == ["prediction"]
    assert "recorded durably" in issue["diagnostics"] and "no card" in issue["diagnostics"]
    recorder = api.app.state.cds.recorder
    assert recorder.flush(10)
    assert recorder.store.predictions() == []  # refused, so nothing was recorded as shown either


def test_concurrent_writers_share_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    first_sync_entered, release = threading.Event(), threading.Event()
    real = os.fdatasync
    calls = 0

    def fdatasync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first writer holds the turn while the others queue behind it
            first_sync_entered.set()
            assert release.wait(30)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    threads = [threading.Thread(target=journal.write, args=(f'{{"n":{i}}}',)) for i in range(5)]
    threads[0].start()
    assert first_sync_entered.wait(30)
    for t in threads[1:]:
        t.start()
    wait_for(lambda: _queued(journal) == 4, "the four others queued behind the first")
    release.set()
    for t in threads:
        t.join(30)
    assert journal.fsyncs == 2 and journal.appended == 5
    assert sorted(journal.path.read_text().splitlines()) == sorted(f'{{"n":{i}}}' for i in range(5))
    journal.close(remove_if_settled=False)


def test_a_failed_sync_fails_every_writer_of_its_batch_and_the_next_batch_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    real = os.fdatasync
    fail = True

    def fdatasync(fd: int) -> None:
        if fail:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    with pytest.raises(JournalError, match="No space left"):
        journal.write('{"n":1}')
    assert journal.appended == 0
    fail = False
    journal.write('{"n":2}')
    assert journal.appended == 1
    journal.close(remove_if_settled=False)


def _settled_records(tmp_path: Path, count: int, **kw: Any) -> tuple[Recorder, Journal]:
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    recorder = Recorder(store, spool_dir=tmp_path / "spool", retry_seconds=0.05, **kw)
    recorder.start()
    for _ in range(count):
        recorder.record(prediction())
        assert recorder.flush(10)  # settled in the database before the next one
    journal = recorder.journal
    assert journal is not None
    return recorder, journal


def test_a_short_journal_costs_one_sync_per_record_and_no_store_sync(tmp_path: Path) -> None:
    recorder, journal = _settled_records(tmp_path, 3)
    assert journal.rotations == 0 and journal.fsyncs == 3  # one sync per record, none to empty the journal
    assert recorder.store_syncs == 0 and len(journal.paths()) == 1
    recorder.stop()
    assert recorder.store_syncs == 0 and not list((tmp_path / "spool").glob("journal-*"))  # synced, then removed


def test_a_full_segment_goes_only_once_the_store_has_synced_it(tmp_path: Path) -> None:
    recorder, journal = _settled_records(tmp_path, 1, journal_max_bytes=1)
    store = recorder.store
    sync = store.sync_predictions
    files_at_sync: list[int] = []
    answer = False

    def sync_predictions() -> bool:
        files_at_sync.append(len(list((tmp_path / "spool").glob("journal-*.jsonl"))))
        return answer and sync()

    store.sync_predictions = sync_predictions  # type: ignore[method-assign]
    recorder.record(prediction())  # the first segment is full: this one opens the second
    assert recorder.flush(10)
    assert journal.rotations == 1 and files_at_sync == [2]
    assert len(journal.paths()) == 2  # the store could not confirm the sync: the full segment stays
    answer = True
    recorder.record(prediction())  # opens the third; the first two are settled and, once synced, go
    assert recorder.flush(10)
    assert files_at_sync == [2, 3] and recorder.store_syncs == 1
    assert journal.paths() == [journal.path]
    recorder.stop()
    assert len(store.predictions()) == 3


def test_a_busy_recorder_syncs_the_store_once_per_segment_not_once_per_write(tmp_path: Path) -> None:
    line = len(record_to_json(Store(f"sqlite:///{tmp_path / 'x.sqlite3'}", SECRET).pseudonymise(prediction())))
    recorder, journal = _settled_records(tmp_path, 40, journal_max_bytes=10 * line)
    assert journal.fsyncs == 40  # forty writes, each its own transaction in the database
    assert 3 <= journal.rotations <= 4 and recorder.store_syncs == journal.rotations
    recorder.stop()
    assert len(recorder.store.predictions()) == 40


def test_a_store_that_cannot_sync_at_stop_leaves_the_journal_for_the_next_start(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    flaky = FlakyStore(real)
    flaky.down = False
    recorder = Recorder(flaky, spool_dir=tmp_path / "spool", retry_seconds=0.05,  # type: ignore[arg-type]
                        journal_max_bytes=1)
    recorder.start()
    recs = [prediction() for _ in range(3)]
    for rec in recs:
        recorder.record(rec)
        assert recorder.flush(10)
    flaky.down = True  # in the database, but not yet known to be durable there
    recorder.stop()
    assert len(list((tmp_path / "spool").glob("journal-*.jsonl"))) >= 1
    next_start(real, tmp_path / "spool")
    assert sorted(p["prediction_id"] for p in real.predictions()) == sorted(r.prediction_id for r in recs)
    assert not list((tmp_path / "spool").glob("journal-*.jsonl"))


def test_the_recorders_commits_skip_their_sync_and_the_store_sync_is_a_full_commit_that_writes(
        tmp_path: Path) -> None:
    """Deferred writes commit with synchronous=NORMAL; the sync is a synchronous=FULL commit that always writes a
    frame (a counter), so SQLite syncs the write-ahead log — and with it every earlier frame — at that commit."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    with store.deferred_engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL: no sync at commit
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL for everything else
    statements: dict[str, list[str]] = {"deferred": [], "full": []}
    for name, engine in (("deferred", store.deferred_engine), ("full", store.engine)):
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _cur, sql, *_rest, name=name: statements[name].append(sql.split()[0:3]))
    assert store.write_predictions([prediction(), prediction()], deferred_sync=True) == 2
    assert all(words[:2] != ["UPDATE", "store_sync"] for words in statements["deferred"])
    assert statements["full"] == []  # the deferred write went through the NORMAL engine only
    assert store.sync_predictions()
    assert ["UPDATE", "store_sync", "SET"] in statements["full"]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT syncs FROM store_sync WHERE id = 1")).scalar() == 1  # a frame was written
        conn.execute(text("DELETE FROM store_sync"))
        conn.commit()
    assert store.sync_predictions() is False  # nothing changed, nothing synced: not claimed as durable


def test_the_store_sync_queues_for_the_write_turn_like_any_writer(tmp_path: Path) -> None:
    """Connection first, then the writers' gate, as every writer takes them (the reverse order could stall both)."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    gate = store.writer_gate
    assert gate is not None
    answers: list[bool] = []
    gate.acquire()  # a writer of this worker is mid-transaction
    try:
        syncer = threading.Thread(target=lambda: answers.append(store.sync_predictions()))
        syncer.start()
        wait_for(lambda: gate.waiting == 1, "the sync, holding its connection, waits for the turn")
        assert gate.waiting == 1 and answers == []
    finally:
        gate.release()
    syncer.join(30)
    assert answers == [True]


def _open_journal_files(folder: Path) -> list[str]:
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)) and "journal-" in target:
            names.append(target)
    return names


def test_only_the_segment_being_written_stays_open_and_locked(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1)
    segments = [segment for i in range(3) for segment in journal.write(f'{{"n":{i}}}')]
    assert segments == [0, 1, 2] and journal.rotations == 2 and len(journal.paths()) == 3
    # one open file however many segments wait for the database (a long outage must not use up descriptors)
    assert _open_journal_files(tmp_path) == [str(journal.path)]
    # a worker starting now may replay the full segments (idempotently), never the one being written
    assert list(orphaned_journals(tmp_path)) == journal.paths()[:2]
    journal.settle(0)
    assert journal.forgettable() == [0]  # closed and settled; 2 is still the current one
    journal.settle(2)
    assert journal.forgettable() == [0]
    first = journal.paths()[0]
    journal.forget([0, 1])  # 1 is not settled: it stays
    assert not first.exists() and len(journal.paths()) == 2 and journal.forgotten == 1
    journal.close(remove_if_settled=True)  # 2 is settled and goes; 1 stays for the next start
    left = list(orphaned_journals(tmp_path))
    assert len(left) == 1 and left[0].read_text() == '{"n":1}\n'


def test_a_replayed_journal_goes_only_once_the_store_has_synced(tmp_path: Path) -> None:
    """A replayed prediction the store already holds (committed unsynced by the process that died) is a no-op
    insert, and a no-op commit syncs nothing: the journal file must wait for the store's sync."""
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    flaky = FlakyStore(real)
    flaky.down = False
    first = Recorder(flaky, spool_dir=tmp_path / "spool", retry_seconds=0.05)  # type: ignore[arg-type]
    first.start()
    rec = prediction()
    first.record(rec)
    assert first.flush(10)  # in the database, committed without a sync of its own
    die(first)
    syncs: list[bool] = []
    sync = real.sync_predictions
    real.sync_predictions = lambda: (syncs.append(False), False)[1]  # type: ignore[method-assign]
    second = Recorder(real, spool_dir=tmp_path / "spool", retry_seconds=0.05)
    second.start()
    assert syncs and len(list((tmp_path / "spool").glob("journal-*.jsonl"))) == 2  # the dead one, and its own
    second.stop()
    real.sync_predictions = sync  # type: ignore[method-assign]
    next_start(real, tmp_path / "spool")
    assert not list((tmp_path / "spool").glob("journal-*.jsonl"))
    assert [p["prediction_id"] for p in real.predictions()] == [rec.prediction_id]


def test_a_killed_process_leaves_every_segment_to_be_replayed_once(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    flaky = FlakyStore(real)  # down: only the journal holds the records
    recorder = Recorder(flaky, spool_dir=tmp_path / "spool", retry_seconds=60,  # type: ignore[arg-type]
                        journal_max_bytes=1)
    recorder.start()
    recs = [prediction() for _ in range(3)]
    for rec in recs:
        recorder.record(rec)
    assert recorder.journal is not None and len(recorder.journal.paths()) == 3
    die(recorder)
    flaky.down = False
    next_start(real, tmp_path / "spool")
    assert sorted(p["prediction_id"] for p in real.predictions()) == sorted(r.prediction_id for r in recs)


def test_a_write_after_close_fails_every_waiter_instead_of_hanging(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write('{"n":1}')
    journal.close(remove_if_settled=False)
    errors: list[BaseException] = []

    def late() -> None:
        try:
            journal.write('{"n":2}')
        except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
            errors.append(exc)

    threads = [threading.Thread(target=late) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 3 and all(isinstance(e, JournalError) for e in errors)


def test_one_callers_records_are_written_together_however_many_wait(tmp_path: Path) -> None:
    """More records than one write usually takes: a call's records still go in one write, so they share one segment
    and one outcome (a failure never leaves part of a call journalled, for a replay to store after a 503)."""
    journal = Journal(tmp_path, max_batch=2, max_bytes=1)
    assert journal.write('{"n":1}', '{"n":2}', '{"n":3}') == [0, 0, 0]
    assert journal.fsyncs == 1
    assert journal.write('{"n":4}') == [1]
    journal.settle(0, 3)
    assert journal.forgettable() == [0]
    journal.close(remove_if_settled=False)


def test_a_new_segment_is_never_visible_to_a_starting_worker_before_it_is_locked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker starting while another rotates its journal must not take the fresh, still unlocked file for an
    orphan (it would replay nothing and remove it, and the records written next would be in no file)."""
    journal = Journal(tmp_path, max_bytes=1)
    real = fcntl.flock
    orphans_when_locking: list[list[Path]] = []
    checking = False

    def flock(fd: int, operation: int) -> None:
        nonlocal checking
        if not checking and operation == fcntl.LOCK_EX | fcntl.LOCK_NB:
            checking = True
            try:  # what a worker starting at this instant would replay
                orphans_when_locking.append(list(orphaned_journals(tmp_path)))
            finally:
                checking = False
        real(fd, operation)

    monkeypatch.setattr(journal_module.fcntl, "flock", flock)
    journal.write('{"n":1}')
    journal.write('{"n":2}')  # the first segment is full: a second one is created and locked
    monkeypatch.setattr(journal_module.fcntl, "flock", real)
    assert journal.rotations == 1 and orphans_when_locking == [[]]
    assert [p.read_text() for p in journal.paths()] == ['{"n":1}\n', '{"n":2}\n']
    journal.close(remove_if_settled=False)


def test_closing_waits_for_a_write_in_progress_and_keeps_what_it_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    in_sync, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        in_sync.set()
        assert release.wait(30)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    answers: list[list[int]] = []
    writer = threading.Thread(target=lambda: answers.append(journal.write('{"n":1}')))
    writer.start()
    assert in_sync.wait(30)  # on disk, but not yet counted
    closer = threading.Thread(target=journal.close)
    closer.start()
    wait_for(lambda: journal._closed, "close has sealed the journal and waits for the write")
    release.set()
    writer.join(30)
    closer.join(30)
    assert answers == [[0]]  # acknowledged ...
    assert list(orphaned_journals(tmp_path)) and journal.appended == 1  # ... so its file stays for the next start
    with pytest.raises(JournalError, match="closed"):
        journal.write('{"n":2}')


def test_a_full_segment_being_replayed_by_a_starting_worker_is_left_to_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1)
    journal.write('{"n":1}')
    journal.write('{"n":2}')  # the first segment is full, closed and unlocked
    full = journal.paths()[0]
    replayer = open(full, "rb")  # noqa: SIM115 - a worker starting now claims it for replay
    fcntl.flock(replayer.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    journal.settle(0)
    journal.forget([0])
    assert full.exists() and journal.forgotten == 0  # not removed under the replaying worker
    assert replayer.read() == b'{"n":1}\n'
    replayer.close()
    full.unlink()  # the replaying worker removes it when done
    assert journal_module.replay_journal(full, lambda line: None) == (0, 0)  # a late reader finds nothing, calmly
    journal.close(remove_if_settled=False)


def test_a_segment_that_cannot_be_created_leaves_no_file_and_the_next_write_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path, max_bytes=1)
    journal.write('{"n":1}')
    real = os.rename

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "rename", no_rename)
    with pytest.raises(JournalError):
        journal.write('{"n":2}')  # the rotation fails: the record is refused, not half kept
    monkeypatch.setattr(journal_module.os, "rename", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == [journal.path.name]  # no hidden leftover
    assert journal.write('{"n":3}') == [2]  # a new segment (number 1 was never created)
    journal.close(remove_if_settled=False)


def test_a_write_that_fails_half_way_is_cut_back_so_the_next_record_stays_readable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    journal.write('{"n":1}')
    real = os.write

    def half_then_disk_full(fd: int, data: Any) -> int:
        real(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", half_then_disk_full)
    with pytest.raises(JournalError, match="No space left"):
        journal.write('{"n":2,"refused":"' + "x" * 20000 + '"}')  # answered 503: must not be replayed either
    monkeypatch.setattr(journal_module.os, "write", real)
    journal.write('{"n":3}')
    assert journal.path.read_text() == '{"n":1}\n{"n":3}\n'
    journal.close(remove_if_settled=False)


def test_a_cancelled_append_does_not_break_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    holding, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if not holding.is_set():  # the first writer holds the turn while two appends queue behind it
            holding.set()
            assert release.wait(30)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    first = threading.Thread(target=journal.write, args=('{"n":0}',))
    first.start()
    assert holding.wait(30)
    cancelled, kept = journal.append('{"n":1}'), journal.append('{"n":2}')
    wait_for(lambda: _queued(journal) == 2, "the journal's thread has queued both")
    assert cancelled.cancel()  # its caller gave up waiting
    release.set()
    first.join(30)
    assert kept.result(timeout=30) == 0
    assert journal.append('{"n":3}').result(timeout=30) == 0  # the journal's thread is alive
    assert journal.path.read_text().splitlines() == ['{"n":0}', '{"n":1}', '{"n":2}', '{"n":3}']
    journal.close(remove_if_settled=False)


class _Interrupted(BaseException):
    """Not an Exception: what KeyboardInterrupt or SystemExit would be, raised inside a write."""


def test_a_write_interrupted_by_a_base_exception_answers_everyone_in_its_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    holding, release = threading.Event(), threading.Event()
    real_sync, real_write = os.fdatasync, os.write
    writes = 0

    def fdatasync(fd: int) -> None:
        if not holding.is_set():  # the first writer holds the turn while two callers queue behind it
            holding.set()
            assert release.wait(30)
        real_sync(fd)

    def write(fd: int, data: Any) -> int:
        nonlocal writes
        writes += 1
        if writes == 2:  # the batch of the two waiting callers
            raise _Interrupted()
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    monkeypatch.setattr(journal_module.os, "write", write)
    outcomes: list[str] = []

    def call(n: int) -> None:
        try:
            journal.write(f'{{"n":{n}}}')
            outcomes.append("written")
        except JournalError:
            outcomes.append("refused")
        except _Interrupted:
            outcomes.append("interrupted")

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert holding.wait(30)
    others = [threading.Thread(target=call, args=(n,)) for n in (1, 2)]
    for t in others:
        t.start()
    wait_for(lambda: _queued(journal) == 2, "both wait behind the first")
    release.set()
    for t in [first, *others]:
        t.join(30)
    assert not any(t.is_alive() for t in [first, *others])  # nobody left spinning on an unanswered record
    assert sorted(outcomes) == ["interrupted", "refused", "written"]
    monkeypatch.setattr(journal_module.os, "write", real_write)
    journal.close(remove_if_settled=False)


class BatchSizes(FlakyStore):
    """A working store that notes the size of each write the recorder makes."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.down = False
        self.batches: list[int] = []

    def write_predictions(self, records: list[Any], deferred_sync: bool = False) -> int:
        self.batches.append(len(records))
        return super().write_predictions(records, deferred_sync=deferred_sync)


def batching_recorder(tmp_path: Path, linger_seconds: float) -> tuple[Store, BatchSizes, Recorder]:
    """A started recorder on a fresh embedded store, its writes' sizes noted, waiting `linger_seconds` per batch."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    sizes = BatchSizes(store)
    recorder = Recorder(sizes, spool_dir=tmp_path / "spool", linger_seconds=linger_seconds)  # type: ignore[arg-type]
    recorder.start()
    return store, sizes, recorder


def test_the_writer_gathers_records_that_arrive_while_it_lingers_and_stop_ends_the_wait(tmp_path: Path) -> None:
    store, sizes, recorder = batching_recorder(tmp_path, linger_seconds=3600)
    recorder.record(prediction())
    wait_for(lambda: recorder._queue.qsize() == 0, "the writer holds the first record")
    recorder.record(prediction())  # arrives after the writer took the first: a writer that did not wait has
    recorder.record(prediction())  # already written that one alone
    assert sizes.batches == []  # nothing written while it waits, and the records are journalled meanwhile
    recorder.stop()  # ends the wait at once (an hour otherwise) and writes the three together
    assert sizes.batches == [3]
    assert len(store.predictions()) == 3


def test_a_writer_that_does_not_linger_writes_each_record_as_it_comes(tmp_path: Path) -> None:
    store, sizes, recorder = batching_recorder(tmp_path, linger_seconds=0)
    for _ in range(3):
        recorder.record(prediction())
        assert recorder.flush(10)
    recorder.stop()
    assert sizes.batches == [1, 1, 1]


@pytest.mark.parametrize("in_thread", [False, True], ids=["on the loop (default)", "in a worker thread"])
def test_a_calls_stages_run_where_server_call_stages_in_thread_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_thread: bool) -> None:
    import cds_hooks.service_call as service_call
    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key

    where: list[str] = []
    real_map, real_sync = service_call.map_patient, os.fdatasync

    def mapping_spy(*args: Any, **kwargs: Any) -> Any:
        where.append(f"mapping: {running_where()}")
        return real_map(*args, **kwargs)

    def sync_spy(fd: int) -> None:
        where.append(f"journal sync: {running_where()}")
        real_sync(fd)

    monkeypatch.setattr(service_call, "map_patient", mapping_spy)
    overrides = {"server": {"call_stages_in_thread": True}} if in_thread else {}
    with TestClient(create_app(make_settings(tmp_path, **overrides))) as client:
        api = SignedClient(client, load_local_key(KEYS / "local"))
        monkeypatch.setattr(journal_module.os, "fdatasync", sync_spy)
        resp = call(api)
    assert resp.status_code == 200, resp.text
    expected = "thread" if in_thread else "loop"
    assert where == [f"mapping: {expected}", f"journal sync: {expected}"]


def test_a_flush_does_not_wait_for_the_writer_to_finish_lingering(tmp_path: Path) -> None:
    store, sizes, recorder = batching_recorder(tmp_path, linger_seconds=3600)
    recorder.record(prediction())
    recorder.record(prediction())
    assert recorder.flush(30)  # a writer that kept lingering would hold the records for an hour
    assert len(store.predictions()) == 2 and sum(sizes.batches) == 2
    recorder.record(prediction())  # and it lingers again once nobody flushes
    wait_for(lambda: recorder._queue.qsize() == 0, "the writer holds the record")
    assert sum(sizes.batches) == 2
    recorder.stop()
    assert len(store.predictions()) == 3
