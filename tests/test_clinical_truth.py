"""Regression tests through HTTP for every falsehood found on real-world records (issue #10).

Each test builds the record the way an EHR sends it and checks what the clinician would read. Expected numbers come
from the published equations (the models' reference implementations), never from the mapper.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import fire, fire_all, horizon_years, module_app, risk, templates
from inference.graph_builder import load_module

ROOT = Path(__file__).resolve().parent.parent
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
PCE_REF = load_module(ROOT / "models" / "ascvd-pce-10y" / "1.0.0" / "reference.py")
PREVENT_REF = load_module(ROOT / "models" / "prevent-full" / "1.0.0" / "reference.py")
FHIR = "http://127.0.0.1:1/fhir"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("clinical-truth"))


def risk_assessment(card: dict[str, Any]) -> dict[str, Any]:
    return next(a["resource"] for s in card.get("suggestions", []) for a in s["actions"]
                if a["resource"]["resourceType"] == "RiskAssessment")


def pce_expected(**changes: float) -> float:
    inputs = {"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0, "smoker": 0,
              "diabetes": 0, "female": 0, "black": 0, **changes}
    return PCE_REF.compute(inputs)["risk_10y"]


def med(concept: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    res = F.med_request("0")
    res.pop("medicationCodeableConcept")
    if concept is not None:
        res["medicationCodeableConcept"] = concept
    res.update(fields)
    return res


def rx(code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": F.RXNORM, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


MALE_55 = F.pce_record(gender="male", race="white")  # Goff 2013 Table A profile, untreated SBP 120


# ---- medications written the ways real records write them ------------------------------------------------------
@pytest.mark.parametrize("concept", [
    rx("197361"),                                    # amlodipine 5 MG Oral Tablet, code only (SCD)
    rx("316049"),                                    # hydrochlorothiazide 25 MG (SCDC), code only
    rx("308135", "amlodipine 10 MG Oral Tablet"),
    rx("17767", "amlodipine"),                       # ingredient
    rx("212549", "amlodipine 5 MG Oral Tablet [Norvasc]"),  # branded
    {"text": "Amlodipine besylate 5 mg tablet"},     # free text only
    {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "code": "7821",
                 "display": "HYDROCHLOROTHIAZIDE 25 MG PO TABS"}]},  # a local EHR code with its display
])
def test_antihypertensive_at_any_term_type_is_treatment(api: Any, concept: dict[str, Any]) -> None:
    card = fire(api, "ascvd-pce-10y", MALE_55 + [med(concept)])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)
    assert "On blood pressure treatment: **Yes" in card["detail"]


@pytest.mark.parametrize("how", ["contained", "bundled", "fetched", "reference-display"])
def test_medication_reference_is_followed(api: Any, how: str) -> None:
    medication = {"resourceType": "Medication", "id": "m-amlo", "code": rx("197361", "amlodipine 5 MG Oral Tablet")}
    order = med(medicationReference={"reference": "Medication/m-amlo"})
    record = MALE_55 + [order]
    extra: dict[str, Any] = {}
    leave_out: tuple[str, ...] = ()
    if how == "contained":
        order["contained"] = [dict(medication, id="med1")]
        order["medicationReference"] = {"reference": "#med1"}
    elif how == "bundled":
        record = record + [medication]
    elif how == "reference-display":
        order["medicationReference"] = {"reference": "Medication/unknown", "display": "Norvasc 5 mg tablet"}
    else:
        record, leave_out = record + [medication], ("m-amlo",)
        extra = {"fhirServer": FHIR, "fhirAuthorization": {"access_token": "tok-123", "token_type": "Bearer",
                                                           "expires_in": 300, "scope": "patient/*.read",
                                                           "subject": "cds-onnx"}}
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(f"{FHIR}/Medication/m-amlo").mock(return_value=httpx.Response(200, json=medication))
        mock.get(url__startswith=FHIR).mock(return_value=httpx.Response(404))
        card = fire(api, "ascvd-pce-10y", record, leave_out=leave_out, **extra)
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)
    if how == "fetched":
        assert route.called and route.calls[0].request.headers["Authorization"] == "Bearer tok-123"


def test_medication_statement_counts_for_cha2ds2_vasc_hypertension(api: Any) -> None:
    statement = {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
                 "subject": {"reference": "Patient/p1"}, "effectiveDateTime": F.days_ago(200),
                 "medicationCodeableConcept": rx("314076", "lisinopril 10 MG Oral Tablet")}
    record = [F.patient("p1", 70, "female"), F.condition("49436004")]
    without = fire(api, "cha2ds2-vasc", record)
    with_statement = fire(api, "cha2ds2-vasc", record + [statement])
    assert without["summary"].startswith("CHA2DS2-VASc 2")   # age 65-74 + female
    assert with_statement["summary"].startswith("CHA2DS2-VASc 3")  # + hypertension from the statement


@pytest.mark.parametrize("concept", [rx("316672"), rx("314231", "simvastatin 10 MG Oral Tablet"), rx("36567"),
                                     {"text": "Lipitor 20mg"}])
def test_statin_written_any_way_is_a_statin(api: Any, concept: dict[str, Any]) -> None:
    record = _prevent_record()
    base = fire(api, "prevent-base", record)
    statin = med(concept)
    treated = fire(api, "prevent-base", record + [statin])
    statin_ref = f"MedicationRequest/{statin['id']}"
    assert risk(treated) != risk(base)
    assert statin_ref in {b["reference"] for b in risk_assessment(treated)["basis"]}


def test_unrecognised_active_medications_are_named_not_denied(api: Any) -> None:
    card = fire(api, "ascvd-pce-10y", MALE_55 + [med({"text": "Zorblax 10 mg daily"}),
                                                  med(rx("99999999", "Quuxapril 5 MG Oral Tablet"))])
    # both drug-read inputs (blood pressure treatment, and diabetes: glucose-lowering treatment) share the note
    assert ("On blood pressure treatment: No; Diabetes: No — 2 active medications not recognised: Zorblax 10 mg daily, "
            "Quuxapril 5 MG Oral Tablet") in card["detail"]
    assert "no active antihypertensive medication on record" not in card["detail"]


@pytest.mark.parametrize("change", [
    {"doNotPerform": True},
    {"status": "stopped"},
    {"status": "entered-in-error"},
    {"intent": "proposal"},
    {"intent": "option"},  # one choice within a RequestGroup (R4), not an order
    {"intent": "directive"},  # not a MedicationRequest intent in R4
])
def test_orders_that_are_not_treatment_do_not_count(api: Any, change: dict[str, Any]) -> None:
    card = fire(api, "ascvd-pce-10y", MALE_55 + [med(rx("197361", "amlodipine 5 MG Oral Tablet"), **change)])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)


def test_ended_statement_and_eye_drops_are_not_blood_pressure_treatment(api: Any) -> None:
    ended = {"resourceType": "MedicationStatement", "id": "ms2", "status": "active",
             "subject": {"reference": "Patient/p1"},
             "effectivePeriod": {"start": F.days_ago(400), "end": F.days_ago(100)},
             "medicationCodeableConcept": rx("314076", "lisinopril 10 MG Oral Tablet")}
    drops = med({"text": "timolol maleate 0.5 % ophthalmic solution"})
    card = fire(api, "ascvd-pce-10y", MALE_55 + [ended, drops])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)


_EYES = {"route": {"coding": [{"system": F.SNOMED, "code": "54485002", "display": "Ophthalmic route"}]}}


def _timolol_with_form() -> dict[str, Any]:
    """Timolol ordered by ingredient (RxNorm 10600) through a contained Medication whose form says eye drops."""
    res = med(None, medicationReference={"reference": "#m1"})
    res["contained"] = [{"resourceType": "Medication", "id": "m1", "code": rx("10600", "timolol"),
                         "form": {"text": "Solution, Ophthalmic"}}]
    return res


@pytest.mark.parametrize(("drops", "how"), [
    (med(rx("10600", "timolol"), dosageInstruction=[_EYES]), "ingredient code, route coded ophthalmic"),
    (med(rx("10600", "timolol"), dosageInstruction=[{"route": {"text": "Both Eyes"}}]), "route written as text"),
    (med(rx("10600", "timolol"), dosageInstruction=[{"text": "Instill 1 drop into both eyes twice daily"}]),
     "only the instructions say where"),
    ({**med(rx("10600", "timolol")), "resourceType": "MedicationStatement", "status": "active",
      "dosage": [_EYES]}, "a statement's dosage route"),
    (_timolol_with_form(), "the Medication's form"),
    (med({"text": "Timolol Maleate Ophth Soln 0.5%"}), "pharmacy abbreviation 'Ophth'"),
    (med({"text": "timolol 0.25% gtts"}), "'gtts' (drops)"),
    (med({"text": "timolol 0.5% eyedrops"}), "'eyedrops'"),
    (med({"text": "dorzolamide-timolol 22.3-6.8 mg/mL drops"}), "'drops'"),
    (med({"text": "betaxolol 0.5% ophth susp"}), "betaxolol, 'ophth'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"route": {"text": "OU"},
                                                                       "text": "1 gtt OU BID"}]), "route 'OU'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 gtt OS qAM"}]),
     "instructions '1 gtt OS' (left eye)"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "Instill 1 drop o.u. twice daily"}]),
     "dotted 'o.u.'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 gtt RE bid"}]), "'RE' (right eye)"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "Put drops in both eyes twice daily"}]),
     "drops in the eyes, no count"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1gtt OU BID"}]), "'1gtt', no space"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[
        {"text": "Instill 1 drop OU BID. Tell your doctor if you also take a beta-blocker by mouth"}]),
     "a warning that names 'by mouth'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "Instill 1 gtt in OD daily"}]),
     "'in OD' (right eye)"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 gtt qAM OD"}]), "'OD' after the time"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1drop OU BID"}]), "'1drop'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "Use a drop OU bid"}]), "'a drop OU'"),
    (med({"text": "betaxolol 0.25% susp (Betoptic S)"}, dosageInstruction=[{"text": "gutt. i OU b.i.d."}]), "Latin 'gutt.'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 drop qAM OD"}]), "'1 drop qAM OD'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 drop to LE BID"}]), "'to LE'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "1 drop bilaterally BID"}]),
     "'bilaterally'"),
    (med({"text": "timolol maleate 0.5 % solution"}, dosageInstruction=[{"text": "Use in both eyes twice daily"}]),
     "'Use in both eyes', no drops named"),
])
def test_glaucoma_eye_drops_are_not_blood_pressure_treatment(api: Any, drops: dict[str, Any], how: str) -> None:
    """Timolol and betaxolol eye drops lower eye pressure (glaucoma), not blood pressure; RxNorm keeps them apart from
    the tablets, and FHIR says where a drug goes in Dosage.route and Medication.form. Counted as treatment they had
    raised the PCE risk (Goff 2013: treated SBP) and given CHA2DS2-VASc its H ('Hypertension: Yes — timolol')."""
    drops = {**drops, "subject": {"reference": "Patient/p1"}}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [drops])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6), how
    assert "On blood pressure treatment: **Yes" not in card["detail"], how
    af = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"), drops])
    assert af["summary"].startswith("CHA2DS2-VASc 0"), (how, af["summary"])


def _by_mouth(*said: str) -> list[dict[str, Any]]:
    """One dosage taken by mouth (SNOMED CT 26643006), with its instructions and a patient instruction."""
    return [{"route": {"coding": [{"system": F.SNOMED, "code": "26643006", "display": "Oral route"}]},
             "text": said[0], **({"patientInstruction": said[1]} if len(said) > 1 else {})}]


@pytest.mark.parametrize("dosage", [
    _by_mouth("Take 1 tablet by mouth daily.", "Stop taking and call 911 if your face, lips, tongue or eyes swell."),
    _by_mouth("Take 1 tablet by mouth every morning.", "Call your doctor if you notice ringing in the ears."),
    [{"text": "Take 1 tablet daily. Call if your eyes or lips swell."}],  # no route at all, no drops put in
    [{"text": "Take 1 tablet OD. Hold if systolic BP drops below 100"}],  # OD: once daily; 'drops' a verb
    [{"text": "5 mg daily, re-check BP in 2 wk; hold for a drop in SBP <100"}],  # 'a drop' in blood pressure
    [{"text": "1 tab OD. Hold if a drop in systolic BP below 100"}],
    [{"route": {"coding": [{"system": F.SNOMED, "code": "26643006", "display": "Oral route"}], "text": "per os"}}],
    [{"route": {"text": "per os"}}],  # Latin 'by mouth', not 'left eye'
    [{"text": "Take 10 mg daily. If SBP drops into the 90s hold dose; report swelling of face/eyes"}],
    [{"text": "1 po daily. Hold if SBP drops into 90s; if eyes swell, go to ER"}],
    [{"text": "Take 1 daily. Hold if HR drops in the 50s. Report eye pain"}],
])
def test_an_oral_drug_whose_instructions_mention_the_eyes_still_counts(api: Any, dosage: list[dict[str, Any]]) -> None:
    """An oral drug's warnings name the eyes or ears (angioedema, ototoxicity), drops in blood pressure or OD (once
    daily): it is not an eye product, and the route check had dropped it (CHA2DS2-VASc 1 for a man of 66 who scores
    2; the PCE read as untreated). Named only as 'lisinopril 10 mg' (no 'tablet' to say it is oral)."""
    lisinopril = med({"text": "lisinopril 10 mg"}, dosageInstruction=dosage)
    card = fire(api, "ascvd-pce-10y", MALE_55 + [lisinopril])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)
    af = fire(api, "cha2ds2-vasc", [F.patient("p1", 66, "male"), F.condition("49436004"), lisinopril])
    assert af["summary"].startswith("CHA2DS2-VASc 2"), af["summary"]


def test_an_input_answered_without_one_of_its_searches_says_so_on_the_card(api: Any) -> None:
    """An EHR that sends the MedicationStatement key but not the MedicationRequest one, with no fhirServer: 'On
    blood pressure treatment: No' is answered without the orders; the card says which search is missing."""
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from hook_calls import HOOK_INSTANCE

    tmpl = templates(api, "ascvd-pce-10y")
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(tmpl, MALE_55 + [med(rx("314076", "lisinopril 10 MG Oral Tablet"))], context)
    orders = [k for k, t in tmpl.items() if t.startswith("MedicationRequest?")]
    for key in orders:
        prefetch.pop(key)
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    card = api.post("/cds-services/ascvd-pce-10y", json=body).json()["cards"][0]
    line = next(x for x in card["detail"].splitlines() if x.startswith("**Consider:**"))
    # the "No"s answered without the same searches are named together, with what was searched for (a key is named
    # after the first feature reading it: 'Diabetes … medicationRequest-bp-treated-1' misread); the advice that
    # names them says it once, so the "Assumed:" line does not repeat them
    assert len(orders) == 1
    assert "Not fully checked (taken as No): diabetes, on blood pressure treatment (the MedicationRequest search " \
        "could not be obtained)" in line, line
    assert "On blood pressure treatment" not in card["detail"], card["detail"]


