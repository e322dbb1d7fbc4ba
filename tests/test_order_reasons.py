"""An order's stated reason and a combination pill, as prescribers write them (the twenty-first audit, 2026-12-07).

A reason that speaks of preventing a disease, of a relative's disease, or denies it, is not the patient's disease; a
prior MI written as "post-MI" or "secondary prevention" is; a reason given by reasonReference (contained, or by its
display) is read like a reasonCode; a combination pill keeps its blood-pressure count unless every ingredient has the
other use; rate control is written many ways; an undated height leaves a computed BMI undated. Expected scores are
counted by hand from Lip 2010, risks from the PCE and PREVENT reference implementations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app, risk
from inference.graph_builder import load_module
from test_clinical_truth import AF_MAN_60, MALE_55, ROOT, _KHAN_WOMAN, _reason, _text_reason, med, pce_expected

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("order-reasons"))


def cha(api: Any, order: dict[str, Any]) -> str:
    return fire(api, "cha2ds2-vasc", AF_MAN_60 + [order])["summary"]


def pce(api: Any, order: dict[str, Any]) -> dict[str, Any]:
    return fire(api, "ascvd-pce-10y", MALE_55 + [order])


def prevent(api: Any, order: dict[str, Any]) -> str:
    return fire(api, "prevent-base", _KHAN_WOMAN + [order])["summary"]



# ---- prevention reasons
@pytest.mark.parametrize(("drug", "reason"), [
    ("apixaban 5 mg tablet", "to prevent stroke"),
    ("apixaban 5 mg tablet", "stroke ppx in AF"),
    ("aspirin 81 mg tablet", "to prevent heart attack"),
    ("aspirin 81 mg tablet", "prevent MI and stroke"),
])
def test_pce_and_prevent_are_not_refused_for_a_preventive_reason(api: Any, drug: Any, reason: Any) -> None:
    order = med({"text": drug}, reasonCode=_text_reason(reason))
    assert risk(pce(api, order)) == pytest.approx(round(pce_expected(), 6), abs=1e-6), reason
    assert "%" in prevent(api, order), reason


@pytest.mark.parametrize(("drug", "reason"), [
    ("aspirin 81 mg tablet", "to prevent heart attack"),
    ("aspirin 81 mg tablet", "heart attack prevention"),
    ("aspirin 81 mg tablet", "primary prevention of myocardial infarction"),
    ("empagliflozin 10 mg tablet", "HF prevention"),
    ("empagliflozin 10 mg tablet", "T2DM, CKD - prevent heart failure"),
    ("lisinopril 10 mg tablet", "diabetic kidney disease, HF prophylaxis"),
])
def test_cha2ds2_vasc_is_not_withheld_for_a_preventive_reason(api: Any, drug: Any, reason: Any) -> None:
    order = med({"text": drug}, reasonCode=_text_reason(reason))
    h = 1 if drug.startswith("lisinopril") else 0
    assert cha(api, order).startswith(f"CHA2DS2-VASc {h}"), reason


@pytest.mark.parametrize("reason", ["HF prevention", "T2DM, CKD - prevent heart failure"])
def test_prevent_is_not_refused_for_heart_failure_prevention(api: Any, reason: Any) -> None:
    order = med({"text": "empagliflozin 10 mg tablet"}, reasonCode=_text_reason(reason))
    assert "%" in prevent(api, order), reason



# ---- family negation reasons
@pytest.mark.parametrize("reason", ["father had heart attack at 50", "mother had stroke at 60", "brother with CAD",
                                    "hyperlipidemia, CAD equivalent (DM)"])
def test_a_relatives_disease_or_a_risk_equivalent_does_not_refuse_pce(api: Any, reason: Any) -> None:
    order = med({"text": "atorvastatin 20 mg tablet"}, reasonCode=_text_reason(reason))
    assert risk(pce(api, order)) == pytest.approx(round(pce_expected(), 6), abs=1e-6), reason
    assert "%" in prevent(api, order), reason


def test_a_fathers_heart_attack_is_not_the_patients_vascular_disease(api: Any) -> None:
    order = med({"text": "atorvastatin 20 mg tablet"}, reasonCode=_text_reason("father had heart attack at 50"))
    assert cha(api, order).startswith("CHA2DS2-VASc 0")


@pytest.mark.parametrize("reason", ["leg edema, no HF", "edema - not CHF"])
def test_a_reason_that_denies_heart_failure_is_not_heart_failure(api: Any, reason: Any) -> None:
    order = med({"text": "furosemide 20 mg tablet"}, reasonCode=_text_reason(reason))
    assert cha(api, order).startswith("CHA2DS2-VASc 0"), reason   # furosemide for edema: not H either
    assert "%" in prevent(api, order), reason



# ---- post mi secondary prevention
@pytest.mark.parametrize("reason", ["post-MI", "hx of MI", "history of MI"])
def test_a_beta_blocker_after_an_mi(api: Any, reason: Any) -> None:
    order = med({"text": "metoprolol tartrate 25 mg tablet"}, reasonCode=_text_reason(reason))
    assert "not calculated" in cha(api, order), reason        # was 'CHA2DS2-VASc 1' with V: No
    assert "%" not in pce(api, order)["summary"], reason


@pytest.mark.parametrize("reason", ["secondary prevention after MI", "secondary prevention - CAD s/p PCI"])
def test_a_statin_for_secondary_prevention_gets_no_primary_prevention_number(api: Any, reason: Any) -> None:
    order = med({"text": "atorvastatin 80 mg tablet"}, reasonCode=_text_reason(reason))
    assert "%" not in pce(api, order)["summary"], reason
    assert "%" not in prevent(api, order), reason



# ---- reason reference
ORDERS = [
    med({"text": "metoprolol succinate 50 mg tablet"},
        reasonReference=[{"reference": "Condition/enc-dx-9", "display": "Chronic systolic heart failure"}]),
    {**med({"text": "metoprolol succinate 50 mg tablet"}, reasonReference=[{"reference": "#c1"}]),
     "contained": [{"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                    "code": {"text": "Heart failure with reduced ejection fraction"}}]},
]


@pytest.mark.parametrize("order", ORDERS)
def test_a_referenced_heart_failure_reason_is_read(api: Any, order: Any) -> None:
    assert "not calculated" in cha(api, order)   # was 'CHA2DS2-VASc 1' (H from metoprolol, C: No)
    assert "%" not in prevent(api, order)



# ---- combination limited use
AF = _reason("I48.91", ICD, "Unspecified atrial fibrillation")


@pytest.mark.parametrize(("drug", "reason"), [
    ("atenolol-chlorthalidone 50-25 mg tablet", AF),
    ("bisoprolol fumarate 5 mg / hydrochlorothiazide 6.25 mg tablet", _text_reason("AF")),
    ("metoprolol succinate / hydrochlorothiazide 50-12.5 mg tablet", AF),
])
def test_a_beta_blocker_thiazide_pill_linked_to_af_is_hypertension_treatment(api: Any, drug: Any,
                                                                           reason: Any) -> None:
    assert cha(api, med({"text": drug}, reasonCode=reason)).startswith("CHA2DS2-VASc 1"), drug


@pytest.mark.parametrize(("drug", "reason"), [
    ("lisinopril 20 mg / hydrochlorothiazide 12.5 mg tablet", _text_reason("edema")),
    ("losartan-hydrochlorothiazide 100-25 mg tablet", _reason("R60.0", ICD, "Localized edema")),
    ("amlodipine-benazepril 10-20 mg capsule", _text_reason("pulmonary hypertension")),
])
def test_a_combination_whose_partner_has_no_such_use_is_treatment(api: Any, drug: Any, reason: Any) -> None:
    card = pce(api, med({"text": drug}, reasonCode=reason))
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6), drug



# ---- rate control forms
@pytest.mark.parametrize("reason", [
    _text_reason("Atrial fib"), _text_reason("A-flutter"), _text_reason("Aflutter w/ RVR"), _text_reason("tachycardia"),
    _reason("R00.0", ICD, "Tachycardia, unspecified"),
])
def test_metoprolol_for_af_flutter_or_tachycardia_is_not_hypertension(api: Any, reason: Any) -> None:
    order = med({"text": "metoprolol tartrate 25 mg tablet"}, reasonCode=reason)
    assert cha(api, order).startswith("CHA2DS2-VASc 0"), reason



# ---- undated height
def test_an_undated_height_does_not_date_the_bmi_by_the_weight(api: Any) -> None:
    height = F.quantity_obs("8302-2", 150, "cm")
    height.pop("effectiveDateTime")
    record = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
              F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
              F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
              F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"),
              F.quantity_obs("39156-5", 24, "kg/m2", days=60), F.quantity_obs("29463-7", 70, "kg", days=3), height]
    card = fire(api, "prevent-base", record)
    assessment = next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                      if a["resource"]["resourceType"] == "RiskAssessment")
    hf = next(p["probabilityDecimal"] for p in assessment["prediction"] if p["outcome"]["text"] == "10-year heart failure")
    ref = load_module(ROOT / "models" / "prevent-base" / "1.0.0" / "reference.py")
    inputs = {"age": 50, "female": 1, "total_cholesterol": 200, "hdl": 45, "sbp": 160, "bp_treated": 1, "statin": 0,
              "diabetes": 1, "smoker": 0, "egfr": 90, "bmi": 24}
    assert hf == pytest.approx(ref.compute(inputs)["hf_10y"], abs=1e-4)
