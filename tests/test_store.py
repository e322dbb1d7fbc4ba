"""The store behaves the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import hashlib
import hmac
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from postgres_fixture import postgres_url  # noqa: F401  (pytest fixture)
from store.records import CardRecord, FeedbackRecord, PredictionRecord
from store.recorder import Recorder
from store.store import Store

SECRET = b"test-secret-0123456789"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = Store(url, SECRET)
    s.migrate()
    yield s
    if request.param == "postgresql":
        with s.engine.begin() as conn:
            for table in ("card_suggestions", "cards", "feature_values", "feedback", "outcomes", "predictions"):
                conn.execute(text(f"DELETE FROM {table}"))
    s.dispose()


def prediction(patient: str = "patient-123", created: datetime = NOW, alias: str = "champion",
               cards: int = 1) -> PredictionRecord:
    card_list = [CardRecord(str(uuid.uuid4()), "10-year ASCVD risk 8.1% (intermediate)", "warning",
                            [str(uuid.uuid4())]) for _ in range(cards)]
    return PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=str(uuid.uuid4()), hook="patient-view",
        service_id="ascvd-pce-10y", model_id="ascvd-pce-10y", model_version="1.0.0", alias=alias,
        patient_id=patient, encounter_id="enc-9", created_at=created,
        features={"age": {"value": 55.0, "unit": "a", "defaulted": False,
                          "sources": [{"reference": "Patient/patient-123", "date": None}]},
                  "diabetes": {"value": 0.0, "unit": None, "defaulted": True, "sources": []}},
        missing={}, outputs={"risk_10y": 0.081}, category="intermediate", cards=card_list,
        primary_output="risk_10y", cohort={"sex": "female", "age_band": "50-59", "race": "White"})


def feedback(card: str, outcome: str = "accepted", suggestions: list[str] | None = None,
             when: datetime = NOW) -> FeedbackRecord:
    return FeedbackRecord(service_id="ascvd-pce-10y", card_uuid=card, outcome=outcome, outcome_timestamp=when,
                          accepted_suggestions=suggestions or [])


def test_migrate_is_repeatable(store: Store) -> None:
    store.migrate()
    assert store.ping()


def test_prediction_round_trip(store: Store) -> None:
    rec = prediction()
    store.write_prediction(rec)
    store.write_prediction(rec)  # idempotent
    rows = store.predictions(hook_instance=rec.hook_instance)
    assert len(rows) == 1
    row = rows[0]
    assert row["score"] == pytest.approx(0.081) and row["category"] == "intermediate"
    assert row["features"] == {"age": 55.0, "diabetes": 0.0}
    assert row["card_uuids"] == [rec.cards[0].uuid]
    assert row["cohort"]["age_band"] == "50-59"
    assert store.predictions_for_card(rec.cards[0].uuid)[0]["prediction_id"] == rec.prediction_id


def test_a_missing_features_bound_and_a_reported_value_are_kept_as_the_details_page_reads_them(store: Store) -> None:
    """The bound of a missing feature's newest result ('>300 mg/g') and a derived value as reported (an eGFR of 29.8
    reported 30) come back from the store as written; a journal line is data, so a bound of any other shape (an
    unknown comparator, a number that is text, NaN) is dropped, not stored or raised on."""
    from store.recorder import record_from_json, record_to_json

    rec = prediction()
    rec.features["egfr"] = {"value": 29.8, "unit": "mL/min/{1.73_m2}", "defaulted": False, "sources": [],
                            "reported": 30.0}
    rec.bounds = {"acr": {"comparator": ">", "limit": 300.0, "written": [300, "mg/g"], "date": "2026-10-28"},
                  "ldl": {"comparator": "~", "limit": 1.0, "written": None, "date": None},
                  "hba1c": {"comparator": "<", "limit": "4", "written": None, "date": None},
                  "sbp": {"comparator": "<", "limit": float("nan"), "written": None, "date": None},
                  "tc": {"comparator": "<", "limit": 100.0, "written": ["x", "mg/dL"], "date": 7}}
    store.write_prediction(record_from_json(record_to_json(rec)))  # as replayed from the journal
    kept = store.prediction(rec.prediction_id)
    assert kept is not None
    assert kept["bounds"] == {"acr": {"comparator": ">", "limit": 300.0, "written": [300.0, "mg/g"],
                                      "date": "2026-10-28"},
                              "tc": {"comparator": "<", "limit": 100.0, "written": None, "date": None}}
    assert kept["features"]["egfr"]["reported"] == 30.0 and kept["features"]["age"]["reported"] is None


def test_patient_key_is_a_keyed_hash(store: Store, tmp_path: Path) -> None:
    key = store.patient_key("patient-123")
    assert len(key) == 64 and "patient-123" not in key
    # the keys stored so far stay valid: HMAC-SHA256 of "patient:<id>" / "encounter:<id>", however it is computed
    for pid in ("patient-123", "p2", "patient-123", "ünïcode-id"):
        assert store.patient_key(pid) == hmac.new(SECRET, f"patient:{pid}".encode(), hashlib.sha256).hexdigest()
    assert store.pseudonymise(prediction()).encounter_key == hmac.new(
        SECRET, b"encounter:enc-9", hashlib.sha256).hexdigest()
    assert Store("sqlite://", b"another-secret-0123").patient_key("patient-123") != key
    store.write_prediction(prediction())
    assert store.predictions()[0]["patient_key"] == key
    if store.is_sqlite:
        raw = (tmp_path / "store.sqlite3").read_bytes() + b"".join(
            p.read_bytes() for p in tmp_path.glob("store.sqlite3-*"))
        assert b"patient-123" not in raw and b"enc-9" not in raw


def test_feedback_joined_and_idempotent(store: Store) -> None:
    rec = prediction()
    store.write_prediction(rec)
    card = rec.cards[0]
    item = feedback(card.uuid, suggestions=card.suggestion_uuids)
    assert store.write_feedback([item]) == 1
    assert store.write_feedback([item]) == 0
    over = FeedbackRecord(service_id="ascvd-pce-10y", card_uuid=card.uuid, outcome="overridden",
                          outcome_timestamp=NOW + timedelta(minutes=1), override_reason_system="urn:x",
                          override_reason_code="patient-declined", override_reason_display="Patient declined")
    assert store.write_feedback([over, over]) == 1
    rows = store.feedback_joined()
    assert [r["outcome"] for r in rows] == ["accepted", "overridden"]
    assert rows[0]["prediction_id"] == rec.prediction_id and rows[0]["model_version"] == "1.0.0"
    assert rows[1]["override_reason_code"] == "patient-declined"


def test_feedback_for_unknown_card_is_kept(store: Store) -> None:
    unknown = str(uuid.uuid4())
    assert store.write_feedback([feedback(unknown)]) == 1
    row = store.feedback_joined()[0]
    assert row["card_uuid"] == unknown and row["prediction_id"] is None


def test_purge_by_retention(store: Store) -> None:
    old = prediction(created=NOW - timedelta(days=800))
    new = prediction(created=NOW - timedelta(days=10))
    store.write_prediction(old)
    store.write_prediction(new)
    counts = store.purge(730, now=NOW)
    assert counts["predictions"] == 1 and counts["cards"] == 1 and counts["feature_values"] == 2
    assert [p["prediction_id"] for p in store.predictions()] == [new.prediction_id]


def test_outcomes_are_keyed_and_deduplicated(store: Store) -> None:
    rows = [{"patient_id": "patient-123", "system": "http://snomed.info/sct", "code": "44054006", "label": 1.0,
             "observed_at": NOW, "source": "test"}]
    assert store.write_outcomes(rows) == 1
    assert store.write_outcomes(rows) == 0
    assert store.outcomes()[0]["patient_key"] == store.patient_key("patient-123")


class FlakyStore:
    """Wraps a Store; fails writes while `down` is set (a database that is locked or unreachable)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.down = inner, True
        self.answering = threading.Event()  # cleared: a write hangs until it is set (a database that does not answer)
        self.answering.set()

    def write_prediction(self, rec: PredictionRecord) -> None:
        self.write_predictions([rec])

    def write_predictions(self, records: list[PredictionRecord], deferred_sync: bool = False) -> int:
        self.answering.wait()
        if self.down:
            raise ConnectionError("database unavailable")
        return self.inner.write_predictions(records, deferred_sync=deferred_sync)

    def sync_predictions(self) -> bool:
        if self.down:
            raise ConnectionError("database unavailable")
        return self.inner.sync_predictions()

    def pseudonymise(self, rec: PredictionRecord) -> PredictionRecord:
        return self.inner.pseudonymise(rec)


