"""Writers of one store take turns without SQLite's sleeping busy handler, and batch what queued up meanwhile.

The writer gate (store/sqlite_gate.py) makes a second writer — another thread, or another process on the same file —
wait on a lock that wakes it at once; the replay cache and the recorder each write everything that queued up while
they waited in one transaction. Every test controls the interleaving with the gate itself (held by the test, or by a
child process), and waits for a state to be reached rather than for time to pass.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from cds_hooks.replay import SqlReplayStore
from store.records import CardRecord, PredictionRecord
from store.recorder import Recorder
from store.schema import CardRow, FeatureValueRow, Prediction
from store.store import Store
from conftest import wait_for
from postgres_fixture import postgres_url  # noqa: F401  (pytest fixture)

SECRET = b"test-secret-0123456789"
ROOT = Path(__file__).resolve().parent.parent


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", SECRET)
    store.migrate()
    return store


def _inserts(store: Store, table: str) -> list[int]:
    """A counter of INSERT statements into `table` that ran (an executemany counts once)."""
    seen = [0]

    def _count(_conn, _cursor, statement: str, *_rest) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            seen[0] += 1

    for engine in {store.engine, store.deferred_engine}:  # the recorder writes through the second
        event.listen(engine, "before_cursor_execute", _count)
    return seen


def _record(card: str | None = None) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=str(uuid.uuid4()), hook="patient-view",
        service_id="ascvd-pce-10y", model_id="ascvd-pce-10y", model_version="1.0.0", alias="champion",
        patient_id="patient-1", encounter_id=None, created_at=datetime.now(UTC),
        features={"age": {"value": 55.0, "unit": "a", "defaulted": False, "sources": []}},
        missing={}, outputs={"risk_10y": 0.08}, category="intermediate",
        cards=[CardRecord(card or str(uuid.uuid4()), "10-year ASCVD risk 8%", "warning", [str(uuid.uuid4())])],
        primary_output="risk_10y", cohort={})


def test_a_file_store_has_a_writer_gate_and_memory_or_postgres_urls_do_not(tmp_path: Path) -> None:
    assert _store(tmp_path).writer_gate is not None
    assert Store("sqlite://", SECRET).writer_gate is None


def test_a_writer_waits_for_the_gate_held_by_another_process(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.writer_gate is not None
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.readline()", store.writer_gate.lock_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = threading.Event()
        writer = threading.Thread(target=lambda: (store.write_prediction(_record()), done.set()))
        writer.start()
        wait_for(lambda: store.writer_gate.held, "the writer took the in-process lock and queued for the file lock")
        assert not done.is_set()  # the other process still holds the file lock: nothing is written
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Prediction)).scalar_one() == 0
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        writer.join(60)
        assert done.is_set()
    finally:
        holder.kill()
        holder.wait()
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Prediction)).scalar_one() == 1
    assert not store.writer_gate.held  # handed back once the connection returned to the pool


def test_the_gate_is_given_back_when_a_write_fails(tmp_path: Path) -> None:
    store = _store(tmp_path)
    card = str(uuid.uuid4())
    store.write_prediction(_record(card))
    with pytest.raises(Exception):
        store.write_prediction(_record(card))  # same card uuid under another prediction: integrity error
    assert store.writer_gate is not None and not store.writer_gate.held
    store.write_prediction(_record())  # and the next writer gets its turn


def _queue_behind_the_gate(store: Store, replay: SqlReplayStore, claim, jtis: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The test holds the write turn; the first claim's statement waits for it, the others queue behind that one for
    the next batch; then the turn is released and every claim is answered."""
    gate = store.writer_gate
    assert gate is not None
    gate.acquire()
    threads = [threading.Thread(target=claim, args=(jti,)) for jti in jtis]
    try:
        threads[0].start()
        wait_for(lambda: gate.waiting == 1, "the first claim's statement is waiting for the gate")
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: replay.waiting == len(jtis) - 1, "the other claims queued in one batch behind it")
    finally:
        gate.release()
    for thread in threads:
        thread.join(60)


def test_concurrent_replay_claims_share_one_statement(tmp_path: Path) -> None:
    store = _store(tmp_path)
    replay = SqlReplayStore(store.engine)
    inserts = _inserts(store, "auth_replay")
    now = time.time()
    results: dict[str, bool] = {}

    def claim(jti: str) -> None:
        results[jti] = replay.remember("https://ehr.example", jti, now + 300, now)

    _queue_behind_the_gate(store, replay, claim, [f"jti-{i}" for i in range(8)])
    assert results == {f"jti-{i}": True for i in range(8)}
    assert inserts[0] == 2 and replay.batches == 2  # the first claim alone, then the seven together


