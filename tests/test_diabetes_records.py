"""How the PCE and PREVENT cards read diabetes from records as health systems write them, and what the PCE card
advises past the ages its guideline speaks for.

A diagnosis in remission is written in SNOMED CT as often as in ICD-10-CM; long-term use of insulin or of oral
glucose-lowering drugs is put on problem lists as ICD-10-CM Z79.x; a diabetes-range HbA1c may sit on record with no
diagnosis yet. Each is compared with a plainly written record of the same patient (the coded diagnosis), never with
the mapper's own reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import HOOK_INSTANCE, fire, module_app, risk, templates
from test_diabetes_evidence import GLARGINE, onset_record, timeline_record

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("diabetes-records"))


def _texts(card: dict[str, Any]) -> str:
    parts = [card["summary"], card.get("detail", "")]
    for s in card.get("suggestions", []):
        parts += [s.get("label", "")] + [a.get("description", "") for a in s.get("actions", [])]
    return "\n".join(parts)


def _record(model: str, **kw: Any) -> list[dict[str, Any]]:
    record = F.pce_record(gender="male", **kw)
    if model != "ascvd-pce-10y":
        record += [F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 25, "kg/m2")]
    return record


@pytest.mark.parametrize("model", ["ascvd-pce-10y", "prevent-base"])
@pytest.mark.parametrize("code", ["703138006", "703136005"])
def test_a_diabetes_in_remission_coded_in_snomed_is_diabetes(api: Any, model: str, code: str) -> None:
    """Goff 2013's Table A man (55, TC 213, HDL 50, SBP 120 untreated, never smoker), with an active Condition
    703138006 'Type II diabetes mellitus in remission' (or 703136005 'Diabetes mellitus in remission'), code only.
    Both models count a diagnosis in remission (the diagnosis stands), and the same record coded E11.A in ICD-10-CM
    is diabetes: the SNOMED CT coding gives the same risk, not the non-diabetic one."""
    snomed = F.condition(code)
    snomed["code"]["coding"][0].pop("display", None)
    record = _record(model)
    coded = fire(api, model, record + [F.condition("E11.A", system=ICD)])
    remission = fire(api, model, record + [snomed])
    assert "Diabetes: No" not in remission["detail"], remission["detail"]
    assert risk(remission) == pytest.approx(risk(coded), abs=1e-9)
    assert risk(remission) > risk(fire(api, model, record))


@pytest.mark.parametrize("model", ["ascvd-pce-10y", "prevent-base"])
def test_long_term_insulin_on_the_problem_list_is_glucose_lowering_treatment(api: Any, model: str) -> None:
    """ICD-10-CM Z79.4 'Long term (current) use of insulin', code only, on the problem list of a man with no
    diabetes Condition or order: insulin is glucose-lowering treatment, which both models count as diabetes (as an
    insulin order already is), so the risk is the diabetic one (that of the same man with E11.9)."""
    z794 = F.condition("Z79.4", system=ICD)
    z794["code"]["coding"][0].pop("display", None)
    record = _record(model, age=50, tc=200, hdl=45, sbp=160, treated=True)
    coded = fire(api, model, record + [F.condition("E11.9", system=ICD, display="Type 2 diabetes mellitus")])
    assert risk(fire(api, model, record + [z794])) == pytest.approx(risk(coded), abs=1e-9)


@pytest.mark.parametrize("code,display", [("Z79.84", "Long term (current) use of oral hypoglycemic drugs"),
                                          ("Z79.85", "Long-term (current) use of injectable non-insulin antidiabetic drugs")])
@pytest.mark.parametrize("model", ["ascvd-pce-10y", "prevent-base"])
def test_long_term_oral_glucose_lowering_drugs_leave_diabetes_unknown(api: Any, model: str, code: str,
                                                                      display: str) -> None:
    """Z79.84 / Z79.85 on the problem list: the record says the man takes glucose-lowering drugs, which may be
    metformin for prediabetes or a GLP-1 agonist for weight (neither is diabetes), or treatment of diabetes (which is).
    "Diabetes: No" is not assumed: the card gives no number and names the record."""
    record = _record(model, age=50, tc=200, hdl=45, sbp=160, treated=True)
    card = fire(api, model, record + [F.condition(code, system=ICD, display=display)])
    assert "Diabetes: No" not in card["detail"], card["detail"]
    with pytest.raises(AssertionError, match="no RiskAssessment"):
        risk(card)
    assert display in card["detail"] or "glucose-lowering treatment" in card["detail"], card["detail"]


def test_an_allergy_to_insulin_is_not_glucose_lowering_treatment(api: Any) -> None:
    """'Allergy to insulin' names insulin but says nothing of its use: the PCE estimate stands, diabetes No."""
    record = _record("ascvd-pce-10y")
    card = fire(api, "ascvd-pce-10y", record + [F.condition("294461003", display="Allergy to insulin")])
    assert risk(card) == pytest.approx(risk(fire(api, "ascvd-pce-10y", record)), abs=1e-9)


def test_the_pce_does_not_assume_no_diabetes_beside_a_diabetic_range_hba1c(api: Any) -> None:
    """A man of 50 (TC 200, HDL 45, SBP 160 treated, never smoker), no diabetes diagnosis or drug, with an HbA1c of
    6.6 % last month: an HbA1c of 6.5 % or more is the ADA's diagnostic criterion (Standards of Care 2025, section
    2), and the Pooled Cohort Equations' diabetes term is a diagnosis or treatment (Goff 2013). The card gives no
    estimate built on "Diabetes: No" and asks for diabetes to be confirmed or excluded; with the diagnosis recorded
    the estimate follows; with an HbA1c of 6.4 % it is the non-diabetic one."""
    record = _record("ascvd-pce-10y", age=50, tc=200, hdl=45, sbp=160, treated=True)
    card = fire(api, "ascvd-pce-10y", record + [F.quantity_obs("4548-4", 6.6, "%")])
    assert "Diabetes: No" not in card["detail"], card["detail"]
    with pytest.raises(AssertionError, match="no RiskAssessment"):
        risk(card)
    assert "HbA1c of 6.5 % or more" in _texts(card) and "Confirm or exclude diabetes" in card["detail"], card
    diagnosed = fire(api, "ascvd-pce-10y", record + [F.quantity_obs("4548-4", 6.6, "%"),
                                                     F.condition("E11.9", system=ICD, display="Type 2 diabetes")])
    coded = fire(api, "ascvd-pce-10y", record + [F.condition("E11.9", system=ICD, display="Type 2 diabetes")])
    assert risk(diagnosed) == pytest.approx(risk(coded), abs=1e-9)
    below = fire(api, "ascvd-pce-10y", record + [F.quantity_obs("4548-4", 6.4, "%")])
    assert risk(below) == pytest.approx(risk(fire(api, "ascvd-pce-10y", record)), abs=1e-9)


@pytest.mark.parametrize("age", [76, 78])
def test_the_pce_card_over_75_does_not_quote_the_statin_wording_of_ages_40_to_75(api: Any, age: int) -> None:
    """A white man of 76 or 78, current smoker, SBP 150 treated, TC 213, HDL 50: PCE risk ≥ 20 % (high; the age is
    in the equations' range). The 2018 AHA/ACC cholesterol guideline's risk-based recommendations (a high-intensity
    statin at ≥ 20 %) are for ages 40–75; over 75 it says only that starting a moderate-intensity statin may be
    reasonable (IIb) with LDL-C 70–189 mg/dL (Grundy 2019, 4.4.4.1). At 75 the band's wording stands."""
    card = fire(api, "ascvd-pce-10y", F.pce_record(age=age, gender="male", smoker=True, sbp=150, treated=True))
    assert risk(card) >= 0.20
    assert "high-intensity statin" not in _texts(card), card["detail"]
    assert "Over 75" in card["detail"] and "may be reasonable (class IIb)" in card["detail"], card["detail"]
    at_75 = fire(api, "ascvd-pce-10y", F.pce_record(age=75, gender="male", smoker=True, sbp=150, treated=True))
    assert "a high-intensity statin to lower LDL-C" in at_75["detail"], at_75["detail"]


def _man_50() -> list[dict[str, Any]]:
    return F.pce_record(gender="male", age=50, tc=200, hdl=45, sbp=160, treated=True)


def _refused(card: dict[str, Any]) -> bool:
    return card["summary"].startswith("No ") and not card.get("suggestions")


@pytest.mark.parametrize("service,status", [("t2d-onset-5y", "resolved"), ("t2d-timeline-5y", "resolved"),
                                            ("ascvd-pce-10y", "inactive"), ("ascvd-pce-10y", "resolved")])
def test_insulin_use_on_the_problem_list_counts_only_while_current(api: Any, service: str, status: str) -> None:
    """Z79.4 is a status code for current insulin treatment (ICD-10-CM category Z79, 'long term (current) drug
    therapy'), not a diagnosis: inactive or resolved, it says the treatment has ended (insulin in a pregnancy or an
    intensive-care stay), as a stopped insulin order does, and neither is diabetes. The T2D models give their
    estimate and the PCE its non-diabetic one, as with the stopped order."""
    z794 = F.condition("Z79.4", system=ICD, clinical=status, display="Long term (current) use of insulin")
    stopped = F.med_request(GLARGINE[0], display=GLARGINE[1], status="stopped")
    if service == "ascvd-pce-10y":
        assert risk(fire(api, service, _man_50() + [z794])) == pytest.approx(
            risk(fire(api, service, _man_50() + [stopped])), abs=1e-9)
        assert risk(fire(api, service, _man_50() + [stopped])) == pytest.approx(
            risk(fire(api, service, _man_50())), abs=1e-9)
    else:
        build = onset_record if service == "t2d-onset-5y" else timeline_record
        assert not _refused(fire(api, service, build(stopped)))
        card = fire(api, service, build(z794))
        assert not _refused(card), card["summary"] + card["detail"]


@pytest.mark.parametrize("service,text,status", [
    ("t2d-onset-5y", "Gestational diabetes mellitus, insulin requiring", "resolved"),
    ("t2d-timeline-5y", "Gestational diabetes mellitus on insulin", "resolved"),
    ("ascvd-pce-10y", "Gestational diabetes mellitus on insulin", "inactive")])
def test_gestational_diabetes_treated_with_insulin_is_not_glucose_lowering_treatment_now(
        api: Any, service: str, text: str, status: str) -> None:
    """A past gestational diabetes (SNOMED CT 11687002) whose text names the insulin it needed: gestational
    diabetes is not diabetes mellitus (ADA Standards of Care 2025, sections 2 and 15: these women are screened for
    diabetes afterwards, the population the T2D models are for), and its insulin treated the pregnancy. Worded so,
    it is read as the plain 'Gestational diabetes mellitus' is: the T2D models estimate, the PCE says 'Diabetes:
    No'."""
    gdm = F.condition("11687002", clinical=status, display=text)
    if service == "ascvd-pce-10y":
        card = fire(api, service, F.pce_record(gender="female", age=50) + [gdm])
        assert "Diabetes: No" in card["detail"], card["summary"] + card["detail"]
    else:
        build = onset_record if service == "t2d-onset-5y" else timeline_record
        card = fire(api, service, build(gdm))
        assert not _refused(card), card["summary"] + card["detail"]


@pytest.mark.parametrize("service", ["cha2ds2-vasc", "ascvd-pce-10y"])
@pytest.mark.parametrize("coded", [True, False])
def test_an_insulin_pump_on_the_problem_list_is_insulin_treatment(api: Any, service: str, coded: bool) -> None:
    """Z96.41 'Presence of insulin pump': a pump delivers insulin (ADA Standards of Care 2025, section 7), so the
    record shows insulin treatment as plainly as Z79.4. Coded, it counts as diabetes (CHA2DS2-VASc 1 for a man of 60
    with AF alone, where oral anticoagulation is reasonable, not 'not recommended'); written under a local code, its
    words leave diabetes unknown rather than 'No'."""
    pump = F.condition("Z96.41", system=ICD, display="Presence of insulin pump (external) (internal)") if coded else \
        F.condition("L-7781", system="http://example.org/local-problems", display="Insulin pump in place")
    if service == "cha2ds2-vasc":
        record = [F.patient(age=60, gender="male"), F.condition("49436004", display="Atrial fibrillation"), pump]
    else:
        record = _man_50() + [pump]
    card = fire(api, service, record)
    assert "Diabetes: No" not in card["detail"], card["detail"]
    if coded and service == "cha2ds2-vasc":
        assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]


