"""The monitoring report finds a drift and a miscalibration injected into a realistic simulated stream."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from cds_hooks.cli import app as cli
from monitoring.report import ReportOptions, build_summary
from monitoring.stats import proportions, psi, quantile_edges
from store.records import CardRecord, FeedbackRecord, PredictionRecord
from store.store import Store

START = datetime(2026, 9, 1, tzinfo=UTC)
SECRET = "monitoring-test-secret-0123"
MODEL = "ascvd-pce-10y"


def risk(age: float, tc: float, hdl: float, sbp: float) -> float:
    lp = -7.2 + 0.06 * age + 0.006 * tc - 0.02 * hdl + 0.018 * sbp
    return float(1 / (1 + np.exp(-lp)))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("monitoring")
    store = Store(f"sqlite:///{tmp / 'store.sqlite3'}", SECRET.encode())
    store.migrate()
    rng = np.random.default_rng(20261124)
    n, days = 2400, 30
    y_all, p_all, outcomes, feedback = [], [], [], []
    for i in range(n):
        created = START + timedelta(days=days * i / n)
        drifted = i >= n // 2
        age, tc = rng.uniform(40, 79), rng.normal(200, 35)
        hdl, sbp = rng.normal(50, 12), rng.normal(150 if drifted else 126, 14)
        p = risk(age, tc, hdl, sbp)
        race = ["White", "Black or African American", "Asian"][i % 3]
        factor = 1.0 if race == "Asian" else 2.0  # miscalibrated ×2, except one group (a fairness gap)
        y = float(rng.uniform() < min(1.0, factor * p))
        pid = f"sim-{i}"
        card = CardRecord(str(uuid.uuid4()), "sim", "warning", [str(uuid.uuid4())])
        hook = str(uuid.uuid4())
        features = {"age": age, "total_cholesterol": tc, "hdl": hdl, "sbp": sbp}
        cohort = {"sex": "female" if i % 2 else "male", "age_band": f"{int(age // 10) * 10}-{int(age // 10) * 10 + 9}",
                  "race": race}
        store.write_prediction(PredictionRecord(
            prediction_id=str(uuid.uuid4()), hook_instance=hook, hook="patient-view", service_id=MODEL,
            model_id=MODEL, model_version="1.0.0", alias="champion", patient_id=pid, encounter_id=None,
            created_at=created, features={k: {"value": v, "unit": None, "defaulted": False, "sources": []}
                                          for k, v in features.items()},
            missing={}, outputs={"risk_10y": p}, category="high" if p >= 0.2 else "low", cards=[card],
            primary_output="risk_10y", cohort=cohort))
        if i % 4 == 0:  # a challenger in shadow on a quarter of the calls
            store.write_prediction(PredictionRecord(
                prediction_id=str(uuid.uuid4()), hook_instance=hook, hook="patient-view", service_id=MODEL,
                model_id=MODEL, model_version="1.1.0", alias="challenger", patient_id=pid, encounter_id=None,
                created_at=created, features={}, missing={}, outputs={"risk_10y": p * 1.1},
                category="high" if p * 1.1 >= 0.2 else "low", primary_output="risk_10y", cohort=cohort))
        if y:
            outcomes.append({"patient_id": pid, "system": "http://snomed.info/sct", "code": "22298006",
                             "observed_at": (created + timedelta(days=200)).isoformat(), "label": 1})
        if i % 8 == 0:
            accepted = (i // 8) % 10 < 7
            feedback.append(FeedbackRecord(
                service_id=MODEL, card_uuid=card.uuid, outcome="accepted" if accepted else "overridden",
                outcome_timestamp=created + timedelta(minutes=2),
                accepted_suggestions=card.suggestion_uuids if accepted else [],
                override_reason_code=None if accepted else "patient-declined",
                override_reason_display=None if accepted else "Patient declined"))
        y_all.append(y)
        p_all.append(p)
    store.write_feedback(feedback)
    with (tmp / "outcomes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["patient_id", "system", "code", "observed_at", "label"])
        writer.writeheader()
        writer.writerows(outcomes)
    config = tmp / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp / "store.sqlite3"}"\nhmac_secret = "{SECRET}"\n'
                      f'[models]\nroot = "{Path(__file__).resolve().parent.parent / "models"}"\n')
    store.dispose()
    return {"tmp": tmp, "config": config, "y": np.array(y_all), "p": np.array(p_all), "feedback": feedback}


def test_report_detects_injected_drift_and_miscalibration(simulated: dict[str, Any]) -> None:
    tmp, runner = simulated["tmp"], CliRunner()
    imported = runner.invoke(cli, ["monitor", "import-outcomes", str(tmp / "outcomes.csv"), "-c",
                                   str(simulated["config"])])
    assert imported.exit_code == 0, imported.output
    assert f"{int(simulated['y'].sum())} new" in imported.output
    out, summary_path = tmp / "report.html", tmp / "summary.json"
    result = runner.invoke(cli, ["monitor", "report", "--since", "2026-08-01", "--out", str(out), "--json",
                                 str(summary_path), "--horizon-days", "365", "--threshold", "0.2", "-c",
                                 str(simulated["config"])])
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    model = summary["models"][MODEL]
    y, p = simulated["y"], simulated["p"]

    # drift: only the shifted input (and the score that depends on it) crosses the PSI threshold
    drift = model["drift"]
    assert "first half" in drift["reference"]
    assert drift["features"]["sbp"]["flagged"] and drift["features"]["sbp"]["psi"] > 1.0
    for stable in ("age", "total_cholesterol", "hdl"):
        assert not drift["features"][stable]["flagged"], stable
    # miscalibration: outcomes drawn at twice the predicted risk for two of three groups
    perf = model["performance"]
    assert perf["events"] == int(y.sum())
    assert perf["calibration"]["oe_ratio"] == pytest.approx(y.sum() / p.sum(), rel=1e-9)
    assert perf["calibration"]["oe_ratio"] > 1.5
    assert perf["calibration"]["intercept"] > 0.4
    expected_auc = mannwhitneyu(p[y == 1], p[y == 0]).statistic / (y.sum() * (len(y) - y.sum()))
    assert perf["auroc"] == pytest.approx(expected_auc, abs=1e-9)
    # fairness: the group whose outcomes follow the predictions has O/E about half the reference group's
    race = model["fairness"]["attributes"]["race"]
    assert "Asian: oe_ratio" in race["outside_bounds"]
    assert race["ratios"]["Asian"]["oe_ratio"]["ratio"] < 0.8
    # feedback and champion/challenger
    fb = summary["feedback"]
    assert fb["total"] == len(simulated["feedback"])
    assert fb["accepted"] == sum(1 for f in simulated["feedback"] if f.outcome == "accepted")
    assert fb["top_override_reasons"][0]["reason"] == "Patient declined"
    cc = model["champion_challenger"]
    assert cc["pairs"] == 600 and cc["mean_abs_difference"] == pytest.approx(
        float(np.mean(np.abs(p[::4] * 0.1))), rel=1e-6)
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 6
    assert "http://" not in page.replace("http://snomed", "")  # self-contained: no external assets


def test_drift_against_the_model_card_reference(simulated: dict[str, Any]) -> None:
    store = Store(f"sqlite:///{simulated['tmp'] / 'store.sqlite3'}", SECRET.encode())
    rng = np.random.default_rng(7)
    reference = {}
    for name, (mu, sd) in {"age": (59.5, 11.3), "sbp": (126, 14), "hdl": (50, 12), "total_cholesterol": (200, 35)}.items():
        sample = rng.uniform(40, 79, 20000) if name == "age" else rng.normal(mu, sd, 20000)
        edges = quantile_edges(sample)
        reference[name] = {"edges": [float(e) for e in edges], "proportions": [float(x) for x in proportions(sample, edges)]}
    manifest = SimpleNamespace(model_card={"reference_distribution": reference}, categories=[],
                               primary=SimpleNamespace(horizon_years=1))
    repo = SimpleNamespace(entries={MODEL: SimpleNamespace(champion=SimpleNamespace(manifest=manifest))})
    summary = build_summary(store, repo, ReportOptions(since=START - timedelta(days=1)))  # type: ignore[arg-type]
    drift = summary["models"][MODEL]["drift"]
    assert drift["reference"] == "model card reference distribution"
    assert drift["flagged"] == ["sbp"]
    store.dispose()


def test_seismometer_export_layout(simulated: dict[str, Any]) -> None:
    out = simulated["tmp"] / "seismometer"
    result = CliRunner().invoke(cli, ["monitor", "export", "--out", str(out), "-c", str(simulated["config"])])
    assert result.exit_code == 0, result.output
    preds = pq.read_table(out / "predictions.parquet")
    assert preds.num_rows == 2400
    names = preds.schema.names
    assert names[:7] == ["entity_id", "context_id", "predict_time", "score", "model_id", "model_version", "category"]
    assert {"sbp", "cohort_race", "cohort_sex"} <= set(names)
    assert str(preds.schema.field("predict_time").type) == "timestamp[us, tz=UTC]"
    events = pq.read_table(out / "events.parquet")
    assert events.schema.names == ["entity_id", "context_id", "event_type", "event_time", "event_value"]
    types = set(events.column("event_type").to_pylist())
    assert {"Target: http://snomed.info/sct|22298006", "Intervention: accepted", "Intervention: overridden"} <= types
    assert "sim-1" not in set(preds.column("entity_id").to_pylist())  # pseudonymous keys only


def test_psi_is_zero_for_the_same_distribution() -> None:
    values = np.random.default_rng(1).normal(0, 1, 5000)
    edges = quantile_edges(values)
    assert psi(proportions(values, edges), proportions(values, edges)) == pytest.approx(0.0, abs=1e-12)


def test_purge_command(simulated: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["store", "purge", "--older-than-days", "36500", "-c", str(simulated["config"])])
    assert result.exit_code == 0 and "predictions: 0" in result.output
