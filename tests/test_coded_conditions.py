"""Diagnoses coded the ways real records code them reach the score, through HTTP.

A record codes a diagnosis at the depth its clinician chose (a SNOMED CT sub-concept such as "Type II diabetes
mellitus without complication"), as ICD-10-CM with or without the dot, or as WHO ICD-10. Each case here was a card
that stated a falsehood before (an independent audit, 2026-12-06). Expected scores are counted by hand from Lip 2010
(CHA2DS2-VASc: C, H, D, V and Sc one point each, A2 and S2 two), or come from the published equations.
"""

from __future__ import annotations

import re

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app, risk, templates
from inference.graph_builder import load_module

ROOT = Path(__file__).resolve().parent.parent
CM = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
PCE_REF = load_module(ROOT / "models" / "ascvd-pce-10y" / "1.0.0" / "reference.py")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("coded-conditions"))


MAN_60_WITH_AF = [F.patient("p1", 60, "male"), F.condition("49436004", display="Atrial fibrillation")]


@pytest.mark.parametrize(("condition", "points", "why"), [
    (F.condition("432504007", display="Cerebral infarction"), 2, "prior stroke: S2"),
    (F.condition("432504007", display="Cerebral infarction", clinical="resolved"), 2, "a past stroke still counts"),
    (F.condition("422504002", display="Ischemic stroke"), 2, "S2"),
    (F.condition("G459", CM, display="Transient cerebral ischemic attack, unspecified"), 2, "TIA without its dot"),
    (F.condition("G45.9", WHO, display="Transient cerebral ischaemic attack, unspecified"), 2, "WHO ICD-10 TIA"),
    (F.condition("42343007", display="Congestive heart failure"), 1, "C"),
    (F.condition("1201005", display="Benign essential hypertension"), 1, "H"),
    (F.condition("313436004", display="Type II diabetes mellitus without complication"), 1, "D"),
    (F.condition("1755008", display="Old myocardial infarction"), 1, "V: prior MI"),
    (F.condition("840580004", display="Peripheral arterial disease"), 1, "V: PAD"),
    (F.condition("I252", CM, display="Old myocardial infarction"), 1, "V, without the dot"),
    (F.condition("I110", CM, display="Hypertensive heart disease with heart failure"), 2, "C and H"),
    (F.condition("I16.1", CM, display="Hypertensive emergency"), 1, "H: a hypertensive crisis is hypertension"),
    (F.condition("I160", CM, display="Hypertensive urgency"), 1, "H: hypertensive urgency, without the dot"),
    (F.condition("I16.9", CM, display="Hypertensive crisis, unspecified"), 1, "H"),
    (F.condition("I1A.0", CM, display="Resistant hypertension"), 1, "H: resistant hypertension"),
    (F.condition("I16.1", WHO, display="Hypertensive emergency"), 1, "H: an ICD-10-CM code sent as WHO ICD-10"),
    (F.condition("E08.65", WHO, display="Diabetes due to underlying condition with hyperglycemia"), 1,
     "D: an ICD-10-CM-only category sent as WHO ICD-10"),
    (F.condition("Z86.73", WHO, display="Personal history of TIA and cerebral infarction"), 2,
     "S2: an ICD-10-CM-only code sent as WHO ICD-10"),
    (F.condition("10964002", display="Progressive pulmonary hypertension"), 0, "not systemic hypertension"),
    # V as the 2020 ESC (Table 9: angiographically significant CAD) and 2024 ESC (CHA2DS2-VA: coronary artery
    # disease) guidelines define it, which the card's bands follow: wider than Lip 2010's prior MI
    (F.condition("443502000", display="Atherosclerosis of coronary artery"), 1, "coronary disease without MI: V"),
])
def test_cha2ds2_vasc_counts_each_component_however_it_is_coded(api: Any, condition: dict[str, Any], points: int,
                                                                 why: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [condition])
    assert card["summary"].startswith(f"CHA2DS2-VASc {points} "), (why, card["summary"])


@pytest.mark.parametrize("af", [
    F.condition("282825002", display="Paroxysmal atrial fibrillation"),
    F.condition("440028005", display="Permanent atrial fibrillation"),
    F.condition("426749004", display="Chronic atrial fibrillation"),
    F.condition("I48.0", WHO, display="Paroxysmal atrial fibrillation"),
])
def test_atrial_fibrillation_coded_as_a_sub_concept_is_atrial_fibrillation(api: Any, af: dict[str, Any]) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 70, "female"), af])
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]  # A (65–74) and Sc (female)


@pytest.mark.parametrize("diabetes", [
    F.condition("313436004", display="Type II diabetes mellitus without complication"),
    F.condition("E119", CM, display="Type 2 diabetes mellitus without complications"),
    F.condition("E11.9", WHO, display="Non-insulin-dependent diabetes mellitus without complications"),
])
def test_diabetes_coded_as_a_sub_concept_or_in_who_icd10_is_diabetes_for_the_pce(api: Any,
                                                                                  diabetes: dict[str, Any]) -> None:
    record = F.pce_record(gender="male", race="white") + [diabetes]  # Goff 2013 white man, 55
    card = fire(api, "ascvd-pce-10y", record)
    expected = PCE_REF.compute({"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0,
                                "smoker": 0, "diabetes": 1, "female": 0, "black": 0})["risk_10y"]
    assert risk(card) == pytest.approx(expected, abs=1e-6)
    assert "Diabetes: No" not in card["detail"]


# ---- valvular atrial fibrillation is outside CHA2DS2-VASc's population ---------------------------------------------
# A mechanical heart valve or moderate–severe mitral stenosis: anticoagulation follows valve guidance (warfarin
# whatever the score), so a score, above all "0: anticoagulation is not recommended", would state a falsehood. The man
# of 50 below scores 0 by Lip 2010 (no C, H, A, D, S, V; male) whenever the score applies.
MAN_50_WITH_AF = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation")]
NOT_FOR_VALVULAR_AF = "No CHA2DS2-VASc estimate: CHA2DS2-VASc is not for valvular AF"
VALVE = "the record shows a mechanical or unspecified prosthetic heart valve"
STENOSIS = "the record shows mitral stenosis not coded as mild"


@pytest.mark.parametrize(("finding", "shown"), [
    (F.condition("Z95.2", CM, display="Presence of prosthetic heart valve"), VALVE),
    (F.condition("Z952", CM, display="Presence of prosthetic heart valve"), VALVE),
    (F.condition("Z95.2", WHO, display="Presence of prosthetic heart valve"), VALVE),
    (F.condition("Z95.2", CM, clinical="resolved", display="History of mechanical mitral valve"), VALVE),
    (F.condition("79619009", display="Mitral valve stenosis"), STENOSIS),
    (F.condition("838449006", display="Moderate mitral valve stenosis"), STENOSIS),
    (F.condition("838450006", display="Severe mitral valve stenosis"), STENOSIS),
    (F.condition("I05.0", CM, display="Rheumatic mitral stenosis"), STENOSIS),
    (F.condition("I052", CM, display="Rheumatic mitral stenosis with insufficiency"), STENOSIS),
    (F.condition("I34.2", CM, display="Nonrheumatic mitral (valve) stenosis"), STENOSIS),
    (F.condition("I05.0", WHO, display="Mitral stenosis"), STENOSIS),
    (F.condition("787001", display="Rheumatic mitral stenosis with regurgitation"), STENOSIS),
])
def test_cha2ds2_vasc_gives_no_score_in_valvular_atrial_fibrillation(api: Any, finding: dict[str, Any],
                                                                     shown: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [finding])
    assert card["summary"] == f"{NOT_FOR_VALVULAR_AF}, and {shown}", card["summary"]
    assert "not recommended" not in card["detail"] and "score 0" not in card["detail"]
    assert "a mechanical heart valve or moderate–severe mitral stenosis" in card["detail"]
    assert "warfarin" in card["detail"] and "valve guidance" in card["detail"]
    assert not card.get("suggestions")


