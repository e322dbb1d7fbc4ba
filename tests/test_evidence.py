"""Promotion evidence (monitoring.evidence.paired_evidence): champion and shadow challenger judged on the same requests
once their follow-up has closed, every figure equal to a plain second computation, and a stable digest."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

from inference.repository import ModelRepository
from monitoring.evidence import EvidenceError, Interval, PairedEvidence, paired_evidence
from monitoring_simulation import SECRET, model_repository
from store.records import PredictionRecord
from store.store import Store

T2D = "t2d-onset-5y"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=1826 + 40)  # every 5-year window has closed


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    return ModelRepository(model_repository(tmp_path_factory.mktemp("models"))).load()


def record(store: Store, version: str, alias: str, pid: str, hook: str, at: datetime, risk: float | None,
           race: str) -> None:
    store.write_prediction(PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=hook, hook="patient-view", service_id=T2D, model_id=T2D,
        model_version=version, alias=alias, patient_id=pid, encounter_id=None, created_at=at, features={},
        missing={}, outputs=None if risk is None else {"risk_5y": risk},
        category=None if risk is None else ("lower" if risk < 0.1 else "higher"), primary_output="risk_5y",
        cohort={"sex": "female", "race": race}))


def deployment(tmp: Path, n: int = 700, seed: int = 7, days: float = 30) -> tuple[Store, list[dict[str, Any]]]:
    """n patients: champion and challenger on the same request; outcomes at a known truth; every 35th challenger
    gives no number; 38 patients come back a week later (their second request must not be judged again)."""
    store = Store(f"sqlite:///{tmp / 'evidence.sqlite3'}", SECRET.encode())
    store.migrate()
    rng = np.random.default_rng(seed)
    rows, outcomes = [], []
    for i in range(n):
        at = T0 + timedelta(days=days * i / n)
        lp = rng.normal(-2.0, 1.1)
        champ = float(1 / (1 + np.exp(-(lp + rng.normal(0, 1.6)))))
        chall = float(1 / (1 + np.exp(-(lp + rng.normal(0, 0.3)))))
        chall_out = None if i % 35 == 0 else chall
        race = ("White", "Asian", "Black or African American")[i % 3]
        hook = str(uuid.uuid4())
        record(store, "1.0.0", "champion", f"p{i}", hook, at, champ, race)
        record(store, "1.1.0", "challenger", f"p{i}", hook, at, chall_out, race)
        event = rng.uniform() < 1 / (1 + np.exp(-lp))
        if event:
            outcomes.append({"patient_id": f"p{i}", "system": ICD, "code": "E11.65", "label": 1.0, "source": "t",
                             "observed_at": at + timedelta(days=float(rng.uniform(10, 1800)))})
        rows.append({"at": at, "champ": champ, "chall": chall_out, "event": event, "race": race})
        if i < 40 and chall_out is not None:  # the same patient a week later: one judged pair per patient
            hook2 = str(uuid.uuid4())
            record(store, "1.0.0", "champion", f"p{i}", hook2, at + timedelta(days=7), 0.5, race)
            record(store, "1.1.0", "challenger", f"p{i}", hook2, at + timedelta(days=7), 0.01, race)
    store.write_outcomes(outcomes)
    return store, rows


def pair_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float(((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / (len(pos) * len(neg)))


def test_paired_evidence_equals_a_second_computation(tmp_path: Path, repository: ModelRepository) -> None:
    store, rows = deployment(tmp_path)
    ev = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", since=T0 - timedelta(days=1), now=LATER)
    judged = [r for r in rows if r["chall"] is not None]
    y = np.array([1.0 if r["event"] else 0.0 for r in judged])
    champ = np.array([r["champ"] for r in judged])
    chall = np.array([r["chall"] for r in judged])
    assert (ev.pairs, ev.events, ev.score_type) == (len(judged), int(y.sum()), "probability")
    assert ev.numeric_pairs == len(judged) + 38 and ev.follow_up_open == 0
    assert ev.champion_auroc is not None and ev.challenger_auroc is not None and ev.auroc_difference is not None
    assert ev.champion_auroc.estimate == pytest.approx(pair_auroc(y, champ), abs=1e-12)
    assert ev.challenger_auroc.estimate == pytest.approx(pair_auroc(y, chall), abs=1e-12)
    assert ev.auroc_difference.estimate == pytest.approx(pair_auroc(y, chall) - pair_auroc(y, champ), abs=1e-12)
    assert ev.auroc_difference.low > 0  # the challenger (less noise) is better, and the paired interval says so
    lp = np.log(chall / (1 - chall))
    fit = minimize(lambda t: float(np.sum(np.logaddexp(0, t[0] + t[1] * lp) - y * (t[0] + t[1] * lp))),
                   np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    assert ev.calibration_slope is not None and ev.calibration_slope.estimate == pytest.approx(fit.x[1], abs=1e-4)
    assert ev.calibration_slope.low < ev.calibration_slope.estimate < ev.calibration_slope.high
    # fairness: challenger sensitivity of each race group over the largest group's, flagged = risk ≥ 10%
    assert ev.fairness_metric == "sensitivity" and set(ev.fairness["race"]) == {"Asian", "Black or African American"}
    reference = ev.fairness_reference["race"]
    races = np.array([r["race"] for r in judged])
    flagged = chall >= 0.1

    def sensitivity(group: str) -> float:
        m = (races == group) & (y == 1)
        return float(flagged[m].mean())

    assert ev.fairness["race"]["Asian"].estimate == pytest.approx(sensitivity("Asian") / sensitivity(reference))
    assert "sex" not in ev.fairness  # one group only: nothing to compare
    store.dispose()


def test_json_is_plain_and_the_digest_is_sha256_of_its_canonical_form(tmp_path: Path,
                                                                       repository: ModelRepository) -> None:
    store, _ = deployment(tmp_path, n=300)
    ev = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", now=LATER)
    doc = ev.to_json()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON types only
    auroc = ev.champion_auroc
    assert auroc is not None
    assert doc["champion_auroc"] == {"estimate": auroc.estimate, "low": auroc.low, "high": auroc.high}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert ev.digest() == hashlib.sha256(canonical.encode()).hexdigest()
    again = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", now=LATER)
    assert again.digest() == ev.digest()  # same data, same evidence, same fingerprint
    later = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", now=LATER + timedelta(days=1))
    assert later.digest() != ev.digest()  # the window is part of what was decided on
    assert doc["window_end"] == LATER.isoformat()
    store.dispose()


def test_open_follow_up_windows_are_not_judged(tmp_path: Path, repository: ModelRepository) -> None:
    store, rows = deployment(tmp_path, n=300, days=300)
    now = T0 + timedelta(days=1826 + 150)  # the first half of the requests have closed windows
    ev = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", now=now)
    closed = [r for r in rows if r["chall"] is not None and r["at"] + timedelta(days=1826) <= now]
    still_open = [r for r in rows if r["chall"] is not None and r["at"] + timedelta(days=1826) > now]
    assert ev.pairs == len(closed) and ev.follow_up_open == len(still_open) > 0
    assert ev.events == sum(1 for r in closed if r["event"])
    store.dispose()


def test_below_the_minimum_every_figure_is_none_and_the_message_says_why(tmp_path: Path,
                                                                         repository: ModelRepository) -> None:
    store, rows = deployment(tmp_path, n=60)
    ev = paired_evidence(store, repository, T2D, "1.0.0", "1.1.0", now=LATER)
    events = sum(1 for r in rows if r["chall"] is not None and r["event"])
    assert events < 20 and ev.events == events
    assert ev.message == f"not enough events (n={events}; need 20)"
    assert (ev.champion_auroc, ev.challenger_auroc, ev.auroc_difference, ev.calibration_slope,
            ev.calibration_intercept, ev.fairness) == (None, None, None, None, None, {})
    store.dispose()


def test_unknown_versions_and_models_without_an_outcome(tmp_path: Path, repository: ModelRepository) -> None:
    store = Store(f"sqlite:///{tmp_path / 'e.sqlite3'}", SECRET.encode())
    store.migrate()
    with pytest.raises(EvidenceError, match=r"t2d-onset-5y version 9\.9\.9 is not in the model repository"):
        paired_evidence(store, repository, T2D, "1.0.0", "9.9.9", now=LATER)
    ev = paired_evidence(store, repository, "egfr-ckd-epi-2021", "1.0.0", "1.0.0", now=LATER)
    assert (ev.pairs, ev.events, ev.score_type) == (0, 0, "value")
    assert ev.message == "no outcome declared in the manifest of egfr-ckd-epi-2021 1.0.0"
    store.dispose()


def test_interface_fields_are_those_the_promotion_flow_codes_against() -> None:
    names = list(PairedEvidence.__dataclass_fields__)
    assert names[:14] == ["model_id", "champion_version", "challenger_version", "window_start", "window_end",
                          "score_type", "pairs", "events", "champion_auroc", "challenger_auroc", "auroc_difference",
                          "calibration_slope", "calibration_intercept", "fairness"]
    assert list(Interval.__dataclass_fields__) == ["estimate", "low", "high"]
    with pytest.raises(AttributeError):
        Interval(0.5, 0.4, 0.6).estimate = 0.7  # type: ignore[misc]
