"""CHA2DS2-VASc from problem lists, orders and echo results as EHRs write them (audit 60).

Expected points come from the guidelines, never from the model:
- 2020 ESC AF guideline, Table 9: C is clinical heart failure or objective evidence of moderate to severe LV
  dysfunction; H is hypertension or antihypertensive treatment; V is angiographically significant coronary artery
  disease, previous myocardial infarction, peripheral artery disease or aortic plaque.
- 2024 ESC AF guideline (CHA2DS2-VA): V includes coronary artery disease with prior MI, angina and coronary
  revascularisation; oral anticoagulation is recommended in hypertrophic cardiomyopathy or cardiac amyloidosis
  irrespective of the score (class I).
- 2023 ACC/AHA/ACCP/HRS AF guideline: in AF with hypertrophic cardiomyopathy, anticoagulation independent of the
  CHA2DS2-VASc score (class 1); a score of 1 in a man: anticoagulation reasonable (class 2a).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

SERVICE = "cha2ds2-vasc"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
AF = "49436004"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("cha2ds2-records"))


def man(age: int, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A man with atrial fibrillation and nothing else on record: CHA2DS2-VASc 0 at 60."""
    return [F.patient("p1", age, "male"), F.condition(AF, display="Atrial fibrillation"), *extra]


def consider(card: dict[str, Any]) -> str:
    return next((line for line in card["detail"].splitlines() if line.startswith("**Consider:**")), "")


def order(text: str, reason: tuple[str, str, str] | None = None, rxnorm: str | None = None) -> dict[str, Any]:
    """An active order of a drug written as text (or an RxNorm code), with a coded reason."""
    res = F.med_request(rxnorm or "0", display=text)
    if rxnorm is None:
        res["medicationCodeableConcept"] = {"text": text}
    if reason is not None:
        res["reasonCode"] = [{"coding": [{"system": reason[0], "code": reason[1], "display": reason[2]}]}]
    return res


HF = (ICD, "I50.22", "Chronic systolic (congestive) heart failure")


@pytest.mark.parametrize(("code", "system", "display"), [
    ("I25.10", ICD, "Atherosclerotic heart disease of native coronary artery without angina pectoris"),
    ("I25.119", ICD, "Atherosclerotic heart disease of native coronary artery with unspecified angina pectoris"),
    ("I20.9", ICD, "Angina pectoris, unspecified"),
    ("Z95.1", ICD, "Presence of aortocoronary bypass graft"),
    ("Z95.5", ICD, "Presence of coronary angioplasty implant and graft"),
    ("53741008", F.SNOMED, "Coronary arteriosclerosis"),
    ("414545008", F.SNOMED, "Ischemic heart disease"),
    ("194828000", F.SNOMED, "Angina"),
])
def test_coronary_artery_disease_is_vascular_disease(api: Any, code: str, system: str, display: str) -> None:
    """A man of 60 with AF and coronary artery disease: V, so 1, 'reasonable'. The card had said 0 and 'not
    recommended', with 'Vascular disease: No' assumed."""
    card = fire(api, SERVICE, man(60, F.condition(code, system, display=display)))
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]
    assert "Oral anticoagulation is reasonable" in consider(card), consider(card)


def test_a_coronary_revascularisation_procedure_is_vascular_disease(api: Any) -> None:
    """A completed coronary bypass (a Procedure, not a problem-list entry) is coronary artery disease: V."""
    cabg = {"resourceType": "Procedure", "id": "cabg", "status": "completed",
            "code": {"coding": [{"system": F.SNOMED, "code": "232717009", "display": "Coronary artery bypass grafting"}]},
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(2000)}
    card = fire(api, SERVICE, man(60, cabg))
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]