def test_a_clonidine_skin_patch_is_still_blood_pressure_treatment(api: Any) -> None:
    """The route check is for the eye and ear only: a transdermal clonidine patch acts on the whole body."""
    patch = med(rx("998671", "168 HR clonidine 0.00417 MG/HR Transdermal System"), dosageInstruction=[
        {"route": {"coding": [{"system": F.SNOMED, "code": "45890007", "display": "Transdermal route"}]},
         "text": "Apply 1 patch to the skin weekly"}])
    card = fire(api, "ascvd-pce-10y", MALE_55 + [patch])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)


@pytest.mark.parametrize("abatement", [
    {"abatementAge": {"value": 55, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
    {"abatementRange": {"low": {"value": 50, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}},
    {"abatementString": "resolved after bariatric surgery"},
])
def test_a_diagnosis_abated_by_age_or_in_words_is_not_current(api: Any, abatement: dict[str, Any]) -> None:
    """R4 con-4: a Condition with an abatement has abated (inactive, remission or resolved). Without a clinicalStatus,
    one ended by abatementDateTime was already read as ended, and one ended by an age or in words as current: the
    PCE's 'Diabetes: Yes' (Goff 2013: diabetes raises the risk) for a diabetes the record says has gone."""
    dm = F.condition("44054006", display="Diabetes mellitus type 2")
    dm.pop("clinicalStatus")
    card = fire(api, "ascvd-pce-10y", MALE_55 + [{**dm, **abatement}])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)
    assert risk(fire(api, "ascvd-pce-10y", MALE_55 + [dm])) == pytest.approx(round(pce_expected(diabetes=1), 6),
                                                                            abs=1e-6)


def _reason(code: str, system: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": system, "code": code, "display": display}]}]


@pytest.mark.parametrize(("order", "shown"), [
    (med(rx("862006", "24 HR guanfacine 1 MG Extended Release Oral Tablet [Intuniv]")), "licensed for ADHD only"),
    (med(rx("862006")), "licensed for ADHD only"),  # the code alone: its RxNorm name says extended release
    (med({"text": "clonidine ER 0.1 mg tablet (KAPVAY)"}), "licensed for ADHD only"),
    (med(rx("197918", "nimodipine 30 MG Oral Capsule")), "licensed for subarachnoid haemorrhage only"),
    (med({"text": "spironolactone 50 mg tablet"}, reasonCode=_reason("11381005", F.SNOMED, "Acne")),
     "prescribed for Acne, not for blood pressure"),
    (med({"text": "doxazosin 4 mg tablet"}, reasonCode=_reason("N40.1", "http://hl7.org/fhir/sid/icd-10-cm",
                                                               "Benign prostatic hyperplasia with LUTS")),
     "prescribed for Benign prostatic hyperplasia with LUTS"),
    (med({"text": "propranolol 40 mg tablet"}, reasonReference=[{"reference": "Condition/migraine"}]),
     "prescribed for Migraine"),
])
def test_a_drug_given_for_something_other_than_blood_pressure_is_not_treatment(api: Any, order: dict[str, Any],
                                                                               shown: str) -> None:
    """Guanfacine and clonidine extended-release (Intuniv, Kapvay) are licensed for ADHD only, nimodipine for
    subarachnoid haemorrhage only; spironolactone for acne, doxazosin for an enlarged prostate or propranolol for
    migraine are given for what the order says. Counted, each had raised the PCE risk as treated SBP (Goff 2013). The
    card names the drug and why it is not counted."""
    migraine = {**F.condition("37796009", display="Migraine"), "id": "migraine"}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order, migraine])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6), shown
    line = next(x for x in card["detail"].splitlines() if "On blood pressure treatment" in x)
    assert "On blood pressure treatment: No — 1 active medication not counted: " in line, line
    assert shown[:22] in line, line


def _spironolactone_for(*reasons: list[dict[str, Any]]) -> dict[str, Any]:
    return med({"text": "spironolactone 50 mg tablet"}, reasonCode=[r for rs in reasons for r in rs])


@pytest.mark.parametrize(("order", "why"), [
    (_spironolactone_for(_reason("I10", "http://hl7.org/fhir/sid/icd-10-cm", "Essential hypertension")),
     "given for hypertension"),
    (_spironolactone_for(_reason("11381005", F.SNOMED, "Acne"), _reason("38341003", F.SNOMED, "Hypertensive disorder")),
     "hypertension among its reasons"),
    (_spironolactone_for(_reason("0", "http://example.org/local", "see note")), "a reason the class cannot read"),
    (med({"text": "doxazosin 4 mg tablet"}, reasonCode=[{"coding": [
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "N40.0", "display": "Benign prostatic hyperplasia"},
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": "Essential hypertension"}]}]),
     "one reason naming both prostate enlargement and hypertension"),
    (med({"text": "clonidine ER 0.17 mg tablet (Nexiclon XR)"}), "Nexiclon XR: clonidine extended-release for hypertension"),
    (med({"text": "labetalol 200 mg tablet"}, reasonCode=_reason("I60.9", "http://hl7.org/fhir/sid/icd-10-cm",
                                                               "Nontraumatic subarachnoid hemorrhage")),
     "labetalol lowers blood pressure in subarachnoid haemorrhage (AHA/ASA 2023)"),
    (med({"text": "propranolol 10 mg tablet"}, reasonReference=[{"reference": "Condition/refuted-migraine"}]),
     "the only reason given was ruled out"),
])
def test_blood_pressure_treatment_that_only_looks_like_another_use_still_counts(api: Any, order: dict[str, Any],
                                                                                why: str) -> None:
    refuted = {**F.condition("G43.909", "http://hl7.org/fhir/sid/icd-10-cm", verification="refuted",
                             display="Migraine, unspecified"), "id": "refuted-migraine"}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order, refuted])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6), why


@pytest.mark.parametrize(("code", "display"), [("56097005", "Migraine without aura"), ("609558009", "Essential tremor")])
def test_propranolol_for_a_migraine_or_tremor_coded_in_snomed_is_not_treatment(api: Any, code: str,
                                                                               display: str) -> None:
    order = med({"text": "propranolol 10 mg tablet"}, reasonCode=_reason(code, F.SNOMED, display))
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)


def test_metformin_for_prediabetes_is_not_diabetes(api: Any) -> None:
    """ADA Standards of Care 2025 (section 3) advise metformin in prediabetes; an order for prediabetes had made
    CHA2DS2-VASc's D 'Yes — metformin' (score 1 for a man of 60 who scores 0). Metformin ordered for diabetes counts."""
    af = [F.patient("p1", 60, "male"), F.condition("49436004"),
          F.condition("R73.03", "http://hl7.org/fhir/sid/icd-10-cm", display="Prediabetes")]
    metformin = med(rx("861007", "metformin hydrochloride 500 MG Oral Tablet"),
                    reasonCode=_reason("R73.03", "http://hl7.org/fhir/sid/icd-10-cm", "Prediabetes"))
    card = fire(api, "cha2ds2-vasc", af + [metformin])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    for_diabetes = {**metformin, "reasonCode": _reason("E11.9", "http://hl7.org/fhir/sid/icd-10-cm", "Type 2 diabetes")}
    assert fire(api, "cha2ds2-vasc", af + [for_diabetes])["summary"].startswith("CHA2DS2-VASc 1")


def _text_reason(text: str) -> list[dict[str, Any]]:
    """A reason written in words alone, as order-entry free text sends it (no coding)."""
    return [{"text": text}]


@pytest.mark.parametrize(("order", "shown"), [
    (med({"text": "spironolactone 50 mg tablet"}, reasonCode=_text_reason("acne")), "prescribed for acne"),
    (med({"text": "spironolactone 100 mg tablet"}, reasonCode=_text_reason("Hirsutism / female pattern hair loss")),
     "prescribed for Hirsutism"),
    (med({"text": "propranolol 20 mg tablet"}, reasonCode=_text_reason("Migraine prophylaxis")),
     "prescribed for Migraine prophylaxis"),
    (med({"text": "propranolol 10 mg tablet"}, reasonCode=_text_reason("essential tremor")),
     "prescribed for essential tremor"),
    (med({"text": "prazosin 1 mg capsule"}, reasonCode=_text_reason("PTSD-related nightmares")),
     "prescribed for PTSD-related nightmares"),
    (med({"text": "doxazosin 2 mg tablet"}, reasonCode=[{"coding": [
        {"system": "http://example.org/local-indications", "code": "77", "display": "BPH with LUTS"}]}]),
     "prescribed for BPH with LUTS"),
    (med({"text": "propranolol 20 mg tablet"}, reasonReference=[{"display": "Migraine without aura"}]),
     "prescribed for Migraine without aura"),
])
def test_a_reason_written_in_words_is_read_like_a_coded_one(api: Any, order: dict[str, Any], shown: str) -> None:
    """Order entry often gives the indication as free text or a local code ('for acne', 'BPH with LUTS'): the drug
    is another use's as when the reason is coded (not counted; the card names it and why), not blood pressure
    treatment raising the PCE risk as treated SBP (Goff 2013)."""
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6), shown
    line = next(x for x in card["detail"].splitlines() if "On blood pressure treatment" in x)
    assert "not counted" in line and shown in line, line


@pytest.mark.parametrize(("order", "why"), [
    (med({"text": "spironolactone 25 mg tablet"}, reasonCode=_text_reason("resistant HTN")), "hypertension"),
    (med({"text": "propranolol 40 mg tablet"}, reasonCode=_text_reason("migraine and high blood pressure")),
     "one reason naming both"),
    (med({"text": "doxazosin 4 mg tablet"}, reasonCode=_text_reason("BPH") + _text_reason("BP")), "two reasons"),
    (med({"text": "propranolol 40 mg tablet"}, reasonCode=_text_reason("per cardiology")), "a reason it cannot read"),
])
def test_a_reason_in_words_that_names_blood_pressure_counts(api: Any, order: dict[str, Any], why: str) -> None:
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6), why


@pytest.mark.parametrize(("reason", "counts"), [
    ("prediabetes", False), ("Pre-diabetes, A1c 6.1%", False), ("PCOS", False), ("weight loss", False),
    ("T2DM", True), ("prediabetes, now DM2", True), ("diabetes prevention program", False),
])
def test_metformin_with_its_reason_in_words(api: Any, reason: str, counts: bool) -> None:
    """ADA 2025 section 3: metformin in prediabetes, as for PCOS or weight, is not evidence of diabetes; a reason
    that names diabetes is (CHA2DS2-VASc D: a man of 60 with AF scores 1 with diabetes, 0 without)."""
    metformin = med(rx("861007", "metformin hydrochloride 500 MG Oral Tablet"), reasonCode=_text_reason(reason))
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"), metformin])
    assert card["summary"].startswith(f"CHA2DS2-VASc {1 if counts else 0}"), (reason, card["summary"])


@pytest.mark.parametrize("abatement", ["unknown", "ongoing", "resolved after bariatric surgery"])
def test_an_active_diagnosis_is_not_undone_by_words_in_its_abatement(api: Any, abatement: str) -> None:
    """clinicalStatus 'active' says what holds now; abatementString beside it ('unknown', or even words that say it
    resolved: R4 con-4 makes that record invalid, not resolved) does not turn the diabetes into 'No'."""
    dm = {**F.condition("E11.9", "http://hl7.org/fhir/sid/icd-10-cm", display="Type 2 diabetes"),
          "abatementString": abatement}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [dm])
    assert risk(card) == pytest.approx(round(pce_expected(diabetes=1), 6), abs=1e-6)


@pytest.mark.parametrize("said", ["unknown", "ongoing", "N/A"])
def test_words_that_say_nothing_ended_are_no_abatement(api: Any, said: str) -> None:
    dm = F.condition("44054006", display="Diabetes mellitus type 2")
    dm.pop("clinicalStatus")
    card = fire(api, "ascvd-pce-10y", MALE_55 + [{**dm, "abatementString": said}])
    assert risk(card) == pytest.approx(round(pce_expected(diabetes=1), 6), abs=1e-6)


def test_a_yes_no_default_names_the_records_it_passed_over(api: Any) -> None:
    """'Diabetes: No' with a resolved diabetes on the problem list: the note says which entry was there and why it
    was not used, so 'No' is not read as 'nothing on record'."""
    dm = F.condition("44054006", clinical="resolved", display="Diabetes mellitus type 2")
    card = fire(api, "ascvd-pce-10y", MALE_55 + [dm])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)
    assert "passed over: Diabetes mellitus type 2 — clinical status is resolved" in details_page(api, card)


@pytest.mark.parametrize(("intent", "why"), [(None, "has no intent"), (["order"], "has an intent that is not a code")])
def test_an_order_without_a_readable_intent_is_unusable_not_absent(api: Any, intent: Any, why: str) -> None:
    """R4 requires MedicationRequest.intent; an active order without a readable one may be treatment, so the answer
    is unknown (no number), neither 'treated' nor 'untreated', and the call never fails."""
    order = med(rx("197361", "amlodipine 5 MG Oral Tablet"))
    if intent is None:
        order.pop("intent")
    else:
        order["intent"] = intent
    card = fire(api, "ascvd-pce-10y", MALE_55 + [order])
    assert "not calculated" in card["summary"] and "blood pressure treatment" in card["summary"], card["summary"]
    assert "amlodipine 5 MG Oral Tablet" in card["detail"] and "cannot be read" in card["detail"], card["detail"]
    assert why in details_page(api, card)


def test_ongoing_statement_with_future_end_counts(api: Any) -> None:
    ongoing = {"resourceType": "MedicationStatement", "id": "ms3", "status": "active",
               "subject": {"reference": "Patient/p1"},
               "effectivePeriod": {"start": F.days_ago(400), "end": (F.NOW + timedelta(days=60)).isoformat()},
               "medicationCodeableConcept": rx("197361", "amlodipine 5 MG Oral Tablet")}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [ongoing])
    assert risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)


