"""The Alembic migrations build exactly the schema the store's models describe, and a store recorded before the
newest migration keeps its rows readable after it. A column added to store/schema.py without a migration would fail
every insert on a deployment that upgraded; one added to a migration only would never be read."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from store.schema import Base
from store.store import Store

SECRET = b"0123456789abcdef0123456789abcdef"


def test_the_migrations_build_the_schema_of_the_models(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", SECRET)
    store.migrate()
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == [], diffs


def _store_recorded_at(tmp_path: Path, revision: str, guard_reasons: str, feature: str) -> Store:
    """A store whose one prediction ('p-1', with the given guard reasons and one feature row's values) was written
    at `revision`, then upgraded to the newest migration."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("store") / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.execute(text(
            "INSERT INTO predictions (prediction_id, hook_instance, hook, service_id, model_id, model_version, alias, "
            "patient_key, encounter_key, created_at, outputs, score, category, guard_reasons, missing, cohort) VALUES "
            "('p-1', 'h', 'patient-view', 's', 'm', '1.0.0', 'champion', 'k', NULL, :at, NULL, NULL, NULL, "
            ":reasons, '{}', '{}')"), {"at": datetime(2026, 12, 1, tzinfo=UTC), "reasons": guard_reasons})
        conn.execute(text("INSERT INTO feature_values (prediction_id, name, value, unit, defaulted, source_refs) "
                          f"VALUES ('p-1', {feature}, '[]')"))
    engine.dispose()
    store = Store(url, SECRET)
    store.migrate()
    return store


def test_a_prediction_recorded_before_0007_reads_without_guard_attribution(tmp_path: Path) -> None:
    """Rows written at 0006 have no `refused_by` and no `unchecked`: they read as None (unknown), which the details
    page tells apart from an empty list (nothing refused, every search read)."""
    store = _store_recorded_at(tmp_path, "0006_store_sync", '["old words"]', "'diabetes', 0, NULL, 1")
    pred = store.prediction("p-1")
    assert pred is not None
    assert pred["guard_reasons"] == ["old words"] and pred["refused_by"] is None
    assert pred["features"]["diabetes"]["unchecked"] is None


def test_a_prediction_recorded_before_0008_reads_as_not_rounded_and_without_bounds(tmp_path: Path) -> None:
    """Rows written at 0007 have no `reported` value: they read as None, and the details page tests their value
    (as their cards did, before a derived eGFR was reported as a whole number)."""
    store = _store_recorded_at(tmp_path, "0007_guard_attribution", "[]", "'egfr', 29.8, 'mL/min/{1.73_m2}', 0")
    pred = store.prediction("p-1")
    assert pred is not None and pred["features"]["egfr"]["value"] == 29.8
    assert pred["features"]["egfr"]["reported"] is None
    assert pred["bounds"] == {}  # no bound kept before 0009: the page shows no note for one, as the card did not


def test_a_journal_line_written_before_0007_is_stored_as_unknown_not_as_nothing_refused(tmp_path: Path) -> None:
    """A prediction journalled by a process of before migration 0007 and replayed after the upgrade has no
    `refused_by` and no `unchecked`: they must stay unknown (NULL), as for rows already in the store, or what-if
    would read "no guard refused" and give a number the card refused (an LDL-C written '>400')."""
    import json

    from store.recorder import record_from_json, record_to_json
    from store.records import CardRecord, PredictionRecord

    rec = PredictionRecord(
        prediction_id="p-2", hook_instance="h", hook="patient-view", service_id="ascvd-pce-10y",
        model_id="ascvd-pce-10y", model_version="1.0.0", alias="champion", patient_id="p1", encounter_id=None,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        features={"diabetes": {"value": 0.0, "unit": None, "defaulted": True, "sources": [], "display": "No",
                               "note": "no diabetes on record"}},
        missing={}, outputs=None, category=None, guard_reasons=["old words"],
        cards=[CardRecord("c-1", "No 10-year ASCVD risk", "info", [])])
    line = json.loads(record_to_json(rec))
    line.pop("refused_by")  # as the older process wrote it
    replayed = record_from_json(json.dumps(line))
    assert replayed.refused_by is None
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", SECRET)
    store.migrate()
    store.write_predictions([replayed])
    pred = store.prediction("p-2")
    assert pred is not None and pred["refused_by"] is None, pred
    assert pred["features"]["diabetes"]["unchecked"] is None, pred["features"]
