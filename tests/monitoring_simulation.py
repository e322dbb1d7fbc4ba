"""A simulated deployment for the monitoring tests: predictions, shadow challenger predictions, clinician feedback and
outcomes written through the real store API for shipped models, from numpy seeds, with known drift, miscalibration
and a fairness gap injected. The truth each test checks against is kept beside the store (`Simulation`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy import event

from store.records import CardRecord, FeedbackRecord, PredictionRecord
from store.store import Store

START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 30
SECRET = "monitoring-test-secret-0123"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
# PCE windows (3652 days) of predictions made before this have closed; later ones are still open
PCE_THROUGH = START + timedelta(days=3652 + 20)
SHIPPED = Path(__file__).resolve().parent.parent / "models"
RACES = ("White", "Black or African American", "Asian")


@dataclass
class Truth:
    """What was simulated for one model: one entry per champion prediction, in creation order."""

    created: list[datetime] = field(default_factory=list)
    patient: list[str] = field(default_factory=list)
    score: list[float | None] = field(default_factory=list)
    event_time: list[datetime | None] = field(default_factory=list)  # the outcome, when it happened after
    race: list[str] = field(default_factory=list)
    category: list[str | None] = field(default_factory=list)
    features: list[dict[str, float]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    challenger: list[float | None | str] = field(default_factory=list)  # "absent" when no shadow prediction
    challenger_category: list[str | None] = field(default_factory=list)


@dataclass
class Simulation:
    store_path: Path
    truth: dict[str, Truth]
    feedback: list[FeedbackRecord]
    outcomes: list[dict[str, Any]]


def expit(x: np.ndarray | float) -> Any:
    return 1 / (1 + np.exp(-np.asarray(x)))


def _record(store: Store, model: str, version: str, alias: str, pid: str, hook: str, created: datetime,
            features: dict[str, float], outputs: dict[str, float] | None, category: str | None,
            cohort: dict[str, str], missing: dict[str, str] | None = None, guard: list[str] | None = None,
            cards: list[CardRecord] | None = None, primary: str = "") -> None:
    store.write_prediction(PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=hook, hook="patient-view", service_id=model, model_id=model,
        model_version=version, alias=alias, patient_id=pid, encounter_id=None, created_at=created,
        features={k: {"value": v, "unit": None, "defaulted": False, "sources": []} for k, v in features.items()},
        missing=missing or {}, outputs=outputs, category=category, guard_reasons=guard or [], cards=cards or [],
        primary_output=primary or (next(iter(outputs)) if outputs else ""), cohort=cohort))


def _from_reference(bins: dict[str, list[float]], rng: np.random.Generator) -> float:
    """A value drawn from a reference distribution: a bin by its proportion, then uniform within it (the open outer
    bins are given the width of their neighbour)."""
    edges, props = list(bins["edges"]), np.asarray(bins["proportions"], dtype=float)
    k = int(rng.choice(len(props), p=props / props.sum()))
    low, high = edges[k], edges[k + 1]
    if k == 0:
        low = high - (edges[2] - edges[1])
    if k == len(props) - 1:
        high = low + (edges[-2] - edges[-3])
    return float(rng.uniform(low, high))


def _pce_category(p: float) -> str:
    return "low" if p < 0.05 else "borderline" if p < 0.075 else "intermediate" if p < 0.2 else "high"


def simulate(tmp: Path, seed: int = 20261124, scale: float = 1.0) -> Simulation:
    store_path = tmp / "store.sqlite3"
    store = Store(f"sqlite:///{store_path}", SECRET.encode())
    store.migrate()
    store.dispose()
    # the simulation needs no durability: skip the fsync of every commit (the store's own pragma is FULL)
    event.listen(store.engine, "connect", lambda conn, _record: conn.execute("PRAGMA synchronous=OFF"))
    rng = np.random.default_rng(seed)
    truth: dict[str, Truth] = {m: Truth() for m in ("ascvd-pce-10y", "t2d-onset-5y", "news2", "egfr-ckd-epi-2021",
                                                    "kfre-4var")}
    outcomes: list[dict[str, Any]] = []
    feedback: list[FeedbackRecord] = []

    # ascvd-pce-10y: SBP drifts up in the second half; outcomes at twice the predicted risk except for one group;
    # 5% of requests refused (age outside the range) or missing HDL; events coded in SNOMED or ICD-10 subcodes
    t = truth["ascvd-pce-10y"]
    n = int(2400 * scale)
    for i in range(n):
        created = START + timedelta(days=DAYS * i / n)
        pid = f"pce-{i}"
        age, tc = rng.uniform(40, 79), rng.normal(200, 35)
        hdl, sbp = rng.normal(50, 12), rng.normal(150 if i >= n // 2 else 126, 14)
        race = RACES[i % 3]
        cohort = {"sex": "female" if i % 2 else "male", "age_band": f"{int(age // 10) * 10}-{int(age // 10) * 10 + 9}",
                  "race": race}
        features = {"age": age, "total_cholesterol": tc, "hdl": hdl, "sbp": sbp}
        hook = str(uuid.uuid4())
        card = CardRecord(str(uuid.uuid4()), "sim", "warning", [str(uuid.uuid4())])
        if i % 40 == 7:  # refused: outside the validated age range (the value differs per patient)
            guard = [f"Age {80 + i % 5} years is outside the range the model was validated for (40–79 years)"]
            _record(store, "ascvd-pce-10y", "1.0.0", "champion", pid, hook, created, features, None, None, cohort,
                    guard=guard, cards=[card])
            p: float | None = None
            missing: dict[str, str] = {}
        elif i % 40 == 19:  # missing HDL
            missing = {"hdl": "no HDL cholesterol in the last 5 years"}
            feats = {k: v for k, v in features.items() if k != "hdl"}
            _record(store, "ascvd-pce-10y", "1.0.0", "champion", pid, hook, created, feats, None, None, cohort,
                    missing=missing, cards=[card])
            features, p = feats, None
        else:
            missing = {}
            p = float(expit(-7.2 + 0.06 * age + 0.006 * tc - 0.02 * hdl + 0.018 * sbp))
            _record(store, "ascvd-pce-10y", "1.0.0", "champion", pid, hook, created, features, {"risk_10y": p},
                    _pce_category(p), cohort, cards=[card], primary="risk_10y")
        event_time = None
        if p is not None:
            factor = 1.0 if race == "Asian" else 2.0
            if rng.uniform() < min(1.0, factor * p):
                event_time = created + timedelta(days=float(rng.uniform(1, 3000)))
                system, code = ((SNOMED, "22298006") if i % 2 else (ICD10CM, "I21.4"))
                outcomes.append({"patient_id": pid, "system": system, "code": code,
                                 "observed_at": event_time.isoformat(), "label": 1})
            elif i % 25 == 3:  # an MI before the prediction: not an event of it
                outcomes.append({"patient_id": pid, "system": SNOMED, "code": "22298006",
                                 "observed_at": (created - timedelta(days=30)).isoformat(), "label": 1})
            elif i % 25 == 11:  # an MI after the 10-year window: not an event of it
                outcomes.append({"patient_id": pid, "system": SNOMED, "code": "22298006",
                                 "observed_at": (created + timedelta(days=3700)).isoformat(), "label": 1})
        if i % 8 == 0:
            accepted = (i // 8) % 10 < 7
            feedback.append(FeedbackRecord(
                service_id="ascvd-pce-10y", card_uuid=card.uuid, outcome="accepted" if accepted else "overridden",
                outcome_timestamp=created + timedelta(minutes=2),
                accepted_suggestions=card.suggestion_uuids if accepted else [],
                override_reason_code=None if accepted else ("patient-declined" if i % 3 else "already-treated"),
                override_reason_display=None if accepted else ("Patient declined" if i % 3 else "Already treated")))
        t.created.append(created); t.patient.append(pid); t.score.append(p); t.event_time.append(event_time)
        t.race.append(race); t.category.append(_pce_category(p) if p is not None else None)
        t.features.append(features); t.missing.append(missing)

    # t2d-onset-5y: champion 1.0.0 with challenger 1.1.0 in shadow (a better score), some requests without a number
    t = truth["t2d-onset-5y"]
    n = int(900 * scale)
    reference = yaml.safe_load((SHIPPED / "t2d-onset-5y" / "1.0.0" / "manifest.yaml").read_text(
        encoding="utf-8"))["model_card"]["reference_distribution"]
    for i in range(n):
        created = START + timedelta(days=DAYS * i / n)
        pid = f"t2d-{i}"
        lp = rng.normal(-2.2, 1.0)
        truth_risk = float(expit(lp))
        champ = float(expit(lp + rng.normal(0, 0.9)))
        chall = float(expit(lp + rng.normal(0, 0.3)))
        features = {name: _from_reference(reference[name], rng) for name in ("age", "bmi", "sbp", "hdl")}
        if i >= n // 2:
            features["bmi"] += 4.0  # the population's BMI drifts up in the second half
        cohort = {"sex": "female" if i % 2 else "male", "age_band": "50-59", "race": RACES[i % 3]}
        hook = str(uuid.uuid4())
        champ_out = None if i % 30 == 5 else champ
        chall_state: float | None | str = None if i % 30 in (5, 17) else chall
        cat = None if champ_out is None else ("lower" if champ < 0.1 else "higher")
        _record(store, "t2d-onset-5y", "1.0.0", "champion", pid, hook, created, features,
                None if champ_out is None else {"risk_5y": champ}, cat, cohort,
                missing={"hdl": "no HDL"} if champ_out is None else None, primary="risk_5y",
                cards=[CardRecord(str(uuid.uuid4()), "sim", "info")])
        ccat = None if chall_state is None else ("lower" if chall < 0.1 else "higher")
        _record(store, "t2d-onset-5y", "1.1.0", "challenger", pid, hook, created, features,
                None if chall_state is None else {"risk_5y": chall}, ccat, cohort, primary="risk_5y")
        event_time = None
        if rng.uniform() < truth_risk:
            event_time = created + timedelta(days=float(rng.uniform(30, 1700)))
            outcomes.append({"patient_id": pid, "system": ICD10CM, "code": "E11.9",
                             "observed_at": event_time.isoformat(), "label": 1})
        t.created.append(created); t.patient.append(pid); t.score.append(champ_out); t.event_time.append(event_time)
        t.race.append(RACES[i % 3]); t.category.append(cat); t.features.append(features); t.missing.append({})
        t.challenger.append(chall_state); t.challenger_category.append(ccat)

    # news2: integer scores, ICU admission within 24 h more likely at higher scores; every prediction judged
    t = truth["news2"]
    n = int(1500 * scale)
    for i in range(n):
        created = START + timedelta(days=DAYS * i / n)
        pid = f"news-{i % 500}"  # repeated observation sets of the same patients
        score = int(min(14, rng.poisson(2.5)))
        cat = "high" if score >= 7 else "medium" if score >= 5 else "low"
        cohort = {"sex": "female" if i % 2 else "male", "age_band": "70-79", "race": RACES[i % 3]}
        _record(store, "news2", "1.0.0", "champion", pid, str(uuid.uuid4()), created, {"resp_rate": 18.0 + score},
                {"score": float(score), "max_single": float(min(score, 2))}, cat, cohort, primary="score")
        event_time = None
        if rng.uniform() < float(expit(-4.5 + 0.45 * score)):
            event_time = created + timedelta(hours=float(rng.uniform(1, 23)))
            outcomes.append({"patient_id": pid, "system": SNOMED, "code": "305351004",
                             "observed_at": event_time.isoformat(), "label": 1})
        t.created.append(created); t.patient.append(pid); t.score.append(float(score))
        t.event_time.append(event_time); t.race.append(RACES[i % 3]); t.category.append(cat)
        t.features.append({}); t.missing.append({})

    # egfr: a measured value, no outcome declared; creatinine drifts up in the second half
    t = truth["egfr-ckd-epi-2021"]
    n = int(600 * scale)
    for i in range(n):
        created = START + timedelta(days=DAYS * i / n)
        creat = float(rng.lognormal(0.0 if i < n // 2 else 0.25, 0.25))
        egfr = float(142 * min(creat / 0.9, 1) ** -0.302 * max(creat / 0.9, 1) ** -1.2 * 0.9938 ** 60)
        cat = "G1" if egfr >= 90 else "G2" if egfr >= 60 else "G3a"
        _record(store, "egfr-ckd-epi-2021", "1.0.0", "champion", f"egfr-{i}", str(uuid.uuid4()), created,
                {"creatinine": creat, "age": 60.0}, {"egfr": egfr}, cat, {"sex": "female" if i % 2 else "male"},
                primary="egfr")
        t.created.append(created); t.patient.append(f"egfr-{i}"); t.score.append(egfr); t.event_time.append(None)
        t.race.append(""); t.category.append(cat); t.features.append({"creatinine": creat, "age": 60.0})
        t.missing.append({})

    # kfre-4var: few patients, 4 events: below the minimum, so no figure may be shown
    t = truth["kfre-4var"]
    for i in range(60):
        created = START + timedelta(days=i / 2)
        p = float(rng.uniform(0.01, 0.4))
        _record(store, "kfre-4var", "1.0.0", "champion", f"kfre-{i}", str(uuid.uuid4()), created, {"age": 60.0},
                {"risk_5y": p, "risk_2y": p / 2}, "high" if p >= 0.05 else "low", {"sex": "male"}, primary="risk_5y")
        event_time = created + timedelta(days=400) if i in (3, 17, 29, 41) else None
        if event_time:
            outcomes.append({"patient_id": f"kfre-{i}", "system": SNOMED, "code": "46177005",
                             "observed_at": event_time.isoformat(), "label": 1})
        t.created.append(created); t.patient.append(f"kfre-{i}"); t.score.append(p); t.event_time.append(event_time)
        t.race.append(""); t.category.append(None); t.features.append({}); t.missing.append({})

    # an outcome no model declares
    outcomes.append({"patient_id": "pce-1", "system": SNOMED, "code": "195967001", "observed_at":
                     (START + timedelta(days=5)).isoformat(), "label": 1})
    store.write_feedback(feedback)
    store.dispose()
    return Simulation(store_path, truth, feedback, outcomes)


MODELS = ("ascvd-pce-10y", "t2d-onset-5y", "news2", "egfr-ckd-epi-2021", "kfre-4var", "cha2ds2-vasc")


def model_repository(tmp: Path) -> Path:
    """A model repository of the shipped models these tests use (links to their folders), so that a model being
    added elsewhere in the working tree cannot break these tests."""
    root = tmp / "models"
    root.mkdir(exist_ok=True)
    for model in MODELS:
        link = root / model
        if not link.exists():
            link.symlink_to(SHIPPED / model, target_is_directory=True)
    return root