# ---- populations and guards before anything -------------------------------------------------------------------
@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base", "prevent-full"])
@pytest.mark.parametrize("history", [
    F.condition("230690007", display="Cerebrovascular accident", clinical="resolved"),
    F.condition("I25.2", ICD, display="Old myocardial infarction"),
    {"resourceType": "Procedure", "id": "proc-cabg", "status": "completed", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": F.SNOMED, "code": "232717009"}]}, "performedDateTime": F.days_ago(2000)},
])
def test_established_ascvd_gives_no_primary_prevention_number(api: Any, service: str,
                                                              history: dict[str, Any]) -> None:
    record = (MALE_55 if service == "ascvd-pce-10y" else _prevent_record()) + [history]
    card = fire(api, service, record)
    assert "%" not in card["summary"] and card["summary"].startswith("No ")
    assert "established atherosclerotic cardiovascular disease" in card["detail"]
    assert "high-intensity" in card["detail"]  # what the guideline says instead
    assert not card.get("suggestions")


def test_provisional_or_refuted_diagnoses_do_not_count(api: Any) -> None:
    provisional_stroke = F.condition("230690007", verification="provisional")
    refuted_diabetes = F.condition("44054006", verification="refuted")
    differential = F.condition("E11.9", ICD, verification="differential")
    card = fire(api, "ascvd-pce-10y", MALE_55 + [provisional_stroke, refuted_diabetes, differential])
    assert risk(card) == pytest.approx(round(pce_expected(), 6), abs=1e-6)


# ---- whose record, and records that cannot be read --------------------------------------------------------------
def goff_white_man(*, treated: int = 0, diabetes: int = 0) -> float:
    """Goff 2013 Table A white-man equation (55 y, TC 213, HDL 50, SBP 120, non-smoker), written out plainly with the
    white-man coefficients and the high-precision mean and S10 the ACC estimator uses: 5.4 %, 10.1 % with diabetes."""
    ln_age, ln_tc, ln_hdl, ln_sbp = math.log(55), math.log(213), math.log(50), math.log(120)
    s = (12.344 * ln_age + 11.853 * ln_tc - 2.664 * ln_age * ln_tc - 7.990 * ln_hdl + 1.769 * ln_age * ln_hdl
         + (1.797 if treated else 1.764) * ln_sbp + 0.658 * diabetes)
    return 1 - 0.91436 ** math.exp(s - 61.1816)


def fire_with_theirs(api: Any, service: str, mine: list[dict[str, Any]],
                     theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """The prefetch of patient p1 with patient p2's matching resources added to each search (a search that
    ignored its patient parameter)."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, service), mine, context)
    other = prefetch_from_resources(templates(api, service), theirs, dict(context, patientId="p2"))
    for key, bundle in other.items():
        if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
            prefetch[key]["entry"] += bundle["entry"]
    sent = {e["resource"]["id"] for b in other.values() if isinstance(b, dict) for e in b.get("entry", [])}
    assert sent == {r["id"] for r in theirs}  # each of them answers one of the service's searches
    body = {"hook": "patient-view", "hookInstance": "5b0e3f1c-7d4a-4c55-9a8e-2f6b1d0c9e79", "context": context,
            "prefetch": prefetch}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"][0]


def test_another_patients_order_diagnosis_and_cholesterol_never_reach_the_card(api: Any) -> None:
    theirs = [F.med_request("314076", pid="p2", display="lisinopril 10 MG Oral Tablet"),
              F.condition("44054006", pid="p2", display="Diabetes mellitus type 2"),
              F.quantity_obs("2093-3", 300, "mg/dL", pid="p2", days=1)]
    card = fire_with_theirs(api, "ascvd-pce-10y", MALE_55, theirs)
    assert goff_white_man() == pytest.approx(0.0538, abs=1e-4)
    assert risk(card) == pytest.approx(round(goff_white_man(), 6), abs=1e-6)
    assert "Yes" not in card["detail"] and "213 mg/dL" in card["detail"]
    no_lipids = [r for r in MALE_55 if r.get("code", {}).get("coding", [{}])[0].get("code") != "2093-3"]
    missing = fire_with_theirs(api, "ascvd-pce-10y", no_lipids, theirs)
    assert missing["summary"] == "10-year ASCVD risk not calculated: missing Total cholesterol"


def test_an_unreadable_diagnosis_or_order_gives_no_number_and_says_why(api: Any) -> None:
    diabetes = F.condition("44054006", display="Diabetes mellitus type 2")
    dstu2 = copy.deepcopy(diabetes) | {"id": "cond-dstu2", "verificationStatus": "confirmed"}
    card = fire(api, "ascvd-pce-10y", MALE_55 + [dstu2])
    assert card["summary"] == "10-year ASCVD risk not calculated: missing Diabetes"
    assert "Diabetes mellitus type 2 (Condition/cond-dstu2) cannot be read" in card["detail"]
    both = fire(api, "ascvd-pce-10y", MALE_55 + [dstu2, diabetes])  # a readable diagnosis answers
    assert goff_white_man(diabetes=1) == pytest.approx(0.1013, abs=1e-4)
    assert risk(both) == pytest.approx(round(goff_white_man(diabetes=1), 6), abs=1e-6)
    order = med(medicationReference="Medication/123")  # a reference written as text, not a Reference
    untreated = fire(api, "ascvd-pce-10y", MALE_55 + [order])
    # the order may be an antihypertensive or a glucose-lowering drug: both inputs are unknown
    assert untreated["summary"] == "10-year ASCVD risk not calculated: missing On blood pressure treatment, Diabetes"
    mi = F.condition("22298006", display="Myocardial infarction") | {"clinicalStatus": "active"}
    refused = fire(api, "ascvd-pce-10y", MALE_55 + [mi])
    assert "%" not in refused["summary"] and "could not be confirmed from the record" in refused["detail"]


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base", "prevent-full", "cha2ds2-vasc",
                                     "egfr-ckd-epi-2021", "kfre-4var"])
@pytest.mark.parametrize("death", [{"deceasedBoolean": True}, {"deceasedDateTime": "2024-03-01T10:00:00-05:00"}])
def test_deceased_patients_get_no_card(api: Any, service: str, death: dict[str, Any]) -> None:
    record = copy.deepcopy(MALE_55) + [F.condition("49436004"), F.quantity_obs("2160-0", 1.4, "mg/dL"),
                                       F.quantity_obs("9318-7", 300, "mg/g")]
    record[0].update(death)
    assert fire_all(api, service, record) == []


def test_child_gets_no_order_for_a_lipid_panel(api: Any) -> None:
    record = [F.patient("p1", 4, "female")]  # no labs at all
    card = fire(api, "ascvd-pce-10y", record)
    assert "not calculated" not in card["summary"]
    assert "Age 4 years is outside" in card["detail"]
    assert not card.get("suggestions")


def test_prevent_30_year_outputs_only_for_ages_30_to_59(api: Any) -> None:
    old = fire(api, "prevent-base", _prevent_record(age=76))
    young = fire(api, "prevent-base", _prevent_record(age=50))
    old_outcomes = [p["outcome"]["text"] for p in risk_assessment(old)["prediction"]]
    young_outcomes = [p["outcome"]["text"] for p in risk_assessment(young)["prediction"]]
    assert not any("30-year" in t for t in old_outcomes)
    assert "30-year total CVD" not in old["detail"]
    assert "30-year risks: ages 30–59 only" in old["detail"]
    assert sum("30-year" in t for t in young_outcomes) == 3


def test_risk_assessment_carries_every_output_with_outcome_and_horizon(api: Any) -> None:
    card = fire(api, "prevent-base", _prevent_record(age=50))
    preds = risk_assessment(card)["prediction"]
    assert [p["outcome"]["text"] for p in preds] == [
        "10-year total CVD risk", "10-year ASCVD", "10-year heart failure", "30-year total CVD", "30-year ASCVD",
        "30-year heart failure"]
    assert [horizon_years(p) for p in preds] == [10, 10, 10, 30, 30, 30]
    assert preds[2]["outcome"]["coding"][0]["code"] == "84114007"  # heart failure
    kfre = fire(api, "kfre-4var", [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, "mL/min/{1.73_m2}"),
                                   F.quantity_obs("9318-7", 30, "mg/g")])
    horizons = [horizon_years(p) for p in risk_assessment(kfre)["prediction"]]
    assert horizons == [5, 2]


# ---- add-on inputs count only when readable (outside the validated range: no number, tests/test_newest_evidence.py)
def test_a_uacr_row_that_gives_no_result_means_the_base_equations(api: Any) -> None:
    obs = F.quantity_obs("9318-7", 1, "mg/g")
    obs.pop("valueQuantity")
    obs["valueString"] = "see comment"  # text that gives no result: not measured, the base equations stand
    without = fire(api, "prevent-full", _prevent_record())
    unusable = fire(api, "prevent-full", _prevent_record() + [obs])
    assert risk(unusable) == risk(without)
    usable = fire(api, "prevent-full", _prevent_record() + [F.quantity_obs("9318-7", 300, "mg/g")])
    assert risk(usable) != risk(without)


def test_a_uacr_measured_in_a_unit_that_cannot_be_read_gives_no_number(api: Any) -> None:
    """300 'furlongs': a UACR was measured, so the equations without it (for a patient in whom it was not) are not
    this patient's; no number, and the card names the UACR."""
    obs = F.quantity_obs("9318-7", 1, "mg/g")
    obs["valueQuantity"] = {"value": 300, "unit": "furlongs"}
    card = fire(api, "prevent-full", _prevent_record() + [obs])
    assert "not calculated" in card["summary"] and "Urine albumin/creatinine ratio" in card["summary"]
    with pytest.raises(AssertionError, match="no RiskAssessment"):
        risk(card)


def test_prevent_full_with_uacr_matches_the_published_equations(api: Any) -> None:
    card = fire(api, "prevent-full", _prevent_record() + [F.quantity_obs("9318-7", 300, "mg/g")])
    expected = PREVENT_REF.compute({"age": 50, "female": 1, "total_cholesterol": 200, "hdl": 45, "sbp": 160,
                                    "bp_treated": 1, "statin": 0, "diabetes": 1, "smoker": 0, "egfr": 90, "bmi": 35,
                                    "uacr": 300, "hba1c": 5.3, "has_uacr": 1, "has_hba1c": 0})
    assert risk(card) == pytest.approx(round(expected["cvd_10y"], 6), abs=1e-6)


# ---- NEWS2 on patient-view, oxygen from values, times shown ----------------------------------------------------
def _news2_record(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [F.patient("p1", 67, "male"), F.encounter("e1"),
            F.vital("9279-1", 18, "/min"), F.vital("59408-5", 96, "%"), F.vital("8867-4", 72, "/min"),
            F.vital("8310-5", 36.8, "Cel"), F.bp_panel(120, days=0), F.coded_obs("67775-7", "248234008", hours=2),
            *extra]


def _without(record: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in record if not any(c.get("code") == code for c in r.get("code", {}).get("coding", []))]


def _pulse_oximetry(spo2: float, *, flow: float | None = None, fio2: float | None = None) -> dict[str, Any]:
    """SpO2 as US Core's pulse oximetry profile writes it (59408-5 with 2708-6), the inhaled oxygen flow (3151-8) and
    concentration (3150-0) as components: how Epic and Oracle Health send the oxygen a patient is on."""
    reading = F.vital("59408-5", spo2, "%", hours=1)
    reading["code"]["coding"].append({"system": F.LOINC, "code": "2708-6"})
    parts = [("3151-8", flow, "L/min"), ("3150-0", fio2, "%")]
    reading["component"] = [{"code": {"coding": [{"system": F.LOINC, "code": code}]},
                             "valueQuantity": {"value": value, "unit": unit, "system": F.UCUM, "code": unit}}
                            for code, value, unit in parts if value is not None]
    return reading


@pytest.mark.parametrize(("reading", "score"), [
    (_pulse_oximetry(95, flow=4), 3),      # RCP 2017 chart 1: SpO2 94–95 scores 1, oxygen 2
    (_pulse_oximetry(95, fio2=40), 3),
    (_pulse_oximetry(95, flow=0), 1),      # a flow of 0: air
    (_pulse_oximetry(95), 1),              # no oxygen component: nothing says oxygen, and nothing is passed over
])
def test_news2_reads_the_oxygen_a_pulse_oximetry_reading_carries(api: Any, reading: dict[str, Any], score: int) -> None:
    card = fire(api, "news2-patient-view", _without(_news2_record(), "59408-5") + [reading])
    assert card["summary"].startswith(f"NEWS2 {score}"), card["summary"]
    assert "passed over" not in card["detail"], card["detail"]


def test_news2_oxygen_by_nasal_cannula_is_oxygen(api: Any) -> None:
    """SNOMED CT 371907003, the commonest way oxygen is given on a ward, had been read as air (NEWS2 0, not 2)."""
    cannula = {"resourceType": "Procedure", "id": "o2-nc", "status": "in-progress",
               "subject": {"reference": "Patient/p1"}, "performedPeriod": {"start": F.days_ago(0)},
               "code": {"coding": [{"system": F.SNOMED, "code": "371907003",
                                    "display": "Oxygen administration by nasal cannula"}]}}
    cannula["performedPeriod"]["start"] = _hours_ago(5)
    card = fire(api, "news2-patient-view", _news2_record(cannula))
    assert card["summary"].startswith("NEWS2 2"), card["summary"]


def _hours_ago(hours: float) -> str:
    return (F.NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("readings", "score"), [
    ([F.vital("8867-4", 72, "/min", hours=20), F.vital("8889-8", 135, "/min", hours=1)], 3),   # the newest pulse
    ([F.vital("8889-8", 135, "/min", hours=1)], 3),                                          # the oximeter's alone
])
def test_news2_reads_the_pulse_a_pulse_oximeter_counts(api: Any, readings: list[dict[str, Any]], score: int) -> None:
    """LOINC 8889-8 (heart rate by pulse oximetry) is how monitors send the pulse; RCP scores the pulse however it
    was counted (≥ 131/min: 3 points)."""
    card = fire(api, "news2-patient-view", _without(_news2_record(), "8867-4") + readings)
    assert card["summary"].startswith(f"NEWS2 {score}"), card["summary"]


def test_news2_the_newest_consciousness_answer_stands(api: Any) -> None:
    """Alert ten hours ago, then 'Confusional state' an hour ago: the patient is scored on the newest assessment
    (new confusion, 3 points), never on the older 'Alert'; an answer the model cannot read leaves it unknown."""
    confused = F.coded_obs("67775-7", "286933003", hours=1)
    record = _without(_news2_record(), "67775-7") + [F.coded_obs("67775-7", "248234008", hours=10)]
    assert fire(api, "news2-patient-view", record + [confused])["summary"].startswith("NEWS2 3")
    unreadable = F.coded_obs("67775-7", "999999001", hours=1)
    card = fire(api, "news2-patient-view", record + [unreadable])
    assert "not calculated" in card["summary"] and "Consciousness" in card["summary"], card["summary"]


def test_a_newest_smoking_answer_the_model_cannot_read_is_not_replaced_by_an_older_one(api: Any) -> None:
    """Goff 2013: a current smoker of 55 has about twice a never smoker's risk. 'Cigarette smoker' (65568007) ten
    days ago after 'Never smoked' thirteen months ago is a current smoker; a pipe smoker's answer, which the
    equations' cigarette smoker does not cover, leaves smoking unknown — never the older 'never'."""
    record = F.pce_record(gender="male", race="white")
    old = next(r for r in record if r.get("code", {}).get("coding", [{}])[0].get("code") == "72166-2")
    old["effectiveDateTime"] = F.days_ago(400)
    cigarettes = F.smoking("65568007", days=10, display="Cigarette smoker (finding)")
    assert risk(fire(api, "ascvd-pce-10y", record + [cigarettes])) == pytest.approx(
        round(pce_expected(smoker=1), 6), abs=1e-6)
    pipe = F.smoking("82302008", days=10, display="Pipe smoker (finding)")
    card = fire(api, "ascvd-pce-10y", record + [pipe])
    assert "%" not in card["summary"] and "Smoking" in card["summary"], card["summary"]


def test_news2_scores_on_patient_view_without_an_encounter_id(api: Any) -> None:
    tmpl = templates(api, "news2-patient-view")
    assert not any("context.encounterId" in t for t in tmpl.values())
    card = fire(api, "news2-patient-view", _news2_record())
    assert card["summary"].startswith("NEWS2 0")
    assert ":" in card["detail"].split("Respiration rate")[1].split("\n")[0]  # the time of the reading is shown


@pytest.mark.parametrize(("oxygen", "score"), [
    (F.vital("3150-0", 21, "%"), 0),          # FiO2 21 % is room air
    (F.vital("3151-8", 0, "L/min"), 0),       # no flow
    (F.vital("3150-0", 28, "%"), 2),          # oxygen: +2
    (F.vital("3151-8", 2, "L/min"), 2),
])
def test_news2_oxygen_is_read_from_values(api: Any, oxygen: dict[str, Any], score: int) -> None:
    card = fire(api, "news2-patient-view", _news2_record(oxygen))
    assert card["summary"].startswith(f"NEWS2 {score}")


# ---- NEWS2: adults only; the newest oxygen record decides; FiO2 as a fraction -------------------------------------
# The other vitals of `_news2_record` score 0 on RCP 2017 Chart 1 (RR 18, HR 72, SBP 120, 36.8 °C, alert), so the
# expected totals below are the SpO2 and air/oxygen rows of Chart 1, read by hand.
def _news2_at(spo2: float, *extra: dict[str, Any], scale2: bool = False) -> list[dict[str, Any]]:
    record = _news2_record(*extra)
    for res in record:
        if res.get("code", {}).get("coding", [{}])[0].get("code") == "59408-5":
            res["valueQuantity"]["value"] = spo2
    if scale2:  # ICD-10-CM J96.12 chronic respiratory failure with hypercapnia: SpO2 Scale 2
        record.append(F.condition("J96.12", ICD, display="Chronic respiratory failure with hypercapnia"))
    return record


def _birth_date_years_ago(years: int, shift_days: int = 0) -> str:
    today = F.NOW.date()
    try:
        anniversary = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        anniversary = today.replace(year=today.year - years, day=28)
    return (anniversary + timedelta(days=shift_days)).isoformat()


@pytest.mark.parametrize(("birth_date", "age"), [
    (_birth_date_years_ago(16), 16),                  # 16th birthday today: an adult for NEWS2
    (_birth_date_years_ago(16, shift_days=1), 15),    # 16 tomorrow: 15 today
    (_birth_date_years_ago(10), 10),
])
def test_news2_gives_no_score_under_16(api: Any, birth_date: str, age: int) -> None:
    record = _news2_record()
    record[0]["birthDate"] = birth_date
    card = fire(api, "news2-patient-view", record)
    if age >= 16:
        assert card["summary"].startswith("NEWS2 0 (low")
        return
    assert card["summary"] == f"No NEWS2 estimate: NEWS2 is for adults aged 16 and over (age: {age} years)"
    assert "paediatric early warning score" in card["detail"]
    assert "suggestions" not in card  # nothing to save or order for a child


def test_news2_without_a_birth_date_gives_no_score(api: Any) -> None:
    record = _news2_record()
    del record[0]["birthDate"]
    card = fire(api, "news2-patient-view", record)
    assert "No NEWS2 estimate" in card["summary"] and "NEWS2 0" not in card["summary"]
    assert "16 and over (could not be confirmed from the record: date of birth is not recorded)" in card["detail"]


@pytest.mark.parametrize(("spo2", "scale2", "oxygen", "expected"), [
    # Scale 2, SpO2 97: on air 0; on oxygen 3 (>=97 on O2) + 2 for oxygen = 5
    (97, True, [F.vital("3150-0", 21, "%", hours=1), F.vital("3151-8", 2, "L/min", hours=20)], "NEWS2 0 (low"),
    (97, True, [F.vital("3151-8", 0, "L/min", hours=1), F.vital("3151-8", 2, "L/min", hours=20)], "NEWS2 0 (low"),
    (97, True, [F.vital("3151-8", 2, "L/min", hours=1), F.vital("3150-0", 21, "%", hours=20)], "NEWS2 5 (medium"),
    # Scale 1, SpO2 96: 0 either way; air 0, oxygen 2
    (96, False, [F.vital("3150-0", 21, "%", hours=1), F.vital("3150-0", 40, "%", hours=20)], "NEWS2 0 (low"),
    (96, False, [F.vital("3150-0", 40, "%", hours=1), F.vital("3150-0", 21, "%", hours=20)], "NEWS2 2 (low"),
])
def test_news2_the_newest_oxygen_record_decides(api: Any, spo2: float, scale2: bool, oxygen: list[dict[str, Any]],
                                                expected: str) -> None:
    card = fire(api, "news2-patient-view", _news2_at(spo2, *copy.deepcopy(oxygen), scale2=scale2))
    assert card["summary"].startswith(expected), card["summary"]
    on_air = expected.startswith("NEWS2 0")
    assert f"Supplemental oxygen: **{'Air' if on_air else 'Oxygen'}**" in card["detail"]


@pytest.mark.parametrize(("code", "system"), [("J96.12", ICD), ("J9612", ICD), ("J9622", ICD),
                                               ("J9612", "http://hl7.org/fhir/sid/icd-10")])
def test_news2_scale2_is_read_whether_the_icd10_code_has_its_dot_or_not(api: Any, code: str, system: str) -> None:
    """Chronic hypercapnic respiratory failure stored as J9612 (no dot): the service's own prefetch must bring it, or
    the card says 'no hypercapnic respiratory failure recorded' and scores SpO2 90 on air as 3 (Scale 1) instead of
    0 (Scale 2, 88-92 %: RCP Chart 1)."""
    record = _news2_at(90) + [F.condition(code, system, display="Respiratory failure with hypercapnia")]
    card = fire(api, "news2-patient-view", record)
    assert card["summary"].startswith("NEWS2 0"), card["summary"]


def _dated_only(res: dict[str, Any]) -> dict[str, Any]:
    """`res` with its time dropped: effectiveDateTime written as the date alone (today)."""
    res["effectiveDateTime"] = F.NOW.date().isoformat()
    return res


def test_news2_a_reading_written_as_a_date_alone_is_not_placed_among_timed_ones(api: Any) -> None:
    """SpO2 88 % 'today' (no time) and 97 % at a known time today: either may be the newest, and they score 3 and 0
    (Scale 1, RCP Chart 1): no score, naming both. Alone, the 88 % is used and shown with its date, not '00:00 UTC'."""
    both = _news2_record(_dated_only(F.vital("59408-5", 88, "%")), F.vital("59408-5", 97, "%", hours=0.25))
    both = [r for r in both if not (r.get("valueQuantity", {}).get("value") == 96)]  # the record's own 96 % goes
    card = fire(api, "news2-patient-view", both)
    assert card["summary"] == "NEWS2 not calculated: missing SpO2", card["summary"]
    assert "Which reading is the newest is not known: 88 % on " in card["detail"], card["detail"]
    alone = [r for r in both if not (r.get("valueQuantity", {}).get("value") == 97)]
    card = fire(api, "news2-patient-view", alone)
    assert card["summary"].startswith("NEWS2 3"), card["summary"]
    line = next(x for x in card["detail"].splitlines() if x.startswith("- SpO2"))
    assert line == f"- SpO2: **88 %** ({F.NOW.date().isoformat()})", line
    same = _news2_record(_dated_only(F.vital("59408-5", 96, "%")))  # the same value either way: no doubt
    assert fire(api, "news2-patient-view", same)["summary"].startswith("NEWS2 0")
    # 97 % today (no time), 97 % an hour ago, 88 % three hours ago: the 88 % is older than the timed 97 %, so the
    # newest is 97 % whichever hour the first was taken
    agreeing = [r for r in both if r.get("valueQuantity", {}).get("value") != 88] + [
        _dated_only(F.vital("59408-5", 97, "%")), F.vital("59408-5", 88, "%", hours=3)]
    assert fire(api, "news2-patient-view", agreeing)["summary"].startswith("NEWS2 0")
    # two times written without a zone in one record share it: 97 % at 20:32 is newer than 88 % at 18:32
    zoneless = [r for r in both if r.get("valueQuantity", {}).get("value") != 88]
    for res, hours in ((zoneless[-1], 1), (F.vital("59408-5", 88, "%"), 3)):
        res["effectiveDateTime"] = (F.NOW - timedelta(hours=hours)).replace(tzinfo=None).isoformat(timespec="seconds")
    zoneless.append(res)
    assert fire(api, "news2-patient-view", zoneless)["summary"].startswith("NEWS2 0")


def _dated_day(res: dict[str, Any], days_ago: int) -> dict[str, Any]:
    res["effectiveDateTime"] = (F.NOW - timedelta(days=days_ago)).date().isoformat()
    return res


# a time before the latest moment yesterday's date can mean (its UTC end + 12 h, or now if sooner), within 24 h
_BEFORE_YESTERDAYS_LATEST = (F.NOW - min(F.NOW, datetime.combine(F.NOW.date(), time(12), tzinfo=timezone.utc))
                             ).total_seconds() / 3600 + 3


@pytest.mark.parametrize(("extra", "expected"), [
    # FiO2 28 % written as yesterday's date alone, FiO2 35 % timed this morning: oxygen (+2 on RCP Chart 1), whatever
    # the date-only reading's hour: placed at the latest it can mean, it must not stop the reading before the timed
    # ones placed after it (its day began more than 24 h ago, so it is itself outside the look-back window)
    ([_dated_day(F.vital("3150-0", 28, "%"), 1), F.vital("3150-0", 35, "%", hours=_BEFORE_YESTERDAYS_LATEST)],
     "NEWS2 2"),
    ([_dated_day(F.vital("3151-8", 2, "L/min"), 1), F.vital("3150-0", 35, "%", hours=_BEFORE_YESTERDAYS_LATEST)],
     "NEWS2 2"),
    # SpO2 97 % written as yesterday, then 88 % timed this morning, and no other SpO2: 3 for SpO2 (RCP Chart 1)
    ([_dated_day(F.vital("59408-5", 97, "%"), 1), F.vital("59408-5", 88, "%", hours=_BEFORE_YESTERDAYS_LATEST)],
     "NEWS2 3"),
])
def test_news2_a_date_alone_from_yesterday_does_not_hide_todays_timed_readings(api: Any, extra: list[dict[str, Any]],
                                                                              expected: str) -> None:
    record = [r for r in _news2_record() if r.get("code", {}).get("coding", [{}])[0].get("code") != "59408-5"]
    record += [F.vital("59408-5", 96, "%", hours=_BEFORE_YESTERDAYS_LATEST + 1)]  # an older SpO2 for the oxygen rows
    card = fire(api, "news2-patient-view", record + copy.deepcopy(extra))
    assert card["summary"].startswith(expected), card["summary"]


def test_news2_oxygen_therapy_whose_end_is_written_as_today_has_not_ended(api: Any) -> None:
    """An end of '<today>' includes the whole day (FHIR R4 Period): the therapy is current, oxygen +2."""
    therapy = _oxygen_therapy(48)
    therapy["performedPeriod"]["end"] = F.NOW.date().isoformat()
    card = fire(api, "news2-patient-view", _news2_record(therapy))
    assert card["summary"].startswith("NEWS2 2"), card["summary"]


def _oxygen_therapy(started_hours_ago: float | None, date_only: bool = False,
                    ended_hours_ago: float | None = None) -> dict[str, Any]:
    """Oxygen therapy charted as a Procedure still in progress (EHRs often leave it open after the oxygen stops);
    `date_only`: its start written as the date alone (any time that day)."""
    res: dict[str, Any] = {"resourceType": "Procedure", "id": "o2-therapy", "status": "in-progress",
                           "subject": {"reference": "Patient/p1"},
                           "code": {"coding": [{"system": F.SNOMED, "code": "57485005", "display": "Oxygen therapy"}]}}
    if started_hours_ago is not None:
        start = F.NOW - timedelta(hours=started_hours_ago)
        res["performedPeriod"] = {"start": start.date().isoformat() if date_only else start.isoformat()}
    if ended_hours_ago is not None:
        res.setdefault("performedPeriod", {})["end"] = (F.NOW - timedelta(hours=ended_hours_ago)).isoformat()
    return res


@pytest.mark.parametrize(("oxygen", "expected"), [
    # Scale 2, SpO2 97 (Chart 1): on air 0 (>=93 on air), so NEWS2 0; on oxygen 3 (>=97 on O2) + 2 for oxygen = 5.
    # Oxygen therapy open since three days ago, then a FiO2 of 21 % (air) an hour ago: the patient is on air now
    ([_oxygen_therapy(72), F.vital("3150-0", 21, "%", hours=1)], "NEWS2 0 (low"),
    ([_oxygen_therapy(72), F.vital("3151-8", 0, "L/min", hours=1)], "NEWS2 0 (low"),   # or a flow of 0 L/min
    # the therapy started after the air reading: it is the newest record, so oxygen
    ([_oxygen_therapy(1), F.vital("3150-0", 21, "%", hours=5)], "NEWS2 5 (medium"),
    # nothing newer than the therapy, however long ago it started: it is current, so oxygen
    ([_oxygen_therapy(72)], "NEWS2 5 (medium"),
    # in progress with no start: it cannot be placed before the air reading, so it stays current (oxygen)
    ([_oxygen_therapy(None), F.vital("3150-0", 21, "%", hours=1)], "NEWS2 5 (medium"),
    # the only other oxygen record is older than the 24 h window (2 L/min 70 h ago): the open therapy is current
    ([_oxygen_therapy(72), F.vital("3151-8", 2, "L/min", hours=70)], "NEWS2 5 (medium"),
    ([_oxygen_therapy(30), F.vital("3150-0", 40, "%", hours=28)], "NEWS2 5 (medium"),
    # an air reading older than the window says nothing about now either
    ([_oxygen_therapy(72), F.vital("3150-0", 21, "%", hours=30)], "NEWS2 5 (medium"),
    # started "today" (a date alone: any time today), air charted an hour ago: which came first is unknown, so the
    # therapy stands (oxygen)
    ([_oxygen_therapy(0.5, date_only=True), F.vital("3150-0", 21, "%", hours=0.25)], "NEWS2 5 (medium"),
    # the therapy's start and the air reading at the same moment: not certainly after it, so oxygen
    ([_oxygen_therapy(2), F.vital("3150-0", 21, "%", hours=2)], "NEWS2 5 (medium"),
    # "in progress" from a start three days ahead: it has not begun, and nothing else says oxygen (air)
    ([_oxygen_therapy(-72)], "NEWS2 0 (low"),
    # "in progress" with an end written an hour ago: it has ended (air)
    ([_oxygen_therapy(5, ended_hours_ago=1)], "NEWS2 0 (low"),
    # a planned end in 5 h does not make it newer than the air reading charted an hour ago (started 3 h ago)
    ([_oxygen_therapy(3, ended_hours_ago=-5), F.vital("3150-0", 21, "%", hours=1)], "NEWS2 0 (low"),
    # and without a newer air reading it is current (oxygen)
    ([_oxygen_therapy(3, ended_hours_ago=-5)], "NEWS2 5 (medium"),
])
def test_news2_a_newer_air_reading_overrides_oxygen_therapy_left_in_progress(api: Any, oxygen: list[dict[str, Any]],
                                                                             expected: str) -> None:
    card = fire(api, "news2-patient-view", _news2_at(97, *copy.deepcopy(oxygen), scale2=True))
    assert card["summary"].startswith(expected), card["summary"]
    on_air = expected.startswith("NEWS2 0")
    if on_air and not any(r["resourceType"] == "Observation" for r in oxygen):  # nothing read: air is assumed
        assert "Supplemental oxygen: **Oxygen**" not in card["detail"] and "Supplemental oxygen" in card["detail"]
    else:
        assert f"Supplemental oxygen: **{'Air' if on_air else 'Oxygen'}**" in card["detail"]


@pytest.mark.parametrize(("therapy", "shown"), [
    (_oxygen_therapy(72), f"(in progress since {(F.NOW - timedelta(hours=72)).strftime('%Y-%m-%d %H:%M')} UTC)"),
    (_oxygen_therapy(30, date_only=True), f"(in progress since {(F.NOW - timedelta(hours=30)).date().isoformat()})"),
    (_oxygen_therapy(None), "(in progress)"),
    # a planned end ahead: the start is shown, not the end
    (_oxygen_therapy(3, ended_hours_ago=-5),
     f"(in progress since {(F.NOW - timedelta(hours=3)).strftime('%Y-%m-%d %H:%M')} UTC)"),
], ids=["started-72h-ago", "started-on-a-date", "no-start", "planned-end-ahead"])  # ids: the times differ by worker
def test_news2_shows_since_when_oxygen_therapy_runs_not_the_time_of_the_call(api: Any, therapy: dict[str, Any],
                                                                             shown: str) -> None:
    """Oxygen therapy in progress counts as current, but the card's time for it is its start: the time of the call
    (which the score stands at) would read as oxygen charted just now."""
    card = fire(api, "news2-patient-view", _news2_at(97, copy.deepcopy(therapy), scale2=True))
    line = next(x for x in card["detail"].splitlines() if x.startswith("- Supplemental oxygen"))
    assert line.startswith(f"- Supplemental oxygen: **Oxygen** {shown}"), line


@pytest.mark.parametrize(("extra", "expected"), [
    # oxygen therapy "in progress" from a start 3 h (or 12 h) ahead has not begun: on air, NEWS2 0 on Scale 1 (SpO2 96)
    ([_oxygen_therapy(-3)], "NEWS2 0 (low"),
    ([_oxygen_therapy(-12)], "NEWS2 0 (low"),
    # a FiO2 of 40 % dated 5 h ahead is not the patient's state now; the 21 % of an hour ago is: air
    ([F.vital("3150-0", 40, "%", hours=-5), F.vital("3150-0", 21, "%", hours=1)], "NEWS2 0 (low"),
    # an SpO2 of 88 % dated 3 h ahead does not outrank the 96 % of 2 h ago (88 % would score 3)
    ([F.vital("59408-5", 88, "%", hours=-3)], "NEWS2 0 (low"),
    # a start 2 minutes ahead is the EHR's clock, not the future: oxygen (+2)
    ([_oxygen_therapy(-2 / 60)], "NEWS2 2 (low"),
])
def test_news2_never_takes_a_reading_dated_hours_ahead_as_the_patients_state_now(api: Any, extra: list[dict[str, Any]],
                                                                                 expected: str) -> None:
    """RCP Chart 1 scores the patient now. A time written with its zone hours after the call is in the future (a day
    of slack is for a date alone, which may have begun east of UTC, not for a timed value)."""
    card = fire(api, "news2-patient-view", _news2_record(*copy.deepcopy(extra)))
    assert card["summary"].startswith(expected), card["summary"]


def test_news2_an_open_therapy_whose_start_has_no_zone_is_not_overridden_by_an_earlier_air_reading(api: Any) -> None:
    """The record writes its times at -05:00; the therapy's start, 30 minutes ago local time, has no zone (read as
    UTC it would be 5.5 h ago, before the air reading of an hour ago). Which came first is not known from the zoneless
    start, so the therapy stands: SpO2 97 on oxygen, Scale 2, scores 3 + 2 for oxygen = NEWS2 5 (RCP Chart 1)."""
    local = timezone(timedelta(hours=-5))
    therapy = _oxygen_therapy(None)
    therapy["performedPeriod"] = {"start": (F.NOW - timedelta(minutes=30)).astimezone(local).replace(tzinfo=None)
                                  .isoformat(timespec="seconds")}
    air = F.vital("3150-0", 21, "%", hours=1)
    air["effectiveDateTime"] = (F.NOW - timedelta(hours=1)).astimezone(local).isoformat(timespec="seconds")
    card = fire(api, "news2-patient-view", _news2_at(97, therapy, air, scale2=True))
    assert card["summary"].startswith("NEWS2 5 (medium"), card["summary"]


@pytest.mark.parametrize(("code", "text"), [("59408-5", "88 %"), ("9279-1", "26")])
def test_news2_a_newest_vital_reported_as_text_gives_no_score_rather_than_an_older_one(api: Any, code: str,
                                                                                       text: str) -> None:
    """SpO2 '88 %' (or respiration rate '26') charted 30 minutes ago as text, after a readable 96 % (18/min) two hours
    ago: the older reading is not the patient's state now (88 % on Scale 1 scores 3, 26/min 2, not 0)."""
    newest = F.vital(code, 0, "%", hours=0.5)
    del newest["valueQuantity"]
    newest["valueString"] = text
    card = fire(api, "news2-patient-view", _news2_record(newest))
    assert card["summary"].startswith("NEWS2 not calculated"), card["summary"]
    assert f"the result is text ('{text}')" in card["detail"]


def _bare(res: dict[str, Any], shape: str) -> dict[str, Any]:
    """The vital `res` with its number written bare: as valueInteger, or as a valueQuantity with no unit or code."""
    value = res["valueQuantity"]["value"]
    del res["valueQuantity"]
    if shape == "valueInteger":
        res["valueInteger"] = int(value)
    else:
        res["valueQuantity"] = {"value": value}
    return res


@pytest.mark.parametrize("shape", ["valueInteger", "bare valueQuantity"])
def test_news2_reads_vital_signs_written_as_bare_numbers_in_their_codes_only_unit(api: Any, shape: str) -> None:
    """Flowsheets send pulse, respiration rate, SpO2 and blood pressure as whole numbers without a unit. Each of these
    LOINC codes has one unit (/min, %, mm[Hg]), so the number is read in it, not refused. RCP Chart 1: respiration 24
    = 2, SpO2 88 on Scale 1 = 3, air = 0, systolic 95 = 2, pulse 130 = 2, alert = 0, temperature 36.8 = 0: NEWS2 9."""
    record = [F.patient("p1", 67, "male"), F.encounter("e1"),
              _bare(F.vital("9279-1", 24, "/min"), shape), _bare(F.vital("59408-5", 88, "%"), shape),
              _bare(F.vital("8867-4", 130, "/min"), shape), F.vital("8310-5", 36.8, "Cel"),
              _bare(F.vital("8480-6", 95, "mm[Hg]"), shape), F.coded_obs("67775-7", "248234008", hours=2)]
    card = fire(api, "news2-patient-view", record)
    assert card["summary"].startswith("NEWS2 9"), card["summary"]
    spo2 = next(x for x in card["detail"].splitlines() if x.startswith("- SpO2"))
    assert spo2.startswith("- SpO2: **88 %**") and spo2.endswith("· _no unit written_"), spo2
    details = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    page = api.client.get(details.removeprefix("http://testserver")).text
    assert "written without a unit; read as 130 /min" in page


def test_news2_a_temperature_without_its_unit_is_not_read(api: Any) -> None:
    """Temperature has two units (37 or 98.6): a bare number is not read in either, so NEWS2 gives no score and names
    the reading; an older temperature does not stand in for it."""
    temp = _bare(F.vital("8310-5", 38, "Cel", hours=0.5), "valueInteger")
    card = fire(api, "news2-patient-view", _news2_record(temp))
    assert card["summary"].startswith("NEWS2 not calculated"), card["summary"]
    assert "- Temperature: Newest result" in card["detail"]  # the reason whole, not clipped at the sidebar's width
    assert "not usable: has valueInteger instead of a valueQuantity\n" in card["detail"], card["detail"]


def test_news2_a_bare_spo2_fraction_is_not_taken_for_a_saturation(api: Any) -> None:
    """SpO2 0.88 with no unit (a fraction) read in % is 0.88 %: outside the score's range, so no score, not 'SpO2 ≥ 96'
    from an older reading and not a score of the fraction."""
    spo2 = _bare(F.vital("59408-5", 0.88, "%", hours=0.5), "bare valueQuantity")
    card = fire(api, "news2-patient-view", _news2_record(spo2))
    assert card["summary"].startswith("No NEWS2 estimate: SpO2 0.88 % is outside the range the model was validated "
                                      "for (20–100 %)"), card["summary"]  # as written, never rounded to '0.9 %'


@pytest.mark.parametrize("shape", ["valueQuantity", "valueInteger"])
def test_news2_a_respiration_rate_of_zero_is_not_scored_as_a_slow_rate(api: Any, shape: str) -> None:
    """A respiration rate of 0 is no breathing charted (or a placeholder), not a slow rate: RCP Chart 1 would give it
    3 points as '<= 8' and a score for a patient in whom NEWS2 has no meaning. No score, and the card says why."""
    rr = F.vital("9279-1", 0, "/min", hours=0.5)
    if shape == "valueInteger":
        rr = _bare(rr, shape)
    card = fire(api, "news2-patient-view", _news2_record(rr))
    assert card["summary"].startswith("No NEWS2 estimate: Respiration rate 0 /min is outside the range the model was "
                                      "validated for (1–60 /min)"), card["summary"]
    slow = fire(api, "news2-patient-view", _news2_record(F.vital("9279-1", 1, "/min", hours=0.5)))
    assert slow["summary"].startswith("NEWS2 3"), slow["summary"]  # 1 /min is a rate: <= 8 scores 3 (Chart 1)


def _fio2(value: float, quantity_extra: dict[str, Any] | None, hours: float = 1) -> dict[str, Any]:
    """FiO2 as an EHR sends it; `quantity_extra` None means a bare number with no unit at all."""
    res = F.vital("3150-0", value, "%", hours=hours)
    res["code"]["coding"][0]["display"] = "Inhaled oxygen concentration"
    res["valueQuantity"] = {"value": value, **(quantity_extra or {})}
    return res


@pytest.mark.parametrize(("fio2", "expected", "shown"), [
    # 40 %: oxygen 2 + SpO2 94 on Scale 1 1 = 3; the card says the value was a fraction
    (_fio2(0.40, {"unit": "1", "system": F.UCUM, "code": "1"}), "NEWS2 3 (low",
     "Supplemental oxygen: **Oxygen**"),
    (_fio2(0.21, {"unit": "1", "system": F.UCUM, "code": "1"}), "NEWS2 1 (low", "Supplemental oxygen: **Air**"),
    (_fio2(40, {"unit": "%", "system": F.UCUM, "code": "%"}), "NEWS2 3 (low", "Supplemental oxygen: **Oxygen**"),
])
def test_news2_fio2_written_as_a_fraction_is_read(api: Any, fio2: dict[str, Any], expected: str, shown: str) -> None:
    card = fire(api, "news2-patient-view", _news2_at(94, fio2))
    assert card["summary"].startswith(expected), card["summary"]
    line = next(x for x in card["detail"].splitlines() if "Supplemental oxygen" in x)
    assert line.startswith(f"- {shown}")
    if fio2["valueQuantity"]["value"] == 0.40:
        assert line.endswith("· _converted from 0.4 (a fraction)_")


@pytest.mark.parametrize("record_oxygen", [
    [_fio2(0.40, None)],                                                       # bare 0.40: no unit
    [_fio2(40, None)],                                                         # bare 40: no unit either
    [_fio2(0.40, {"unit": "%", "system": F.UCUM, "code": "%"})],               # 0.4 %: a fraction sent as %
    [_fio2(0.40, None), _fio2(21, {"unit": "%", "system": F.UCUM, "code": "%"}, hours=5)],  # an older air reading
])
def test_news2_unusable_fio2_is_never_read_as_air(api: Any, record_oxygen: list[dict[str, Any]]) -> None:
    card = fire(api, "news2-patient-view", _news2_at(94, *copy.deepcopy(record_oxygen)))
    assert "NEWS2 not calculated" in card["summary"] and "Supplemental oxygen" in card["summary"]
    assert "Air" not in card["detail"]
    assert "Supplemental oxygen: Newest result not usable: " in card["detail"]


# ---- truncated searches, local dates, units ----------------------------------------------------------------------
def _truncated_conditions(api: Any, service: str, record: list[dict[str, Any]]) -> dict[str, Any]:
    """The EHR sends a Condition search with a `next` link and no fhirServer to page from."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, service), record, context)
    for key, bundle in prefetch.items():
        if key.startswith("condition-"):
            bundle["link"] = [{"relation": "next", "url": f"{FHIR}/Condition?page=2"}]
    body = {"hook": "patient-view", "hookInstance": "5b0e3f1c-7d4a-4c55-9a8e-2f6b1d0c9e78", "context": context,
            "prefetch": prefetch}
    return api.post(f"/cds-services/{service}", json=body).json()["cards"][0]


def test_truncated_condition_search_never_defaults_to_absent(api: Any) -> None:
    # PCE: the same search would have shown established ASCVD, so membership of the population is unconfirmed
    card = _truncated_conditions(api, "ascvd-pce-10y", MALE_55)
    assert "%" not in card["summary"]
    assert "could not be confirmed" in card["detail"]
    # CHA2DS2-VASc with AF found on the first page: the other items cannot be taken as absent, a mechanical valve or
    # mitral stenosis (valvular AF, outside the score) first of all; the card must not say the record shows one
    af = _truncated_conditions(api, "cha2ds2-vasc", [F.patient("p1", 70, "female"), F.condition("49436004")])
    assert af["summary"].startswith("No CHA2DS2-VASc estimate: CHA2DS2-VASc is not for valvular AF, and a mechanical "
                                    "heart valve cannot be ruled out"), af["summary"]
    assert "absence cannot be assumed" in af["detail"]
    assert "the record shows" not in af["detail"] and "**Instead:**" not in af["detail"]


@pytest.mark.parametrize(("service", "said"), [
    ("ascvd-pce-10y", "The Pooled Cohort Equations are for primary prevention; established ASCVD cannot be ruled out"),
    ("prevent-base", "PREVENT is for people without cardiovascular disease; ASCVD cannot be ruled out"),
    ("prevent-full", "PREVENT is for people without cardiovascular disease; ASCVD cannot be ruled out"),
    ("kfre-4var", "KFRE is not for patients on dialysis or with a kidney transplant, and neither can be ruled out"),
    ("t2d-onset-5y", "this model is for people without diabetes, and diabetes cannot be ruled out"),
    ("cha2ds2-vasc", "CHA2DS2-VASc is for patients with atrial fibrillation, and none was found in the records "
                     "received"),
])
def test_a_truncated_search_never_says_the_record_shows_an_exclusion(api: Any, service: str, said: str) -> None:
    """Nothing on the first page of the Condition search: the refusal says what cannot be ruled out, not that the
    record shows ASCVD, heart failure or diabetes (or that no AF is on the problem list), and gives no guidance
    written for a patient who has it. The summary (140 characters at most) carries the whole sentence."""
    card = _truncated_conditions(api, service, MALE_55)
    assert "%" not in card["summary"]
    assert said in card["summary"], (card["summary"], card["detail"])
    assert "the record shows" not in card["summary"] + card["detail"]
    assert "already on the problem list" not in card["summary"] + card["detail"]
    assert "none is on the problem list" not in card["summary"] + card["detail"]
    assert "**Instead:**" not in card["detail"]


def test_age_is_counted_on_the_patients_local_date(api: Any) -> None:
    # Honolulu (UTC-10): the newest reading carries the offset. Birthday is "tomorrow" in UTC terms only when the
    # UTC date is ahead; build the birth date from the local date so the local age is exactly 40.
    from datetime import timezone
    local_now = F.NOW.astimezone(timezone(timedelta(hours=-10)))
    birth = local_now.date().replace(year=local_now.year - 40)
    record = copy.deepcopy(F.pce_record(gender="male", race="white", age=40))
    record[0]["birthDate"] = birth.isoformat()
    record[3]["effectiveDateTime"] = local_now.replace(microsecond=0).isoformat()
    card = fire(api, "ascvd-pce-10y", record)
    state = api.app.state.cds
    assert state.recorder.flush(10)
    assert state.store.prediction(state.store.predictions_for_card(card["uuid"])[0]["prediction_id"])["features"]["age"]["value"] == 40


@pytest.mark.parametrize(("quantity", "usable"), [
    ({"value": 37.0, "unit": "C"}, True),                                                  # text 'C': Celsius
    ({"value": 37.0, "unit": "°C", "system": F.UCUM, "code": "Cel"}, True),
    ({"value": 37.0, "unit": "C", "system": F.UCUM, "code": "C"}, False),                 # UCUM C is the coulomb
    ({"value": 98.6, "unit": "F", "system": F.UCUM, "code": "F"}, False),                 # UCUM F is the farad
])
def test_temperature_units_are_read_as_ucum_says(api: Any, quantity: dict[str, Any], usable: bool) -> None:
    record = _news2_record()
    temp = next(r for r in record if r.get("code", {}).get("coding", [{}])[0].get("code") == "8310-5")
    temp["valueQuantity"] = quantity
    card = fire(api, "news2-patient-view", record)
    assert card["summary"].startswith("NEWS2 0") is usable
    if not usable:
        assert "Temperature" in card["summary"]


def test_plain_ml_per_min_is_not_an_indexed_egfr(api: Any) -> None:
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, "mL/min"),
              F.quantity_obs("9318-7", 30, "mg/g")]
    card = fire(api, "kfre-4var", record)
    assert "not calculated" in card["summary"]


CPT = "http://www.ama-assn.org/go/cpt"
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
KFRE_MAN_60 = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
               F.quantity_obs("9318-7", 300, "mg/g")]
NOT_FOR_KRT = "No Kidney failure risk (KFRE) estimate: KFRE is not for patients on dialysis"


def _procedure(code: str, system: str, display: str, days: int) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"proc-{code}-{days}", "status": "completed",
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(days)}


@pytest.mark.parametrize("record", [
    _procedure("50360", CPT, "Renal allotransplantation, implantation of graft", 1500),
    _procedure("0TY10Z0", PCS, "Transplantation of Left Kidney, Allogeneic, Open Approach", 1500),
    F.condition("737295003", display="Transplanted kidney present"),
    F.condition("70536003", clinical="resolved", display="Transplant of kidney"),
    F.condition("175901007", clinical="inactive", display="Live donor renal transplant"),
    F.condition("T86.11", "http://hl7.org/fhir/sid/icd-10-cm", display="Kidney transplant rejection"),
    _procedure("90960", CPT, "ESRD related services monthly, 4 or more visits", 10),
    _procedure("90935", CPT, "Hemodialysis procedure with single evaluation", 2),
])
def test_kfre_refuses_a_transplant_or_dialysis_however_it_is_coded(api: Any, record: dict[str, Any]) -> None:
    """KFRE is not for transplant recipients or patients on dialysis (Tangri 2011, 2016). A transplant billed in CPT
    or ICD-10-PCS, a 'transplanted kidney present' finding, a transplant entry marked resolved, a rejection, or
    dialysis billed in CPT had all been read as 'no dialysis or kidney transplant on record' (5-year risk 8.8%)."""
    card = fire(api, "kfre-4var", KFRE_MAN_60 + [record])
    assert card["summary"].startswith(NOT_FOR_KRT), card["summary"]


@pytest.mark.parametrize("record", [
    F.condition("714152005", display="Chronic kidney disease stage 5 on dialysis"),
    F.condition("443143006", display="Dependence on hemodialysis"),
    F.condition("N18.6", "http://hl7.org/fhir/sid/icd-10-cm", display="End stage renal disease"),
    F.condition("46177005", display="End-stage renal disease"),
    F.condition("719352000", display="Kidney transplant recipient"),
    F.condition("236583003", display="Failed renal transplant"),
    _procedure("708931003", F.SNOMED, "Maintenance hemodialysis", 3),
    _procedure("5A1D70Z", PCS, "Performance of Urinary Filtration, Intermittent, Less than 6 Hours Per Day", 3),
])
def test_kfre_refuses_kidney_failure_dialysis_or_a_transplant_coded_as_clinicians_code_them(
        api: Any, record: dict[str, Any]) -> None:
    """The twelfth audit: CKD stage 5 on dialysis, dependence on haemodialysis, end-stage renal disease (the outcome
    KFRE predicts, already there), a transplant recipient or a failed transplant, maintenance haemodialysis in SNOMED
    CT or ICD-10-PCS: each had been 'no dialysis or kidney transplant on record' and a 5-year risk."""
    card = fire(api, "kfre-4var", KFRE_MAN_60 + [record])
    assert card["summary"].startswith("No Kidney failure risk (KFRE) estimate: KFRE"), card["summary"]


@pytest.mark.parametrize("record", [
    F.condition("Z49.01", "http://hl7.org/fhir/sid/icd-10-cm", display="Encounter for fitting of dialysis catheter"),
    F.condition("433146000", display="Chronic kidney disease stage 5"),
])
def test_preparing_for_dialysis_or_stage_5_is_not_being_on_dialysis_for_the_egfr(api: Any,
                                                                                 record: dict[str, Any]) -> None:
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 6.8, "mg/dL", days=2),
                                           record])
    assert card["summary"].startswith("eGFR"), card["summary"]


@pytest.mark.parametrize("prep", [
    F.condition("Z49.01", "http://hl7.org/fhir/sid/icd-10-cm", display="Fitting of extracorporeal dialysis catheter"),
    F.condition("Z49.0", "http://hl7.org/fhir/sid/icd-10", display="Preparatory care for dialysis"),
])
def test_kfre_scores_a_patient_being_prepared_for_dialysis(api: Any, prep: dict[str, Any]) -> None:
    """Z49.0 is preparatory care (a catheter fitted before dialysis begins): the patients KDIGO 2024 uses KFRE for, to
    time the preparation. KFRE had refused them as 'on dialysis or with a kidney transplant'."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 14, "mL/min/{1.73_m2}"),
              F.quantity_obs("9318-7", 900, "mg/g"), prep]
    card = fire(api, "kfre-4var", record)
    assert card["summary"].startswith("5-year kidney failure risk"), card["summary"]


@pytest.mark.parametrize("service", ["kfre-4var", "egfr-ckd-epi-2021"])
def test_a_dialysis_encounter_diagnosis_closed_the_day_it_was_coded_is_recent_dialysis(api: Any, service: str) -> None:
    """Haemodialysis adequacy testing (Z49.31) 20 days ago, as an encounter diagnosis closed that day ('resolved'):
    the patient is on maintenance haemodialysis; KFRE had given 93.6 % and the eGFR 'planning kidney replacement
    therapy'. One from two years ago is not recent."""
    def adequacy(days: int) -> dict[str, Any]:
        entry = F.condition("Z49.31", "http://hl7.org/fhir/sid/icd-10-cm", clinical="resolved",
                            display="Encounter for adequacy testing for hemodialysis")
        return {**entry, "onsetDateTime": F.days_ago(days), "abatementDateTime": F.days_ago(days)}

    base = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 14, "mL/min/{1.73_m2}"),
            F.quantity_obs("9318-7", 900, "mg/g"), F.quantity_obs("2160-0", 4.5, "mg/dL", days=2)]
    recent = fire(api, service, base + [adequacy(20)])
    assert recent["summary"].startswith("No ") and "dialysis session in the last 90 days" in recent["summary"], \
        recent["summary"]
    old = fire(api, service, base + [adequacy(730)])
    assert not old["summary"].startswith("No "), old["summary"]


