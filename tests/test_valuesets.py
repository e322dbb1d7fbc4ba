"""Shipped value sets are well formed, use canonical systems, and cover the codes synthetic patients carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mapping.valuesets import ValueSetLibrary, parse_valueset

FOLDER = Path(__file__).resolve().parent.parent / "fhir_mapping" / "valuesets"
SYSTEMS = {"http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm",
           "http://hl7.org/fhir/sid/icd-10", "http://loinc.org", "urn:oid:2.16.840.1.113883.6.238",
           "http://www.ama-assn.org/go/cpt", "http://www.cms.gov/Medicare/Coding/ICD10"}
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
    assert lib.get("stroke-tia-thromboembolism-icd10cm").lookup("http://hl7.org/fhir/sid/icd-10-cm", "G454") is None


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


def test_icd10_codes_match_with_or_without_their_dot_and_keep_their_written_form_in_searches() -> None:
    lib = ValueSetLibrary()
    cm, who = "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"
    for code in ("G45.9", "G459", "g45.9", " G45.9"):  # transient cerebral ischaemic attack, however it is written
        assert lib.get("stroke-tia-thromboembolism-icd10cm").lookup(cm, code) is not None, code
    assert lib.get("dialysis-transplant-icd10cm").lookup(cm, "Z992") is not None  # dependence on renal dialysis
    assert lib.get("dialysis-transplant-icd10cm").lookup(cm, "Z940") is not None  # kidney transplant status
    assert lib.get("vascular-disease-icd10cm").lookup(cm, "I252") is not None  # old myocardial infarction
    hypertensive = lib.get("hypertension-icd10cm")  # CHA2DS2-VASc's H and the T2D models' hypertension
    for code in ("I16.0", "I16.1", "I169", "I1A.0"):  # hypertensive urgency, emergency, crisis; resistant hypertension
        assert hypertensive.lookup(cm, code) is not None, code
    # WHO ICD-10 has no I16 or I1A (its hypertensive block ends at I15), so one sent under the WHO URL can only be the
    # ICD-10-CM code an EHR labelled so: hypertension all the same (a hypertensive emergency must count as H)
    assert hypertensive.lookup(who, "I16.1") is not None and hypertensive.lookup(who, "I1A0") is not None
    assert lib.get("diabetes-icd10cm").lookup(who, "E11.9") is not None  # WHO ICD-10, as the reference lists E10-E14
    assert lib.get("diabetes-icd10cm").lookup(who, "E149") is not None
    # E08 is an ICD-10-CM category only: sent under the WHO URL it can only be the ICD-10-CM code, so diabetes
    assert lib.get("diabetes-icd10cm").lookup(who, "E08.9") is not None
    assert lib.get("diabetes-icd10cm").lookup(who, "E0965") is None  # ICD-10-AM E09: intermediate hyperglycaemia
    assert lib.get("diabetes-icd10cm").lookup(cm, "E0965") is not None
    assert lib.get("established-ascvd-icd10cm").lookup(who, "Z98.61") is not None  # coronary angioplasty status
    assert lib.get("established-ascvd-icd10cm").lookup(who, "I70.41") is not None  # atherosclerosis of a vein graft
    assert lib.get("stroke-tia-thromboembolism-icd10cm").lookup(who, "Z8673") is not None  # history of TIA/infarction
    assert lib.get("stroke-tia-thromboembolism-icd10cm").lookup(who, "Z86.7") is None  # WHO: circulatory history
    exact = lib.get("copd-hypercapnic-respiratory-failure-icd10cm")
    assert exact.lookup(cm, "J9612") is not None and exact.lookup(cm, "J96.12") is not None
    assert f"{cm}|J96.12" in exact.systems_codes()  # a search asks for the code as the file writes it
    assert f"{cm}|J9612" in exact.systems_codes()  # and without its dot: a server matches the token exactly
    assert exact.lookup(who, "J96.12") is not None  # WHO ICD-10 has no five-character codes


# ICD-10-CM categories that mean something else when labelled with the WHO URL (in WHO ICD-10 itself, or in a national
# modification that systems also send under it): left off the WHO URL, with the reason.
WHO_MEANS_OTHERWISE: dict[str, str] = {
    "E09": "ICD-10-AM E09 is intermediate hyperglycaemia, not drug-induced diabetes",
}


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*icd10cm.json")) + sorted(
    (FOLDER.parent.parent / "models").glob("*/*/valuesets/*icd10cm.json")), ids=lambda p: p.stem)
def test_every_icd10cm_entry_is_read_under_the_who_url_too(path: Path) -> None:
    """EHRs send ICD-10-CM codes under http://hl7.org/fhir/sid/icd-10; a CM-only category (E08, Z86.73) cannot mean
    anything else there, so a set that reads it under the CM URL reads it under the WHO URL as well."""
    doc = json.loads(path.read_text())
    cm = {c["code"] for c in doc["codes"] if c["system"] == "http://hl7.org/fhir/sid/icd-10-cm"}
    who = {c["code"] for c in doc["codes"] if c["system"] == "http://hl7.org/fhir/sid/icd-10"}
    missing = sorted(cm - who - set(WHO_MEANS_OTHERWISE))
    assert not missing, f"{path.name}: ICD-10-CM entries not read under the WHO URL: {missing}"


@pytest.mark.parametrize(("set_id", "code", "meaning"), [
    ("diabetes-conditions", "313436004", "type 2 diabetes mellitus without complication"),
    ("atrial-fibrillation", "282825002", "paroxysmal atrial fibrillation"),
    ("atrial-fibrillation", "440028005", "permanent atrial fibrillation"),
    ("heart-failure", "42343007", "congestive heart failure"),
    ("hypertension", "1201005", "benign essential hypertension"),
    ("stroke-tia-thromboembolism", "432504007", "cerebral infarction"),
    ("stroke-tia-thromboembolism", "422504002", "ischaemic stroke"),
    ("vascular-disease", "1755008", "old myocardial infarction"),
    ("vascular-disease", "840580004", "peripheral arterial disease"),
    ("dialysis-transplant", "105502003", "dependence on renal dialysis"),
    ("established-ascvd", "443502000", "coronary atherosclerosis"),
])
def test_sets_hold_the_sub_concepts_records_are_coded_with(set_id: str, code: str, meaning: str) -> None:
    assert ValueSetLibrary().get(set_id).lookup("http://snomed.info/sct", code) is not None, meaning


@pytest.mark.parametrize(("set_id", "code", "meaning"), [
    ("hypertension", "10964002", "pulmonary hypertension is not systemic hypertension"),
    ("hypertension", "34742003", "portal hypertension"),
    ("hypertension", "398254007", "pre-eclampsia"),
    ("vascular-disease", "443502000", "coronary atherosclerosis without infarction is not CHA2DS2-VASc's V"),
    ("heart-failure", "410431009", "cardiorespiratory failure"),
    ("dialysis-transplant", "313030004", "a kidney donor is not on kidney replacement therapy"),
])
def test_members_that_mean_something_else_are_left_out(set_id: str, code: str, meaning: str) -> None:
    assert ValueSetLibrary().get(set_id).lookup("http://snomed.info/sct", code) is None, meaning