@pytest.mark.parametrize(("finding", "component"), [
    (F.condition("84114007", clinical="remission", display="Heart failure"), "Heart failure / LV dysfunction"),
    (F.condition("I50.22", CM, clinical="inactive", display="Chronic systolic heart failure"),
     "Heart failure / LV dysfunction"),
    (F.condition("I50.9", CM, clinical="resolved", display="Heart failure, unspecified"), "Heart failure / LV dysfunction"),
    (F.condition("I10", CM, clinical="inactive", display="Essential hypertension"), "Hypertension"),
    (F.condition("38341003", clinical="remission", display="Hypertensive disorder"), "Hypertension"),
    (F.condition("E11.9", CM, clinical="remission", display="Type 2 diabetes mellitus"), "Diabetes"),
    (F.condition("698592004", display="Asymptomatic left ventricular systolic dysfunction"),
     "Heart failure / LV dysfunction"),
])
def test_cha2ds2_vasc_counts_a_history_of_heart_failure_hypertension_or_diabetes(api: Any, finding: dict[str, Any],
                                                                                 component: str) -> None:
    """C, H and D are histories (Lip 2010), as S and V are: heart failure in remission (improved ejection fraction) is
    still heart failure. Marked inactive, in remission or resolved, they had been passed over: 'CHA2DS2-VASc 0:
    anticoagulation is not recommended' for a man of 60 who scores 1, and the default note said the problem list
    had no heart failure. A refuted diagnosis still does not count."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"), finding])
    assert card["summary"].startswith("CHA2DS2-VASc 1"), (component, card["summary"])
    assert f"- {component}: **Yes" in card["detail"], card["detail"]
    refuted = {**finding, "verificationStatus": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]}}
    assert fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"),
                                      refuted])["summary"].startswith("CHA2DS2-VASc 0")


@pytest.mark.parametrize(("code", "display", "points"), [
    ("371041009", "Embolic stroke", 2), ("413758000", "Cardioembolic stroke", 2), ("75543006", "Cerebral embolism", 2),
    ("446221000", "Heart failure with normal ejection fraction", 1),
    ("134401001", "Left ventricular systolic dysfunction", 1),  # C counts LV dysfunction (its own set)
    ("111552007", "Diabetes mellitus without complication", 1), ("4855003", "Retinopathy due to diabetes mellitus", 1),
    ("230572002", "Neuropathy due to diabetes mellitus", 1), ("426875007", "Latent autoimmune diabetes in adult", 1),
    ("11530004", "Brittle diabetes", 1), ("8801005", "Secondary diabetes mellitus", 1),
])
def test_cha2ds2_vasc_reads_common_problem_list_codes_the_expansions_missed(api: Any, code: str, display: str,
                                                                           points: int) -> None:
    """An embolic stroke (S2: 2 points), heart failure with preserved ejection fraction or LV systolic dysfunction
    (C), and diabetes coded without complication or by a complication (D) were not in the shipped SNOMED CT sets
    (VSAC's expansions did not list them, and the hierarchy is not walked): a man of 60 with AF was told 'CHA2DS2-VASc
    0: anticoagulation is not recommended' (Lip 2010)."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"),
                                      F.condition(code, display=display)])
    assert card["summary"].startswith(f"CHA2DS2-VASc {points}"), (display, card["summary"])


@pytest.mark.parametrize(("name", "sig"), [
    ("metformin hydrochloride 500 MG Oral Tablet", "500 mg OD with evening meal. Rarely a drop in blood sugar"),
    ("metformin 500 mg", "500 mg OD with meals. Repeat GTT in 6 weeks"),  # GTT: a glucose tolerance test
    ("metformin 500 mg", "500 mg BID with meals; repeat GTT in 3 months and annual eye exam"),
])
def test_metformin_is_diabetes_whatever_its_instructions_say(api: Any, name: str, sig: str) -> None:
    """'a drop in blood sugar', OD (once daily) or a glucose tolerance test (GTT) beside an eye exam had made
    metformin an eye drop: CHA2DS2-VASc 0 for a man of 60 with AF on it, who scores 1."""
    order = F.med_request("861007", display=name)
    if "Oral" not in name:
        order["medicationCodeableConcept"] = {"text": name}
    order["dosageInstruction"] = [{"text": sig}]
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"), order])
    assert card["summary"].startswith("CHA2DS2-VASc 1"), card["summary"]


def test_a_resolved_steroid_induced_diabetes_is_not_cha2ds2_vascs_d(api: Any) -> None:
    """D is diabetes treated or with fasting glucose above 125 mg/dL (ESC 2020); one that resolved when the steroid
    stopped is not it (diabetes inactive or in remission still is: test above)."""
    resolved = F.condition("190447002", clinical="resolved", display="Steroid-induced diabetes")
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"), resolved])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]


def test_prevent_does_not_call_lv_dysfunction_without_heart_failure_heart_failure(api: Any) -> None:
    """Asymptomatic LV systolic dysfunction is stage B, 'pre-heart failure' (Universal Definition of HF, 2021): PREVENT
    had refused with 'the record shows heart failure' and HF guideline advice."""
    card = fire(api, "prevent-base", _khan_profile() + [F.condition("698592004", display="Asymptomatic LV dysfunction")])
    assert card["summary"].startswith("PREVENT 10-year CVD risk 14.7%"), card["summary"]  # Khan 2024's example
    assert "the record shows heart failure" not in card["detail"]


@pytest.mark.parametrize(("code", "display"), [("371041009", "Embolic stroke"),
                                               ("446221000", "Heart failure with normal ejection fraction")])
def test_prevent_refuses_a_prior_embolic_stroke_or_hfpef(api: Any, code: str, display: str) -> None:
    """PREVENT is for people without cardiovascular disease (Khan 2024): a prior stroke or heart failure refuses."""
    card = fire(api, "prevent-base", _khan_profile() + [F.condition(code, display=display)])
    assert "%" not in card["summary"], (display, card["summary"])


def _valve_device(code: str, display: str, *, status: str | None = "active", pid: str = "p1") -> dict[str, Any]:
    """An implant as US Core Implantable Device records it: the kind in Device.type (R4 Device has no `code`), the
    patient in Device.patient, the status optional."""
    device: dict[str, Any] = {"resourceType": "Device", "id": f"dev-{code}-{status}-{pid}",
                              "type": {"coding": [{"system": F.SNOMED, "code": code, "display": display}]},
                              "patient": {"reference": f"Patient/{pid}"}}
    if status is not None:
        device["status"] = status
    return device


