"""Post-processing for generated FHIR R4 Bundles: trimming, summarising, serialising.

Synthea writes a patient's whole life (megabytes for a 60-year-old). Tests and
benchmarks want smaller, stable files, and a catalogue (`index.json`) that says
which patient carries which condition. These helpers are pure functions over
Bundle dicts so that the generator script stays small and they can be tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

JsonDict = dict[str, Any]

#: SNOMED CT codes for the conditions the index flags.
DIABETES_CODES = frozenset({"44054006", "46635009", "73211009", "427089005"})
HYPERTENSION_CODES = frozenset({"59621000", "38341003"})
ATRIAL_FIBRILLATION_CODES = frozenset({"49436004"})
#: CKD stages 1-4, end-stage renal disease, CKD unspecified, and diabetic kidney disease.
CKD_CODES = frozenset(
    {
        "431855005",
        "431856006",
        "433144002",
        "431857002",
        "46177005",
        "709044004",
        "127013003",
    }
)
#: Tobacco smoking status (LOINC 72166-2) answers meaning "currently smokes".
CURRENT_SMOKER_CODES = frozenset(
    {"449868002", "428041000124106", "77176002", "65568007"}
)

#: LOINC codes of the observations our models read; the index counts them.
TRACKED_LOINC = {
    "total_cholesterol": "2093-3",
    "hdl_cholesterol": "2085-9",
    "bp_panel": "85354-9",
    "smoking_status": "72166-2",
    "creatinine": "2160-0",
    "egfr": "33914-3",
    "hba1c": "4548-4",
    "bmi": "39156-5",
    "body_weight": "29463-7",
    "body_height": "8302-2",
}

#: Where each resource type keeps the date that places it in the patient's history.
_DATE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Encounter": (("period", "start"),),
    "Observation": (("effectiveDateTime",), ("effectivePeriod", "start"), ("issued",)),
    "Procedure": (("performedDateTime",), ("performedPeriod", "start")),
    "Immunization": (("occurrenceDateTime",),),
    "DiagnosticReport": (("effectiveDateTime",), ("issued",)),
    "DocumentReference": (("date",),),
    "Claim": (("billablePeriod", "start"), ("created",)),
    "ExplanationOfBenefit": (("billablePeriod", "start"), ("created",)),
    "MedicationAdministration": (("effectiveDateTime",), ("effectivePeriod", "start")),
    "ImagingStudy": (("started",),),
    "SupplyDelivery": (("occurrenceDateTime",),),
    "MedicationRequest": (("authoredOn",),),
    "Condition": (("abatementDateTime",), ("onsetDateTime",)),
    "CarePlan": (("period", "end"), ("period", "start")),
    "CareTeam": (("period", "end"), ("period", "start")),
}

#: Statuses that keep a resource however old it is: current problems, medicines and plans.
_ONGOING = {
    "Condition": lambda r: _clinical_status(r) in {"active", "recurrence", "relapse"},
    "MedicationRequest": lambda r: r.get("status") in {"active", "on-hold", "draft"},
    "CarePlan": lambda r: r.get("status") in {"active", "on-hold", "draft"},
    "CareTeam": lambda r: r.get("status") in {"active", "proposed", "suspended"},
}


def _clinical_status(resource: JsonDict) -> str | None:
    codings = (resource.get("clinicalStatus") or {}).get("coding") or []
    return codings[0].get("code") if codings else None


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def resource_date(resource: JsonDict) -> str | None:
    """The ISO date (YYYY-MM-DD) that places a resource in time, or None if it has none."""
    for path in _DATE_PATHS.get(resource.get("resourceType", ""), ()):
        value = _get(resource, path)
        if isinstance(value, str) and len(value) >= 10:
            return value[:10]
    return None


def _references(node: Any) -> Iterator[str]:
    """Every `reference` string anywhere inside a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _entries(bundle: JsonDict) -> list[JsonDict]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise TypeError("Bundle.entry: expected a list of entries")
    return entries


def _rebuild(bundle: JsonDict, keep: list[JsonDict]) -> JsonDict:
    """A copy of `bundle` holding only `keep`, with Provenance targets pruned to match."""
    kept_urls = {entry["fullUrl"] for entry in keep}
    out_entries: list[JsonDict] = []
    for entry in keep:
        resource = entry["resource"]
        if resource["resourceType"] == "Provenance":
            targets = [
                t for t in resource.get("target", []) if t.get("reference") in kept_urls
            ]
            if not targets:
                continue
            entry = {**entry, "resource": {**resource, "target": targets}}
        out_entries.append(entry)
    return {**bundle, "entry": out_entries}


def _close_over_references(
    keep: list[JsonDict], all_entries: list[JsonDict]
) -> list[JsonDict]:
    """Add back every entry a kept entry references, transitively, preserving bundle order."""
    by_url = {entry["fullUrl"]: entry for entry in all_entries}
    wanted = {entry["fullUrl"] for entry in keep}
    queue = list(keep)
    while queue:
        entry = queue.pop()
        if entry["resource"]["resourceType"] == "Provenance":
            continue  # its targets are pruned to the kept set, never pulled in
        for ref in _references(entry["resource"]):
            if ref in by_url and ref not in wanted:
                wanted.add(ref)
                queue.append(by_url[ref])
    return [entry for entry in all_entries if entry["fullUrl"] in wanted]