def test_kfre_a_course_of_dialysis_years_ago_is_not_being_on_dialysis(api: Any) -> None:
    """One dialysis for acute kidney injury five years ago: the patient is not on dialysis, and KFRE applies; the
    same session last month means he is."""
    old = _procedure("265764009", F.SNOMED, "Renal dialysis", 5 * 365)
    card = fire(api, "kfre-4var", KFRE_MAN_60 + [old])
    assert card["summary"].startswith("5-year kidney failure risk"), card["summary"]
    recent = fire(api, "kfre-4var", KFRE_MAN_60 + [_procedure("265764009", F.SNOMED, "Renal dialysis", 30)])
    assert recent["summary"].startswith(NOT_FOR_KRT), recent["summary"]


@pytest.mark.parametrize("dialysis", [
    F.condition("Z99.2", "http://hl7.org/fhir/sid/icd-10-cm", display="Dependence on renal dialysis"),
    F.condition("105502003", display="Dependence on renal dialysis"),
    F.condition("714152005", display="Chronic kidney disease stage 5 on dialysis"),
    F.condition("443143006", display="Dependence on hemodialysis"),
    _procedure("90935", CPT, "Hemodialysis procedure with single evaluation", 3),
])
def test_no_egfr_is_estimated_for_a_patient_on_dialysis(api: Any, dialysis: dict[str, Any]) -> None:
    """On dialysis the creatinine is set by the dialysis, and the equations estimate no kidney function (KDIGO 2024);
    the card had given an eGFR of 5 and 'KDIGO suggests planning kidney replacement therapy' to a patient on it."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 9.0, "mg/dL", days=2), dialysis]
    card = fire(api, "egfr-ckd-epi-2021", record)
    assert card["summary"].startswith("No eGFR (CKD-EPI 2021) estimate: An eGFR does not estimate kidney function "
                                      "on dialysis"), \
        card["summary"]
    assert "planning kidney replacement" not in card["detail"]
    transplant = fire(api, "egfr-ckd-epi-2021", record[:2] + [F.condition("Z94.0", "http://hl7.org/fhir/sid/icd-10-cm",
                                                                           display="Kidney transplant status")])
    assert transplant["summary"].startswith("eGFR"), transplant["summary"]  # a transplanted kidney is estimated


def _prevent_record(age: int = 50) -> list[dict[str, Any]]:
    """Khan 2024 sample profile (female): SBP 160 treated, TC 200, HDL 45, diabetes, eGFR 90, BMI 35."""
    return [F.patient("p1", age, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
            F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
            F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]


@pytest.mark.parametrize(("age", "gender", "egfr", "acr", "published_2y", "published_5y"), [
    (63, "female", 45, 30, 0.4, 1.3),   # Clinician Reviews Q&A (Tangri 2011 equation, kidneyfailurerisk.com)
    (55, "male", 38, 150, 2.9, 9.0),
])
def test_kfre_reproduces_published_examples_through_http(api: Any, age: int, gender: str, egfr: float, acr: float,
                                                         published_2y: float, published_5y: float) -> None:
    import math

    card = fire(api, "kfre-4var", [F.patient("p1", age, gender), F.quantity_obs("98979-8", egfr, "mL/min/{1.73_m2}"),
                                   F.quantity_obs("9318-7", acr, "mg/g")])
    preds = risk_assessment(card)["prediction"]
    five, two = (p["probabilityDecimal"] * 100 for p in preds)
    # the source shows percentages cut to one decimal, as the calculator displays them
    assert math.floor(two * 10 + 1e-9) / 10 == published_2y
    assert math.floor(five * 10 + 1e-9) / 10 == published_5y


def test_explanations_name_the_patients_actual_values() -> None:
    from cards.builder import contribution_label
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.mapper import map_features
    from fhir_mapping.spec import load_feature_spec
    from fhir_mapping.valuesets import ValueSetLibrary

    folder = ROOT / "models" / "ascvd-pce-10y" / "1.0.0"
    library = ValueSetLibrary([folder / "valuesets"])
    spec = load_feature_spec(folder / "features.yaml", library)
    record = F.pce_record(gender="male", race="white", smoker=True, tc=260)
    mapping = map_features(spec, ResourceIndex((r, None) for r in record), at=F.NOW, valuesets=library,
                           patient_id="p1")
    assert contribution_label("smoker", "Smoking status", mapping, spec) == "Smoking status: Current smoker"
    assert contribution_label("female", "Sex female", mapping, spec) == "Sex: Male"
    assert contribution_label("total_cholesterol", "Total cholesterol", mapping, spec) == \
        "Total cholesterol: 260 mg/dL"


def test_drugs_of_other_known_classes_are_not_called_unrecognised(api: Any) -> None:
    record = [F.patient("p1", 70, "female"), F.condition("49436004"),
              med(rx("197361", "amlodipine 5 MG Oral Tablet")), med({"text": "Zorblax 10 mg daily"})]
    card = fire(api, "cha2ds2-vasc", record)
    assert "Diabetes: No — 1 active medication not recognised: Zorblax 10 mg daily" in card["detail"]
    assert "Hypertension: **Yes — amlodipine 5 MG Oral Tablet**" in card["detail"]  # identified, and counted


def details_page(api: Any, card: dict[str, Any]) -> str:
    url = next(link["url"] for link in card["links"] if link["label"] == "Full reasoning, sources and what-if")
    resp = api.client.get(url.replace("http://testserver", ""))
    assert resp.status_code == 200
    return resp.text


def test_the_details_page_says_how_each_drug_was_recognised_and_which_were_not(api: Any) -> None:
    import html

    recognised = fire(api, "ascvd-pce-10y", MALE_55 + [med(rx("197361"))])
    page = html.unescape(details_page(api, recognised))
    assert "amlodipine 5 MG Oral Tablet, recognised by RxNorm code 197361" in page
    by_name = fire(api, "ascvd-pce-10y", MALE_55 + [med({"text": "Norvasc 5 mg tablet"})])
    assert "recognised by the name Norvasc" in html.unescape(details_page(api, by_name))
    many = [med({"text": f"Zorblax {n} mg daily"}) for n in (5, 10, 20)]
    card = fire(api, "ascvd-pce-10y", MALE_55 + many)
    assert "3 active medications not recognised (see full reasoning)" in card["detail"]
    page = html.unescape(details_page(api, card))
    assert "3 active medications not recognised as antihypertensive" in page
    assert all(f"Zorblax {n} mg daily" in page for n in (5, 10, 20))


def test_a_pulse_oximetry_reading_without_oxygen_components_is_not_passed_over_as_oxygen_evidence() -> None:
    """Most SpO2 readings carry no oxygen component: they say nothing about oxygen, so the default's note must not
    list each of them as an oxygen record passed over ('panel has no component 3151-8')."""
    from fhir_mapping.index import ResourceIndex, iter_resources
    from fhir_mapping.mapper import map_features
    from fhir_mapping.spec import load_feature_spec
    from fhir_mapping.valuesets import ValueSetLibrary

    folder = ROOT / "models" / "news2" / "1.0.0"
    library = ValueSetLibrary([folder / "valuesets"])
    spec = load_feature_spec(folder / "features.yaml", library)
    record = _without(_news2_record(), "59408-5") + [_pulse_oximetry(96)]
    index = ResourceIndex(iter_resources(F.bundle(record)))
    oxygen = map_features(spec, index, at=F.NOW, valuesets=library, patient_id="p1").values["on_oxygen"]
    assert oxygen.value == 0 and oxygen.defaulted
    assert oxygen.passed_over is None and "passed over" not in (oxygen.note or ""), oxygen.note


# ---- the nineteenth audit: reasons in words, rate control, absent components, an adult's old height ---------------

AF_MAN_60 = [F.patient("p1", 60, "male"), F.condition("49436004", display="Atrial fibrillation")]  # scores 0


def _cha2ds2(api: Any, *extra: dict[str, Any]) -> str:
    return fire(api, "cha2ds2-vasc", AF_MAN_60 + list(extra))["summary"]


def _metformin_for(reason: str) -> dict[str, Any]:
    return med(rx("861007", "metformin hydrochloride 500 MG Oral Tablet"), reasonCode=_text_reason(reason))


def _pce_treated(api: Any, drug: str, reason: str) -> bool:
    card = fire(api, "ascvd-pce-10y", MALE_55 + [med({"text": drug}, reasonCode=_text_reason(reason))])
    return risk(card) == pytest.approx(round(pce_expected(bp_treated=1), 6), abs=1e-6)


@pytest.mark.parametrize(("reason", "score"), [
    ("PCOS; T2DM; h/o gestational diabetes", 1),              # an exception cuts out its own term, not the text
    ("Pre-diabetes progressed to T2DM", 1),
    ("Obesity, type 2 diabetes (hx of gestational DM)", 1),
    ("Obesity, DMT2", 1), ("PCOS; DMT2", 1),
    ("Prediabetes - DM2 prevention", 0), ("DM2 prevention", 0), ("Obese, at risk for DM2", 0),
    ("prediabetes, A1c 6.3, strong FHx DM", 0), ("insulin resistance", 0),
])
def test_metformin_reasons_in_words_say_diabetes_or_its_prevention(api: Any, reason: str, score: int) -> None:
    """Lip 2010 D: a man of 60 with AF scores 1 with diabetes, 0 without; metformin to prevent diabetes (ADA 2025
    section 3) is not diabetes, metformin for type 2 diabetes is, whatever history the reason adds."""
    assert _cha2ds2(api, _metformin_for(reason)).startswith(f"CHA2DS2-VASc {score}"), reason


def test_insulin_for_hyperkalaemia_is_not_diabetes(api: Any) -> None:
    order = med({"text": "insulin regular (human) 10 units IV once"}, reasonCode=_text_reason("hyperkalemia"))
    assert _cha2ds2(api, order).startswith("CHA2DS2-VASc 0")


@pytest.mark.parametrize(("drug", "reason", "treated"), [
    ("propranolol 40 mg tablet", "Migraine; HTN; idiopathic intracranial hypertension", True),
    ("propranolol 20 mg tablet", "Essential tremor, HT", True),
    ("propranolol 20 mg tablet", "tremor; elevated BPs", True),
    ("clonidine 0.1 mg tablet", "hot flashes", False),
    ("propranolol 10 mg tablet", "performance anxiety", False),
    ("nadolol 20 mg tablet", "portal hypertension - variceal bleed prophylaxis", False),
])
def test_blood_pressure_reasons_in_words_and_other_uses(api: Any, drug: str, reason: str, treated: bool) -> None:
    assert _pce_treated(api, drug, reason) is treated, reason


@pytest.mark.parametrize(("drug", "reason"), [
    ("metoprolol tartrate 25 mg tablet", _text_reason("AF rate control")),
    ("diltiazem ER 120 mg capsule", _text_reason("rate control")),
    ("metoprolol tartrate 25 mg tablet", _reason("I48.91", "http://hl7.org/fhir/sid/icd-10-cm",
                                                 "Unspecified atrial fibrillation")),
    ("verapamil ER 180 mg tablet", _reason("I4891", "http://hl7.org/fhir/sid/icd-10-cm", "AF")),
])
def test_a_rate_control_drug_is_not_cha2ds2_vascs_hypertension(api: Any, drug: str,
                                                               reason: list[dict[str, Any]]) -> None:
    """Lip 2010 H is hypertension: a beta blocker or diltiazem given for rate control, in the very patients the
    score is for, had made a man of 60 with AF score 1 ('consider anticoagulation') instead of 0. Given with a
    reason that names hypertension too, it counts."""
    assert _cha2ds2(api, med({"text": drug}, reasonCode=reason)).startswith("CHA2DS2-VASc 0")
    both = med({"text": "metoprolol tartrate 25 mg tablet"}, reasonCode=_text_reason("AF rate control; HTN"))
    assert _cha2ds2(api, both).startswith("CHA2DS2-VASc 1")


@pytest.mark.parametrize("order", [
    med({"text": "amlodipine 5 mg tablet"}, reasonCode=_reason("I48.91", "http://hl7.org/fhir/sid/icd-10-cm",
                                                              "Unspecified atrial fibrillation")),
    med({"text": "hydrochlorothiazide 25 mg tablet"}, reasonCode=_text_reason("atrial fibrillation")),
])
def test_a_drug_that_does_not_control_the_rate_is_blood_pressure_treatment_whatever_the_linked_diagnosis(
        api: Any, order: dict[str, Any]) -> None:
    """EHRs link an order to the visit's diagnosis: amlodipine or a thiazide 'for' AF does not slow the heart, so it
    is blood pressure treatment (Lip 2010 H: a man of 60 with AF scores 1). Rate control is another use only for
    beta blockers, diltiazem and verapamil (the class's `other_uses.limited`)."""
    assert _cha2ds2(api, order).startswith("CHA2DS2-VASc 1")


@pytest.mark.parametrize(("drug", "reason", "treated"), [
    ("furosemide 40 mg tablet", "edema", False), ("spironolactone 100 mg tablet", "ascites", False),
    ("lisinopril 10 mg tablet", "edema", True),           # an ACE inhibitor is not given for oedema
    ("nadolol 20 mg tablet", "Portal HTN", False), ("propranolol 20 mg tablet", "portal HTN, varices", False),
    ("diltiazem 120 mg capsule", "pulm HTN", False),
])
def test_the_cardiac_and_fluid_uses_hold_for_the_drugs_that_have_them(api: Any, drug: str, reason: str,
                                                                      treated: bool) -> None:
    """Goff 2013's treated SBP is hypertension treatment: a diuretic for oedema or ascites, a non-selective beta
    blocker for varices, a calcium channel blocker for pulmonary hypertension is not, and 'HTN' in 'portal HTN' is
    not blood pressure; an ACE inhibitor 'for oedema' is not one of these, so it counts."""
    assert _pce_treated(api, drug, reason) is treated, (drug, reason)


def _absent_component(reading: dict[str, Any], code: str) -> dict[str, Any]:
    """A component with no value, as FHIR vital signs (vs-3) require it to be written: a dataAbsentReason."""
    for comp in reading["component"]:
        if comp["code"]["coding"][0]["code"] == code:
            comp.pop("valueQuantity")
            comp["dataAbsentReason"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed"}]}
    return reading


@pytest.mark.parametrize(("extra", "score"), [
    ([_absent_component(_pulse_oximetry(95, flow=1), "3151-8")], 1),                  # on air: SpO2 95 scores 1
    ([_absent_component(_absent_component(_pulse_oximetry(95, flow=1, fio2=30), "3151-8"), "3150-0"),
      F.vital("3150-0", 40, "%", hours=3)], 3),                                          # the older FiO2 40 % stands
])
def test_news2_an_oxygen_component_with_no_value_says_nothing(api: Any, extra: list[dict[str, Any]],
                                                              score: int) -> None:
    card = fire(api, "news2-patient-view", _without(_news2_record(), "59408-5") + extra)
    assert card["summary"].startswith(f"NEWS2 {score}"), card["summary"]


@pytest.mark.parametrize(("weight", "height_days_ago"), [(100, 5), (80, 1500)])
def test_prevent_takes_todays_bmi_from_a_newer_weight(api: Any, weight: float, height_days_ago: int) -> None:
    """Khan 2024's sample woman with a BMI charted 700 days ago (25, or 35) and a weight measured this week: the
    weight and her height give today's BMI, which the heart-failure equations use (the newest evidence wins, as for
    eGFR) — also when the height was measured four years ago, which still holds for an adult (the BMI is dated by
    its weight): 7.9 % where the old 25 gave 6.1 %, and 6.1 % where the old 35 gave 8.1 %."""
    ref = load_module(ROOT / "models" / "prevent-base" / "1.0.0" / "reference.py")
    charted = 25 if weight == 100 else 35
    record = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
              F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
              F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
              F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"),
              F.quantity_obs("39156-5", charted, "kg/m2", days=700), F.quantity_obs("29463-7", weight, "kg", days=3),
              F.quantity_obs("8302-2", 170, "cm", days=height_days_ago)]
    card = fire(api, "prevent-base", record)
    assessment = next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                      if a["resource"]["resourceType"] == "RiskAssessment")
    hf = next(p["probabilityDecimal"] for p in assessment["prediction"] if p["outcome"]["text"] == "10-year heart failure")
    inputs = {"age": 50, "female": 1, "total_cholesterol": 200, "hdl": 45, "sbp": 160, "bp_treated": 1, "statin": 0,
              "diabetes": 1, "smoker": 0, "egfr": 90, "bmi": weight / 1.7 ** 2}
    assert hf == pytest.approx(ref.compute(inputs)["hf_10y"], abs=1e-4)