@pytest.mark.parametrize("device", [
    _valve_device("705991002", "Mechanical heart valve prosthesis"),
    _valve_device("705991002", "Mechanical heart valve prosthesis", status=None),
    _valve_device("705991002", "Mechanical heart valve prosthesis", status="unknown"),
    _valve_device("17107009", "Mitral valve prosthesis"),
    _valve_device("84683006", "Aortic valve prosthesis"),
])
def test_cha2ds2_vasc_reads_a_mechanical_valve_recorded_as_a_device(api: Any, device: dict[str, Any]) -> None:
    """A mechanical valve recorded only as the implant (Device.type, no Z95.2 on the problem list) had been unseen,
    and the man of 50 was told 'CHA2DS2-VASc 0: anticoagulation is not recommended', where valve guidance says
    warfarin whatever the score. A valve prosthesis that does not say its kind is counted, as Z95.2 is."""
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [device])
    assert card["summary"] == f"{NOT_FOR_VALVULAR_AF}, and {VALVE}", card["summary"]
    assert "not recommended" not in card["detail"] and "warfarin" in card["detail"]
    assert not card.get("suggestions")


@pytest.mark.parametrize(("device", "why"), [
    (_valve_device("705991002", "Mechanical heart valve prosthesis", status="inactive"), "explanted: no longer in use"),
    (_valve_device("705991002", "Mechanical heart valve prosthesis", status="entered-in-error"), "entered in error"),
    (_valve_device("705991002", "Mechanical heart valve prosthesis", pid="p2"), "another patient's implant"),
    (_valve_device("860577005", "Aortic valve bioprosthesis"), "bioprosthetic: the score applies"),
    (_valve_device("464887003", "Mitral valve clip"), "a repair device, not a valve"),
    ({**_valve_device("84683006", "Aortic valve prosthesis"), "type": {"text": "Bioprosthetic aortic valve (porcine)",
                                                                         "coding": [
        {"system": F.SNOMED, "code": "84683006", "display": "Aortic valve prosthesis"},
        {"system": F.SNOMED, "code": "860577005", "display": "Aortic valve bioprosthesis"}]}},
     "coded with its parent and as a bioprosthesis: a bioprosthesis"),
])
def test_a_device_that_is_not_a_mechanical_valve_in_use_keeps_the_score(api: Any, device: dict[str, Any],
                                                                        why: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [device])
    assert card["summary"].startswith("CHA2DS2-VASc 0 "), (why, card["summary"])


def test_a_valve_search_that_was_not_sent_is_named_on_the_card(api: Any) -> None:
    """An EHR that fills the Condition keys but not the Device one, with no fhirServer to ask: the valve check is
    answered from the problem list alone. The score stands (as before Devices were read), but the card says the
    check was incomplete, not only the details page."""
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from hook_calls import HOOK_INSTANCE

    tmpl = templates(api, "cha2ds2-vasc")
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(tmpl, MAN_50_WITH_AF, context)
    device_key = next(k for k, t in tmpl.items() if t.startswith("Device?"))
    prefetch.pop(device_key)
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    card = api.post("/cds-services/cha2ds2-vasc", json=body).json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    # said once, in the advice that names the unchecked valve, with the search it lacked
    assert "Not fully checked, so not ruled out: mechanical heart valve (or a prosthetic valve of unstated type; the " \
           "Device search could not be obtained)" in card["detail"], card["detail"]
    complete = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF)
    assert "not fully checked" not in complete["detail"]


def test_the_device_search_asks_for_the_valve_codes_by_type(api: Any) -> None:
    """R4 searches a Device by `type` (it has no `code`); a `code=` parameter would be refused or ignored."""
    device = [t for t in templates(api, "cha2ds2-vasc").values() if t.startswith("Device?")]
    assert len(device) == 1 and "&type=http://snomed.info/sct|705991002" in device[0] and "code=" not in device[0]


@pytest.mark.parametrize(("code", "display"), [
    ("313377641000119105", "Atrial fibrillation due to heart valve disorder"),
    ("280797561000119107", "Permanent atrial fibrillation due to heart valve disorder"),
    ("467643831000119105", "Paroxysmal atrial fibrillation due to heart valve disorder"),
    ("489609371000119104", "Persistent atrial fibrillation due to heart valve disorder"),
])
def test_atrial_fibrillation_coded_as_due_to_a_valve_disorder_gets_no_score(api: Any, code: str, display: str) -> None:
    """The only AF code says 'valvular': it is atrial fibrillation, and the valve lesion must be checked."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 50, "male"), F.condition(code, display=display)])
    assert card["summary"] == (f"{NOT_FOR_VALVULAR_AF}, and the atrial fibrillation is recorded as due to a heart "
                               "valve disorder"), card["summary"]
    assert "none is on the problem list" not in card["detail"]
    assert "does not name the valve lesion: check it" in card["detail"]


@pytest.mark.parametrize(("finding", "why"), [
    (None, "no valve disease: the man of 50 scores 0"),
    (F.condition("Z95.3", CM, display="Presence of xenogenic heart valve"), "bioprosthetic: the score applies"),
    (F.condition("Z95.4", CM, display="Presence of other heart-valve replacement"), "not a mechanical valve"),
    (F.condition("838448003", display="Mild mitral valve stenosis"), "mild stenosis is not valvular AF"),
    (F.condition("I05.0", CM, clinical="resolved", display="Rheumatic mitral stenosis"), "resolved after repair"),
    (F.condition("79619009", clinical="inactive", display="Mitral valve stenosis"), "inactive"),
    (F.condition("48724000", display="Mitral valve regurgitation"), "regurgitation is not valvular AF"),
    (F.condition("I34.0", CM, display="Nonrheumatic mitral (valve) insufficiency"), "regurgitation"),
    (F.condition("233911009", display="Non-rheumatic atrial fibrillation"), "non-valvular AF"),
])
def test_bioprosthetic_valves_and_mild_or_resolved_stenosis_keep_the_score(api: Any, finding: dict[str, Any] | None,
                                                                          why: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + ([finding] if finding else []))
    assert card["summary"].startswith("CHA2DS2-VASc 0 "), (why, card["summary"])


def _coded_twice(icd10: str, snomed: str, display: str) -> dict[str, Any]:
    """One problem-list entry carrying its ICD-10-CM code and its SNOMED CT code, as EHRs send them."""
    entry = F.condition(icd10, CM, display=display)
    entry["code"]["coding"].append({"system": F.SNOMED, "code": snomed, "display": display})
    return entry


@pytest.mark.parametrize("icd10", ["I34.2", "I05.0"])
def test_mild_mitral_stenosis_coded_twice_keeps_the_score(api: Any, icd10: str) -> None:
    """ICD-10-CM I34.2/I05.0 carry no severity; the same entry's SNOMED CT code says mild: the score applies (0)."""
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [_coded_twice(icd10, "838448003", "Mild mitral valve stenosis")])
    assert card["summary"].startswith("CHA2DS2-VASc 0 "), card["summary"]
    severe = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [_coded_twice(icd10, "838450006", "Severe mitral stenosis")])
    assert severe["summary"] == f"{NOT_FOR_VALVULAR_AF}, and {STENOSIS}", severe["summary"]


def test_an_entry_coded_both_mild_and_severe_is_not_read_as_mild(api: Any) -> None:
    entry = _coded_twice("I34.2", "838448003", "Mild mitral valve stenosis")
    entry["code"]["coding"].append({"system": F.SNOMED, "code": "838450006", "display": "Severe mitral valve stenosis"})
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [entry])
    assert card["summary"] == f"{NOT_FOR_VALVULAR_AF}, and {STENOSIS}", card["summary"]


def test_the_stenosis_guidance_never_says_a_severe_code_gives_no_severity(api: Any) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_50_WITH_AF + [F.condition("838450006", display="Severe mitral valve stenosis")])
    assert card["summary"] == f"{NOT_FOR_VALVULAR_AF}, and {STENOSIS}"
    assert "does not give its severity" not in card["detail"]
    assert "check its severity where the record does not give it" in card["detail"]


