"""Who the type-2-diabetes onset models are for: people without diabetes, read from glucose as well as HbA1c.

ADA Standards of Care 2025, section 2: diabetes is a fasting plasma glucose of 126 mg/dL (7.0 mmol/L) or more, or an
HbA1c of 6.5 % or more, confirmed by a second abnormal result; prediabetes is a fasting glucose of 100–125 mg/dL
(5.6–6.9 mmol/L) or an HbA1c of 5.7–6.4 %. An onset estimate for a patient the record shows in the diabetes range,
or "Prediabetes: No" beside an impaired fasting glucose, states something false about who the patient is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import fire, module_app, templates

SERVICES = ["t2d-onset-5y", "t2d-timeline-5y"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("t2d-glucose"))


def record(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A man of 58 with every input of the onset model, no diabetes coded or treated and no HbA1c; enough coded
    events for the timeline model."""
    return [F.patient("p1", 58, "male"), F.quantity_obs("39156-5", 33.5, "kg/m2"), F.bp_panel(142),
            F.quantity_obs("2085-9", 38, "mg/dL"), F.quantity_obs("29463-7", 90, "kg", days=100),
            F.quantity_obs("8462-4", 85, "mm[Hg]", days=60), F.quantity_obs("2339-0", 95, "mg/dL", days=200), *extra]


def fasting(value: float, unit: str, days: int = 40) -> dict[str, Any]:
    return F.quantity_obs("1558-6" if unit == "mg/dL" else "14771-0", value, unit, days=days)


def hba1c(value: float, days: int, comparator: str | None = None) -> dict[str, Any]:
    obs = F.quantity_obs("4548-4", value, "%", days=days)
    if comparator:
        obs["valueQuantity"]["comparator"] = comparator
    return obs


def estimated(card: dict[str, Any]) -> bool:
    return "5-year T2D risk" in card["summary"]


def not_refused_for_diabetes(card: dict[str, Any], service: str) -> bool:
    """An estimate; or, from the timeline model, its own refusal of a result it cannot read (an HbA1c of 6.5 % or
    more, or one without a unit: the model never saw either in training), never a diabetes refusal."""
    return estimated(card) or (service == "t2d-timeline-5y" and "the model cannot read" in card["summary"]
                               and "diabetes" not in card["summary"])


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(("value", "unit"), [(142, "mg/dL"), (126, "mg/dL"), (7.0, "mmol/L"), (7.9, "mmol/L")])
def test_a_fasting_glucose_in_the_diabetes_range_gives_no_onset_estimate(
        api: Any, service: str, value: float, unit: str) -> None:
    """126 mg/dL or 7.0 mmol/L (× 18.016 = 126.1) and above: in the diabetes range, no estimate, saying why."""
    card = fire(api, service, record(fasting(value, unit)))
    assert not estimated(card), card["summary"]
    assert "a fasting glucose of 126 mg/dL (7.0 mmol/L) or more" in card["summary"] + card["detail"], card


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(("value", "unit"), [(125, "mg/dL"), (6.9, "mmol/L")])
def test_a_fasting_glucose_below_the_diabetes_range_keeps_the_estimate(
        api: Any, service: str, value: float, unit: str) -> None:
    """125 mg/dL, or 6.9 mmol/L (124.3 mg/dL): impaired fasting glucose, not diabetes; the estimate is given."""
    card = fire(api, service, record(fasting(value, unit)))
    assert estimated(card), card["summary"]


@pytest.mark.parametrize(("value", "unit", "prediabetes"), [
    (112, "mg/dL", True), (6.2, "mmol/L", True), (100, "mg/dL", True), (99, "mg/dL", False), (5.5, "mmol/L", False)])
def test_an_impaired_fasting_glucose_is_prediabetes(api: Any, value: float, unit: str, prediabetes: bool) -> None:
    """100–125 mg/dL (5.6–6.9 mmol/L) is impaired fasting glucose, prediabetes: never "Prediabetes: No" beside it;
    99 mg/dL or 5.5 mmol/L (99.1 mg/dL) is not."""
    card = fire(api, "t2d-onset-5y", record(fasting(value, unit)))
    assert estimated(card), card["summary"]
    assert ("Prediabetes: No" not in card["detail"]) is prediabetes, card["detail"]


