"""The benchmark's peer: an idiomatic HealthChain (0.16) patient-view CDS service for the 2013 Pooled Cohort Equations.

It is written the way HealthChain's documentation shows: a `HealthChainAPI` app, a `CDSHooksService` with a
`@cds.hook("patient-view", ...)` handler, the `CdsFhirAdapter` turning the request's prefetch into `fhir.resources`
objects, plain Python reading the PCE inputs from those objects, and the same
`models/ascvd-pce-10y/1.0.0/model.onnx` run with onnxruntime. The card carries the risk (`detail` holds the exact
value, so the benchmark can check that both services compute the same number).

It reads the PCE inputs as cds-onnx's feature spec does for ordinary records (newest final value in the look-back
window, active antihypertensive medication and diabetes diagnosis from the same code lists), without cds-onnx's
guards, population rules, unit conversion, explanations, JWT verification or recording: it does less work per
request, which favours the peer in the comparison.

HealthChain pins its own FastAPI, fhir.resources and httpx, so it runs from its own virtual environment
(`make bench` creates benchmarks/results/peer-venv from the `bench` dependency group of pyproject.toml):

    benchmarks/results/peer-venv/bin/python benchmarks/peer_healthchain.py --port 8091
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from healthchain.gateway import CDSHooksService, HealthChainAPI
from healthchain.io.adapters.cdsfhiradapter import CdsFhirAdapter
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import Card, CDSResponse

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "ascvd-pce-10y" / "1.0.0" / "model.onnx"
VALUESETS = ROOT / "fhir_mapping" / "valuesets"
SERVICE_ID = "ascvd-pce-10y"
FINAL = {"final", "amended", "corrected"}
ACTIVE = {"active", "recurrence", "relapse"}
CURRENT_SMOKER = {"449868002", "428041000124106", "77176002", "428061000124105", "428071000124103"}


def _codes(name: str) -> set[tuple[str, str]]:
    doc = json.loads((VALUESETS / f"{name}.json").read_text())
    return {(c["system"], c["code"]) for c in doc["codes"]}


ANTIHYPERTENSIVE = _codes("antihypertensive-rxnorm")
DIABETES = _codes("diabetes-conditions") | _codes("diabetes-icd10cm")


def _resources(doc_resources: dict[str, Any], key: str) -> list[Any]:
    bundle = doc_resources.get(key)
    if bundle is None:
        return []
    return [e.resource for e in (bundle.entry or []) if e.resource is not None]


def _when(obs: Any) -> datetime | None:
    when = obs.effectiveDateTime or (obs.effectivePeriod.start if obs.effectivePeriod else None)
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _latest(observations: list[Any], codes: set[str], days: int, now: datetime,
            component: str | None = None) -> float | None:
    """The newest final value of these LOINC codes within the look-back window (or of a panel's component)."""
    rows = []
    for obs in observations:
        if obs.status not in FINAL or not any(c.system == "http://loinc.org" and c.code in codes
                                              for c in obs.code.coding or []):
            continue
        when = _when(obs)
        if when is None or when < now - timedelta(days=days):
            continue
        if component is not None:
            for comp in obs.component or []:
                if any(c.code == component for c in comp.code.coding or []) and comp.valueQuantity is not None:
                    rows.append((when, float(comp.valueQuantity.value)))
        elif obs.valueQuantity is not None:
            rows.append((when, float(obs.valueQuantity.value)))
    return max(rows, key=lambda r: r[0])[1] if rows else None


def pce_features(resources: dict[str, Any], now: datetime) -> list[float] | None:
    """age, total_cholesterol, hdl, sbp, bp_treated, smoker, diabetes, female, black (the model's column order)."""
    patient = resources.get("patient")
    if patient is None or patient.birthDate is None:
        return None
    born: date = patient.birthDate
    today = now.date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    black = 0.0
    for ext in patient.extension or []:
        if ext.url.endswith("us-core-race"):
            black = float(any(sub.valueCoding is not None and sub.valueCoding.code == "2054-5"
                              for sub in ext.extension or []))
    tc = _latest(_resources(resources, "observation-total-cholesterol"), {"2093-3", "14647-2"}, 730, now)
    hdl = _latest(_resources(resources, "observation-hdl"), {"2085-9", "14646-4"}, 730, now)
    sbp = _latest(_resources(resources, "observation-sbp-1"), {"85354-9", "55284-4"}, 365, now, component="8480-6")
    if sbp is None:
        sbp = _latest(_resources(resources, "observation-sbp-2"), {"8480-6"}, 365, now)
    smoking = [o for o in _resources(resources, "observation-smoker") if o.status in FINAL
               and any(c.system == "http://loinc.org" and c.code == "72166-2" for c in o.code.coding or [])
               and _when(o) is not None and _when(o) >= now - timedelta(days=730)]
    newest = max(smoking, key=_when) if smoking else None
    smoker = None if newest is None or newest.valueCodeableConcept is None else float(
        any(c.code in CURRENT_SMOKER for c in newest.valueCodeableConcept.coding or []))
    bp_treated = float(any(
        mr.status == "active" and mr.medicationCodeableConcept is not None
        and any((c.system, c.code) in ANTIHYPERTENSIVE for c in mr.medicationCodeableConcept.coding or [])
        for mr in _resources(resources, "medicationRequest-bp-treated-1")))
    conditions = _resources(resources, "condition-diabetes-1") + _resources(resources, "condition-diabetes-2")
    diabetes = float(any(
        cond.clinicalStatus is not None and any(c.code in ACTIVE for c in cond.clinicalStatus.coding or [])
        and any((c.system, c.code) in DIABETES for c in cond.code.coding or [])
        for cond in conditions))
    values = [float(age), tc, hdl, sbp, bp_treated, smoker, diabetes, float(patient.gender == "female"), black]
    return None if any(v is None for v in values) else values


session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
adapter = CdsFhirAdapter(hook_name="patient-view")
cds = CDSHooksService()
app = HealthChainAPI(title="HealthChain PCE peer")


@cds.hook("patient-view", id=SERVICE_ID, title="10-year ASCVD risk (PCE)")
def ascvd_risk(request: CDSRequest) -> CDSResponse:
    doc = adapter.parse(request)
    features = pce_features(doc.fhir.prefetch_resources or {}, datetime.now(UTC))
    if features is None:
        doc.cds.cards = [Card(summary="10-year ASCVD risk: not enough data", indicator="info",
                              source={"label": "HealthChain PCE peer"})]
        return adapter.format(doc)
    (risk,) = session.run(["risk_10y"], {"features": np.array([features], dtype=np.float64)})
    value = float(risk.reshape(-1)[0])
    doc.cds.cards = [Card(summary=f"10-year ASCVD risk {value * 100:.1f}%", detail=repr(value),
                          indicator="warning" if value >= 0.075 else "info",
                          source={"label": "HealthChain PCE peer"})]
    return adapter.format(doc)


app.register_service(cds)


def main() -> None:
    parser = argparse.ArgumentParser(description="HealthChain PCE peer service (benchmark only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