def test_a_resolved_atrial_fibrillation_is_not_called_absent(api: Any) -> None:
    resolved = F.condition("49436004", clinical="resolved", display="Atrial fibrillation")
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 50, "male"), resolved])
    assert card["summary"].startswith("No CHA2DS2-VASc estimate: CHA2DS2-VASc is for patients with atrial "
                                      "fibrillation, and no current atrial fibrillation is on the problem list")
    assert "none is on the problem list" not in card["summary"] + card["detail"]


KFRE_RECORD = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 12, "mL/min/{1.73_m2}"),
               F.quantity_obs("9318-7", 300, "mg/g")]


@pytest.mark.parametrize("replacement", [
    F.condition("Z992", CM, display="Dependence on renal dialysis"),
    F.condition("Z940", CM, display="Kidney transplant status"),
    F.condition("Z99.2", WHO, display="Dependence on renal dialysis"),
    F.condition("105502003", display="Dependence on renal dialysis"),
    F.condition("161665007", display="History of renal transplant", clinical="resolved"),
])
def test_kfre_gives_no_number_on_dialysis_or_after_a_kidney_transplant(api: Any,
                                                                       replacement: dict[str, Any]) -> None:
    card = fire(api, "kfre-4var", KFRE_RECORD + [replacement])
    assert "%" not in card["summary"], card["summary"]
    assert "not for patients on dialysis" in card["detail"]
    assert not card.get("suggestions")


def test_a_resolved_dialysis_entry_does_not_refuse_kfre(api: Any) -> None:
    """Dialysis can end (acute kidney injury): only the transplant counts at any status."""
    card = fire(api, "kfre-4var", KFRE_RECORD + [F.condition("105502003", clinical="resolved")])
    assert "%" in card["summary"], card["summary"]


def _khan_profile() -> list[dict[str, Any]]:
    """Khan 2024's sample profile (woman of 50): SBP 160 treated, TC 200, HDL 45, diabetes, eGFR 90, BMI 35."""
    return [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
            F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
            F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]


def test_prevent_refuses_congestive_heart_failure_coded_in_snomed(api: Any) -> None:
    card = fire(api, "prevent-base", _khan_profile() + [F.condition("42343007", display="Congestive heart failure")])
    assert "%" not in card["summary"], card["summary"]
    assert "the record shows heart failure" in card["detail"]


def loinc_smoking(answer: str, display: str) -> dict[str, Any]:
    """Smoking status answered from LOINC's own answer list (LL2201-3), as some EHRs send it instead of SNOMED CT."""
    return {"resourceType": "Observation", "id": f"smk-{answer}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": F.days_ago(30),
            "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": answer, "display": display}]}}


@pytest.mark.parametrize(("answer", "display", "smoker"), [
    ("LA18976-3", "Current every day smoker", 1),
    ("LA18977-1", "Current some day smoker", 1),
    ("LA18982-1", "Light tobacco smoker", 1),
    ("LA15920-4", "Former smoker", 0),
    ("LA18978-9", "Never smoker", 0),
])
def test_smoking_answered_with_loinc_answer_codes_is_read(api: Any, answer: str, display: str, smoker: int) -> None:
    record = [r for r in F.pce_record(gender="male", race="white") if "72166-2" not in str(r.get("code"))]
    card = fire(api, "ascvd-pce-10y", record + [loinc_smoking(answer, display)])
    expected = PCE_REF.compute({"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0,
                                "smoker": smoker, "diabetes": 0, "female": 0, "black": 0})["risk_10y"]
    assert risk(card) == pytest.approx(expected, abs=1e-6)


def test_unknown_if_ever_smoked_is_missing_not_a_non_smoker(api: Any) -> None:
    record = [r for r in F.pce_record(gender="male", race="white") if "72166-2" not in str(r.get("code"))]
    card = fire(api, "ascvd-pce-10y", record + [loinc_smoking("LA18980-5", "Unknown if ever smoked")])
    assert "%" not in card["summary"] and "Smoking" in card["summary"] + card.get("detail", "")


# ---- found by a second independent audit, after the value sets were widened --------------------------------------
@pytest.mark.parametrize(("extra", "points", "why"), [
    ([F.condition("426814001", display="Transient cerebral ischemia due to atrial fibrillation")], 2, "AF and S2"),
    ([F.condition("49436004"), F.condition("Z86.73", CM, display="Personal history of TIA")], 2, "prior TIA"),
    ([F.condition("49436004"), F.condition("Z8673", CM, display="Personal history of TIA")], 2, "without its dot"),
    ([F.condition("49436004"), F.condition("275526006", display="History of cerebrovascular accident")], 2, "S2"),
    ([F.condition("49436004"), F.condition("429993008", display="History of transient ischemic attack")], 2, "S2"),
    ([F.condition("49436004"), F.condition("5148006", display="Hypertensive heart disease with CHF")], 2, "C and H"),
    ([F.condition("49436004"), F.condition("46113002", display="Hypertensive heart failure")], 2, "C and H"),
    ([F.condition("49436004"), F.condition("314902007", display="Peripheral angiopathy due to T2DM")], 2, "D and V"),
    ([F.condition("49436004"), F.condition("127014009", display="Peripheral angiopathy due to DM")], 2, "D and V"),
])
def test_one_code_counts_every_component_it_means(api: Any, extra: list[dict[str, Any]], points: int,
                                                   why: str) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male")] + extra)
    assert card["summary"].startswith(f"CHA2DS2-VASc {points} "), (why, card["summary"])


PCE_NO_DIABETES = PCE_REF.compute({"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0,
                                   "smoker": 0, "diabetes": 0, "female": 0, "black": 0})["risk_10y"]
PCE_DIABETES = PCE_REF.compute({"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0,
                                "smoker": 0, "diabetes": 1, "female": 0, "black": 0})["risk_10y"]


@pytest.mark.parametrize("finding", [
    F.condition("81817003", display="Atherosclerosis of aorta"),
    F.condition("300920004", display="Carotid atherosclerosis"),
    F.condition("45281005", display="Atherosclerosis of renal artery"),
])
def test_subclinical_atherosclerosis_is_not_clinical_ascvd(api: Any, finding: dict[str, Any]) -> None:
    """The 2018 AHA/ACC definition: ACS, MI, angina, revascularisation, stroke or TIA, PAD; not imaging plaque."""
    card = fire(api, "ascvd-pce-10y", F.pce_record(gender="male", race="white") + [finding])
    assert risk(card) == pytest.approx(PCE_NO_DIABETES, abs=1e-6)


def procedure(code: str, display: str, days: int) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"proc-{code}", "status": "completed",
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(days),
            "code": {"coding": [{"system": F.SNOMED, "code": code, "display": display}]}}


@pytest.mark.parametrize("past", [
    procedure("233585000", "Continuous venovenous hemofiltration", 4 * 365),  # for acute kidney injury
    procedure("714749008", "Continuous renal replacement therapy", 3 * 365),
    procedure("427053002", "Extracorporeal albumin hemodialysis", 2 * 365),  # liver support
])
def test_acute_kidney_replacement_or_liver_dialysis_does_not_refuse_kfre(api: Any, past: dict[str, Any]) -> None:
    card = fire(api, "kfre-4var", KFRE_RECORD + [past])
    assert "%" in card["summary"], card["summary"]


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
def test_a_negative_creatinine_is_a_refusal_not_a_server_error(api: Any, service: str) -> None:
    record = [F.patient("p1", 66, "male"), F.quantity_obs("2160-0", -1, "mg/dL", days=2),
              F.quantity_obs("9318-7", 300, "mg/g", days=5)]
    card = fire(api, service, record)  # fire asserts HTTP 200
    assert "%" not in card["summary"], card["summary"]


