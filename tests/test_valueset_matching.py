"""Which resources a value-set source selects, checked against a plain reading of the record and the set's file.

The mapper looks each distinct code of the record up once (prefix sets) or intersects codes (exact sets), and takes
resources from its index; the plain reading below scans every resource and every coding, in record order, reading
the value set's JSON file itself. Both must select the same resources in the same order, for records with repeated,
odd and malformed codings and for medications named only by medicationReference.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mapping.index import ResourceIndex, iter_resources
from fhir_mapping.mapper import _Context
from fhir_mapping.spec import Source
from fhir_mapping.units import default_registry
from fhir_mapping.validation import ValidationCache
from fhir_mapping.valuesets import ValueSetLibrary

ROOT = Path(__file__).resolve().parent.parent
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
WHO_ICD = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AT = datetime(2026, 6, 1, tzinfo=UTC)
DIABETES = json.loads((ROOT / "fhir_mapping" / "valuesets" / "diabetes-icd10cm.json").read_text())
# a prefix set over RxNorm codes and an exact one, written here, for the medicationReference path
RX_PREFIX = {"id": "rx-prefix-test", "title": "t", "match": "prefix",
             "codes": [{"system": RXNORM, "code": "1970"}, {"system": RXNORM, "code": "3160"}]}
RX_EXACT = {"id": "rx-exact-test", "title": "t",
            "codes": [{"system": RXNORM, "code": "197361"}, {"system": RXNORM, "code": "316049"}]}


def plain_match(doc: dict[str, Any], system: Any, code: Any) -> bool:
    """ICD-10 codes (CM and WHO) are one code with or without the dot, in any case; other codes as written."""
    if not isinstance(system, str) or not isinstance(code, str) or not system or not code:
        return False

    def written(c: str) -> str:
        return c.replace(".", "").replace(" ", "").upper() if system in (ICD, WHO_ICD) else c

    for entry in doc["codes"]:
        if entry["system"] != system:
            continue
        if written(code).startswith(written(entry["code"])) if doc.get("match") == "prefix" \
                else written(code) == written(entry["code"]):
            return True
    return False


def plain_selection(record: list[dict[str, Any]], rtype: str, doc: dict[str, Any]) -> list[str]:
    """Ids of the resources of `rtype` with a coding in the set, in record order, first of each id only."""
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in record}
    out: list[str] = []
    seen: set[str] = set()
    for res in record:
        if res["resourceType"] != rtype or res["id"] in seen:
            continue
        seen.add(res["id"])
        concept = res.get("code")
        if rtype.startswith("Medication"):
            concept = res.get("medicationCodeableConcept")
            if concept is None and isinstance(res.get("medicationReference"), dict):
                concept = by_ref.get(res["medicationReference"].get("reference"), {}).get("code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if isinstance(codings, list) and any(isinstance(c, dict) and plain_match(doc, c.get("system"), c.get("code"))
                                             for c in codings):
            out.append(res["id"])
    return out


def selected(record: list[dict[str, Any]], source: Source, lib: ValueSetLibrary) -> list[str]:
    index = ResourceIndex(iter_resources({"resourceType": "Bundle", "entry": [{"resource": r} for r in record]}))
    ctx = _Context(index, AT, lib, default_registry(), ValidationCache(), "p1")
    return [res["id"] for res in ctx._matching(source)]


ICD_CODES = st.sampled_from(["E11.9", "E11", "E1165", "E10.65", "E13.9", "E08", "I10", "E78.5", "E1", "e11.9",
                             "", "J45.909", "E119", "E 11.9", "E.11", "E14.9", "E12"])
CODING = st.one_of(
    st.builds(lambda c: {"system": ICD, "code": c}, ICD_CODES),
    st.builds(lambda c: {"system": WHO_ICD, "code": c}, ICD_CODES),
    st.builds(lambda c: {"system": SNOMED, "code": c}, st.sampled_from(["44054006", "E11.9", "38341003"])),
    st.builds(lambda c: {"system": ICD, "code": c}, st.sampled_from([11.9, None, ["E11"]])),  # malformed
    st.just({"code": "E11.9"}),  # no system
    st.just("E11.9"),  # not an object
)
CONCEPT = st.one_of(st.builds(lambda cs: {"coding": cs}, st.lists(CODING, max_size=3)),
                    st.just({"text": "diabetes"}), st.just(None), st.just({"coding": "E11.9"}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 12), CONCEPT), max_size=25))
def test_a_prefix_set_selects_what_a_plain_scan_selects(items: list[tuple[int, Any]]) -> None:
    record: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1"}]
    for rid, concept in items:  # repeated ids: the first copy stands, as in the index
        res: dict[str, Any] = {"resourceType": "Condition", "id": f"c{rid}", "subject": {"reference": "Patient/p1"}}
        if concept is not None:
            res["code"] = concept
        record.append(res)
    got = selected(record, Source(resource="Condition", valueset="diabetes-icd10cm"), ValueSetLibrary())
    assert got == plain_selection(record, "Condition", DIABETES)


RX_CODES = st.sampled_from(["197361", "1970", "316049", "3160", "308135", "19736", "999"])
MEDICATION = st.one_of(
    st.builds(lambda c: ("concept", c), RX_CODES),
    st.builds(lambda c: ("reference", c), RX_CODES),  # only by medicationReference to a Medication in the record
    st.just(("missing", "")),  # medicationReference to a Medication that is not in the record
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meds=st.lists(MEDICATION, max_size=15), doc=st.sampled_from([RX_PREFIX, RX_EXACT]))
def test_medications_named_by_reference_are_matched_through_their_medication(
        meds: list[tuple[str, str]], doc: dict[str, Any], tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("valuesets")
    (folder / f"{doc['id']}.json").write_text(json.dumps(doc))
    record: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1"}]
    for i, (how, code) in enumerate(meds):
        req: dict[str, Any] = {"resourceType": "MedicationRequest", "id": f"m{i}", "status": "active",
                               "intent": "order", "subject": {"reference": "Patient/p1"}}
        if how == "concept":
            req["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": code}]}
        else:
            req["medicationReference"] = {"reference": f"Medication/med{i}"}
            if how == "reference":
                record.append({"resourceType": "Medication", "id": f"med{i}",
                               "code": {"coding": [{"system": RXNORM, "code": code}]}})
        record.append(req)
    got = selected(record, Source(resource="MedicationRequest", valueset=doc["id"]), ValueSetLibrary([folder]))
    expected = plain_selection(record, "MedicationRequest", doc)
    if doc.get("match") == "prefix":
        assert got == expected  # record order
    else:
        assert sorted(got) == sorted(expected)  # exact sets: by code, then record order


def test_each_distinct_code_of_the_record_is_looked_up_once() -> None:
    lib = ValueSetLibrary()
    vs = lib.get("diabetes-icd10cm")
    record: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1"}]
    for i in range(200):  # years of encounter diagnoses: two codes, repeated
        code = "E11.9" if i % 2 else "I10"
        record.append({"resourceType": "Condition", "id": f"c{i}", "code": {"coding": [{"system": ICD, "code": code}]}})
    calls: list[tuple[str, str]] = []
    real = vs.lookup

    def counting(system: str | None, code: str | None) -> Any:
        calls.append((str(system), str(code)))
        return real(system, code)

    vs.lookup = counting  # type: ignore[method-assign]
    got = selected(record, Source(resource="Condition", valueset="diabetes-icd10cm"), lib)
    assert got == [f"c{i}" for i in range(1, 200, 2)]
    assert sorted(calls) == [(ICD, "E11.9"), (ICD, "I10")]
