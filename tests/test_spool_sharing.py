"""The workers of one machine share the spool folder: no prediction is lost or replayed twice between them.

Interleavings are forced with a wrapped `flock` (the moment a lock is asked for), never with sleeps.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import store.journal as journal_module
import store.recorder as recorder_module
from store.journal import unclaimed_files
from store.recorder import Recorder, append_durably, record_to_json
from store.store import Store
from test_store import SECRET, FlakyStore, prediction


def _migrated_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    return store


def _store_and_spool(tmp_path: Path) -> tuple[Store, Path]:
    """A migrated store and an empty spool folder beside it."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    return _migrated_store(tmp_path), spool_dir


def _on_flock(monkeypatch: pytest.MonkeyPatch, module: object, before: Callable[[int, int], None]) -> None:
    """Run `before` each time `module` asks for a lock, then take it."""
    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        before(fd, operation)
        real(fd, operation)

    monkeypatch.setattr(module, "fcntl", type("F", (), {"flock": staticmethod(flock), "LOCK_EX": fcntl.LOCK_EX,
                                                         "LOCK_NB": fcntl.LOCK_NB, "LOCK_UN": fcntl.LOCK_UN}))


def test_an_append_that_waited_for_a_replay_goes_to_the_new_spool(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "predictions.jsonl"
    spool.write_text('{"old":1}\n')
    replaying = tmp_path / "replaying-1.jsonl"
    holder = open(spool, "ab")  # noqa: SIM115 - another worker renaming the spool for replay holds its lock
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
    asking = threading.Event()
    _on_flock(monkeypatch, recorder_module, lambda fd, op: asking.set())
    writer = threading.Thread(target=append_durably, args=(spool, '{"new":1}\n'))
    writer.start()
    assert asking.wait(30)  # the append has opened the spool and waits for its lock
    spool.rename(replaying)  # the replayer takes the spool away, then lets go
    holder.close()
    writer.join(30)
    assert not writer.is_alive()
    assert replaying.read_text() == '{"old":1}\n'  # what the replayer read is all the renamed file holds
    assert spool.read_text() == '{"new":1}\n'  # the waiting line went to the new spool, not into the read file


def test_a_file_another_worker_holds_or_has_removed_is_not_claimed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    held, replaced, free = (tmp_path / f"replaying-{n}.jsonl" for n in (1, 2, 3))
    for path in (held, replaced, free):
        path.write_text("{}\n")
    holder = open(held, "rb")  # noqa: SIM115 - another worker is replaying this one
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)

    def replace_second(fd: int, op: int) -> None:  # another worker finishes `replaced` and a new file takes its name
        if Path(f"/proc/self/fd/{fd}").resolve() == replaced.resolve():
            replaced.unlink()
            replaced.write_text("{}\n")

    _on_flock(monkeypatch, journal_module, replace_second)
    assert list(unclaimed_files(tmp_path, "replaying-*.jsonl")) == [free]
    holder.close()


def test_a_spool_replay_the_store_cannot_confirm_is_kept_and_retried(tmp_path: Path) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    rec = store.pseudonymise(prediction())
    (spool_dir / "predictions.jsonl").write_text(record_to_json(rec) + "\n")
    sync = store.sync_predictions
    store.sync_predictions = lambda: False  # type: ignore[method-assign]
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert not recorder.flush(0.5)  # written, but not known to be durable: the replayed file stays
    assert len(list(spool_dir.glob("replaying-*.jsonl"))) == 1
    store.sync_predictions = sync  # type: ignore[method-assign]
    assert recorder.flush(10)  # the writer retries the kept file by itself
    recorder.stop()
    assert not list(spool_dir.glob("*.jsonl"))
    assert [p["prediction_id"] for p in store.predictions()] == [rec.prediction_id]