@pytest.mark.parametrize("service", SERVICES)
def test_diabetes_confirmed_by_two_hba1c_results_over_a_year_ago_gives_no_onset_estimate(
        api: Any, service: str) -> None:
    """HbA1c 7.4 % and 7.1 % on separate samples 18 and 15 months ago confirm diabetes; a later 6.2 % is control
    or remission, not a patient without diabetes. One such result over a year ago, unconfirmed, does not refuse."""
    confirmed = fire(api, service, record(hba1c(7.4, 550), hba1c(7.1, 460), hba1c(6.2, 30)))
    assert not estimated(confirmed), confirmed["summary"]
    assert "two results in the diabetes range are on record" in confirmed["summary"] + confirmed["detail"]
    once = fire(api, service, record(hba1c(7.4, 550), hba1c(6.2, 30)))
    assert not_refused_for_diabetes(once, service), once["summary"]


@pytest.mark.parametrize("service", SERVICES)
def test_an_hba1c_bound_decides_the_diabetes_range_only_when_wholly_on_one_side(api: Any, service: str) -> None:
    """FHIR R4 Quantity.comparator '<' means the value is below the number: an HbA1c reported '<4.0 %' (below the
    assay's range) is below 6.5 %, so the diabetes range is ruled out and the estimate given; '>14 %' is in it; '<7
    %' could be either, so the range cannot be ruled out and no estimate is given."""
    below = fire(api, service, record(hba1c(4.0, 20, "<")))
    assert estimated(below), below["summary"] + below["detail"]
    above = fire(api, service, record(hba1c(14, 20, ">")))
    assert not estimated(above) and "an HbA1c of 6.5 % or more (the diabetes range) is on record" in \
        above["summary"] + above["detail"], above
    straddles = fire(api, service, record(hba1c(7, 20, "<")))
    assert not estimated(straddles) and "an HbA1c in the diabetes range cannot be ruled out" in \
        straddles["summary"] + straddles["detail"], straddles


