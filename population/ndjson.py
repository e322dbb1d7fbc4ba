"""Reading a FHIR Bulk Data export: its NDJSON files, line by line, each line sorted into what the job does with it.

`$export` writes one or several files per resource type (`Observation.ndjson`, `Observation.000.ndjson`, gzip'd
`.ndjson.gz`). Every line becomes exactly one `Line` record, so nothing is dropped silently: a resource for a patient,
a Medication (not patient-scoped, joined later to the patients that reference it), a line that is skipped and counted
(blank, a type no scored model reads, dated after the as-of date), or a rejected line with its file, line number and
reason (malformed JSON, not a resource, an unknown resource type, no patient reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from population.asof import as_of_view

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
MEDICATION_USERS = ("MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense")

# Line kinds
PATIENT = "patient"  # a resource of one patient (the Patient itself or one whose subject/patient is a Patient)
MEDICATION = "medication"  # a Medication, keyed "Medication/<id>"
SKIPPED = "skipped"  # counted, not used: blank line, a type no scored model reads, dated after the as-of date
REJECTED = "rejected"  # counted and reported with file and line: the export is wrong here

# Rejection reasons (stable codes, in summary.json and rejected.ndjson)
MALFORMED = "malformed-json"
NOT_A_RESOURCE = "not-a-resource"
UNKNOWN_TYPE = "unknown-resource-type"
NO_PATIENT = "no-patient-reference"
NO_ID = "no-id"


@dataclass(frozen=True)
class Line:
    """One input line, classified. `key` is the patient id (PATIENT), "Medication/<id>" (MEDICATION), or the skip or
    rejection code; `text` is the resource as JSON (as it stood at the as-of date), `detail` a reason or a note."""

    kind: str
    key: str
    resource_type: str | None
    file: str
    line: int
    text: str | None = None
    medication_ref: str | None = None  # PATIENT lines: the Medication a medicationReference names ("Medication/x")
    detail: str | None = None


def is_ndjson(name: str) -> bool:
    return name.endswith(NDJSON_SUFFIXES)


@lru_cache(maxsize=512)
def is_fhir_type(name: str) -> bool:
    """Whether `name` is a FHIR R4 resource type (fhir.resources' R4B model classes)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(name)
    except (ValueError, KeyError, ImportError, AttributeError):
        return False
    return name[:1].isupper()


def reference_id(ref: Any, rtype: str) -> str | None:
    """The id in a reference to a resource of `rtype`: 'Patient/1', 'https://ehr/fhir/Patient/1' (a version suffix
    '/_history/2' allowed); None for any other type or shape."""
    if not isinstance(ref, str) or not ref:
        return None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
        return parts[-1]
    return None


def _subject_reference(resource: dict[str, Any]) -> Any:
    for key in ("subject", "patient"):
        holder = resource.get(key)
        if isinstance(holder, dict) and "reference" in holder:
            return holder.get("reference")
    return None


def classify(file: str, number: int, text: str, as_of: datetime | None, wanted: frozenset[str]) -> Line:
    """Sort one NDJSON line. `wanted`: the resource types the scored models read (Patient and Medication are always
    kept); a valid FHIR type outside it is skipped and counted, never rejected. `as_of`: a back-test's instant (the
    resource as it stood then, population/asof.py), or None to take the export as it is."""
    if number == 1:
        text = text.lstrip("\ufeff")
    if not text.strip():
        return Line(SKIPPED, "blank-line", None, file, number)
    try:
        resource = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Line(REJECTED, MALFORMED, None, file, number, detail=f"not valid JSON ({exc})")
    if not isinstance(resource, dict):
        return Line(REJECTED, NOT_A_RESOURCE, None, file, number,
                    detail=f"a JSON {type(resource).__name__}, not a FHIR resource object")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return Line(REJECTED, NOT_A_RESOURCE, None, file, number, detail="no resourceType")
    if not is_fhir_type(rtype):
        return Line(REJECTED, UNKNOWN_TYPE, rtype, file, number,
                    detail=f"resourceType '{rtype[:80]}' is not a FHIR R4 resource type")
    if rtype not in wanted and rtype not in ("Patient", "Medication"):
        return Line(SKIPPED, "not-read", rtype, file, number)
    rid = resource.get("id")
    if rtype in ("Patient", "Medication") and (not isinstance(rid, str) or not rid):
        return Line(REJECTED, NO_ID, rtype, file, number,
                    detail=f"a {rtype} without an id cannot be {'scored' if rtype == 'Patient' else 'referenced'}")
    if rtype == "Medication":
        return Line(MEDICATION, f"Medication/{rid}", rtype, file, number, text=text)
    if rtype == "Patient":
        patient = rid
    else:
        ref = _subject_reference(resource)
        patient = reference_id(ref, "Patient")
        if patient is None:
            said = f"'{str(ref)[:80]}' is not a Patient reference" if ref is not None else "it has none"
            return Line(REJECTED, NO_PATIENT, rtype, file, number,
                        detail=f"every {rtype} must name its patient in subject or patient as Patient/<id> ({said})")
    view, change = as_of_view(resource, as_of) if as_of is not None else (resource, None)
    if view is None:
        return Line(SKIPPED, "after-as-of", rtype, file, number)
    medication_ref = None
    if rtype in MEDICATION_USERS:
        ref_obj = view.get("medicationReference")
        medication_ref = reference_id(ref_obj.get("reference") if isinstance(ref_obj, dict) else None, "Medication")
        medication_ref = f"Medication/{medication_ref}" if medication_ref else None
    out = text if view is resource else orjson.dumps(view).decode()
    return Line(PATIENT, str(patient), rtype, file, number, text=out, medication_ref=medication_ref, detail=change)