def diabetes_with(**changes: Any) -> dict[str, Any]:
    res = F.condition("44054006", display="Diabetes mellitus type 2")
    for path, value in changes.items():
        holder = res
        *parents, leaf = path.split("__")
        for p in parents:
            holder = holder[int(p)] if p.isdigit() else holder[p]
        holder[leaf] = value
    return res


@pytest.mark.parametrize("diabetes", [
    diabetes_with(id="dm_1"),                                      # an underscore in the id
    diabetes_with(onsetDateTime="2015-01-01T10:00:00"),            # a time without a zone
    diabetes_with(onsetDateTime="2015-01-01T10:00:00.000+0000"),   # a zone without its colon
    diabetes_with(identifier=[{"system": "urn:x", "value": ""}]),  # an empty identifier
    diabetes_with(code__coding__0__display=""),                    # an empty display
    diabetes_with(code__text=""),
    diabetes_with(subject__display=""),
])
def test_cosmetic_faults_of_real_records_do_not_make_a_diagnosis_unreadable(api: Any,
                                                                           diabetes: dict[str, Any]) -> None:
    card = fire(api, "ascvd-pce-10y", F.pce_record(gender="male", race="white") + [diabetes])
    assert risk(card) == pytest.approx(PCE_DIABETES, abs=1e-6)


def test_a_diagnosis_coded_with_the_icd10cm_oid_is_read(api: Any) -> None:
    """Records converted from C-CDA name code systems by OID (2.16.840.1.113883.6.90 is ICD-10-CM)."""
    dm = F.condition("E11.9", "urn:oid:2.16.840.1.113883.6.90", display="Type 2 diabetes mellitus")
    card = fire(api, "ascvd-pce-10y", F.pce_record(gender="male", race="white") + [dm])
    assert risk(card) == pytest.approx(PCE_DIABETES, abs=1e-6)


def test_an_impossible_date_still_makes_a_diagnosis_unreadable(api: Any) -> None:
    card = fire(api, "ascvd-pce-10y", F.pce_record(gender="male", race="white")
                + [diabetes_with(onsetDateTime="2015-02-29")])
    assert "%" not in card["summary"] and "cannot be read" in card["detail"]


def bound_obs(code: str, value: float, unit: str, comparator: str, days: int) -> dict[str, Any]:
    res = F.quantity_obs(code, value, unit, days=days)
    res["valueQuantity"]["comparator"] = comparator
    return res


def test_a_newest_uacr_written_as_a_bound_is_not_replaced_by_an_older_value(api: Any) -> None:
    record = [F.patient("p1", 66, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}", days=20),
              bound_obs("9318-7", 3, "mg/g", "<", 20), F.quantity_obs("9318-7", 300, "mg/g", days=300)]
    card = fire(api, "kfre-4var", record)  # with the older 300 mg/g it said 7.8% (high, refer); with <3 it is ≤1%
    assert "%" not in card["summary"], card["summary"]
    assert "bound" in card["detail"]


def test_a_newest_egfr_written_as_a_bound_is_not_replaced_by_an_older_creatinine(api: Any) -> None:
    record = [F.patient("p1", 66, "male"), bound_obs("98979-8", 60, "mL/min/{1.73_m2}", ">", 5),
              F.quantity_obs("2160-0", 2.0, "mg/dL", days=200), F.quantity_obs("9318-7", 300, "mg/g", days=20)]
    card = fire(api, "kfre-4var", record)  # eGFR > 60 now; the creatinine of 200 days ago gave 36.4 and 11.5%
    assert "%" not in card["summary"], card["summary"]


def test_a_newest_add_on_written_as_a_bound_gives_no_number(api: Any) -> None:
    """UACR '<3 mg/g' was measured: neither the older 300 mg/g nor the equations without UACR (for a patient in whom it
    was not measured, Khan 2024) is this patient's; PREVENT-full gives no number, PREVENT-base still does."""
    base = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"), F.quantity_obs("2085-9", 45, "mg/dL"),
            F.bp_panel(160), F.smoking(F.NEVER_SMOKER), F.condition("44054006"),
            F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]
    assert risk(fire(api, "prevent-base", base)) > 0
    full = fire(api, "prevent-full", base + [bound_obs("9318-7", 3, "mg/g", "<", 20),
                                            F.quantity_obs("9318-7", 300, "mg/g", days=300)])
    assert full["summary"] == "PREVENT CVD risk (add-ons) not calculated: missing Urine albumin/creatinine ratio"


def test_a_saved_egfr_is_dated_at_its_creatinine_not_at_the_hook(api: Any) -> None:
    """A later reader (KFRE, PREVENT, a clinician) judges how current an eGFR is by its date: a value computed today
    from a creatinine drawn 300 days ago is a 300-day-old eGFR."""
    drawn = F.days_ago(300)
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"),
                                           F.quantity_obs("2160-0", 1.4, "mg/dL", days=300)])
    saved = next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                 if a["resource"]["resourceType"] == "Observation")
    assert saved["effectiveDateTime"][:10] == drawn[:10], (saved["effectiveDateTime"], drawn)


def test_an_add_on_passed_over_as_a_bound_is_not_called_not_recorded(api: Any) -> None:
    base = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"), F.quantity_obs("2085-9", 45, "mg/dL"),
            F.bp_panel(160), F.smoking(F.NEVER_SMOKER), F.condition("44054006"),
            F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]
    card = fire(api, "prevent-full", base + [bound_obs("9318-7", 3, "mg/g", "<", 20)])
    assert "Urine albumin/creatinine ratio: Newest result" in card["detail"]  # named, with why it is not used
    assert "value is a bound (&lt;3 mg/g), not a measurement" in card["detail"]
    not_recorded = re.compile(r"Urine albumin/creatinine ratio(, [^:;]+)?: not recorded")  # alone or with others
    assert not not_recorded.search(card["detail"]), card["detail"]
    untested = fire(api, "prevent-full", base)
    assert not_recorded.search(untested["detail"]), untested["detail"]


def test_a_cha2ds2_vasc_card_lists_every_component_that_scores(api: Any) -> None:
    """A score of 9 is checked component by component: the card lists all seven (the manifest's `inputs_shown`),
    not the three largest contributions other models show."""
    record = [F.patient("p1", 80, "female"), F.condition("49436004", display="Atrial fibrillation"),
              F.condition("42343007", display="Congestive heart failure"),
              F.condition("1201005", display="Benign essential hypertension"),
              F.condition("313436004", display="Type II diabetes mellitus without complication"),
              F.condition("432504007", display="Cerebral infarction"),
              F.condition("1755008", display="Old myocardial infarction")]
    card = fire(api, "cha2ds2-vasc", record)
    assert card["summary"].startswith("CHA2DS2-VASc 9"), card["summary"]
    lines = [x for x in card["detail"].splitlines() if x.startswith("- ")]
    for label in ("Age: **80 years**", "Sex: **Female**", "Heart failure / LV dysfunction: **Yes**",
                  "Hypertension: **Yes**", "Diabetes: **Yes**", "Prior stroke, TIA or thromboembolism: **Yes**",
                  "Vascular disease (MI, CAD, PAD, aortic plaque): **Yes**"):
        assert any(x.startswith(f"- {label}") for x in lines), (label, lines)
    assert len(lines) == 7