def test_a_jti_claimed_twice_in_one_batch_is_accepted_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    replay = SqlReplayStore(store.engine)
    now = time.time()
    results: list[bool] = []
    lock = threading.Lock()

    def claim(jti: str) -> None:
        fresh = replay.remember("https://ehr.example", jti, now + 300, now)
        with lock:
            results.append(fresh)

    _queue_behind_the_gate(store, replay, claim, ["first", "dup", "dup", "dup"])
    assert sorted(results) == [False, False, True, True]  # "first", and exactly one of the three "dup" claims
    assert replay.remember("https://ehr.example", "dup", now + 300, now) is False


def test_a_failed_replay_batch_refuses_every_claim_in_it(tmp_path: Path) -> None:
    from cds_hooks.replay import ReplayStoreError

    store = _store(tmp_path)
    replay = SqlReplayStore(store.engine)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE auth_replay")
    with pytest.raises(ReplayStoreError, match="replay table unavailable"):
        replay.remember("https://ehr.example", "x", time.time() + 300, time.time())


def test_the_recorder_writes_what_queued_up_in_one_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path)
    inserts = _inserts(store, "predictions")
    card_statements = _inserts(store, "cards")  # one executemany per transaction
    recorder = Recorder(store, spool_dir=tmp_path / "spool", durable=False)
    gate = store.writer_gate
    assert gate is not None
    gate.acquire()
    try:
        recorder.start()
        recorder.submit(_record())
        wait_for(lambda: gate.waiting == 1, "the first prediction's insert is waiting for the gate")
        for _ in range(9):
            recorder.submit(_record())
    finally:
        gate.release()
    assert recorder.flush(60)
    recorder.stop()
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Prediction)).scalar_one() == 10
        assert conn.execute(select(func.count()).select_from(CardRow)).scalar_one() == 10
        assert conn.execute(select(func.count()).select_from(FeatureValueRow)).scalar_one() == 10
    # two transactions, each with one statement per table: the first alone, then the nine that queued meanwhile
    assert inserts[0] == 2 and card_statements[0] == 2 and recorder.written == 10
    assert store.write_predictions([_record(), _record()]) == 2


def test_a_batch_with_a_prediction_already_stored_writes_only_the_new_ones(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old, new = _record(), _record()
    store.write_prediction(old)
    assert store.write_predictions([old, new, new]) == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CardRow)).scalar_one() == 2


def test_the_embedded_store_keeps_the_replay_cache_in_a_file_of_its_own(tmp_path: Path) -> None:
    """A token check never waits for the write turn that predictions take: the replay table has its own SQLite file
    (and gate), shared by every worker on the machine."""
    from cds_hooks.replay import open_replay_store

    store = _store(tmp_path)
    gate = store.writer_gate
    assert gate is not None
    first, second = open_replay_store(None, store), open_replay_store(None, _store(tmp_path))  # two workers
    assert (tmp_path / "store.sqlite3-replay.sqlite3").is_file()
    now = time.time()
    answers: list[bool] = []
    gate.acquire()  # a prediction write holds the store's turn for as long as this test likes
    try:
        claim = threading.Thread(target=lambda: answers.append(
            first.remember("https://ehr.example", "jti-1", now + 300, now)))
        claim.start()
        claim.join(60)
        assert answers == [True]  # answered while the store's write turn was taken
        assert second.remember("https://ehr.example", "jti-1", now + 300, now) is False  # the other worker sees it
    finally:
        gate.release()
    assert first.ping() and second.ping()
    assert open_replay_store(None, Store("sqlite://", SECRET)) is not None  # in-memory stores keep the one engine


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_batch_answers_fresh_live_expired_and_duplicate_claims(backend: str, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    """The claim statement is built once and run with one parameter set per claim, on both databases."""
    from cds_hooks.replay import _Claim

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url, b"test-secret-0123456789")
    store.migrate()
    replay = SqlReplayStore(store.replay_engine())
    iss, now = f"https://ehr.example/{uuid.uuid4()}", time.time()
    assert replay.remember(iss, "live", now + 300, now) is True
    assert replay.remember(iss, "expired", now - 10, now - 400) is True  # accepted long ago; that token is dead now
    batch = [_Claim(iss, jti, now + 300, now) for jti in ("live", "expired", "new", "new", "other")]
    replay._write(batch)
    assert [c.fresh for c in batch] == [False, True, True, False, True]
    assert all(c.done and c.error is None for c in batch)
    assert replay.remember(iss, "expired", now + 300, now) is False  # taken over by the batch: live again
    store.dispose()


def test_the_replay_file_syncs_at_checkpoints_and_the_store_at_every_commit(tmp_path: Path) -> None:
    """A claim survives a worker's crash (WAL); predictions and feedback survive a power loss as well."""
    from sqlalchemy import text

    store = _store(tmp_path)
    with store.replay_engine().connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