def test_a_torn_line_left_by_a_killed_writer_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    killed = record_to_json(store.pseudonymise(prediction()))
    (spool_dir / "predictions.jsonl").write_text(killed[: len(killed) // 2])  # a worker killed mid-append
    rec = store.pseudonymise(prediction())
    append_durably(spool_dir / "predictions.jsonl", record_to_json(rec) + "\n")  # acknowledged and settled
    lines = (spool_dir / "predictions.jsonl").read_text().splitlines()
    assert lines == [killed[: len(killed) // 2], record_to_json(rec)]
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert recorder.flush(10)
    recorder.stop()
    assert [p["prediction_id"] for p in store.predictions()] == [rec.prediction_id]


def test_a_record_neither_stored_nor_spooled_keeps_its_journal_segment(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = _migrated_store(tmp_path)
    flaky = FlakyStore(real)  # the database is down
    recorder = Recorder(flaky, spool_dir=tmp_path / "spool", retry_seconds=0.05,  # type: ignore[arg-type]
                        journal_max_bytes=1)

    def disk_full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder_module, "append_durably", disk_full)
    recorder.start()
    lost = prediction()
    recorder.record(lost)  # journalled and answered; then neither the database nor the spool takes it
    assert recorder.flush(10) and recorder.failed == 1
    monkeypatch.undo()
    flaky.down = False
    recorder.record(prediction())  # fills the first segment's successor; the first is not settled, so it stays
    assert recorder.flush(10)
    recorder.stop()  # the unsettled segment stays for the next start
    again = Recorder(real, spool_dir=tmp_path / "spool", retry_seconds=0.05)
    again.start()
    again.stop()
    assert lost.prediction_id in {p["prediction_id"] for p in real.predictions()}


def test_the_writer_thread_survives_a_failing_housekeeping_step(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = _migrated_store(tmp_path)
    recorder = Recorder(store, spool_dir=tmp_path / "spool", retry_seconds=0.05)

    def broken_replay() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(recorder, "_replay_spool", broken_replay)
    recorder.start()  # the first thing the writer does is replay the spool: it fails, and the writer goes on
    recorder.record(prediction())
    assert recorder.flush(10)
    recorder.stop()
    assert len(store.predictions()) == 1


def test_a_spooled_record_the_database_refuses_is_set_aside_and_the_rest_go_in(tmp_path: Path) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    first, clash, last = (store.pseudonymise(prediction()) for _ in range(3))
    clash.cards[0].uuid = first.cards[0].uuid  # a card id the database already holds: refused, every time
    (spool_dir / "predictions.jsonl").write_text("".join(record_to_json(r) + "\n" for r in (first, clash, last)))
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert recorder.flush(10)  # the refused record does not hold back the one after it
    recorder.stop()
    assert {p["prediction_id"] for p in store.predictions()} == {first.prediction_id, last.prediction_id}
    assert recorder.rejected == 1
    assert (spool_dir / "rejected.jsonl").read_text() == record_to_json(clash) + "\n"


def test_a_record_holding_unicode_line_separators_survives_the_spool(tmp_path: Path) -> None:
    """orjson writes U+2028, U+2029 and U+0085 as they are; a record ends at b"\\n" only."""
    store, spool_dir = _store_and_spool(tmp_path)
    rec = store.pseudonymise(prediction())
    rec.hook_instance = "a\u2028b\u2029c\u0085d"  # a client's text, as sent
    (spool_dir / "predictions.jsonl").write_bytes(record_to_json(rec).encode() + b"\n")
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert recorder.flush(10)
    recorder.stop()
    assert [p["hook_instance"] for p in store.predictions()] == ["a\u2028b\u2029c\u0085d"]
    assert recorder.rejected == 0


def test_unreadable_lines_are_set_aside_not_deleted(tmp_path: Path) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    good = store.pseudonymise(prediction())
    odd = '{"prediction_id": "from-a-newer-version", "a_field_this_version_lacks": 1}'
    (spool_dir / "predictions.jsonl").write_text(odd + "\n" + record_to_json(good) + "\n")
    dead_journal = spool_dir / "journal-1-1-000000.jsonl"  # a dead process's journal, no lock held
    dead_journal.write_text(odd.replace("newer", "journal") + "\n")
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert recorder.flush(10)
    recorder.stop()
    assert [p["prediction_id"] for p in store.predictions()] == [good.prediction_id]
    kept = (spool_dir / "rejected.jsonl").read_text().splitlines()
    assert sorted(kept) == sorted([odd, odd.replace("newer", "journal")]) and recorder.rejected == 2
    assert not dead_journal.exists()


def test_a_spool_line_that_cannot_be_set_aside_keeps_its_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    (spool_dir / "predictions.jsonl").write_text('{"not": "a record"}\n')
    real = recorder_module.append_durably

    def no_room_for_rejects(path: Path, text: str) -> None:
        if path.name == "rejected.jsonl":
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(recorder_module, "append_durably", no_room_for_rejects)
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=60, durable=False)
    recorder.start()
    recorder.stop()
    replaying = list(spool_dir.glob("replaying-*.jsonl"))
    assert len(replaying) == 1 and replaying[0].read_text() == '{"not": "a record"}\n'


def test_a_writer_still_committing_at_stop_leaves_the_journal(tmp_path: Path) -> None:
    store = _migrated_store(tmp_path)
    entered, release = threading.Event(), threading.Event()
    write = store.write_predictions

    def slow_write(records: Any, **kw: Any) -> int:
        entered.set()
        assert release.wait(30)
        return write(records, **kw)

    store.write_predictions = slow_write  # type: ignore[method-assign]
    recorder = Recorder(store, spool_dir=tmp_path / "spool", retry_seconds=0.05)
    recorder.start()
    recorder.record(prediction())
    assert entered.wait(30)  # the writer is inside its (not yet synced) commit
    writer = recorder._thread
    recorder.stop(timeout=0.05)  # gives up waiting for the blocked writer
    assert len(list((tmp_path / "spool").glob("journal-*.jsonl"))) == 1  # kept: the commit may be unsynced
    release.set()
    assert writer is not None
    writer.join(30)


def test_a_replay_the_database_interrupts_leaves_its_file_as_it_is(tmp_path: Path) -> None:
    real, spool_dir = _store_and_spool(tmp_path)
    flaky = FlakyStore(real)  # down
    recs = [real.pseudonymise(prediction()) for _ in range(2)]
    text = "".join(record_to_json(r) + "\n" for r in recs)
    (spool_dir / "predictions.jsonl").write_text(text)
    recorder = Recorder(flaky, spool_dir=spool_dir, retry_seconds=0.05, durable=False)  # type: ignore[arg-type]
    recorder.start()
    assert not recorder.flush(0.3)
    replaying = list(spool_dir.glob("replaying-*.jsonl"))
    assert len(replaying) == 1 and replaying[0].read_text() == text  # not copied back into a new spool
    assert not (spool_dir / "predictions.jsonl").exists()
    flaky.down = False
    assert recorder.flush(10)
    recorder.stop()
    assert {p["prediction_id"] for p in real.predictions()} == {r.prediction_id for r in recs}


def test_a_line_is_set_aside_once_even_when_its_file_is_replayed_twice(tmp_path: Path) -> None:
    store, spool_dir = _store_and_spool(tmp_path)
    odd = '{"not": "a record"}'
    (spool_dir / "predictions.jsonl").write_text(odd + "\n" + record_to_json(store.pseudonymise(prediction())) + "\n")
    sync = store.sync_predictions
    store.sync_predictions = lambda: False  # type: ignore[method-assign]
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05, durable=False)
    recorder.start()
    assert not recorder.flush(0.5)  # replayed at least twice, never confirmed: kept
    assert not (spool_dir / "rejected.jsonl").exists()
    store.sync_predictions = sync  # type: ignore[method-assign]
    assert recorder.flush(10)
    recorder.stop()
    assert (spool_dir / "rejected.jsonl").read_text() == odd + "\n" and recorder.rejected == 1


def test_a_spool_folder_that_cannot_be_read_is_retried_not_fatal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    recorder = Recorder(store, spool_dir=tmp_path / "spool", durable=False)

    class Unreadable:
        def exists(self) -> bool:
            raise PermissionError(13, "Permission denied")

    recorder._spool = Unreadable()  # type: ignore[assignment]
    assert recorder._spool_waiting() is True  # the replay (guarded, logged) is tried, the writer does not die