def test_the_challenger_stores_cannot_be_ruled_out_where_the_record_could_not_be_read(api: Any) -> None:
    """A Condition search returned as a first page with a `next` link and no FHIR server to read the rest: the
    champion says diabetes cannot be ruled out, and the challenger's shadow prediction (t2d-onset-5y 1.1.0, whose
    stored reasons the details page, monitoring and the promotion evidence read) must say the same, never that the
    record shows diabetes."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "t2d-onset-5y"), record(), context)
    for key, bundle in prefetch.items():
        if key.startswith("condition-"):
            bundle["link"] = [{"relation": "next", "url": "http://127.0.0.1:1/fhir/Condition?page=2"}]
    body = {"hook": "patient-view", "hookInstance": "0f9d3b52-8a41-4f3c-9b7e-41c2d5e6a801", "context": context,
            "prefetch": prefetch}
    resp = api.post("/cds-services/t2d-onset-5y", json=body)
    assert resp.status_code == 200, resp.text
    assert "cannot be ruled out" in resp.json()["cards"][0]["summary"]
    state = api.app.state.cds
    assert state.recorder.flush(10.0)
    rows = [p for p in state.store.predictions() if p["hook_instance"] == body["hookInstance"]]
    assert {p["alias"] for p in rows} == {"champion", "challenger"}, rows
    for p in rows:
        assert any("diabetes cannot be ruled out" in r for r in p["guard_reasons"]), p["guard_reasons"]
        assert not any("the record shows diabetes" in r for r in p["guard_reasons"]), p["guard_reasons"]


@pytest.mark.parametrize("service", SERVICES)
def test_one_hba1c_written_in_two_units_is_one_result(api: Any, service: str) -> None:
    """One HbA1c of 6.6 % sent in NGSP % (4548-4) and IFCC mmol/mol (59261-8, 49) for one specimen three years ago,
    then a normal one: one abnormal result, not the two ADA asks to confirm diabetes. The estimate is given."""
    pct = hba1c(6.6, 1100)
    ifcc = {**F.quantity_obs("59261-8", 49, "mmol/mol", days=1100), "effectiveDateTime": pct["effectiveDateTime"]}
    card = fire(api, service, record(pct, ifcc, hba1c(5.4, 100)))
    assert not_refused_for_diabetes(card, service), card["summary"] + card["detail"]


@pytest.mark.parametrize("service", SERVICES)
def test_an_hba1c_bound_written_as_text_decides_as_a_quantity_does(api: Any, service: str) -> None:
    """'<4.0 %' sent as valueString is the bound a Quantity with comparator '<' states: below the diabetes range,
    so the estimate is given; '<4.0' with no unit says nothing about its scale, so the range cannot be ruled out."""
    text = F.quantity_obs("4548-4", 4.0, "%", days=40)
    del text["valueQuantity"]
    card = fire(api, service, record({**text, "valueString": "<4.0 %"}))
    assert not_refused_for_diabetes(card, service), card["summary"] + card["detail"]
    bare = fire(api, service, record({**text, "valueString": "<4.0"}))
    assert not estimated(bare) and "cannot be ruled out" in bare["summary"] + bare["detail"], bare


@pytest.mark.parametrize("service", SERVICES)
def test_an_unreadable_old_hba1c_decides_the_confirmed_count_only_when_it_could_change_it(
        api: Any, service: str) -> None:
    """Two results of 6.5 % or more confirm diabetes. An HbA1c of four years ago written without a unit cannot be
    read: beside a normal one it cannot make two (0 known + 1 unread), so the estimate is given; beside one result
    of 7.1 % it could (1 + 1), so diabetes cannot be ruled out; beside two it is confirmed whatever it says."""
    unread = hba1c(6.0, 1500)
    unread["valueQuantity"] = {"value": 6.0}
    once = fire(api, service, record(unread, hba1c(5.2, 30)))
    assert not_refused_for_diabetes(once, service), once["summary"] + once["detail"]
    could = fire(api, service, record(unread, hba1c(7.1, 800), hba1c(5.2, 30)))
    assert not estimated(could) and "results in the diabetes range cannot be ruled out" in \
        could["summary"] + could["detail"], could
    twice = fire(api, service, record(unread, hba1c(7.1, 800), hba1c(7.3, 700), hba1c(5.2, 30)))
    assert not estimated(twice) and "two results in the diabetes range are on record" in \
        twice["summary"] + twice["detail"], twice


@pytest.mark.parametrize("service", SERVICES)
def test_an_unreadable_or_day_dated_copy_of_one_specimen_is_not_a_second_result(api: Any, service: str) -> None:
    """One HbA1c of 7.0 % two years ago and its IFCC row of the same moment that cannot be read (no unit): a row of
    a moment already counted is not another sample (ADA 2025 asks for two), so the estimate is given. The same
    specimen's IFCC row dated by the day alone may be it or another sample of that day: diabetes is then neither
    confirmed nor ruled out, and the card never states it as confirmed."""
    pct = hba1c(7.0, 730)
    unread = {**F.quantity_obs("59261-8", 53, "mmol/mol", days=730), "effectiveDateTime": pct["effectiveDateTime"],
              "valueQuantity": {"value": 53}}
    card = fire(api, service, record(pct, unread))
    assert not_refused_for_diabetes(card, service), card["summary"] + card["detail"]
    dated = {**F.quantity_obs("59261-8", 53, "mmol/mol", days=730), "effectiveDateTime": pct["effectiveDateTime"][:10]}
    card = fire(api, service, record(pct, dated))
    said = card["summary"] + card["detail"]
    assert not estimated(card) and "results in the diabetes range cannot be ruled out" in said, said
    assert "two results in the diabetes range are on record" not in said, said


def test_what_if_decides_a_counted_rule_as_the_card_did(api: Any) -> None:
    """The details page's what-if tests the population as the card's guard did: with an unreadable old HbA1c
    beside a normal one the card gave the estimate, and what-if gives one too; with two results of 6.5 % or more
    beside it the card said diabetes is confirmed, and what-if says the same, not 'cannot be ruled out'."""
    from test_details_view import what_if

    unread = hba1c(6.0, 1500)
    unread["valueQuantity"] = {"value": 6.0}
    card = fire(api, "t2d-onset-5y", record(unread, hba1c(5.2, 30)))
    assert estimated(card), card["summary"]
    resp = what_if(api, card, {"set": {"bmi": 28}})
    assert resp.status_code == 200, resp.text
    card = fire(api, "t2d-onset-5y", record(unread, hba1c(7.1, 800), hba1c(7.3, 700)))
    assert "two results in the diabetes range are on record" in card["summary"] + card["detail"], card
    resp = what_if(api, card, {"set": {"bmi": 28}})
    assert resp.status_code == 422 and "two results in the diabetes range are on record" in resp.text, resp.text


def test_a_count_range_that_straddles_a_bounded_rule_is_unconfirmed() -> None:
    """A rule bounded on both sides ('exactly one', min 1 max 1) and a count of 0–2 (two results unread): the count
    may be 1, so the rule is neither met nor failed by the record: unconfirmed, with no guidance for a patient known
    to be outside. A range wholly inside passes; one wholly outside fails with the rule's own reason."""
    from pathlib import Path

    from fhir_mapping.result import MappingResult, MissingFeature
    from inference.guards import failing_rules, refusal_guidance
    from inference.manifest import PopulationRule, load_manifest

    folder = Path(__file__).resolve().parent.parent / "models" / "t2d-onset-5y" / "1.0.0"
    rule = PopulationRule(feature="diabetes_confirmed_by_tests", min=1, max=1, reason="the record shows otherwise",
                          unconfirmed="the count cannot be confirmed", guidance="Repeat the HbA1c.")
    manifest = load_manifest(folder).model_copy(update={"population": (rule,)})

    def reasons(span: tuple[int, int]) -> list[str]:
        missing = MissingFeature("diabetes_confirmed_by_tests", "unread", required=False, count_range=span)
        return [r for _, r in failing_rules(manifest, {}, MappingResult(missing={missing.name: missing}))]

    assert len(reasons((0, 2))) == 1 and "cannot be confirmed" in reasons((0, 2))[0], reasons((0, 2))
    missing = MissingFeature("diabetes_confirmed_by_tests", "unread", required=False, count_range=(0, 2))
    assert refusal_guidance(manifest, {}, MappingResult(missing={missing.name: missing})) == []
    assert reasons((1, 1)) == []
    assert reasons((2, 3)) == ["the record shows otherwise"], reasons((2, 3))