def test_an_hba1c_refusal_resting_on_unread_orders_says_they_were_not_read(api: Any) -> None:
    """A man of 50 with an HbA1c of 6.6 % and an insulin glargine order, from an EHR that did not send the
    MedicationRequest keys (and no FHIR server to ask): "without a diabetes diagnosis or glucose-lowering medicine"
    was never checked, and he is on insulin. The refusal says whether diabetes is treated could not be fully
    checked, names the search that could not be obtained, and gives no guidance written for an untreated patient.
    With the keys sent, he is diabetic and gets the estimate."""
    record = _man_50() + [F.quantity_obs("4548-4", 6.6, "%"), F.med_request(GLARGINE[0], display=GLARGINE[1])]
    card = fire(api, "ascvd-pce-10y", record, unsent=("MedicationRequest?",))
    said = card["summary"] + "\n" + card.get("detail", "")
    assert _refused(card), said
    assert "without a diabetes diagnosis or glucose-lowering medicine" not in said, said
    assert "could not be fully checked" in said and "the MedicationRequest search could not be obtained" in said, said
    assert "Confirm or exclude diabetes" not in said, said
    sent = fire(api, "ascvd-pce-10y", record)
    coded = fire(api, "ascvd-pce-10y", _man_50() + [F.condition("E11.9", system=ICD, display="Type 2 diabetes")])
    assert risk(sent) == pytest.approx(risk(coded), abs=1e-9)