def test_prevent_does_not_date_a_bmi_by_its_weight_when_the_height_is_a_childs(api: Any) -> None:
    """A woman of 50 whose only height (150 cm) was measured at 14: 70 kg this week over that height is no adult BMI,
    so the BMI of 24 charted 60 days ago stands (Khan 2024's heart-failure equations with BMI 24), not 31.1."""
    ref = load_module(ROOT / "models" / "prevent-base" / "1.0.0" / "reference.py")
    record = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
              F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
              F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
              F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"),
              F.quantity_obs("39156-5", 24, "kg/m2", days=60), F.quantity_obs("29463-7", 70, "kg", days=3),
              F.quantity_obs("8302-2", 150, "cm", days=36 * 365)]
    card = fire(api, "prevent-base", record)
    assessment = next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                      if a["resource"]["resourceType"] == "RiskAssessment")
    hf = next(p["probabilityDecimal"] for p in assessment["prediction"] if p["outcome"]["text"] == "10-year heart failure")
    inputs = {"age": 50, "female": 1, "total_cholesterol": 200, "hdl": 45, "sbp": 160, "bp_treated": 1, "statin": 0,
              "diabetes": 1, "smoker": 0, "egfr": 90, "bmi": 24}
    assert hf == pytest.approx(ref.compute(inputs)["hf_10y"], abs=1e-4)


