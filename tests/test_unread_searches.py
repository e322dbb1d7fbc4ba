"""Searches the EHR did not answer in full: what the card says of the values that rest on them.

A search whose Bundle.total counts more matches than were sent (cut short), or whose key was not sent with no FHIR
server to ask, cannot show that something is absent. A value computed from such a result is unknown, not "nothing
on record"; a test whose results exist but were not read is not shown to be needed, so none is ordered; and a
refusal's guidance that promises an estimate once diabetes is recorded is not given while another refusal, a
validated range included, still bars it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import module_app, templates
from test_card_statements import details_page
from test_diabetes_records import ICD, _fire_with, _record, _said

CREATININE = "Observation?patient={{context.patientId}}&code=http://loinc.org|2160-0"
TOTAL_CHOLESTEROL = "Observation?patient={{context.patientId}}&code=http://loinc.org|2093-3"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("unread-searches"))


def _without(record: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in record if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == code)]


def _egfr_record(service: str) -> list[dict[str, Any]]:
    """No eGFR and no creatinine on record."""
    if service == "kfre-4var":
        return [F.patient("p1", 60, "male"), F.quantity_obs("9318-7", 80, "mg/g")]
    return _without(_record("prevent-base", age=60, tc=200, hdl=45, sbp=160, treated=True), "98979-8")


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
def test_an_egfr_resting_on_an_unread_creatinine_search_is_unknown_not_absent(api: Any, service: str) -> None:
    """No eGFR on record, and the creatinine search cut short (three matched, none sent): the eGFR computed from a
    creatinine (CKD-EPI 2021) is unknown, as the eGFR service says of the same record, not "Nothing usable on
    record", on the card and on the details page."""
    card = _fire_with(api, service, _egfr_record(service), truncate=(CREATININE,))
    assert "not calculated: missing eGFR" in card["summary"], card["summary"]
    assert "Nothing usable on record" not in card["detail"], card["detail"]
    assert "Nothing usable on record" not in details_page(api, card)
    same = _fire_with(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male")], truncate=(CREATININE,))
    assert "search was cut short" in same["detail"], same["detail"]


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
@pytest.mark.parametrize("unsent", ["observation-creatinine", "observation-egfr"])
def test_an_egfr_whose_creatinine_or_own_search_was_not_sent_is_412(api: Any, service: str, unsent: str) -> None:
    """CDS Hooks: required data that cannot be obtained is answered 412. With no eGFR on record the model needs the
    creatinine to compute one, so an EHR that sent neither that key nor a FHIR server gets the same 412, naming the
    key, as one that did not send the eGFR key (the creatinine case had been a 200 card)."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, service), _egfr_record(service), context)
    assert unsent in prefetch, sorted(prefetch)
    prefetch.pop(unsent)
    resp = api.post(f"/cds-services/{service}", json=F.hook_request(prefetch))
    assert resp.status_code == 412, resp.text
    assert unsent in resp.json()["issue"][0]["diagnostics"], resp.text


def test_a_cut_short_cholesterol_search_orders_no_new_lipid_panel(api: Any) -> None:
    """The total-cholesterol search cut short, none sent: cholesterol results exist that were not read, so a new
    lipid panel is not shown to be needed. The card says absence cannot be assumed and drafts no order; the details
    page says there is no test to order, and why."""
    card = _fire_with(api, "ascvd-pce-10y", _without(F.pce_record(age=60, gender="male"), "2093-3"),
                      truncate=(TOTAL_CHOLESTEROL,))
    assert "absence cannot be assumed" in card["detail"], card["detail"]
    assert not any(s["label"].startswith("Order ") for s in card.get("suggestions", [])), card.get("suggestions")
    page = details_page(api, card)
    assert "a lipid panel is needed" not in page and "order: Lipid panel" not in page, page
    assert "no test to order: results on record were not read" in page, page


def test_the_hba1c_guidance_promises_no_estimate_beside_a_range_refusal(api: Any) -> None:
    """PREVENT-base, a man of 50 with SBP 190 mmHg (outside the 90–180 the model was validated for) and an
    undiagnosed HbA1c of 6.6 %: recording diabetes would still give no estimate, so "with diabetes recorded the
    estimate follows" is not said. With SBP 160, it is."""
    record = _record("prevent-base", age=50, tc=200, hdl=45, sbp=190, treated=True) + [
        F.quantity_obs("4548-4", 6.6, "%")]
    card = _fire_with(api, "prevent-base", record)
    assert "outside the range the model was validated for" in card["detail"], card["detail"]
    diagnosed = _fire_with(api, "prevent-base", record + [F.condition("E11.9", system=ICD, display="Type 2 diabetes")])
    assert diagnosed["summary"].startswith("No PREVENT"), diagnosed["summary"]
    assert "the estimate follows" not in _said(card), _said(card)
    in_range = _record("prevent-base", age=50, tc=200, hdl=45, sbp=160, treated=True) + [
        F.quantity_obs("4548-4", 6.6, "%")]
    assert "the estimate follows" in _said(_fire_with(api, "prevent-base", in_range))


WEIGHT = "Observation?patient={{context.patientId}}&code=http://loinc.org|29463-7"


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
def test_the_details_page_orders_no_creatinine_when_the_card_does_not(api: Any, service: str) -> None:
    """No eGFR on record and the creatinine search cut short: the card says the eGFR is unknown and drafts no
    creatinine order, since a creatinine may be on record unread. The details page for the same prediction says
    the same: no test to order while results on record were not read."""
    card = _fire_with(api, service, _egfr_record(service), truncate=(CREATININE,))
    assert "not calculated: missing eGFR" in card["summary"], card["summary"]
    assert not any(s["label"].startswith("Order ") for s in card.get("suggestions", [])), card.get("suggestions")
    page = details_page(api, card)
    assert "order: Creatinine" not in page, page
    assert "no test to order: results on record were not read" in page, page


def test_a_bmi_with_no_height_on_record_stays_nothing_on_record_beside_a_cut_short_weight_search(api: Any) -> None:
    """BMI is weight / height²: with no BMI and no height on record (both searches read in full), no unread weight
    could give one, so a weight search cut short leaves the BMI "nothing usable on record", as with the weight
    search read in full, not "unknown". With a height on record, it is unknown."""
    record = _without(_record("prevent-base", age=60, tc=200, hdl=45, sbp=160, treated=True), "39156-5")
    nothing = "BMI: Nothing usable on record in the last 2 years: a BMI, or a weight and height, is needed"
    assert nothing in _fire_with(api, "prevent-base", record)["detail"]
    cut = _fire_with(api, "prevent-base", record, truncate=(WEIGHT,))
    assert nothing in cut["detail"] and "computed from Body weight, which is unknown" not in cut["detail"], cut
    tall = _fire_with(api, "prevent-base", record + [F.quantity_obs("8302-2", 178, "cm")], truncate=(WEIGHT,))
    assert "computed from Body weight, which is unknown" in tall["detail"], tall["detail"]


@pytest.mark.parametrize("dropped", ["39156-5", "98979-8"])
def test_the_hba1c_guidance_promises_no_estimate_while_a_required_input_is_missing(api: Any, dropped: str) -> None:
    """An undiagnosed HbA1c of 6.6 % and no BMI (or no eGFR) on record: recording diabetes would give a missing-data
    card, not an estimate, so "with diabetes recorded the estimate follows" is not said."""
    record = _without(_record("prevent-base", age=50, tc=200, hdl=45, sbp=160, treated=True), dropped) + [
        F.quantity_obs("4548-4", 6.6, "%")]
    diagnosed = _fire_with(api, "prevent-base", record + [F.condition("E11.9", system=ICD, display="Type 2 diabetes")])
    assert "not calculated: missing" in diagnosed["summary"], diagnosed["summary"]
    assert "the estimate follows" not in _said(_fire_with(api, "prevent-base", record))


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
def test_a_cut_short_creatinine_search_orders_no_creatinine_when_the_sex_is_not_recorded(api: Any,
                                                                                        service: str) -> None:
    """No Patient.gender, no eGFR on record, and the creatinine search cut short: creatinines are on record unread,
    and a new one would give no eGFR either (CKD-EPI 2021 is sex-specific): the eGFR is unknown, not "nothing on
    record", and no creatinine is ordered, on the card or the details page, as with the creatinine read."""
    if service == "kfre-4var":
        record = [F.patient("p1", 60, "male"), F.quantity_obs("9318-7", 80, "mg/g")]
    else:
        record = _without(_record("prevent-base", age=60, tc=200, hdl=45, sbp=160, treated=True), "98979-8")
    for r in record:
        if r["resourceType"] == "Patient":
            r.pop("gender")
    read = _fire_with(api, service, record + [F.quantity_obs("2160-0", 1.2, "mg/dL")])
    assert not any(s["label"].startswith("Order Creatinine") for s in read.get("suggestions", [])), read
    card = _fire_with(api, service, record, truncate=(CREATININE,))
    assert "not calculated: missing" in card["summary"] and "eGFR" in card["summary"], card["summary"]
    assert not any(s["label"].startswith("Order ") for s in card.get("suggestions", [])), card.get("suggestions")
    assert "eGFR: Nothing usable on record" not in card["detail"], card["detail"]
    assert "order: Creatinine" not in details_page(api, card)


def test_the_pce_hba1c_guidance_stays_beside_a_missing_smoking_status(api: Any) -> None:
    """The PCE's HbA1c refusal guidance ("confirm or exclude diabetes …; with diabetes at 40–75, a moderate-intensity
    statin") promises no estimate, and holds whatever the smoking status: a missing smoking status does not withhold
    it (PREVENT's, which promises the estimate, is withheld while an input is missing)."""
    full = _record("ascvd-pce-10y", age=50, tc=200, hdl=45, sbp=160, treated=True) + [
        F.quantity_obs("4548-4", 6.6, "%")]
    assert "Confirm or exclude diabetes" in _said(_fire_with(api, "ascvd-pce-10y", full))
    card = _fire_with(api, "ascvd-pce-10y", _without(full, "72166-2"))
    assert card["summary"].startswith("No 10-year ASCVD risk estimate"), card["summary"]
    assert "Confirm or exclude diabetes" in _said(card), _said(card)


@pytest.mark.parametrize(("age", "gender", "bound"), [(60, "male", 0.5), (85, "female", 1.0)])
def test_a_creatinine_bound_is_never_stated_as_an_egfr_bound(api: Any, age: int, gender: str, bound: float) -> None:
    """A newest creatinine written "<0.5 mg/dL" (or "<1.0"): its limit is the creatinine's, not the eGFR's (CKD-EPI
    2021 falls as creatinine rises, so it gives an eGFR above about 117, or above 55, which may be inside KFRE's
    validated 10–59.999). KFRE's card and details page never say "eGFR <0.5 mL/min/1.73 m²"; the eGFR is missing,
    naming the creatinine."""
    import re

    obs = F.quantity_obs("2160-0", bound, "mg/dL")
    obs["valueQuantity"]["comparator"] = "<"
    card = _fire_with(api, "kfre-4var", [F.patient("p1", age, gender), obs, F.quantity_obs("9318-7", 100, "mg/g")])
    said = card["summary"] + "\n" + card["detail"] + "\n" + re.sub(r"<[^>]+>", " ", details_page(api, card))
    assert not re.search(r"eGFR <\s*[0-9.]+ mL/min", said), said
    assert "missing eGFR" in card["summary"], card["summary"]


def test_kfre_names_the_disagreeing_creatinines_the_egfr_card_names(api: Any) -> None:
    """Two serum creatinines charted for the same moment, 1.0 and 2.0 mg/dL: the eGFR card says they disagree.
    KFRE's card, whose eGFR is computed from them, says the same, not "nothing usable on record: … a serum
    creatinine is needed"."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL", days=10),
              F.quantity_obs("2160-0", 2.0, "mg/dL", days=10), F.quantity_obs("9318-7", 100, "mg/g")]
    egfr = _fire_with(api, "egfr-ckd-epi-2021", record)
    assert "disagree" in egfr["detail"], egfr["detail"]
    kfre = _fire_with(api, "kfre-4var", record)
    assert "Nothing usable on record" not in kfre["detail"] and "disagree" in kfre["detail"], kfre["detail"]