@pytest.mark.parametrize(("service", "other"), [("ascvd-pce-10y", "ascvd"), ("ascvd-pce-10y", "ldl190"),
                                              ("prevent-base", "ascvd")])
def test_established_ascvd_governs_an_undiagnosed_diabetic_hba1c(api: Any, service: str, other: str) -> None:
    """An HbA1c of 6.6 % without a diagnosis beside a myocardial infarction (or, on the PCE, an LDL-C of 200 mg/dL):
    recording diabetes would bring no estimate, and the 2018 AHA/ACC cholesterol guideline recommends a
    high-intensity statin for clinical ASCVD and for LDL-C ≥ 190 mg/dL. The card leads with that refusal and its
    guidance; the HbA1c's own ("confirm or exclude diabetes … a moderate-intensity statin") is not given beside it.
    Alone, the HbA1c refusal gives it."""
    extra = F.condition("22298006", display="Myocardial infarction") if other == "ascvd" else \
        F.quantity_obs("13457-7", 200, "mg/dL")
    record = _record(service, age=50, tc=200, hdl=45, sbp=160, treated=True) + [F.quantity_obs("4548-4", 6.6, "%")]
    card = fire(api, service, record + [extra])
    assert _refused(card), card["summary"]
    assert "HbA1c" not in card["summary"], card["summary"]
    assert "Confirm or exclude diabetes" not in card["detail"] and "high-intensity" in card["detail"], card["detail"]
    alone = fire(api, service, record)
    assert _refused(alone) and "Confirm or exclude diabetes" in alone["detail"], alone["detail"]