@pytest.mark.parametrize(("drug", "reason"), [
    ("metoprolol succinate 50 mg tablet", _reason("84114007", F.SNOMED, "Heart failure")),
    ("carvedilol 12.5 mg tablet", _reason("I50.22", "http://hl7.org/fhir/sid/icd-10-cm",
                                          "Chronic systolic (congestive) heart failure")),
    ("metoprolol tartrate 25 mg tablet", _reason("I25.2", "http://hl7.org/fhir/sid/icd-10-cm",
                                                 "Old myocardial infarction")),
    ("sacubitril-valsartan 24-26 mg tablet", _text_reason("HFrEF")),
])
def test_an_orders_reason_that_names_heart_failure_or_an_mi_is_not_read_as_no(api: Any, drug: str,
                                                                              reason: list[dict[str, Any]]) -> None:
    """Lip 2010's C and V: a beta blocker ordered 'for heart failure' or 'old MI' says what the problem list may not.
    CHA2DS2-VASc gives no number (the input is unknown, naming the order), never 0; PREVENT (for people without
    heart failure or ASCVD, Khan 2024) and the PCE (without ASCVD, Goff 2013) refuse."""
    order = med({"text": drug}, reasonCode=reason)
    card = fire(api, "cha2ds2-vasc", AF_MAN_60 + [order])
    assert "not calculated" in card["summary"] and drug.split()[0] in card["detail"], card["summary"]
    assert "%" not in fire(api, "prevent-base", _KHAN_WOMAN + [order])["summary"]
    if "I25.2" in str(reason):
        assert "%" not in fire(api, "ascvd-pce-10y", MALE_55 + [order])["summary"]