def test_a_count_range_is_something_recorded_for_an_if_recorded_rule() -> None:
    """A rule read only when recorded (`if_recorded`: refuse only on something on record) on a count known as 1 or 2
    (an unread result beside one in the range): results are on record and may make two, so the rule is
    unconfirmed, as it is without `if_recorded`; never passed as if nothing were recorded."""
    from pathlib import Path

    from fhir_mapping.result import MappingResult, MissingFeature
    from inference.guards import failing_rules
    from inference.manifest import PopulationRule, load_manifest

    rule = PopulationRule(feature="diabetes_confirmed_by_tests", max=1, if_recorded=True,
                          reason="two results in the diabetes range are on record",
                          unconfirmed="results in the diabetes range cannot be ruled out")
    folder = Path(__file__).resolve().parent.parent / "models" / "t2d-onset-5y" / "1.0.0"
    manifest = load_manifest(folder).model_copy(update={"population": (rule,)})
    missing = MissingFeature("diabetes_confirmed_by_tests", "1 or 2 results", required=False, count_range=(1, 2))
    reasons = [r for _, r in failing_rules(manifest, {}, MappingResult(missing={missing.name: missing}))]
    assert len(reasons) == 1 and "cannot be ruled out" in reasons[0], reasons


def test_the_details_page_does_not_call_a_count_the_estimate_passed_missing_data(api: Any) -> None:
    """With an unreadable HbA1c of four years ago beside a normal one, the card gives the onset estimate: the count
    of HbA1c results of 6.5 % or more is 0 or 1, fewer than the two that confirm diabetes either way. The details
    page says the check passes whatever the unread result says; it does not list the count under "Missing data and
    how to fix it" (nor ask for a value to be recorded), which would tell the clinician the estimate lacks it."""
    import re

    from test_card_statements import details_page

    unread = hba1c(6.0, 1500)
    unread["valueQuantity"] = {"value": 6.0}
    card = fire(api, "t2d-onset-5y", record(unread, hba1c(5.2, 30)))
    assert estimated(card), card["summary"]
    text = " ".join(re.sub(r"<[^>]+>", " ", details_page(api, card)).split())
    assert "Missing data and how to fix it" not in text, text
    label = "Results in the diabetes range on record"
    assert f"{label} passes whatever the unread results say" in text, text