def trim_history(bundle: JsonDict, cutoff: date) -> JsonDict:
    """Drop dated resources older than `cutoff`, keeping ongoing ones and referential integrity.

    Kept: undated resources (Patient, Organization, Practitioner, ...), anything dated on or
    after `cutoff`, active Conditions/MedicationRequests/CarePlans/CareTeams whatever their
    age, and every entry a kept entry references (so the Encounter a current diagnosis was
    made in stays). Provenance targets are narrowed to what remains.
    """
    entries = _entries(bundle)
    threshold = cutoff.isoformat()
    keep = []
    for entry in entries:
        resource = entry["resource"]
        ongoing = _ONGOING.get(resource["resourceType"])
        when = resource_date(resource)
        if (
            when is None
            or when >= threshold
            or (ongoing is not None and ongoing(resource))
        ):
            keep.append(entry)
    return _rebuild(bundle, _close_over_references(keep, entries))


def exclude_types(bundle: JsonDict, resource_types: Iterable[str]) -> JsonDict:
    """Drop every entry of the given resource types and anything that then dangles on them.

    An entry whose references point at a dropped entry keeps the reference only if the
    target is still present; otherwise the entry itself is dropped (e.g. ExplanationOfBenefit
    without its Claim), so a transaction never holds an unresolvable `urn:uuid:` reference.
    """
    drop = set(resource_types)
    entries = _entries(bundle)
    keep = [e for e in entries if e["resource"]["resourceType"] not in drop]
    while True:
        urls = {e["fullUrl"] for e in keep}
        all_urls = {e["fullUrl"] for e in entries}
        still = [
            e
            for e in keep
            if e["resource"]["resourceType"] == "Provenance"
            or all(
                ref in urls or ref not in all_urls for ref in _references(e["resource"])
            )
        ]
        if len(still) == len(keep):
            break
        keep = still
    return _rebuild(bundle, keep)


def dangling_references(bundle: JsonDict) -> list[str]:
    """`urn:uuid:` references that no entry's fullUrl resolves (should be empty)."""
    urls = {entry.get("fullUrl") for entry in _entries(bundle)}
    return sorted(
        {
            ref
            for entry in _entries(bundle)
            for ref in _references(entry["resource"])
            if ref.startswith("urn:uuid:") and ref not in urls
        }
    )


def serialise(bundle: JsonDict) -> bytes:
    """Canonical bytes for a bundle: sorted keys, compact, UTF-8, trailing newline.

    Sorting keys makes the output independent of dict construction order, so the same
    seed always gives byte-identical files.
    """
    text = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def _age(birth: str, on: date) -> int:
    born = datetime.strptime(birth[:10], "%Y-%m-%d").date()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _code(codeable: Any) -> str | None:
    codings = (codeable or {}).get("coding") or []
    return codings[0].get("code") if codings else None


def summarise(bundle: JsonDict, reference_date: date) -> JsonDict:
    """The index.json row for one bundle (without file name/size): who, what conditions, what data."""
    resources = [entry["resource"] for entry in _entries(bundle)]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise ValueError(
            f"Bundle.entry: expected exactly one Patient, found {len(patients)}"
        )
    patient = patients[0]
    active_conditions = {
        _code(r.get("code"))
        for r in resources
        if r["resourceType"] == "Condition"
        and _clinical_status(r) in {"active", "recurrence", "relapse"}
    }
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    counts = {name: 0 for name in TRACKED_LOINC}
    for obs in observations:
        code = _code(obs.get("code"))
        for name, loinc in TRACKED_LOINC.items():
            if code == loinc:
                counts[name] += 1
    smoking = sorted(
        (
            o
            for o in observations
            if _code(o.get("code")) == TRACKED_LOINC["smoking_status"]
        ),
        key=lambda o: o.get("effectiveDateTime", ""),
    )
    latest_smoking = _code(smoking[-1].get("valueCodeableConcept")) if smoking else None
    active_meds = sorted(
        {
            _code(r.get("medicationCodeableConcept")) or ""
            for r in resources
            if r["resourceType"] == "MedicationRequest" and r.get("status") == "active"
        }
    )
    return {
        "patient_id": patient["id"],
        "age": _age(patient["birthDate"], reference_date),
        "gender": patient.get("gender"),
        "has_diabetes": bool(active_conditions & DIABETES_CODES),
        "has_hypertension": bool(active_conditions & HYPERTENSION_CODES),
        "has_atrial_fibrillation": bool(active_conditions & ATRIAL_FIBRILLATION_CODES),
        "has_ckd": bool(active_conditions & CKD_CODES),
        "current_smoker": latest_smoking in CURRENT_SMOKER_CODES,
        "smoking_status": latest_smoking,
        "active_medication_rxnorm": active_meds,
        "observation_counts": counts,
        "resource_count": len(resources),
    }