@pytest.mark.parametrize(("code", "value", "unit", "points"), [
    ("10230-1", 30, "%", 1), ("18043-0", 40, "%", 1), ("8806-2", 0.35, "1", 1),  # 0.35 with unit 1 is 35 %
    ("10230-1", 41, "%", 0), ("10230-1", 60, "%", 0),
])
def test_an_ejection_fraction_of_40_percent_or_less_is_lv_dysfunction(api: Any, code: str, value: float, unit: str,
                                                                      points: int) -> None:
    """C counts objective LV dysfunction (2020 ESC Table 9; Lip 2010): an echo LVEF of 40 % or less. The card had
    scored 0 with 'Heart failure / LV dysfunction: No'. 41 % and 60 % are not."""
    ef = F.quantity_obs(code, value, unit, days=200, display="Left ventricular ejection fraction")
    card = fire(api, SERVICE, man(60, ef))
    assert card["summary"].startswith(f"CHA2DS2-VASc {points} "), card["summary"]


def test_a_recovered_ejection_fraction_is_still_lv_dysfunction(api: Any) -> None:
    """An LVEF of 30 % two years ago and 55 % now: heart failure with improved EF is still heart failure
    (Universal Definition of HF, 2021), as a resolved heart failure diagnosis still scores C."""
    old = F.quantity_obs("10230-1", 30, "%", days=730)
    new = F.quantity_obs("10230-1", 55, "%", days=30)
    assert fire(api, SERVICE, man(60, old, new))["summary"].startswith("CHA2DS2-VASc 1 ")


@pytest.mark.parametrize(("code", "display"), [("I43", "Cardiomyopathy in diseases classified elsewhere"),
                                               ("I09.81", "Rheumatic heart failure")])
def test_cardiomyopathy_and_rheumatic_heart_failure_codes_are_heart_failure(api: Any, code: str, display: str) -> None:
    """These had been 'not calculated: missing Heart failure' (their words name it, their codes were not read)."""
    card = fire(api, SERVICE, man(60, F.condition(code, ICD, display=display)))
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]


def test_ischaemic_cardiomyopathy_is_lv_dysfunction_and_coronary_disease(api: Any) -> None:
    """I25.5 ischaemic cardiomyopathy: LV dysfunction (C) from coronary artery disease (V): 2."""
    card = fire(api, SERVICE, man(60, F.condition("I25.5", ICD, display="Ischemic cardiomyopathy")))
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


@pytest.mark.parametrize("drug", ["metoprolol succinate 50 mg ER tablet", "spironolactone 25 mg tablet",
                                  "eplerenone 25 mg tablet", "furosemide 40 mg tablet", "lisinopril 10 mg tablet",
                                  "carvedilol 12.5 mg tablet"])
def test_a_heart_failure_drug_given_for_heart_failure_is_not_hypertension(api: Any, drug: str) -> None:
    """A man of 60 with AF and heart failure, on a heart failure drug ordered for it: C only, 1. The card had said 2
    ('Hypertension: Yes — metoprolol …') and 'recommended'. The same drug ordered for hypertension counts H."""
    card = fire(api, SERVICE, man(60, F.condition(*HF[1::-1], display=HF[2]), order(drug, HF)))
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]
    for_bp = fire(api, SERVICE, man(60, F.condition(*HF[1::-1], display=HF[2]),
                                    order(drug, (ICD, "I10", "Essential (primary) hypertension"))))
    assert for_bp["summary"].startswith("CHA2DS2-VASc 2 "), for_bp["summary"]


def test_sacubitril_valsartan_is_heart_failure_treatment_not_blood_pressure_treatment(api: Any) -> None:
    """Entresto is licensed for heart failure only (FDA label): with no reason given it is not hypertension either,
    and the card names it as not counted."""
    entresto = order("sacubitril 49 MG / valsartan 51 MG Oral Tablet [Entresto]", rxnorm="1656340")
    card = fire(api, SERVICE, man(60, F.condition(*HF[1::-1], display=HF[2]), entresto))
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]


