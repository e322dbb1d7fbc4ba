"""Hand-written FHIR R4 resources for tests: the shapes real EHRs send, built from a few clinical values."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OMB = "urn:oid:2.16.840.1.113883.6.238"
RACE_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"

_ids = itertools.count(1)
NOW = datetime.now(timezone.utc).replace(microsecond=0)  # the app reads the real clock: records are relative to it


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def days_ago(n: int) -> str:
    return (NOW - timedelta(days=n)).isoformat().replace("+00:00", "Z")


def birth_date_for_age(age: int, at: datetime = NOW) -> str:
    """A birth date making the patient `age` (completed years) at `at`, six months past the birthday."""
    d = date(at.year - age, at.month, 1) - timedelta(days=182)
    return d.isoformat()


def patient(pid: str = "p1", age: int = 55, gender: str = "female", race: str | None = None,
            name: str = "Testpatient") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": gender,
                           "birthDate": birth_date_for_age(age), "name": [{"family": name, "given": ["Ada"]}]}
    if race:
        code, display = {"white": ("2106-3", "White"), "black": ("2054-5", "Black or African American"),
                         "asian": ("2028-9", "Asian")}[race]
        res["extension"] = [{"url": RACE_URL, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": OMB, "code": code, "display": display}},
            {"url": "text", "valueString": display}]}]
    return res


def quantity_obs(code: str, value: float, unit: str, *, pid: str = "p1", days: int = 30, status: str = "final",
                 display: str | None = None, ucum: bool = True) -> dict[str, Any]:
    qty: dict[str, Any] = {"value": value, "unit": unit}
    if ucum:
        qty.update(system=UCUM, code=unit)
    return {"resourceType": "Observation", "id": _id("obs"), "status": status,
            "code": {"coding": [{"system": LOINC, "code": code, "display": display or code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": days_ago(days), "valueQuantity": qty}


def bp_panel(sbp: float, dbp: float = 80, *, panel: str = "85354-9", pid: str = "p1", days: int = 10,
             status: str = "final") -> dict[str, Any]:
    def comp(code: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}

    return {"resourceType": "Observation", "id": _id("bp"), "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": panel, "display": "Blood pressure panel"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": days_ago(days),
            "component": [comp("8480-6", sbp), comp("8462-4", dbp)]}


def smoking(snomed: str, *, pid: str = "p1", days: int = 60, display: str = "") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": _id("smk"), "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2", "display": "Tobacco smoking status"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": days_ago(days),
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": snomed, "display": display or snomed}]}}


NEVER_SMOKER, CURRENT_SMOKER, FORMER_SMOKER = "266919005", "449868002", "8517006"


def condition(code: str, system: str = SNOMED, *, pid: str = "p1", clinical: str = "active",
              verification: str = "confirmed", display: str = "") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": _id("cond"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": clinical}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
            "code": {"coding": [{"system": system, "code": code, "display": display or code}]},
            "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": days_ago(900)}


def med_request(rxnorm: str, *, pid: str = "p1", status: str = "active", display: str = "",
                contained: bool = False) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": _id("mr"), "status": status, "intent": "order",
                           "subject": {"reference": f"Patient/{pid}"}, "authoredOn": days_ago(120)}
    concept = {"coding": [{"system": RXNORM, "code": rxnorm, "display": display or rxnorm}]}
    if contained:
        res["contained"] = [{"resourceType": "Medication", "id": "med1", "code": concept}]
        res["medicationReference"] = {"reference": "#med1"}
    else:
        res["medicationCodeableConcept"] = concept
    return res


def bundle(resources: list[dict[str, Any]], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind,
            "entry": [{"fullUrl": f"urn:uuid:{r['resourceType'].lower()}-{r['id']}", "resource": r}
                      for r in resources]}


def pce_record(*, age: int = 55, gender: str = "female", race: str | None = "white", tc: float = 213,
               hdl: float = 50, sbp: float = 120, smoker: bool = False, diabetes: bool = False,
               treated: bool = False, pid: str = "p1") -> list[dict[str, Any]]:
    """A patient record holding exactly the PCE inputs (Goff 2013 Table A profile by default)."""
    res = [patient(pid, age, gender, race),
           quantity_obs("2093-3", tc, "mg/dL", pid=pid, display="Cholesterol [Mass/volume] in Serum or Plasma"),
           quantity_obs("2085-9", hdl, "mg/dL", pid=pid, display="HDL Cholesterol"),
           bp_panel(sbp, pid=pid),
           smoking(CURRENT_SMOKER if smoker else NEVER_SMOKER, pid=pid)]
    if diabetes:
        res.append(condition("44054006", pid=pid, display="Diabetes mellitus type 2"))
    if treated:
        res.append(med_request("314076", pid=pid, display="lisinopril 10 MG Oral Tablet"))
    return res


def hook_request(service_prefetch: dict[str, Any] | None, *, pid: str = "p1", hook: str = "patient-view",
                 instance: str = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": instance,
                            "context": {"userId": "Practitioner/example", "patientId": pid}}
    if service_prefetch is not None:
        body["prefetch"] = service_prefetch
    body.update(extra)
    return body


def coded_obs(code: str, answer: str, *, pid: str = "p1", days: int = 0, hours: float | None = None,
              answer_system: str = SNOMED) -> dict[str, Any]:
    when = (NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z") if hours is not None else days_ago(days)
    return {"resourceType": "Observation", "id": _id("obs"), "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": answer_system, "code": answer}]}}


def vital(code: str, value: float, unit: str, *, pid: str = "p1", hours: float = 2) -> dict[str, Any]:
    res = quantity_obs(code, value, unit, pid=pid)
    res["effectiveDateTime"] = (NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    return res


def encounter(eid: str = "e1", *, pid: str = "p1", klass: str = "IMP", status: str = "in-progress") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": days_ago(1)}}