_KHAN_WOMAN = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
               F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
               F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]


def test_an_order_for_something_else_or_a_stopped_order_changes_nothing(api: Any) -> None:
    """Reasons that are not the condition, and an order no longer active, leave the scores as they were."""
    migraine = med({"text": "propranolol 20 mg tablet"}, reasonCode=_text_reason("migraine prophylaxis"))
    stopped = {**med({"text": "metoprolol succinate 50 mg tablet"},
                     reasonCode=_reason("84114007", F.SNOMED, "Heart failure")), "status": "stopped"}
    risk_of = med({"text": "atorvastatin 40 mg tablet"}, reasonCode=_text_reason("at risk for heart attack"))
    for order in (migraine, stopped, risk_of):
        assert _cha2ds2(api, order).startswith("CHA2DS2-VASc 0"), order


def test_a_low_cha2ds2_vasc_on_an_anticoagulant_with_nos_not_fully_checked_says_so(api: Any) -> None:
    """A man of 50 with AF on apixaban scores 0, but the EHR did not send the MedicationStatement search, so
    "Hypertension: No" and "Diabetes: No" are not fully checked. Each would add a point, and at 1 oral
    anticoagulation is reasonable (2023 ACC/AHA/ACCP/HRS AF guideline, class 2a): the card must not say flatly that
    AF alone does not call for the anticoagulant; it names what was not checked."""
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation"),
              F.med_request("1364445", display="apixaban 5 MG Oral Tablet")]
    card = fire(api, "cha2ds2-vasc", record, unsent=("MedicationStatement?",))
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    consider = card["detail"].split("**Consider:**", 1)[1]
    assert "AF alone does not call for one" not in consider, consider
    assert "On an anticoagulant (apixaban 5 MG Oral Tablet). Not fully checked: hypertension" in consider, consider
    read = fire(api, "cha2ds2-vasc", record)  # every search read: the score stands, and so does the advice
    assert "AF alone does not call for one" in read["detail"], read["detail"]


