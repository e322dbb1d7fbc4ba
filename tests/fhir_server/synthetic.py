"""Synthetic FHIR R4 patients for tests: a transaction Bundle with the data risk-model prefetch templates ask for.

Exists so prefetch and end-to-end tests share one hand-built, obviously fake patient record (no real person's data)
with the LOINC codes the shipped models read: total cholesterol 2093-3, HDL 2085-9, the blood-pressure panel 85354-9
with systolic component 8480-6, smoking status 72166-2, plus a Condition and an active and a stopped MedicationRequest.
"""

from __future__ import annotations

import uuid
from typing import Any

LOINC = "http://loinc.org"


def new_patient_id() -> str:
    """A fresh id so tests sharing one server do not see each other's data."""
    return "syn-" + uuid.uuid4().hex[:12]


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _observation(pid: str, oid: str, code: str, display: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def _quantity(value: float, unit: str, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum}


def patient_resources(pid: str, extra_cholesterol: int = 0) -> list[dict[str, Any]]:
    """The synthetic record of patient `pid`; `extra_cholesterol` adds that many older 2093-3 results (for paging)."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": "female",
            "birthDate": "1965-04-12",
            "name": [{"family": "Synthetic", "given": ["Test"]}],
        },
        _observation(
            pid, f"{pid}-chol", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "2024-05-01",
            valueQuantity=_quantity(213, "mg/dL", "mg/dL"),
        ),
        _observation(
            pid, f"{pid}-hdl", "2085-9", "HDL Cholesterol", "2024-05-01",
            valueQuantity=_quantity(50, "mg/dL", "mg/dL"),
        ),
        _observation(
            pid, f"{pid}-bp", "85354-9", "Blood pressure panel", "2024-05-02",
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                    "valueQuantity": _quantity(120, "mmHg", "mm[Hg]"),
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                    "valueQuantity": _quantity(80, "mmHg", "mm[Hg]"),
                },
            ],
        ),
        _observation(
            pid, f"{pid}-smoke", "72166-2", "Tobacco smoking status", "2024-05-02",
            valueCodeableConcept={
                "coding": [{"system": "http://snomed.info/sct", "code": "8517006", "display": "Ex-smoker"}]
            },
        ),
        {
            "resourceType": "Condition",
            "id": f"{pid}-htn",
            "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-med-active",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                            "display": "lisinopril 10 MG Oral Tablet"}]
            },
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-med-stopped",
            "status": "stopped",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617312",
                            "display": "atorvastatin 40 MG Oral Tablet"}]
            },
        },
    ]
    for i in range(extra_cholesterol):
        resources.append(
            _observation(
                pid, f"{pid}-chol-old{i}", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma",
                f"20{10 + i % 10:02d}-01-{1 + i % 28:02d}", valueQuantity=_quantity(180 + i, "mg/dL", "mg/dL"),
            )
        )
    return resources


def patient_bundle(pid: str, extra_cholesterol: int = 0) -> dict[str, Any]:
    """A transaction Bundle that PUTs the synthetic record of `pid` (load it with FhirTestServer.load)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_put(r) for r in patient_resources(pid, extra_cholesterol)],
    }
