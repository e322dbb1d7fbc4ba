"""A drug class remembers its answers: the same description of a drug gets the same answer, without rescanning.

Remembered answers must equal a fresh recognition for every shipped class over the descriptions real records give
(code at any term type, display, text, brand, ingredient on a Medication, excluded forms, unknown drugs), must not
confuse two descriptions that differ only in a name, and the memory stays bounded.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import fhir_mapping.medications as meds
from fhir_mapping.medications import RXNORM, DosageRoute, MedicationView, StatedReason
from fhir_mapping.valuesets import ValueSetLibrary

CLASSES = ("antihypertensive", "statin", "antidiabetic", "anticoagulant")
CODES = ["197361", "316049", "617312", "860975", "855332", "999999", "308135"]
NAMES = ["", "amlodipine 5 MG Oral Tablet", "Norvasc", "atorvastatin 20 MG", "metformin", "Lipitor",
         "hydrocortisone 1 % Topical Cream", "lisinopril ophthalmic solution", "warfarin sodium 5 MG", "vitamin D3"]


def views() -> list[MedicationView]:
    out = []
    for code, name, text in itertools.product(CODES + [None], NAMES, ["", "Eliquis", "simvastatin"]):
        view = MedicationView()
        if code is not None:
            view.codings.append((RXNORM, code, name or None))
        elif name:
            view.texts.append(name)
        if text:
            view.texts.append(text)
        out.append(view)
    ingredient = MedicationView(ingredient_codings=[(RXNORM, "17767", "amlodipine")])
    return [*out, ingredient]


@pytest.mark.parametrize("name", CLASSES)
def test_remembered_answers_equal_fresh_recognition(name: str) -> None:
    drug_class = ValueSetLibrary().drug_class(name)
    for view in views():
        first = drug_class.recognise(view)
        again = drug_class.recognise(view)
        assert first == drug_class._recognise(view) == again


def test_a_repeated_description_is_not_scanned_again(monkeypatch: pytest.MonkeyPatch) -> None:
    drug_class = ValueSetLibrary().drug_class("antihypertensive")
    scans: list[Any] = []
    real = drug_class._recognise
    monkeypatch.setattr(drug_class, "_recognise", lambda view: scans.append(view) or real(view))
    amlodipine = MedicationView(codings=[(RXNORM, "197361", "amlodipine 5 MG Oral Tablet")])
    topical = MedicationView(codings=[(RXNORM, "197361", "amlodipine 5 MG Topical Cream")])  # only the name differs
    for _ in range(5):
        assert drug_class.recognise(amlodipine) is not None
    assert len(scans) == 1
    assert drug_class.recognise(MedicationView(codings=[(RXNORM, "197361", "amlodipine 5 MG Oral Tablet")])) \
        is not None
    assert len(scans) == 1  # an equal description from another record: remembered
    drug_class.recognise(topical)
    assert len(scans) == 2  # a different name is a different description


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meds, "RECOGNITION_MEMO_SIZE", 10)
    drug_class = ValueSetLibrary().drug_class("statin")
    for i in range(35):
        drug_class.recognise(MedicationView(texts=[f"unknown drug {i}"]))
        assert len(drug_class._answers) <= 10
    assert drug_class.recognise(MedicationView(texts=["atorvastatin 40 MG"])) is not None


def test_answers_differ_when_only_the_route_form_or_reason_differs() -> None:
    """The memory's key holds the dosage routes, the Medication's form and the stated reasons: timolol by mouth and
    timolol to the eye, spironolactone for hypertension and for acne, must not share an answer."""
    cls = ValueSetLibrary([]).drug_class("antihypertensive")
    oral = MedicationView(codings=[(RXNORM, "10600", "timolol")], routes=[DosageRoute(route_names=("Oral route",))])
    eye = MedicationView(codings=[(RXNORM, "10600", "timolol")], routes=[DosageRoute(route_codes=("54485002",))])
    drops = MedicationView(codings=[(RXNORM, "10600", "timolol")], forms=["Eye drops"])
    assert cls.recognise(oral) is not None and cls.recognise(oral).counted
    assert cls.recognise(eye) is None and cls.recognise(drops) is None
    spiro = [(RXNORM, "0", "spironolactone 50 mg tablet")]
    acne = MedicationView(codings=spiro, reasons=[StatedReason((("http://snomed.info/sct", "11381005", "Acne"),))])
    htn = MedicationView(codings=spiro, reasons=[
        StatedReason((("http://hl7.org/fhir/sid/icd-10-cm", "I10", "Hypertension"),))])
    assert cls.recognise(htn).counted
    assert not cls.recognise(acne).counted and cls.recognise(acne).not_counted_reason.startswith("prescribed for Acne")
    # the same reasons in words alone
    in_words = MedicationView(codings=spiro, reasons=[StatedReason((), ("for acne",))])
    htn_words = MedicationView(codings=spiro, reasons=[StatedReason((), ("acne; also HTN",))])
    assert not cls.recognise(in_words).counted and cls.recognise(htn_words).counted


def test_a_class_naming_a_missing_other_uses_set_is_refused() -> None:
    doc = {"id": "x", "ingredients": [{"name": "amlodipine", "atc": "C08CA01"}],
           "other_uses": {"valuesets": ["no-such-set"]}}
    with pytest.raises(meds.DrugClassError, match="other_uses value set 'no-such-set' not found"):
        meds.parse_drug_class(doc, "x.yaml", {}, {})


@pytest.mark.parametrize(("limited", "message"), [
    ({"use": "x", "groups": ["no such group"], "codes": []}, "names 'no such group'"),
    ({"use": "x", "ingredients": ["no such drug"], "codes": []}, "names 'no such drug'"),
    ({"use": "x", "groups": ["calcium channel blocker"], "codes": ["I48"]}, "codes are written 'system|code'"),
])
def test_a_limited_other_use_that_names_what_the_class_lacks_is_refused(limited: dict[str, Any], message: str) -> None:
    doc = {"id": "x", "ingredients": [{"name": "amlodipine", "atc": "C08CA01", "group": "calcium channel blocker"}],
           "other_uses": {"limited": [limited]}}
    with pytest.raises(meds.DrugClassError, match=message):
        meds.parse_drug_class(doc, "x.yaml", {}, {})