def test_a_birth_date_written_as_a_month_is_no_age_when_the_age_depends_on_the_day(api: Any) -> None:
    """Born 'December 1951', seen on 6 December 2026: 75 if born on the 1st to the 6th, 74 after. Lip 2010 scores 75
    as 2 points (anticoagulation recommended) and 74 as 1: the card must not state an age the record does not give.
    Outside the birth month the age is certain and the score stands."""
    today = F.NOW.date()
    month_start = today.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    patient = F.patient("p1", 75, "male")
    patient["birthDate"] = f"{today.year - 75}-{today.month:02d}"
    card = fire(api, "cha2ds2-vasc", [patient, F.condition("49436004", display="Atrial fibrillation")])
    if today < next_month - timedelta(days=1):  # the birth may be later this month: 74 or 75
        assert card["summary"] == "CHA2DS2-VASc not calculated: missing Age", card["summary"]
        assert f"recorded as '{patient['birthDate']}' only, so the age today is 74 or 75" in card["detail"]
    else:  # the last day of the month: 75 whichever day it was
        assert card["summary"].startswith("CHA2DS2-VASc 2"), card["summary"]
    earlier = (month_start - timedelta(days=1))  # a birth month already past this year: 75 whatever the day
    patient["birthDate"] = f"{earlier.year - 75}-{earlier.month:02d}"
    card = fire(api, "cha2ds2-vasc", [patient, F.condition("49436004", display="Atrial fibrillation")])
    assert card["summary"].startswith("CHA2DS2-VASc 2"), card["summary"]
    assert "- Age: **75 years**" in card["detail"]


def test_an_active_diagnosis_with_an_onset_written_hours_ahead_still_counts(api: Any) -> None:
    """Hypertension on the problem list, active, its onset written 3 h after the call (a zone written wrongly): the
    clinical status asserts it, so H counts (Lip 2010: a woman of 70 with AF and hypertension scores 3), never 'No'."""
    htn = F.condition("38341003", display="Hypertensive disorder")
    htn["onsetDateTime"] = (F.NOW + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 70, "female"), F.condition("49436004", display="AF"), htn])
    assert card["summary"].startswith("CHA2DS2-VASc 3"), card["summary"]


@pytest.mark.parametrize(("years_ago", "band"), [(60, "unknown"), (46, "40-49")])
def test_a_birth_year_alone_gives_an_age_band_only_when_both_ages_fall_in_it(api: Any, years_ago: int,
                                                                            band: str) -> None:
    """Fairness monitoring groups predictions by age band. Born in a year that makes a man 59 or 60, his band is not
    known (it had been '60-69', from the first day of the year); 45 or 46 are both '40-49'. CHA2DS2-VASc scores both
    (no age points under 65), so the prediction is recorded either way."""
    if F.NOW.date() == F.NOW.date().replace(month=12, day=31):
        pytest.skip("on 31 December a birth year alone gives one age")
    patient = F.patient("p1", years_ago, "male")
    patient["birthDate"] = str(F.NOW.date().year - years_ago)
    card = fire(api, "cha2ds2-vasc", [patient, F.condition("49436004", display="Atrial fibrillation")])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    state = api.client.app.state.cds
    assert state.recorder.flush(10)
    stored = state.store.prediction(state.store.predictions_for_card(card["uuid"])[0]["prediction_id"])
    assert stored["cohort"]["age_band"] == band


def test_the_details_page_shows_both_ages_a_birth_year_alone_leaves_open(api: Any) -> None:
    """The card said 'Age: 45 or 46 years'; the details page's inputs and its contribution bars said '46 years' (the
    number kept for the calculation), a precision the record does not have."""
    import re

    if F.NOW.date() == F.NOW.date().replace(month=12, day=31):
        pytest.skip("on 31 December a birth year alone gives one age")
    patient = F.patient("p1", 46, "male")
    patient["birthDate"] = str(F.NOW.date().year - 46)
    card = fire(api, "cha2ds2-vasc", [patient, F.condition("49436004", display="Atrial fibrillation")])
    url = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    page = re.sub(r"<[^>]+>", " ", api.client.get(url.removeprefix("http://testserver")).text)
    page = re.sub(r"\s+", " ", page)
    assert "45 or 46 years" in page
    assert not re.search(r"(?<!or )\b46 years", page), page


def test_a_birth_year_alone_is_used_when_both_ages_give_the_same_result(api: Any) -> None:
    """Born '1980', seen in December 2026: 45 or 46, and both score no age points (Lip 2010), so CHA2DS2-VASc is
    given and the card shows both ages; NEWS2 (age is only its 16-and-over check) scores a patient born in 1960. The
    PCE's risk changes with a year of age: no number there, naming both ages."""
    year = F.NOW.date().year
    patient = F.patient("p1", 46, "male")
    patient["birthDate"] = str(year - 46)
    if F.NOW.date() == F.NOW.date().replace(month=12, day=31):
        pytest.skip("on 31 December a birth year alone gives one age")
    card = fire(api, "cha2ds2-vasc", [patient, F.condition("49436004", display="Atrial fibrillation")])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    assert f"- Age: **{45} or {46} years**" in card["detail"], card["detail"]
    patient["birthDate"] = str(year - 66)
    record = [patient, F.encounter("e1"), F.vital("9279-1", 18, "/min"), F.vital("59408-5", 96, "%"),
              F.vital("8867-4", 72, "/min"), F.vital("8310-5", 36.8, "Cel"), F.bp_panel(120, days=0),
              F.coded_obs("67775-7", "248234008", hours=2)]
    assert fire(api, "news2-patient-view", record)["summary"].startswith("NEWS2 0")
    pce = fire(api, "ascvd-pce-10y", [patient, F.quantity_obs("2093-3", 213, "mg/dL"),
                                      F.quantity_obs("2085-9", 50, "mg/dL"), F.bp_panel(120),
                                      F.smoking(F.NEVER_SMOKER)])
    assert "not calculated" in pce["summary"] and "Age" in pce["summary"], pce["summary"]
    assert "so the age today is 65 or 66" in pce["detail"]


@pytest.mark.parametrize(("code", "name"), [
    ("1364447", "apixaban 5 MG Oral Tablet [Eliquis]"), ("1232088", "rivaroxaban 20 MG Oral Tablet [Xarelto]"),
    ("1037049", "dabigatran etexilate 150 MG Oral Capsule [Pradaxa]"), ("1599557", "edoxaban 60 MG Oral Tablet [Savaysa]"),
    ("855334", "warfarin sodium 5 MG Oral Tablet [Coumadin]"), ("1599538", "edoxaban")])
