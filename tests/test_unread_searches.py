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
from hook_calls import module_app
from test_card_statements import details_page
from test_diabetes_records import ICD, _fire_with, _record, _said

CREATININE = "Observation?patient={{context.patientId}}&code=http://loinc.org|2160-0"
TOTAL_CHOLESTEROL = "Observation?patient={{context.patientId}}&code=http://loinc.org|2093-3"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("unread-searches"))


def _without(record: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in record if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == code)]


@pytest.mark.parametrize("how", ["cut short", "not sent"])
@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base"])
def test_an_egfr_resting_on_an_unread_creatinine_search_is_unknown_not_absent(api: Any, service: str,
                                                                               how: str) -> None:
    """No eGFR on record, and the creatinine search cut short (three matched, none sent) or not sent: the eGFR
    computed from a creatinine (CKD-EPI 2021) is unknown, as the eGFR service says of the same record, not "Nothing
    usable on record", on the card and on the details page."""
    if service == "kfre-4var":
        record = [F.patient("p1", 60, "male"), F.quantity_obs("9318-7", 80, "mg/g")]
    else:
        record = _without(_record("prevent-base", age=60, tc=200, hdl=45, sbp=160, treated=True), "98979-8")
    if how == "cut short":
        card = _fire_with(api, service, record, truncate=(CREATININE,))
    else:
        card = _fire_with(api, service, record, unsent_keys=("observation-creatinine",))
    assert "not calculated: missing eGFR" in card["summary"], card["summary"]
    assert "Nothing usable on record" not in card["detail"], card["detail"]
    assert "Nothing usable on record" not in details_page(api, card)
    same = _fire_with(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male")], truncate=(CREATININE,))
    assert "search was cut short" in same["detail"], same["detail"]


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
