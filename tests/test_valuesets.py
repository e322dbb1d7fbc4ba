"""Shipped value sets are well formed, use canonical systems, and cover the codes synthetic patients carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mapping.valuesets import ValueSetLibrary, parse_valueset

FOLDER = Path(__file__).resolve().parent.parent / "fhir_mapping" / "valuesets"
SYSTEMS = {"http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm",
           "http://loinc.org"}
FILES = sorted(FOLDER.glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_value_set_shape(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["id"] == path.stem
    for key in ("title", "description", "source", "retrieved", "license_note", "match", "codes"):
        assert doc[key], f"{path.name}: {key} is empty"
    pairs = [(c["system"], c["code"]) for c in doc["codes"]]
    assert len(pairs) == len(set(pairs)), f"{path.name}: duplicate codes"
    assert {s for s, _ in pairs} <= SYSTEMS
    assert all(c.get("display") for c in doc["codes"])
    parse_valueset(doc, path.name)


def test_well_known_codes() -> None:
    lib = ValueSetLibrary()
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    lisinopril = lib.get("antihypertensive-rxnorm").lookup(rx, "314076")
    assert lisinopril is not None and lisinopril["class"] == "C09AA"
    assert lib.get("antihypertensive-rxnorm").lookup(rx, "197885")["class"] == "C09BA"  # lisinopril/HCTZ
    assert lib.get("statin-rxnorm").lookup(rx, "617312")["class"] == "C10AA"  # atorvastatin 10 mg
    assert lib.get("antihypertensive-rxnorm").lookup(rx, "617312") is None
    assert lib.get("diabetes-icd10cm").lookup("http://hl7.org/fhir/sid/icd-10-cm", "E11.65") is not None
    assert lib.get("diabetes-icd10cm").lookup("http://hl7.org/fhir/sid/icd-10-cm", "E16.2") is None
    smoking = lib.get("smoking-status")
    assert smoking.lookup("http://snomed.info/sct", "449868002")["class"] == "current"
    assert smoking.lookup("http://snomed.info/sct", "8517006")["class"] == "former"
    assert lib.get("stroke-tia-thromboembolism-icd10cm").lookup("http://hl7.org/fhir/sid/icd-10-cm", "G45.4") is None


def test_synthetic_patients_medications_are_classified() -> None:
    """Every antihypertensive or statin the committed synthetic patients take is in the shipped sets."""
    fixtures = Path(__file__).resolve().parent / "fixtures" / "synthea"
    lib = ValueSetLibrary()
    anti, statin = lib.get("antihypertensive-rxnorm"), lib.get("statin-rxnorm")
    keywords = ("pril", "sartan", "olol", "dipine", "thiazide", "statin", "furosemide", "spironolactone")
    seen = 0
    for path in fixtures.glob("*.json"):
        if path.name == "index.json":
            continue
        for entry in json.loads(path.read_text())["entry"]:
            res = entry["resource"]
            if res["resourceType"] != "MedicationRequest":
                continue
            for coding in res.get("medicationCodeableConcept", {}).get("coding", []):
                if any(k in coding.get("display", "").lower() for k in keywords):
                    seen += 1
                    assert anti.lookup(coding["system"], coding["code"]) or statin.lookup(coding["system"],
                                                                                          coding["code"]), coding
    assert seen > 0
