"""Re-shaping the real-world corpus: the same clinical facts written the ways real EHRs write them.

Every shape is a pure function Bundle -> Bundle (the input is never modified). `load_base` reads a committed base
patient; `shift_to_now` moves every date in it so that its newest clinical date is yesterday (the service reads the
real clock, so look-back windows must be relative to now). Shapes are applied after the shift.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from realworld import plain_reading as R

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"
Bundle = dict[str, Any]

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(T.*)?$")
_SKIP_KEYS = {"id", "reference", "fullUrl", "code", "system", "url", "version", "value", "display", "text",
              "valueString"}


def patient_files() -> list[str]:
    index = json.loads((FIXTURES / "index.json").read_text())
    return [row["file"] for row in index["patients"]]


def load_base(name: str) -> Bundle:
    """A committed base patient, shifted so that its newest clinical date is yesterday (UTC)."""
    return shift_to_now(json.loads((FIXTURES / name).read_text()))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def resources(bundle: Bundle) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _walk_dates(node: Any, fn: Callable[[str], str], key: str | None = None) -> Any:
    if isinstance(node, dict):
        return {k: _walk_dates(v, fn, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_dates(v, fn, key) for v in node]
    if isinstance(node, str) and key not in _SKIP_KEYS and _DATE_RE.match(node):
        return fn(node)
    return node


def _shift_one(text: str, days: int) -> str:
    """Shift a FHIR date/dateTime by whole days, keeping time and time zone exactly as written."""
    m = _DATE_RE.match(text)
    assert m is not None
    new = date(int(m[1]), int(m[2]), int(m[3])) + timedelta(days=days)
    return new.isoformat() + (m[4] or "")


def newest_clinical_date(bundle: Bundle) -> date:
    found: list[str] = []
    for res in resources(bundle):
        if res["resourceType"] == "Patient":
            continue
        _walk_dates(res, lambda s: found.append(s[:10]) or s)
    return date.fromisoformat(max(found))


def shift_days(bundle: Bundle, days: int) -> Bundle:
    """Every date and dateTime in the bundle (birthDate included) moved by `days` whole days."""
    return _walk_dates(copy.deepcopy(bundle), lambda s: _shift_one(s, days))


def shift_to_now(bundle: Bundle) -> Bundle:
    target = _now().date() - timedelta(days=1)
    return shift_days(bundle, (target - newest_clinical_date(bundle)).days)


def _iso(dt: datetime) -> str:
    return dt.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _map_resources(bundle: Bundle, fn: Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]] | None]
                   ) -> Bundle:
    out = copy.deepcopy(bundle)
    entries = []
    for entry in out["entry"]:
        result = fn(entry["resource"])
        if result is None:
            continue
        for res in result if isinstance(result, list) else [result]:
            entries.append({"fullUrl": entry["fullUrl"] if res is entry["resource"]
                            else f"urn:uuid:{res['resourceType'].lower()}-{res['id']}", "resource": res})
    out["entry"] = entries
    return out


def _codes(concept: Any) -> set[str]:
    return {c.get("code") for c in (concept or {}).get("coding", []) if isinstance(c, dict)}


# ---------------------------------------------------------------------------------------------------------------- shapes

def as_is(bundle: Bundle) -> Bundle:
    return copy.deepcopy(bundle)


_SI = {  # mass code -> (molar code, display, unit, value function)
    "2093-3": ("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", lambda v: round(v / 38.67, 2)),
    "2085-9": ("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma", "mmol/L",
               lambda v: round(v / 38.67, 2)),
    "2160-0": ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", lambda v: round(v * 88.4, 1)),
    "38483-4": ("59826-8", "Creatinine [Moles/volume] in Blood", "umol/L", lambda v: round(v * 88.4, 1)),
}


def labs_si(bundle: Bundle) -> Bundle:
    """Cholesterol and HDL in mmol/L, creatinine in µmol/L (the SI LOINC codes and UCUM units)."""
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] != "Observation":
            return res
        hit = _codes(res.get("code")) & set(_SI)
        q = res.get("valueQuantity")
        if not hit or not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)):
            return res
        code, display, unit, conv = _SI[hit.pop()]
        res["code"] = {"coding": [{"system": R.LOINC, "code": code, "display": display}], "text": display}
        res["valueQuantity"] = {"value": conv(q["value"]), "unit": unit, "system": R.UCUM, "code": unit}
        return res
    return _map_resources(bundle, fix)


def bp_panel_55284(bundle: Bundle) -> Bundle:
    """BP panels coded 55284-4 (Blood pressure systolic & diastolic) instead of 85354-9."""
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] == "Observation" and "85354-9" in _codes(res.get("code")):
            res["code"] = {"coding": [{"system": R.LOINC, "code": "55284-4",
                                       "display": "Blood pressure systolic and diastolic"}]}
        return res
    return _map_resources(bundle, fix)


def bp_standalone(bundle: Bundle) -> Bundle:
    """Each BP panel split into standalone systolic (8480-6) and diastolic (8462-4) Observations."""
    def fix(res: dict[str, Any]) -> Any:
        if not (res["resourceType"] == "Observation" and "85354-9" in _codes(res.get("code"))):
            return res
        out = []
        for comp in res.get("component", []):
            single = {k: v for k, v in res.items() if k not in ("component", "code", "id")}
            single["id"] = f"{res['id']}-{sorted(_codes(comp.get('code')))[0]}"
            single["code"] = comp["code"]
            for k, v in comp.items():
                if k.startswith("value"):
                    single[k] = v
            out.append(single)
        return out
    return _map_resources(bundle, fix)


_MS_STATUS = {"active": "active", "stopped": "completed", "completed": "completed", "on-hold": "on-hold",
              "cancelled": "not-taken", "entered-in-error": "entered-in-error", "draft": "intended",
              "unknown": "unknown"}


def med_statement(bundle: Bundle) -> Bundle:
    """Every MedicationRequest written as a MedicationStatement (what the patient reports taking)."""
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] != "MedicationRequest":
            return res
        ms: dict[str, Any] = {"resourceType": "MedicationStatement", "id": f"ms-{res['id']}",
                              "status": _MS_STATUS.get(res.get("status", "unknown"), "unknown"),
                              "subject": res["subject"]}
        for key in ("medicationCodeableConcept", "medicationReference", "contained", "reasonReference"):
            if key in res:
                ms[key] = res[key]
        if "authoredOn" in res:
            ms["effectiveDateTime"] = res["authoredOn"]
            ms["dateAsserted"] = res["authoredOn"]
        if "encounter" in res:
            ms["context"] = res["encounter"]
        if "dosageInstruction" in res:
            ms["dosage"] = res["dosageInstruction"]
        return ms
    return _map_resources(bundle, fix)


def med_ref_contained(bundle: Bundle) -> Bundle:
    """medicationCodeableConcept -> medicationReference '#med1' to a contained Medication."""
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] == "MedicationRequest" and "medicationCodeableConcept" in res:
            concept = res.pop("medicationCodeableConcept")
            res["contained"] = [{"resourceType": "Medication", "id": "med1", "code": concept}]
            res["medicationReference"] = {"reference": "#med1"}
        return res
    return _map_resources(bundle, fix)


def med_ref_bundled(bundle: Bundle) -> Bundle:
    """medicationCodeableConcept -> medicationReference 'Medication/<id>', the Medication a Bundle entry."""
    def fix(res: dict[str, Any]) -> Any:
        if res["resourceType"] == "MedicationRequest" and "medicationCodeableConcept" in res:
            med = {"resourceType": "Medication", "id": f"med-{res['id']}", "status": "active",
                   "code": res.pop("medicationCodeableConcept")}
            res["medicationReference"] = {"reference": f"Medication/{med['id']}"}
            return [res, med]
        return res
    return _map_resources(bundle, fix)


def med_ref_fetched(bundle: Bundle) -> Bundle:
    """As med_ref_bundled; the test leaves the Medications out of the prefetch (the service must fetch them)."""
    return med_ref_bundled(bundle)


def med_ingredient_code(bundle: Bundle) -> Bundle:
    """RxNorm product codes replaced by the ingredient's RxNorm code (display = ingredient name) where known."""
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] != "MedicationRequest":
            return res
        for coding in (res.get("medicationCodeableConcept") or {}).get("coding", []):
            ing = R.PRODUCT_INGREDIENT.get(coding.get("code", ""))
            if coding.get("system") == R.RXNORM and ing:
                coding["code"], coding["display"] = R.INGREDIENT_RXCUI[ing], ing
                res["medicationCodeableConcept"].pop("text", None)
        return res
    return _map_resources(bundle, fix)


