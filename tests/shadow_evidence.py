"""Shadow evidence for promotion tests: champion and challenger predictions of the same hook calls, years ago, with
the outcomes that followed, written through the Store's own API (seeded numpy; no service needed).

The challenger's score is the probability the outcome is drawn from (shifted on the logit scale by `miscalibration`
to make it wrong on purpose); the champion's is the same probability with logit noise, so it ranks patients worse.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from store.records import PredictionRecord
from store.store import Store

MODEL = "t2d-onset-5y"
SERVICE = "t2d-onset-5y"
T2D_SNOMED = ("http://snomed.info/sct", "44054006")


def _record(hook_instance: str, patient: str, version: str, alias: str, score: float, at: datetime,
            sex: str) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=hook_instance, hook="patient-view", service_id=SERVICE,
        model_id=MODEL, model_version=version, alias=alias, patient_id=patient, encounter_id=None, created_at=at,
        features={}, missing={}, outputs={"risk_5y": float(score)}, category="lower" if score < 0.1 else "higher",
        primary_output="risk_5y", cohort={"sex": sex})


def record_shadow(store: Store, seed: int, n: int, *, first_patient: int = 0, champion: str = "1.0.0",
                  challenger: str = "1.1.0", miscalibration: float = 0.0, now: datetime | None = None) -> int:
    """Write n hook calls (one patient each) made 6 years before `now`, with T2D outcomes within 5 years.
    Returns the number of outcome events written."""
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    logit = rng.normal(-2.4, 1.1, n)
    p_challenger = 1 / (1 + np.exp(-logit))
    p_true = 1 / (1 + np.exp(-(logit + miscalibration)))
    p_champion = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.9, n))))
    y = rng.random(n) < p_true
    outcomes = []
    for i in range(n):
        patient = f"shadow-{first_patient + i}"
        at = now - timedelta(days=6 * 365 + int(rng.integers(0, 120)))
        hook_instance = str(uuid.uuid4())
        sex = "female" if i % 2 else "male"
        store.write_prediction(_record(hook_instance, patient, champion, "champion", p_champion[i], at, sex))
        store.write_prediction(_record(hook_instance, patient, challenger, "challenger", p_challenger[i], at, sex))
        if y[i]:
            outcomes.append({"patient_id": patient, "system": T2D_SNOMED[0], "code": T2D_SNOMED[1], "label": 1.0,
                             "observed_at": at + timedelta(days=int(rng.integers(30, 1800))), "source": "test"})
    store.write_outcomes(outcomes)
    return int(y.sum())