def _fire_with(api: Any, service: str, resources: list[dict[str, Any]], *, unsent_keys: tuple[str, ...] = (),
               truncate: tuple[str, ...] = (), leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The one card of a patient-view call whose prefetch leaves out `unsent_keys`, and whose searches starting
    with `truncate` say (Bundle.total) that more matched than were sent, `leave_out` among those not sent."""
    from cds_hooks.bundle_prefetch import prefetch_from_resources

    context = {"userId": "Practitioner/example", "patientId": "p1"}
    tmpl = templates(api, service)
    prefetch = prefetch_from_resources(tmpl, resources, context)
    for key in unsent_keys:
        prefetch.pop(key)
    for key, template in tmpl.items():
        bundle = prefetch.get(key)
        if not isinstance(bundle, dict):
            continue
        bundle["entry"] = [e for e in bundle.get("entry") or [] if e["resource"].get("id") not in leave_out]
        if truncate and template.startswith(truncate):
            bundle["total"] = len(bundle["entry"]) + 3
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.text
    [card] = resp.json()["cards"]
    return card


def _said(card: dict[str, Any]) -> str:
    return card["summary"] + "\n" + card.get("detail", "")


UNTREATED = "without a diabetes diagnosis or glucose-lowering medicine"


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base"])
def test_a_search_cut_short_leaves_the_hba1c_refusal_unconfirmed(api: Any, service: str) -> None:
    """A diabetic man of 50 with an HbA1c of 6.6 %: on insulin (PCE) or with E11.9 on the problem list (PREVENT),
    in a search the EHR cut short (Bundle.total counts more matches than were sent, his among those left out). The
    record was not read in full, so "without a diabetes diagnosis or glucose-lowering medicine" is not what it
    shows: the card does not say it."""
    hba1c = F.quantity_obs("4548-4", 6.6, "%")
    if service == "ascvd-pce-10y":
        insulin = {**F.med_request(GLARGINE[0], display=GLARGINE[1]), "id": "mr-insulin"}
        card = _fire_with(api, service, _record(service, age=50, tc=200, hdl=45, sbp=160, treated=True)
                          + [hba1c, insulin], leave_out=("mr-insulin",), truncate=("MedicationRequest?",))
    else:
        t2dm = {**F.condition("E11.9", system=ICD, display="Type 2 diabetes mellitus"), "id": "cond-t2dm"}
        card = _fire_with(api, service, _record(service, age=50, tc=200, hdl=45, sbp=160, treated=True)
                          + [hba1c, t2dm], leave_out=("cond-t2dm",), truncate=("Condition?",))
    assert UNTREATED not in _said(card), _said(card)


def test_what_if_keeps_an_hba1c_refusal_unconfirmed_as_the_card_did(api: Any) -> None:
    """The card of a man on insulin whose orders were not sent refuses with "whether diabetes is diagnosed or
    treated could not be fully checked (the MedicationRequest search could not be obtained)". The details page's
    what-if, changing the blood pressure only, refuses in the same words, never "without … glucose-lowering
    medicine"; setting diabetes to 0 makes the confirmed wording true, and diabetes to 1 gives an estimate."""
    from test_details_view import what_if

    record = _man_50() + [F.quantity_obs("4548-4", 6.6, "%"), F.med_request(GLARGINE[0], display=GLARGINE[1])]
    orders = tuple(k for k, t in templates(api, "ascvd-pce-10y").items() if t.startswith("MedicationRequest?"))
    card = _fire_with(api, "ascvd-pce-10y", record, unsent_keys=orders)
    assert "could not be fully checked" in _said(card) and UNTREATED not in _said(card), _said(card)
    for body in ({"scenario": "Blood pressure treated to 130 mmHg"}, {"set": {"sbp": 130}}):
        resp = what_if(api, card, body)
        assert resp.status_code == 422, resp.text
        assert UNTREATED not in resp.text and "could not be fully checked" in resp.text, (body, resp.text)
        assert "the MedicationRequest search could not be obtained" in resp.text, resp.text
    no = what_if(api, card, {"set": {"diabetes": 0}})
    assert no.status_code == 422 and UNTREATED in no.text, no.text
    assert what_if(api, card, {"set": {"diabetes": 1}}).status_code == 200


@pytest.mark.parametrize("case", ["pce-ldl", "pce-hba1c", "news2-pregnancy"])
def test_the_details_page_never_says_a_check_it_could_not_make_passes(api: Any, case: str) -> None:
    """A check read only when recorded (`if_recorded`) whose search was not sent is not made, and the estimate is
    given: the PCE's LDL-C ≥ 190 mg/dL with an LDL-C of 200 on record, its undiagnosed diabetic HbA1c with 6.6 % on
    record, NEWS2's pregnancy with a pregnancy on the problem list. The card says which check was not made and
    why; the details page does not say it passes (that is said only of a count whose unread results could not
    change it)."""
    import re

    from test_card_statements import details_page, news2_record

    if case == "pce-ldl":
        card = _fire_with(api, "ascvd-pce-10y", _man_50() + [F.quantity_obs("13457-7", 200, "mg/dL")],
                          unsent_keys=("observation-ldl",))
        label = "LDL cholesterol"
    elif case == "pce-hba1c":
        card = _fire_with(api, "ascvd-pce-10y", _man_50() + [F.quantity_obs("4548-4", 6.6, "%")],
                          unsent_keys=("observation-hba1c-diabetes-range",))
        label = "Undiagnosed HbA1c ≥ 6.5 %"
    else:
        card = _fire_with(api, "news2-patient-view",
                          news2_record("female", 30, 36.8, F.condition("77386006", display="Pregnancy")),
                          unsent_keys=("condition-pregnant-1", "condition-pregnant-2"))
        label = "Current pregnancy"
    assert card.get("suggestions"), card["summary"]  # the estimate was given
    kind = "Condition" if case == "news2-pregnancy" else "Observation"
    assert f"{label}: not checked (the {kind} search could not be obtained)" in card["detail"], card["detail"]
    page = " ".join(re.sub(r"<[^>]+>", " ", details_page(api, card)).split())
    assert label in page, page
    assert f"{label} passes whatever the unread results say" not in page, page


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
def test_an_unconfirmed_refusal_beside_it_keeps_the_hba1c_guidance_from_promising_an_estimate(
        api: Any, service: str) -> None:
    """An undiagnosed diabetic HbA1c (6.6 %) and a Procedure search cut short: established ASCVD cannot be ruled
    out. PREVENT's HbA1c guidance says "with diabetes recorded the estimate follows", which the ASCVD refusal still
    bars (the same record with E11.9 is still refused): it is not given beside it, confirmed or not. Alone, the
    HbA1c refusal gives it."""
    record = _record(service, age=50, tc=200, hdl=45, sbp=160, treated=True) + [F.quantity_obs("4548-4", 6.6, "%")]
    assert "the estimate follows" in _said(_fire_with(api, service, record))
    card = _fire_with(api, service, record, truncate=("Procedure?",))
    assert "ASCVD cannot be ruled out" in _said(card) and UNTREATED in _said(card), _said(card)
    diagnosed = _fire_with(api, service, record + [F.condition("E11.9", system=ICD, display="Type 2 diabetes")],
                           truncate=("Procedure?",))
    assert _refused(diagnosed), diagnosed["summary"]
    assert "the estimate follows" not in _said(card), _said(card)


def test_a_check_read_only_when_recorded_is_named_when_its_search_was_cut_short(api: Any) -> None:
    """The Observation search cut short (Bundle.total above the entries sent) and no HbA1c among those sent: the
    PCE's undiagnosed-diabetes check was not made. The estimate stands, and the card says the check was not made
    because the search was cut short; with the search complete the card says nothing of it."""
    record = _man_50()
    card = _fire_with(api, "ascvd-pce-10y", record, truncate=("Observation?",))
    assert "Undiagnosed HbA1c ≥ 6.5 %, Undiagnosed fasting glucose ≥ 126: not checked (the Observation search was " \
           "cut short)" in card["detail"], card["detail"]
    assert "not checked" not in _fire_with(api, "ascvd-pce-10y", record)["detail"]


LDL_KEY = "Observation?patient={{context.patientId}}&code=http://loinc.org|13457-7"
HBA1C_KEY = "Observation?patient={{context.patientId}}&code=http://loinc.org|4548-4"
PREGNANCY_STATUS_KEY = "Observation?patient={{context.patientId}}&code=http://loinc.org|82810-3"


@pytest.mark.parametrize("case", ["pce-ldl", "news2-pregnancy-status"])
def test_a_check_whose_search_was_cut_short_with_nothing_sent_is_named(api: Any, case: str) -> None:
    """The LDL-C search (PCE), or NEWS2's pregnancy status search, answers Bundle.total 3 and sends no entry: three
    results matched and none was read, so the check was not made, as when the key is not sent at all. The estimate
    stands and the card says "… : not checked (the Observation search was cut short)"."""
    from test_card_statements import news2_record

    if case == "pce-ldl":
        card = _fire_with(api, "ascvd-pce-10y", _man_50(), truncate=(LDL_KEY,))
        label = "LDL cholesterol"
    else:
        card = _fire_with(api, "news2-patient-view", news2_record("female", 28), truncate=(PREGNANCY_STATUS_KEY,))
        label = "Pregnancy status"
    assert card.get("suggestions") or card["summary"].startswith("NEWS2 0"), card["summary"]
    assert f"{label}: not checked (the Observation search was cut short)" in card["detail"], card["detail"]


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base"])
@pytest.mark.parametrize("how", ["not sent", "cut short"])
def test_a_diabetic_is_not_told_the_undiagnosed_hba1c_check_was_not_made(api: Any, service: str, how: str) -> None:
    """With E11.9 on the problem list, "an HbA1c ≥ 6.5 % without diabetes on record" is decided whatever any HbA1c
    says (`hba1c_diabetes_range * (1 - diabetes)` is 0): an HbA1c search not sent or cut short leaves nothing
    unchecked, and the card, which shows "Diabetes: Yes", does not say the check was not made."""
    record = _record(service, age=50, tc=200, hdl=45, sbp=160, treated=True) + [
        F.condition("E11.9", system=ICD, display="Type 2 diabetes mellitus")]
    if how == "not sent":
        keys = tuple(k for k, t in templates(api, service).items() if t.startswith(HBA1C_KEY))
        card = _fire_with(api, service, record, unsent_keys=keys)
    else:
        card = _fire_with(api, service, record, truncate=(HBA1C_KEY,))
    assert "Diabetes: **Yes**" in card["detail"], card["detail"]
    assert "not checked" not in card["detail"], card["detail"]
    assert card.get("suggestions"), card["summary"]


def test_what_if_setting_an_hba1c_keeps_a_diabetes_no_unconfirmed(api: Any) -> None:
    """PREVENT-full, a man of 50 with an HbA1c of 5.5 % and no MedicationRequest key sent: the card says "Not fully
    checked (taken as No): diabetes …". What-if with an HbA1c of 7.0 refuses as the card does for that record with
    7.0 on record: whether diabetes is diagnosed or treated could not be fully checked (the orders were never
    read), not "without … glucose-lowering medicine"."""
    from test_details_view import what_if

    def man(*extra: dict[str, Any]) -> list[dict[str, Any]]:
        return _record("prevent-full", age=50, tc=200, hdl=45, sbp=160, treated=True) + [
            F.quantity_obs("9318-7", 10, "mg/g"), *extra]

    orders = tuple(k for k, t in templates(api, "prevent-full").items() if t.startswith("MedicationRequest?"))
    card = _fire_with(api, "prevent-full", man(F.quantity_obs("4548-4", 5.5, "%")), unsent_keys=orders)
    assert card.get("suggestions") and "Not fully checked (taken as No): diabetes" in card["detail"], _said(card)
    same = _fire_with(api, "prevent-full", man(F.quantity_obs("4548-4", 7.0, "%")), unsent_keys=orders)
    assert "could not be fully checked (the MedicationRequest search could not be obtained)" in _said(same)
    resp = what_if(api, card, {"set": {"hba1c": 7.0}})
    assert resp.status_code == 422, resp.text
    assert UNTREATED not in resp.text and "the MedicationRequest search could not be obtained" in resp.text, resp.text