def _latest(rs: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool], key: str) -> dict[str, Any] | None:
    hits = [r for r in rs if pred(r) and isinstance(r.get(key), str)]
    return max(hits, key=lambda r: R.parse_instant(r[key])) if hits else None


def _plus_hour(text: str) -> str:
    return _iso(R.parse_instant(text) + timedelta(hours=1))


def entered_in_error(bundle: Bundle) -> Bundle:
    """Newer, wildly different copies of the latest cholesterol, SBP and a medication, marked entered-in-error."""
    out = copy.deepcopy(bundle)
    rs = resources(out)
    added: list[dict[str, Any]] = []
    tc = _latest(rs, lambda r: r["resourceType"] == "Observation" and bool(_codes(r.get("code")) & {"2093-3"}),
                 "effectiveDateTime")
    if tc is not None:
        c = copy.deepcopy(tc)
        c.update(id=f"{tc['id']}-eie", status="entered-in-error", effectiveDateTime=_plus_hour(tc["effectiveDateTime"]))
        c["valueQuantity"]["value"] = 777
        added.append(c)
    bp = _latest(rs, lambda r: r["resourceType"] == "Observation" and "85354-9" in _codes(r.get("code")),
                 "effectiveDateTime")
    if bp is not None:
        c = copy.deepcopy(bp)
        c.update(id=f"{bp['id']}-eie", status="entered-in-error", effectiveDateTime=_plus_hour(bp["effectiveDateTime"]))
        for comp in c.get("component", []):
            if "8480-6" in _codes(comp.get("code")):
                comp["valueQuantity"]["value"] = 250
        added.append(c)
    mrs = [r for r in rs if r["resourceType"] == "MedicationRequest"]
    treated = R.on_drug_class(rs, "antihypertensive")
    product = ("617310", "atorvastatin 20 MG Oral Tablet") if treated else ("197361", "amlodipine 5 MG Oral Tablet")
    template = max(mrs, key=lambda r: r.get("authoredOn", "")) if mrs else None
    med = {"resourceType": "MedicationRequest", "id": "mr-eie", "status": "entered-in-error", "intent": "order",
           "subject": (template or {}).get("subject") or {"reference": f"Patient/{R.patient(rs)['id']}"},
           "authoredOn": _iso(_now() - timedelta(days=1)),
           "medicationCodeableConcept": {"coding": [{"system": R.RXNORM, "code": product[0], "display": product[1]}],
                                         "text": product[1]}}
    added.append(med)
    out["entry"] += [{"fullUrl": f"urn:uuid:{r['resourceType'].lower()}-{r['id']}", "resource": r} for r in added]
    return out