def _orders(card: dict[str, Any]) -> list[str]:
    return [c["code"] for s in card.get("suggestions", []) for a in s["actions"]
            if a["resource"]["resourceType"] == "ServiceRequest" for c in a["resource"]["code"]["coding"]]


@pytest.mark.parametrize("gender", ["other", "unknown"])
def test_no_creatinine_is_ordered_when_the_egfr_lacks_only_the_sex(api: Any, gender: str) -> None:
    """CKD-EPI 2021 needs sex (Inker 2021). With a creatinine drawn last month and the gender 'other' or 'unknown',
    the KFRE card says the eGFR cannot be computed without sex: a new creatinine would not give it, so none is
    ordered, and the details page does not say that nothing usable is on record (the creatinine is)."""
    from test_details_view import details_path

    record = [F.patient("p1", 60, gender), F.quantity_obs("2160-0", 2.0, "mg/dL", days=30),
              F.quantity_obs("9318-7", 50, "mg/g", days=30)]
    card = fire(api, "kfre-4var", record)
    assert "not calculated" in card["summary"] and "Sex" in card["summary"], card["summary"]
    assert "Cannot be computed without sex" in card["detail"], card["detail"]
    assert "2160-0" not in _orders(card), card["suggestions"]
    page = api.client.get(details_path(card)).text
    assert "Cannot be computed without sex" in page
    assert "Nothing usable on record" not in page
    assert "no test to order: the results are on record, and its sex is not known" in page
    assert "order: Creatinine" not in page
    no_creatinine = fire(api, "kfre-4var", [F.patient("p1", 60, gender), F.quantity_obs("9318-7", 50, "mg/g")])
    assert "2160-0" in _orders(no_creatinine), no_creatinine  # nothing drawn: the test is what is missing


def test_kfre_reads_an_egfr_of_29_8_as_reported_as_the_egfr_card_does(api: Any) -> None:
    """A woman of 85 whose creatinine gives a CKD-EPI 2021 eGFR of 29.8 (Inker 2021), reported as 30: the eGFR card
    calls it G3b (KDIGO 2024: G3b 30–44, categories on the reported whole number). The KFRE card for the same
    creatinine must not call it below 30 (G4–G5) and recommend referral on that ground; at 29.4 (reported 29) both
    agree it is G4."""
    def creatinine_for(egfr: float, age: int) -> float:  # Inker 2021, woman, above kappa 0.7, solved for Scr
        return 0.7 * (egfr / (142 * 0.9938 ** age * 1.012)) ** (-1 / 1.2)

    for egfr, g4 in ((29.8, False), (29.4, True)):
        record = [F.patient("p1", 85, "female"), F.quantity_obs("2160-0", round(creatinine_for(egfr, 85), 3), "mg/dL"),
                  F.quantity_obs("9318-7", 3, "mg/g")]
        egfr_card = fire(api, "egfr-ckd-epi-2021", record)
        kfre_card = fire(api, "kfre-4var", record)
        assert ("G4" in egfr_card["summary"]) is g4, egfr_card["summary"]
        assert ("eGFR below 30 (G4–G5)" in kfre_card["detail"]) is g4, (egfr_card["summary"], kfre_card["detail"])


def test_kfre_tests_a_laboratory_reported_egfr_of_29_6_as_written_and_shows_a_computed_one_as_reported(
        api: Any) -> None:
    """KDIGO 2012 rec. 5.1.1 (kept in KDIGO 2024): refer at an eGFR below 30 whatever the kidney failure risk. A
    laboratory that reports an eGFR of 29.6 (LOINC 98979-8) has reported one below 30, G4, and the KFRE card must
    say so even at a low risk. A creatinine whose CKD-EPI 2021 eGFR is 29.8 is reported as 30 (eGFRs are reported as
    whole numbers, as the eGFR card does: "30, G3b"): the KFRE card shows it as 30, never as "29.8" beside advice
    that reads it as 30. The details page tests the number the card tested."""
    from test_details_view import details_path

    def creatinine_for(egfr: float, age: int) -> float:  # Inker 2021, woman, above kappa 0.7, solved for Scr
        return 0.7 * (egfr / (142 * 0.9938 ** age * 1.012)) ** (-1 / 1.2)

    reported = [F.patient("p1", 85, "female"), F.quantity_obs("98979-8", 29.6, "mL/min/{1.73_m2}"),
                F.quantity_obs("9318-7", 4, "mg/g")]
    card = fire(api, "kfre-4var", reported)
    assert "(low)" in card["summary"] or "(intermediate)" in card["summary"], card["summary"]
    assert "eGFR: **29.6 mL/min/1.73 m²**" in card["detail"], card["detail"]
    assert "eGFR below 30 (G4–G5)" in card["detail"], card["detail"]
    assert "eGFR below 30 (G4–G5)" in api.client.get(details_path(card)).text

    computed = [F.patient("p1", 85, "female"), F.quantity_obs("2160-0", round(creatinine_for(29.8, 85), 3), "mg/dL"),
                F.quantity_obs("9318-7", 4, "mg/g")]
    card = fire(api, "kfre-4var", computed)
    assert "eGFR: **30 mL/min/1.73 m²**" in card["detail"], card["detail"]
    assert "29.8" not in card["detail"] and "eGFR below 30" not in card["detail"], card["detail"]
    egfr_card = fire(api, "egfr-ckd-epi-2021", computed)
    assert "eGFR 30 mL/min/1.73 m² (KDIGO G3b)" in egfr_card["summary"], egfr_card["summary"]
    page = api.client.get(details_path(card)).text
    assert "eGFR below 30" not in page
    assert "30 mL/min/1.73 m² (computed: 29.8)" in page  # as the card showed it, with the number the model read

    below = [F.patient("p1", 85, "female"), F.quantity_obs("2160-0", round(creatinine_for(29.4, 85), 3), "mg/dL"),
             F.quantity_obs("9318-7", 4, "mg/g")]
    card = fire(api, "kfre-4var", below)
    assert "eGFR: **29 mL/min/1.73 m²**" in card["detail"] and "eGFR below 30 (G4–G5)" in card["detail"], card
    assert "eGFR below 30 (G4–G5)" in api.client.get(details_path(card)).text


def test_a_saved_egfr_is_dated_and_derived_from_its_creatinine_only(api: Any) -> None:
    """The eGFR the card offers to save is computed from the creatinine, age and sex (Inker 2021); a urine ACR from
    300 days ago only chooses the advice. Dated by the ACR and derived from it, the saved eGFR would put a value of
    ten months ago in the chart, which with today's reads as an eGFR below 60 for more than 3 months (KDIGO's
    chronicity criterion). FHIR R4: effectiveDateTime is when the value was true (the specimen); derivedFrom lists
    the Observations (or documents) the value was derived from, never the Patient (R4 allows no Patient there)."""
    creatinine = F.quantity_obs("2160-0", 1.6, "mg/dL", days=10)
    acr = F.quantity_obs("9318-7", 20, "mg/g", days=300)
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), creatinine, acr])
    saved = next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                 if a["resource"]["resourceType"] == "Observation")
    assert saved["effectiveDateTime"][:10] == creatinine["effectiveDateTime"][:10], saved["effectiveDateTime"]
    assert [d["reference"] for d in saved["derivedFrom"]] == [f"Observation/{creatinine['id']}"], saved["derivedFrom"]


@pytest.mark.parametrize(("acr", "unit", "category"), [
    (12, "mg/g", "A1"), (29.96, "mg/g", "A1"), (30, "mg/g", "A2"), (45, "mg/g", "A2"), (299, "mg/g", "A2"),
    (300, "mg/g", "A3"), (300.4, "mg/g", "A3"), (2.9, "mg/mmol", "A1"), (3.0, "mg/mmol", "A2"),
    (3.5, "mg/mmol", "A2"), (29.9, "mg/mmol", "A2"), (30, "mg/mmol", "A3"), (35, "mg/mmol", "A3")])
def test_the_egfr_card_states_the_albuminuria_category_of_the_newest_acr(
        api: Any, acr: float, unit: str, category: str) -> None:
    """KDIGO 2024 stages CKD by G and A: A1 below 30 mg/g (3 mg/mmol), A2 to below 300 mg/g (30 mg/mmol), A3 from
    there. The two units' limits are rounded equivalents, not conversions (3 mg/mmol is 26.5 mg/g, yet A2), so the
    category is read in the unit the laboratory wrote, and the ACR is quoted as written (29.96 mg/g is A1, never
    shown as "30 mg/g"). An eGFR of 86 (G2) with albuminuria of A2 or more for over 3 months is CKD; the card says
    which A category the newest ACR of the last year is, and the details page says the same."""
    from test_details_view import details_path

    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL"),
              F.quantity_obs("9318-7", acr, unit, days=40)]
    card = fire(api, "egfr-ckd-epi-2021", record)
    assert "(KDIGO G2)" in card["summary"], card["summary"]
    written = f"{acr:g} mg/{'mmol' if unit == 'mg/mmol' else 'g'}"
    assert f"_Albuminuria {category} (urine ACR {written}, " in card["detail"], card["detail"]
    assert (category != "A1") == ("CKD if it persists over 3 months, whatever the eGFR" in card["detail"])
    day = F.days_ago(40)[:10]
    assert f", {day}: " in card["detail"], card["detail"]
    page = api.client.get(details_path(card)).text
    assert f"Albuminuria {category} (urine ACR " in page and f", {day}: " in page


def test_no_albuminuria_category_without_a_readable_acr_of_the_last_year(api: Any) -> None:
    """An ACR older than a year, or none, gives no A category: KDIGO asks for a current one, and the card guesses
    none; nor does a bound older than a year ('>300 mg/g' 400 days ago)."""
    old_bound = F.quantity_obs("9318-7", 300, "mg/g", days=400)
    old_bound["valueQuantity"]["comparator"] = ">"
    for acr in (old_bound, F.quantity_obs("9318-7", 45, "mg/g", days=400), None):
        record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL")] + ([acr] if acr else [])
        card = fire(api, "egfr-ckd-epi-2021", record)
        assert "Albuminuria A" not in card["detail"], card["detail"]


@pytest.mark.parametrize(("written", "category"), [
    ((">", 300, "mg/g"), "A3"), ((">=", 300, "mg/g"), "A3"), ((">", 30, "mg/mmol"), "A3"), (("<", 3, "mg/g"), "A1"),
    (("<", 30, "mg/g"), "A1"), (("<", 3, "mg/mmol"), "A1"), (("<=", 29.9, "mg/g"), "A1"),
    ((">", 30, "mg/g"), None), (("<=", 3, "mg/mmol"), None), (("<=", 30, "mg/g"), None), (("<", 300, "mg/g"), None),
    (("text", "> 300 mg/g", ">300 mg/g"), "A3"), (("text", "<3 mg/mmol", "<3 mg/mmol"), "A1"),
    (("text", "<30", ""), None)])
def test_an_acr_written_as_a_bound_gets_the_albuminuria_category_every_value_it_allows_is_in(
        api: Any, written: tuple[str, Any, str], category: str | None) -> None:
    """KDIGO 2024: A1 below 30 mg/g (3 mg/mmol), A2 30 to below 300 (3 to below 30 mg/mmol), A3 from 300 (30). A
    laboratory that writes '>300 mg/g' (or '>30 mg/mmol') has reported A3 whatever the number is, and '<3 mg/g'
    (below its detection limit) A1; the card says so, as for a number, quoting the bound as written. A bound that
    allows two categories ('>30 mg/g': A2 or A3; '<=3 mg/mmol': 3 is A2) gets no category, nor one without a unit
    ('<30'), and the details page says what the card says."""
    from test_details_view import details_path

    acr = F.quantity_obs("9318-7", 1, "mg/g", days=40)
    comparator, number, unit = written
    if comparator == "text":
        acr.pop("valueQuantity")
        acr["valueString"] = number
        shown = unit  # the bound as the card quotes it
    else:
        acr["valueQuantity"] = {"value": number, "comparator": comparator, "unit": unit,
                                "system": "http://unitsofmeasure.org", "code": unit}
        shown = f"{comparator}{number:g} {unit}"
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL"), acr]
    card = fire(api, "egfr-ckd-epi-2021", record)
    page = api.client.get(details_path(card)).text
    if category is None:
        assert "Albuminuria A" not in card["detail"] and "Albuminuria A" not in page, card["detail"]
        return
    quoted = shown.replace("<", "&lt;").replace(">", "&gt;")
    assert f"_Albuminuria {category} (urine ACR {quoted}, {F.days_ago(40)[:10]}: " in card["detail"], card["detail"]
    assert f"Albuminuria {category} (urine ACR {quoted}, {F.days_ago(40)[:10]}: " in page
    assert (category == "A3") == ("CKD if it persists over 3 months, whatever the eGFR" in card["detail"])


def test_a_details_page_of_a_prediction_stored_before_written_numbers_keeps_its_albuminuria_note() -> None:
    """A prediction stored before sources kept the number as written (a row, or a journal line replayed after an
    upgrade) still gets its albuminuria note on the details page, read in the feature's unit as its card was."""
    from pathlib import Path

    from cards.advice import stored_notes
    from inference.manifest import load_manifest

    manifest = load_manifest(Path(__file__).resolve().parent.parent / "models" / "egfr-ckd-epi-2021" / "1.0.0")
    stored = {"acr": {"value": 45.0, "unit": "mg/g", "defaulted": False, "display": "45 mg/g", "note": None,
                      "unchecked": [], "sources": [{"reference": "Observation/acr1", "date": "2026-10-28"}]}}
    assert any(n.startswith("Albuminuria A2 (urine ACR 45 mg/g, 2026-10-28") for n in stored_notes(manifest, stored))


def test_an_hba1c_that_cannot_be_read_does_not_let_prevent_assume_none_was_recorded(api: Any) -> None:
    """PREVENT counts an HbA1c of 6.5 % or more without a diagnosis as outside what its equations describe (a rule
    read only when something is recorded). An HbA1c of 7.2 % refuses the estimate; the same value written without a
    unit cannot be read and may be 7.2 %: it is on record, so the rule cannot be confirmed and there is no estimate,
    never one given as if no HbA1c were on record."""
    woman = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
             F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
             F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
             F.quantity_obs("39156-5", 35, "kg/m2"), F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}")]

    def estimated(card: dict[str, Any]) -> bool:
        return any(a["resource"]["resourceType"] == "RiskAssessment"
                   for s in card.get("suggestions", []) for a in s["actions"])

    assert estimated(fire(api, "prevent-base", woman)), "the estimate without any HbA1c"
    read = fire(api, "prevent-base", woman + [F.quantity_obs("4548-4", 7.2, "%", days=60)])
    assert not estimated(read), read["summary"]
    unread = F.quantity_obs("4548-4", 7.2, "%", days=60)
    unread["valueQuantity"] = {"value": 7.2}
    card = fire(api, "prevent-base", woman + [unread])
    assert not estimated(card), card["summary"] + card["detail"]