@pytest.mark.parametrize("kind", ["MedicationRequest", "MedicationStatement"])
def test_an_anticoagulant_recorded_by_its_branded_code_alone_is_an_anticoagulant(api: Any, code: str, name: str,
                                                                                  kind: str) -> None:
    """A man of 70 with AF and hypertension (CHA2DS2-VASc 2) on a branded oral anticoagulant recorded by its RxNorm
    code alone (SBD, or edoxaban's ingredient), with no display or text. For a patient already anticoagulated the
    2023 ACC/AHA/ACCP/HRS task is to review dose, adherence and bleeding risk, not to start one: the card had told
    the prescriber "Oral anticoagulation is recommended" as for an untreated patient, and filed the drug as "not
    recognised" under Diabetes. (The RxNorm names are those of NLM's release, here only to say which drug each is.)"""
    concept = {"coding": [{"system": F.RXNORM, "code": code}]}
    if kind == "MedicationRequest":
        drug = F.med_request(code)
        drug["medicationCodeableConcept"] = concept
    else:
        drug = {"resourceType": "MedicationStatement", "id": "ms-oac", "status": "active",
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": F.days_ago(100),
                "medicationCodeableConcept": concept}
    record = [F.patient("p1", 70, "male"), F.condition("49436004"), F.condition("38341003"), drug]
    card = fire(api, "cha2ds2-vasc", record)
    assert card["summary"].startswith("CHA2DS2-VASc 2"), card["summary"]
    assert "Already on an anticoagulant" in card["detail"], (name, card["detail"])
    assert "not recognised" not in card["detail"], card["detail"]


@pytest.mark.parametrize("gender", ["other", "unknown"])
def test_cha2ds2_vasc_for_a_gender_neither_male_nor_female_gives_the_sex_free_score_to_use(api: Any,
                                                                                          gender: str) -> None:
    """CHA2DS2-VASc counts sex as male or female. For an administrative gender of 'other' or 'unknown' the card had
    said "required data missing: Sex", asking for a sex where there may be none to record. The decision does not
    need it: the 2024 ESC guideline scores CHA2DS2-VA (no sex point), and the 2023 ACC/AHA/ACCP/HRS thresholds
    (men ≥2, women ≥3: recommended; men 1, women 2: reasonable) are CHA2DS2-VA ≥2 and 1 for both. The card gives no
    number and says how to score CHA2DS2-VA and what each result calls for; with no gender recorded at all it is
    missing data, as before; with valvular AF, or no AF, that refusal's words stand alone."""
    record = [F.patient("p1", 70, gender), F.condition("49436004"), F.condition("38341003")]
    card = fire(api, "cha2ds2-vasc", record)
    assert card["summary"].startswith("No CHA2DS2-VASc estimate"), card["summary"]
    assert "administrative gender recorded is neither" in card["detail"], card["detail"]
    assert "Score CHA2DS2-VA, which leaves out sex" in card["detail"], card["detail"]
    assert "recommended at 2 or more and reasonable at 1" in card["detail"]
    assert "required data missing" not in card["detail"] and not card.get("suggestions"), card

    no_gender = F.patient("p1", 70, "female")
    del no_gender["gender"]
    missing = fire(api, "cha2ds2-vasc", [no_gender] + record[1:])
    assert "required data missing" in missing["detail"] and "Sex" in missing["detail"], missing["detail"]

    valve = F.condition("Z95.2", "http://hl7.org/fhir/sid/icd-10-cm", display="Presence of prosthetic heart valve")
    valvular = fire(api, "cha2ds2-vasc", record + [valve])
    assert "valve" in valvular["detail"] and "Score CHA2DS2-VA" not in valvular["detail"], valvular["detail"]
    no_af = fire(api, "cha2ds2-vasc", [record[0], record[2]])
    assert "atrial fibrillation" in no_af["detail"] and "Score CHA2DS2-VA" not in no_af["detail"], no_af["detail"]


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base", "t2d-onset-5y"])
def test_a_newer_blood_pressure_written_as_text_or_in_snomed_ct_is_not_passed_over(api: Any, service: str) -> None:
    """A blood pressure panel charted last week as '168/96' (text, as an HL7 v2 feed sends it), after 120/80 ten days
    ago: the newest pressure is on record and cannot be read, so no estimate rests on the older one, and the card
    names the panel. The same pressure with its systolic coded in SNOMED CT (271649006) is read: 168 mmHg."""
    record = F.pce_record(age=55, gender="female", sbp=120)
    if service != "ascvd-pce-10y":
        record += [F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}", days=30), F.quantity_obs("39156-5", 28, "kg/m2"),
                   F.quantity_obs("4548-4", 5.9, "%", days=30)]
    text = F.bp_panel(0, days=7)
    del text["component"]
    text["valueString"] = "168/96"
    card = fire(api, service, record + [text])
    assert "not calculated" in card["summary"] and "Systolic blood pressure" in card["summary"], card["summary"]
    assert "the panel's result is text ('168/96')" in card["detail"], card["detail"]
    snomed = F.bp_panel(168, 96, days=7)
    snomed["component"][0]["code"] = {"coding": [{"system": F.SNOMED, "code": "271649006"}]}
    card = fire(api, service, record + [snomed])
    assert "**168 mmHg**" in card["detail"], card["detail"]


@pytest.mark.parametrize(("extra", "points", "why"), [
    ([F.quantity_obs("1558-6", 140, "mg/dL", days=60)], 1, "a fasting glucose of 140 mg/dL: D"),
    ([F.quantity_obs("14771-0", 7.4, "mmol/L", days=60)], 1, "7.4 mmol/L is above 7 mmol/L: D"),
    ([F.quantity_obs("1558-6", 125, "mg/dL", days=60)], 0, "125 mg/dL is not above 125"),
    ([F.quantity_obs("1558-6", 160, "mg/dL", days=900)], 0, "older than the 2-year window"),
    ([F.quantity_obs("2345-7", 190, "mg/dL", days=60)], 0, "a random glucose is not a fasting one"),
    # a diagnosis stands beside a newer normal fasting glucose (control is not cure), and beside a newer one
    # whose value cannot be read
    ([F.condition("44054006", display="Diabetes mellitus type 2"), F.quantity_obs("1558-6", 92, "mg/dL", days=5)], 1,
     "a diagnosis and a newer normal glucose"),
    ([F.condition("44054006", display="Diabetes mellitus type 2"),
      F.quantity_obs("1558-6", 92, "", days=5, ucum=False)], 1, "a diagnosis and a newer glucose without a unit"),
], ids=["fpg-140", "fpg-mmol", "fpg-125", "fpg-old", "random-glucose", "dx-and-normal-fpg", "dx-and-unreadable-fpg"])
def test_cha2ds2_vasc_scores_diabetes_from_a_fasting_glucose_above_125(api: Any, extra: list[dict[str, Any]],
                                                                        points: int, why: str) -> None:
    """2020 ESC AF guideline, Table 9 (and CHA2DS2-VA, 2024 ESC): D is treatment with oral hypoglycaemic drugs
    and/or insulin, or a fasting blood glucose above 125 mg/dL (7 mmol/L). A man of 60 with AF and an undiagnosed
    fasting glucose of 140 mg/dL scores 1, not 0: the point that moves a man from 'consider' to 'recommended' once
    one more factor is present."""
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + extra)
    assert card["summary"].startswith(f"CHA2DS2-VASc {points} "), (why, card["summary"])


def _khan_woman() -> list[dict[str, Any]]:
    """Khan 2024's sample woman of 50 (TC 200, HDL 45, treated SBP 160, non-smoker, eGFR 90, BMI 35, diabetes)."""
    return [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
            F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
            F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2"),
            F.condition("44054006", display="Type 2 diabetes mellitus")]


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base", "prevent-full"])
@pytest.mark.parametrize("loinc", ["22748-8", "39469-2", "69419-0"])
def test_an_ldl_reported_in_mmol_per_l_gets_the_ldl_190_advice(api: Any, service: str, loinc: str) -> None:
    """Laboratories that report LDL-C in mmol/L code it under the substance-concentration LOINC codes (22748-8;
    39469-2 calculated; 69419-0 direct assay). 5.3 mmol/L is 205 mg/dL: the 2018 AHA/ACC cholesterol guideline's
    LDL-C of 190 mg/dL (4.9 mmol/L) or more, a high-intensity statin whatever the estimated risk (class I, 20–75).
    Under these codes the result was never read, and the card gave the diabetes band's advice instead."""
    card = fire(api, service, _khan_woman() + [F.quantity_obs(loinc, 5.3, "mmol/L")])
    assert "LDL-C of 190 mg/dL" in card["detail"], card["detail"]


