"""Example patients for the card preview page: each model's published worked example, and synthetic records.

Worked-example patients are built at request time so their dates sit inside the models' look-back windows. Synthetic
(Synthea) records ship with the package and are time-shifted so their newest entry is today, keeping ages intact
(`cds_hooks.time_shift`, shared with `cds-onnx invoke --shift-to-today`).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

from cds_hooks.time_shift import shift_to_today

LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OMB = "urn:oid:2.16.840.1.113883.6.238"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


class _Builder:
    def __init__(self, pid: str, now: datetime) -> None:
        self.pid, self.now, self.n, self.resources = pid, now, 0, []  # type: ignore[var-annotated]

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{self.pid}-{prefix}{self.n}"

    def when(self, days: float = 0, hours: float = 0) -> str:
        return (self.now - timedelta(days=days, hours=hours)).isoformat(timespec="seconds").replace("+00:00", "Z")

    def patient(self, age: int, gender: str, family: str, race: tuple[str, str] | None = None) -> _Builder:
        birth = date(self.now.year - age, self.now.month, 1) - timedelta(days=182)
        res: dict[str, Any] = {"resourceType": "Patient", "id": self.pid, "gender": gender,
                               "birthDate": birth.isoformat(), "name": [{"family": family, "given": ["Example"]}]}
        if race:
            res["extension"] = [{"url": RACE, "extension": [
                {"url": "ombCategory", "valueCoding": {"system": OMB, "code": race[0], "display": race[1]}}]}]
        self.resources.append(res)
        return self

    def _obs(self, code: str, display: str, days: float, hours: float = 0, **value: Any) -> _Builder:
        self.resources.append({"resourceType": "Observation", "id": self._id("obs"), "status": "final",
                               "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                               "subject": {"reference": f"Patient/{self.pid}"},
                               "effectiveDateTime": self.when(days, hours), **value})
        return self

    def qty(self, code: str, display: str, value: float, unit: str, days: float = 20, hours: float = 0) -> _Builder:
        return self._obs(code, display, days, hours,
                         valueQuantity={"value": value, "unit": unit, "system": UCUM, "code": unit})

    def coded(self, code: str, display: str, answer: str, answer_display: str, days: float = 30,
              hours: float = 0) -> _Builder:
        return self._obs(code, display, days, hours, valueCodeableConcept={
            "coding": [{"system": SNOMED, "code": answer, "display": answer_display}]})

    def bp(self, sbp: float, dbp: float = 80, days: float = 10, hours: float = 0) -> _Builder:
        def comp(code: str, v: float) -> dict[str, Any]:
            return {"code": {"coding": [{"system": LOINC, "code": code}]},
                    "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}

        return self._obs("85354-9", "Blood pressure panel", days, hours, component=[comp("8480-6", sbp),
                                                                                     comp("8462-4", dbp)])

    def condition(self, code: str, display: str, system: str = SNOMED) -> _Builder:
        self.resources.append({"resourceType": "Condition", "id": self._id("cond"),
                               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                                        "condition-clinical", "code": "active"}]},
                               "code": {"coding": [{"system": system, "code": code, "display": display}]},
                               "subject": {"reference": f"Patient/{self.pid}"}, "onsetDateTime": self.when(800)})
        return self

    def med(self, code: str, display: str) -> _Builder:
        self.resources.append({"resourceType": "MedicationRequest", "id": self._id("med"), "status": "active",
                               "intent": "order", "authoredOn": self.when(90),
                               "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                                         "display": display}]},
                               "subject": {"reference": f"Patient/{self.pid}"}})
        return self

    def encounter(self, eid: str, klass: str = "IMP") -> _Builder:
        self.resources.append({"resourceType": "Encounter", "id": eid, "status": "in-progress",
                               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
                               "subject": {"reference": f"Patient/{self.pid}"}, "period": {"start": self.when(1)}})
        return self

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "collection",
                "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in self.resources]}


def _pce(now: datetime) -> dict[str, Any]:
    return (_Builder("pce-example", now).patient(55, "male", "Goff", ("2106-3", "White"))
            .qty("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", 213, "mg/dL")
            .qty("2085-9", "HDL Cholesterol", 50, "mg/dL").bp(120)
            .coded("72166-2", "Tobacco smoking status", "266919005", "Never smoked tobacco").bundle())


def _prevent(now: datetime) -> dict[str, Any]:
    return (_Builder("prevent-example", now).patient(50, "female", "Khan")
            .qty("2093-3", "Cholesterol", 200, "mg/dL").qty("2085-9", "HDL Cholesterol", 45, "mg/dL").bp(160)
            .coded("72166-2", "Tobacco smoking status", "266919005", "Never smoked tobacco")
            .condition("44054006", "Diabetes mellitus type 2").med("314076", "lisinopril 10 MG Oral Tablet")
            .qty("98979-8", "eGFR (CKD-EPI 2021)", 90, "mL/min/{1.73_m2}").qty("39156-5", "BMI", 35, "kg/m2")
            .bundle())


def _kidney(now: datetime) -> dict[str, Any]:
    return (_Builder("kidney-example", now).patient(55, "female", "Tangri")
            .qty("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.3, "mg/dL")
            .qty("98979-8", "eGFR (CKD-EPI 2021)", 45, "mL/min/{1.73_m2}")
            .qty("9318-7", "Albumin/Creatinine [Mass Ratio] in Urine", 30, "mg/g").bundle())


def _af(now: datetime) -> dict[str, Any]:
    return (_Builder("af-example", now).patient(70, "female", "Lip").condition("49436004", "Atrial fibrillation")
            .condition("38341003", "Hypertensive disorder").condition("44054006", "Diabetes mellitus type 2")
            .bundle())


def _news2(now: datetime) -> dict[str, Any]:
    b = _Builder("news2-example", now).patient(67, "male", "Ward").encounter("news2-encounter")
    return (b.qty("9279-1", "Respiratory rate", 22, "/min", days=0, hours=1)
            .qty("59408-5", "Oxygen saturation by pulse oximetry", 94, "%", days=0, hours=1)
            .qty("8867-4", "Heart rate", 104, "/min", days=0, hours=1)
            .qty("8310-5", "Body temperature", 38.4, "Cel", days=0, hours=1).bp(108, days=0, hours=1)
            .coded("67775-7", "Level of responsiveness", "248234008", "Alert", days=0, hours=1).bundle())


WORKED_EXAMPLES = {
    "pce-example": ("PCE worked example: white man, 55 (Goff 2013 Table A)", _pce, None),
    "prevent-example": ("PREVENT sample patient: woman, 50 (Khan 2024)", _prevent, None),
    "kidney-example": ("KFRE worked example: woman, 55, eGFR 45, ACR 30 mg/g", _kidney, None),
    "af-example": ("CHA2DS2-VASc example: woman, 70, AF, hypertension, diabetes", _af, None),
    "news2-example": ("NEWS2: inpatient with abnormal vital signs", _news2, "news2-encounter"),
}


def _synthetic_index() -> list[dict[str, Any]]:
    folder = resources.files("cds_hooks") / "static" / "preview" / "patients"
    index = folder / "index.json"
    return json.loads(index.read_text(encoding="utf-8")) if index.is_file() else []


def list_examples() -> list[dict[str, Any]]:
    out = [{"id": key, "label": label, "encounterId": enc} for key, (label, _, enc) in WORKED_EXAMPLES.items()]
    out += [{"id": p["id"], "label": p["label"], "encounterId": None} for p in _synthetic_index()]
    return out


def example_bundle(example_id: str, now: datetime | None = None) -> dict[str, Any] | None:
    now = now or datetime.now(UTC)
    if example_id in WORKED_EXAMPLES:
        return WORKED_EXAMPLES[example_id][1](now)
    for p in _synthetic_index():
        if p["id"] == example_id:
            path = resources.files("cds_hooks") / "static" / "preview" / "patients" / p["file"]
            return shift_to_today(json.loads(path.read_text(encoding="utf-8")), now=now)[0]
    return None