def missing_race(bundle: Bundle) -> Bundle:
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] == "Patient":
            res["extension"] = [e for e in res.get("extension", []) if not e.get("url", "").endswith("us-core-race")]
        return res
    return _map_resources(bundle, fix)


def deceased(bundle: Bundle) -> Bundle:
    def fix(res: dict[str, Any]) -> dict[str, Any]:
        if res["resourceType"] == "Patient":
            res.pop("deceasedBoolean", None)
            res["deceasedDateTime"] = _iso(_now() - timedelta(days=30))
        return res
    return _map_resources(bundle, fix)


def established_cvd(bundle: Bundle) -> Bundle:
    out = copy.deepcopy(bundle)
    pid = R.patient(resources(out))["id"]
    mi = {"resourceType": "Condition", "id": "cond-mi-added",
          "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                         "code": "active"}]},
          "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                             "code": "confirmed"}]},
          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                    "code": "problem-list-item"}]}],
          "code": {"coding": [{"system": R.SNOMED, "code": "22298006", "display": "Myocardial infarction"}],
                   "text": "Myocardial infarction"},
          "subject": {"reference": f"urn:uuid:{pid}"},
          "onsetDateTime": _iso(_now() - timedelta(days=730)),
          "recordedDate": _iso(_now() - timedelta(days=730))}
    out["entry"].append({"fullUrl": "urn:uuid:condition-cond-mi-added", "resource": mi})
    return out


SHAPES: dict[str, Callable[[Bundle], Bundle]] = {
    "as_is": as_is, "labs_si": labs_si, "bp_panel_55284": bp_panel_55284, "bp_standalone": bp_standalone,
    "med_statement": med_statement, "med_ref_contained": med_ref_contained, "med_ref_bundled": med_ref_bundled,
    "med_ref_fetched": med_ref_fetched, "med_ingredient_code": med_ingredient_code,
    "entered_in_error": entered_in_error, "missing_race": missing_race, "deceased": deceased,
    "established_cvd": established_cvd,
}

#: Which models read what a shape changes (other combinations would repeat `as_is` and are not posted).
AFFECTS: dict[str, tuple[str, ...]] = {
    "as_is": R.MODELS,
    "labs_si": ("ascvd-pce-10y", "prevent-base", "prevent-full", "egfr-ckd-epi-2021", "kfre-4var"),
    "bp_panel_55284": ("ascvd-pce-10y", "prevent-base", "prevent-full"),
    "bp_standalone": ("ascvd-pce-10y", "prevent-base", "prevent-full"),
    **{m: ("ascvd-pce-10y", "prevent-base", "prevent-full", "cha2ds2-vasc")
       for m in ("med_statement", "med_ref_contained", "med_ref_bundled", "med_ref_fetched", "med_ingredient_code")},
    "entered_in_error": ("ascvd-pce-10y", "prevent-base", "prevent-full", "cha2ds2-vasc"),
    "missing_race": ("ascvd-pce-10y",),
    "deceased": R.MODELS,
    "established_cvd": ("ascvd-pce-10y", "prevent-base", "prevent-full", "cha2ds2-vasc"),
}


def apply(shape: str, base: Bundle) -> Bundle:
    return SHAPES[shape](base)