@pytest.mark.parametrize(("code", "system", "display"), [
    ("I42.1", ICD, "Obstructive hypertrophic cardiomyopathy"),
    ("233873004", F.SNOMED, "Hypertrophic cardiomyopathy"),
    ("E85.82", ICD, "Wild-type transthyretin-related (ATTR) amyloidosis"),
])
def test_hypertrophic_cardiomyopathy_or_cardiac_amyloidosis_calls_for_anticoagulation_whatever_the_score(
        api: Any, code: str, system: str, display: str) -> None:
    """A man of 50 with AF and hypertrophic cardiomyopathy (C: a cardiomyopathy) scores 1, 'reasonable'; with
    cardiac amyloidosis alone, 0, 'not recommended'. The guidelines recommend anticoagulation whatever the score."""
    card = fire(api, SERVICE, man(50, F.condition(code, system, display=display)))
    line = consider(card)
    assert "oral anticoagulation is recommended whatever the score" in line, line
    assert display in line, line
    assert "not recommended" not in line and "reasonable" not in line, line


def test_on_an_anticoagulant_with_hypertrophic_cardiomyopathy_the_card_does_not_question_it(api: Any) -> None:
    """At a low score the card asks what an anticoagulant is for; with hypertrophic cardiomyopathy it is for the AF."""
    apixaban = order("apixaban 5 MG Oral Tablet", rxnorm="1364445")
    card = fire(api, SERVICE, man(50, F.condition("233873004", F.SNOMED, display="Hypertrophic cardiomyopathy"),
                                  apixaban))
    line = consider(card)
    assert line.startswith("**Consider:** On an anticoagulant"), line
    assert "recommended whatever the score" in line and "check what it is for" not in line, line


def test_the_anticoagulation_advice_for_hypertrophic_cardiomyopathy_fits_the_card_budget(api: Any) -> None:
    """The longest of the new cards (HCM with an anticoagulant at a score of 1) stays within the sidebar budget."""
    from test_card_budget import MAX_VISIBLE, visible_text

    apixaban = order("apixaban 5 MG Oral Tablet", rxnorm="1364445")
    hcm = F.condition("I42.1", ICD, display="Obstructive hypertrophic cardiomyopathy")
    for record in (man(50, hcm), man(50, hcm, apixaban), man(50, F.condition("E85.82", ICD, display="Wild-type "
                                                                             "transthyretin-related (ATTR) amyloidosis"))):
        card = fire(api, SERVICE, record)
        assert len(visible_text(card["detail"])) <= MAX_VISIBLE, card["detail"]


@pytest.mark.parametrize(("comparator", "value", "scored"), [("<", 30, "1"), ("<=", 40, "1"), (">", 45, "0"),
                                                              (">=", 40, None)])
def test_an_ejection_fraction_written_as_a_bound_counts_when_every_value_it_allows_does(
        api: Any, comparator: str, value: float, scored: str | None) -> None:
    """'<30 %' and '<=40 %' are 40 % or less whatever the value, '>45 %' never is; '>=40 %' may be 40 or 60, so it
    decides nothing: with nothing else on record the item is not known and the card gives no number."""
    ef = F.quantity_obs("10230-1", value, "%", days=100)
    ef["valueQuantity"]["comparator"] = comparator
    card = fire(api, SERVICE, man(60, ef))
    if scored is None:
        assert "not calculated" in card["summary"] and "Heart failure" in card["summary"], card["summary"]
    else:
        assert card["summary"].startswith(f"CHA2DS2-VASc {scored} "), card["summary"]


def test_an_ejection_fraction_written_as_a_fraction_in_percent_is_not_read_as_0_35_percent(api: Any) -> None:
    """0.35 sent with unit '%' is a fraction written in the wrong unit, not an ejection fraction of 0.35 %: it is
    outside 5-90 %, unusable, and does not make LV dysfunction (nor '<0.5 %', a bound at the same mistake)."""
    ef = F.quantity_obs("10230-1", 0.35, "%", days=100)
    card = fire(api, SERVICE, man(60, ef))
    assert "not calculated" in card["summary"], card["summary"]
    assert "outside the usable range 5–90 %" in card["detail"], card["detail"]
    bound = F.quantity_obs("10230-1", 0.5, "%", days=100)
    bound["valueQuantity"]["comparator"] = "<"
    assert "not calculated" in fire(api, SERVICE, man(60, bound))["summary"]