def test_recorder_never_blocks_and_loses_nothing_while_the_database_is_down(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    flaky = FlakyStore(real)
    recorder = Recorder(flaky, max_queue=4, spool_dir=tmp_path / "spool", retry_seconds=0.05)  # type: ignore[arg-type]
    recorder.start()
    recs = [prediction() for _ in range(25)]
    # the database hangs: the writer is stuck in a write for as long as this test wants, so if submitting waited on
    # it, submitting could never finish (no wall-clock bound: the join's timeout only keeps a broken build from hanging)
    flaky.answering.clear()
    submitter = threading.Thread(target=lambda: [recorder.submit(rec) for rec in recs])
    submitter.start()
    submitter.join(60)
    assert not submitter.is_alive(), "submit waited for a database that does not answer"
    flaky.answering.set()
    assert not recorder.flush(0.3)  # still down: not everything is written
    assert (tmp_path / "spool").exists()
    flaky.down = False
    assert recorder.flush(10)
    recorder.stop()
    assert {p["prediction_id"] for p in real.predictions()} == {r.prediction_id for r in recs}


def test_recorder_overflow_spools_and_stop_drains(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    recorder = Recorder(real, max_queue=2, spool_dir=tmp_path / "spool", retry_seconds=0.05)
    recs = [prediction() for _ in range(10)]
    for rec in recs:  # writer not started yet: the queue overflows into the spool
        recorder.submit(rec)
    assert recorder.spooled == 8
    recorder.start()  # replays the spool at start
    recorder.stop()
    next_start(real, tmp_path / "spool")
    assert len(real.predictions()) == 10
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_sqlite_is_durable_by_configuration(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'd.sqlite3'}", SECRET)
    s.migrate()
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    assert sqlite3.sqlite_version_info >= (3, 24)


def test_submit_resolves_only_once_the_prediction_is_journalled_without_raw_ids(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    flaky = FlakyStore(real)  # the database is down: only the journal holds the record
    recorder = Recorder(flaky, spool_dir=tmp_path / "spool", retry_seconds=60)  # type: ignore[arg-type]
    recorder.start()
    rec = prediction()
    rec.patient_id, rec.encounter_id = "patient-raw-id-123", "enc-raw-456"
    recorder.submit(rec).result(timeout=10)
    assert recorder.journal is not None
    text = recorder.journal.path.read_text()
    assert rec.prediction_id in text
    assert "patient-raw-id-123" not in text and "enc-raw-456" not in text
    assert real.patient_key("patient-raw-id-123") in text
    # the process dies before the database comes back: a new process replays the journal, once
    die(recorder)
    flaky.down = False
    next_start(real, tmp_path / "spool")
    rows = real.predictions()
    assert [r["prediction_id"] for r in rows] == [rec.prediction_id]
    next_start(real, tmp_path / "spool")  # replay again: still one row
    assert len(real.predictions()) == 1


def die(recorder: Recorder) -> None:
    """What a killed process leaves: its journal files, their locks gone with its file descriptors."""
    assert recorder.journal is not None
    for segment in recorder.journal._segments.values():
        segment.fh.close()


def test_journal_is_emptied_once_the_database_holds_everything(tmp_path: Path) -> None:
    real = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    real.migrate()
    recorder = Recorder(real, spool_dir=tmp_path / "spool", retry_seconds=0.05, journal_max_bytes=1)
    recorder.start()
    futures = [recorder.submit(prediction()) for _ in range(20)]
    for fut in futures:
        fut.result(timeout=10)
    assert recorder.flush(10)
    journal = recorder.journal
    assert journal is not None and journal.fsyncs <= 20  # group commit: never more fsyncs than records
    recorder.submit(prediction()).result(timeout=10)  # the next append first truncates what is settled (max_bytes=1)
    assert journal.path.read_text().count("\n") == 1
    assert recorder.flush(10)
    recorder.stop()
    assert not list((tmp_path / "spool").glob("journal-*.jsonl"))
    assert len(real.predictions()) == 21


def next_start(store: Any, spool_dir: Path) -> Recorder:
    """A new process on the same spool folder: it replays what earlier ones left, writes it, and stops."""
    recorder = Recorder(store, spool_dir=spool_dir, retry_seconds=0.05)
    recorder.start()
    assert recorder.flush(10)
    recorder.stop()
    return recorder