@pytest.mark.parametrize("service", ["prevent-base", "t2d-onset-5y"])
@pytest.mark.parametrize(("weight_code", "height_code"), [("3141-9", "8302-2"), ("29463-7", "3137-7"),
                                                          ("3141-9", "3137-7")])
def test_bmi_is_worked_out_from_a_measured_weight_and_height(api: Any, service: str, weight_code: str,
                                                             height_code: str) -> None:
    """'Body weight Measured' (LOINC 3141-9) and 'Body height Measured' (3137-7) are the codes many EHRs and devices
    send beside, or instead of, the vital-signs profile's 29463-7 and 8302-2. With no BMI on record, 95 kg and 170 cm
    give a BMI (32.9 kg/m²), not 'Nothing usable on record'."""
    if service == "prevent-base":
        record = [r for r in _khan_woman() if r.get("code", {}).get("coding", [{}])[0].get("code") != "39156-5"]
    else:
        record = [F.patient("p1", 50, "female"), F.bp_panel(130), F.quantity_obs("2085-9", 45, "mg/dL")]
    record += [F.quantity_obs(weight_code, 95, "kg"), F.quantity_obs(height_code, 170, "cm")]
    card = fire(api, service, record)
    assert "not calculated" not in card["summary"] and "%" in card["summary"], (card["summary"], card["detail"])


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base"])
@pytest.mark.parametrize(("verification", "code", "display", "shown"), [
    ("provisional", "44054006", "Type 2 diabetes mellitus", "Diabetes: No — not counted: Type 2 diabetes mellitus "
                                                            "(provisional)"),
    ("differential", "44054006", "Type 2 diabetes mellitus", "Diabetes: No — not counted: Type 2 diabetes mellitus "
                                                             "(differential)"),
    ("provisional", "22298006", "Myocardial infarction", "not counted: Myocardial infarction (provisional)"),
])
def test_a_diagnosis_set_aside_as_unconfirmed_is_named_on_the_card(api: Any, service: str, verification: str,
                                                                   code: str, display: str, shown: str) -> None:
    """FHIR R4 verificationStatus 'provisional' is a tentative diagnosis still under consideration, 'differential'
    one of a set of possible diagnoses: neither is confirmed, so neither counts, and neither is refuted. The estimate
    then assumes the diagnosis away, and the card must say so, as it names the drugs it does not count (the details
    page alone had said it)."""
    base = _khan_woman()[:-1] if service == "prevent-base" else list(MAN_60_WITH_AF[:1]) + F.pce_record()[1:]
    card = fire(api, service, base + [F.condition(code, verification=verification, display=display)])
    assert "%" in card["summary"], card["summary"]
    assert shown in card["detail"].replace("\\", ""), card["detail"]


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error", "confirmed"])
def test_a_refuted_or_confirmed_diagnosis_is_not_called_unconfirmed(api: Any, verification: str) -> None:
    """A refuted or entered-in-error diagnosis is no diagnosis, and a confirmed one counts: neither is named as set
    aside."""
    card = fire(api, "prevent-base", _khan_woman()[:-1] + [F.condition("44054006", verification=verification,
                                                                       display="Type 2 diabetes mellitus")])
    assert "not counted: Type 2 diabetes" not in card["detail"], card["detail"]


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base", "prevent-full"])
@pytest.mark.parametrize(("glucose", "diagnosed", "estimated"), [
    (F.quantity_obs("1558-6", 160, "mg/dL", days=60), False, False),
    (F.quantity_obs("14771-0", 8.0, "mmol/L", days=60), False, False),
    (F.quantity_obs("1558-6", 160, "mg/dL", days=60), True, True),      # diagnosed: the diabetes term applies
    (F.quantity_obs("1558-6", 110, "mg/dL", days=60), False, True),     # impaired fasting glucose, not diabetes
    (F.quantity_obs("1558-6", 160, "mg/dL", days=900), False, True),    # older than the 2-year window
], ids=["fpg-160", "fpg-8-mmol", "fpg-160-diagnosed", "fpg-110", "fpg-160-old"])
def test_an_undiagnosed_fasting_glucose_in_the_diabetes_range_is_treated_like_an_hba1c(
        api: Any, service: str, glucose: dict[str, Any], diagnosed: bool, estimated: bool) -> None:
    """ADA Standards of Care 2025, section 2: a fasting plasma glucose of 126 mg/dL (7.0 mmol/L) or more is in the
    diabetes range, as an HbA1c of 6.5 % is. The service already gives no number beside an undiagnosed HbA1c of 6.5 %
    (the equations' diabetes term is a diagnosis or treatment; confirm or exclude diabetes first), but a fasting
    glucose of 160 mg/dL sat beside 'Diabetes: No' and a number."""
    record = [r for r in _khan_woman() if r["resourceType"] != "Condition"] if service != "ascvd-pce-10y" \
        else F.pce_record(age=55, gender="male")
    if diagnosed:
        record.append(F.condition("44054006", display="Type 2 diabetes mellitus"))
    card = fire(api, service, record + [glucose])
    assert ("%" in card["summary"] and "not calculated" not in card["summary"]) == estimated, card["summary"]
    if not estimated:
        assert "fasting glucose of 126 mg/dL" in card["detail"] and "Confirm or exclude diabetes" in card["detail"], \
            card["detail"]


def test_a_derived_check_does_not_name_a_record_passed_over_as_its_source(api: Any) -> None:
    """'Undiagnosed HbA1c ≥ 6.5 %: No' is computed from 'Diabetes: No' and no diabetes-range HbA1c. With a
    provisional diabetes diagnosis on record (passed over), the details page had given that Condition as the row's
    source and date, as if the check rested on it."""
    import html
    import re

    cond = F.condition("44054006", verification="provisional", display="Type 2 diabetes mellitus")
    card = fire(api, "prevent-base", _khan_woman()[:-1] + [cond])
    url = next(link["url"] for link in card["links"] if "/details/" in link["url"])
    page = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(api.client.get(url.replace("http://testserver", "")).text))
                    .split())
    row = page[page.index("Undiagnosed HbA1c ≥ 6.5 % No"):][:200]
    assert f"Condition/{cond['id']}" not in row, row


def test_prevent_full_cites_the_add_on_equations_it_uses(api: Any) -> None:
    """The RiskAssessment's note is the only citation a saved estimate carries: PREVENT full computes with the UACR,
    HbA1c or full equations when those are measured, so its note cannot cite the base coefficients alone."""
    card = fire(api, "prevent-full", _khan_woman() + [F.quantity_obs("9318-7", 300, "mg/g"),
                                                      F.quantity_obs("4548-4", 5.8, "%")])
    ra = next(a["resource"] for s in card.get("suggestions", []) for a in s["actions"]
              if a["resource"]["resourceType"] == "RiskAssessment")
    note = ra["note"][0]["text"]
    assert "base model coefficients" not in note and "UACR, HbA1c and full model coefficients" in note, note
