"""The details page, what-if, the monitoring report and a deployment's card threshold agree with the card for the
same call (twenty-ninth audit): two categories sharing a label, a rule on a feature computed from others, a record
that cannot be read under an `if_recorded` rule, a bound outside the validated range, a source's own look-back
window, and categories listed in the order they are tested rather than by risk.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import fhirfactory as F
from hook_calls import fire, module_app
from test_details_view import details_path
from test_guideline_thresholds import news2_record, prevent_record

EGFR_UNIT = "mL/min/{1.73_m2}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("details-consistency"))


def section(page: str, sid: str) -> str:
    """The text of <section id=sid> (tags stripped, whitespace collapsed)."""
    m = re.search(rf'<section id="{sid}".*?</section>', page, re.DOTALL)
    assert m, f"no section #{sid}"
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", m.group(0))))


def consider(card: dict[str, Any]) -> str:
    return next((line for line in card["detail"].splitlines() if line.startswith("**Consider:**")), "")


# -- 1. NEWS2: two categories share the label "low" --------------------------------------------------------------------


def test_news2_score_0_details_page_gives_the_score_0_response_not_the_1_to_4_one(api: Any) -> None:
    """RCP 2017 Chart 3 (and aad37fc): a NEWS2 of 0 is 'continue routine NEWS monitoring, at least every 12 hours';
    the registered-nurse assessment with 4-6-hourly observations is for 1-4. The card for a score of 0 says the
    former; its details page must say the same, not the guidance and description of the other 'low' category."""
    card = fire(api, "news2-patient-view", news2_record("male", 67))
    assert card["summary"].startswith("NEWS2 0 (low"), card["summary"]
    assert "routine NEWS monitoring, at least every 12 hours" in consider(card), consider(card)
    page = api.client.get(details_path(card)).text
    guidance = section(page, "guidance")
    assert "routine NEWS monitoring, at least every 12 hours" in guidance, guidance
    assert "registered nurse assesses" not in guidance, guidance
    assert "score 1–4" not in page, re.findall(r'category-description">(.*?)<', page)


# -- 2. what-if and population rules on derived / coded features -------------------------------------------------------


def test_prevent_what_if_removing_diabetes_beside_an_hba1c_of_7_is_refused_as_the_card_refuses(api: Any) -> None:
    """PREVENT refuses an HbA1c >= 6.5 % in the last 2 years without diabetes (hba1c_undiagnosed; the no-diabetes
    arm was fitted on HbA1c < 6.5 %). A diabetic woman with HbA1c 7.0 % gets an estimate; what-if 'diabetes: No'
    must meet the same guard the card for that very record applies (it refuses), not return an estimate computed
    from the stored hba1c_undiagnosed = 0, which was derived from diabetes = 1."""
    hba1c = F.quantity_obs("4548-4", 7.0, "%", days=30)
    without = fire(api, "prevent-base", prevent_record(55, hba1c))
    assert without["summary"].startswith("No "), without["summary"]  # the card for diabetes: No
    card = fire(api, "prevent-base", prevent_record(55, hba1c, F.condition("44054006")))
    assert not card["summary"].startswith("No "), card["summary"]
    resp = api.client.post(f"{details_path(card)}/what-if", json={"set": {"diabetes": 0}})
    assert resp.status_code == 422, resp.text[:400]
    assert "HbA1c of 6.5 % or more" in resp.json()["issue"][0]["diagnostics"]


def test_prevent_what_if_recording_diabetes_gives_the_estimate_the_refusal_promises(api: Any) -> None:
    """The refusal's guidance: 'With diabetes recorded the estimate follows', and the card for the same record with
    diabetes coded does give one. What-if 'diabetes: Yes' is refused with the HbA1c-without-diabetes reason, which
    no longer applies once diabetes is 1 (hba1c_undiagnosed is not re-derived from the changed input)."""
    hba1c = F.quantity_obs("4548-4", 7.0, "%", days=30)
    refused = fire(api, "prevent-base", prevent_record(55, hba1c))
    assert refused["summary"].startswith("No "), refused["summary"]
    assert "With diabetes recorded the estimate follows" in refused["detail"], refused["detail"]
    coded = fire(api, "prevent-base", prevent_record(55, hba1c, F.condition("44054006")))
    assert not coded["summary"].startswith("No "), coded["summary"]
    resp = api.client.post(f"{details_path(refused)}/what-if", json={"set": {"diabetes": 1}})
    assert resp.status_code == 200, resp.text[:400]


def test_news2_what_if_gives_no_score_when_the_pregnancy_status_cannot_be_read(api: Any) -> None:
    """NEWS2 is not for use in pregnancy (RCP 2017). A pregnancy status answered 'Possible pregnancy' (not an answer
    the model can interpret) refuses on the card ('cannot be ruled out'; an if_recorded rule still refuses a record
    that cannot be read: guards._recorded). What-if must not then give a NEWS2: it treats the unread status as
    'nothing on record' and returns a score."""
    status = F.coded_obs("82810-3", "102874004", days=1, answer_system="http://snomed.info/sct")
    card = fire(api, "news2-patient-view", news2_record("female", 28, status))
    assert card["summary"].startswith("No NEWS2"), card["summary"]
    assert "pregnancy status on record cannot be read" in card["detail"], card["detail"]
    resp = api.client.post(f"{details_path(card)}/what-if", json={"set": {"resp_rate": 20}})
    assert resp.status_code == 422, resp.text[:400]


# -- 3. a bound outside the validated range (SourceRef.limit) -----------------------------------------------------------


def _kfre_egfr_over_60(api: Any) -> dict[str, Any]:
    bound = F.quantity_obs("98979-8", 60, EGFR_UNIT, days=5)
    bound["valueQuantity"]["comparator"] = ">"
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), bound, F.quantity_obs("9318-7", 100, "mg/g", days=5)])
    assert card["summary"].startswith("No Kidney failure risk (KFRE) estimate: eGFR >60"), card["summary"]
    assert not card.get("suggestions"), card["suggestions"]  # adca8c8: no creatinine order for this patient
    return card


def test_kfre_egfr_over_60_details_page_does_not_ask_for_a_creatinine(api: Any) -> None:
    """adca8c8: a lab eGFR '>60' places the patient outside KFRE's validated range (to 59.999); the card refuses as
    out of range and no longer orders a creatinine (one was drawn 5 days ago). The details page for the same call
    still lists eGFR under 'Missing data and how to fix it' with 'order: Creatinine', contradicting the card."""
    card = _kfre_egfr_over_60(api)
    page = api.client.get(details_path(card)).text
    assert "Creatinine [Mass/volume]" not in page, section(page, "missing")


def test_kfre_egfr_over_60_what_if_does_not_call_the_egfr_unknown(api: Any) -> None:
    """The same call: the record shows eGFR >60, outside the range. What-if answers 'not known for this patient, so
    give a value: eGFR', stating the eGFR is unknown, where the card says it is known to be outside the range; the
    what-if refusal should give the card's reason (eGFR >60 ... outside the range the model was validated for)."""
    card = _kfre_egfr_over_60(api)
    resp = api.client.post(f"{details_path(card)}/what-if", json={"set": {"uacr": 300}})
    assert resp.status_code == 422, resp.text[:400]
    said = resp.json()["issue"][0]["diagnostics"]
    assert "not known for this patient" not in said and "outside the range" in said, said


# -- 4. the monitoring report ------------------------------------------------------------------------------------------


def test_monitoring_report_missing_inputs_are_inputs(api: Any) -> None:
    """The report's 'Most often missing inputs' (monitoring/report.py _no_number) counts every name in a stored
    prediction's `missing`. NEWS2's pregnancy_status (if_recorded: 'no status charted proves nothing') is 'missing'
    for every patient without one, so the report says an input is missing in 100 % of NEWS2 predictions that all
    got a score; PREVENT's list names creatinine, weight, height and ldl (not inputs; eGFR and BMI were recorded).
    Only model inputs (or rules that are not if_recorded) are missing data a deployment should fix."""
    from monitoring.report import ReportOptions, build_summary

    fire(api, "news2-patient-view", news2_record("male", 67))
    fire(api, "prevent-base", prevent_record(55))
    state = api.app.state.cds
    assert state.recorder.flush(10)
    summary = build_summary(state.store, state.repository, ReportOptions(since=datetime.now(UTC) - timedelta(days=1)))
    for model_id in ("news2", "prevent-base"):
        inputs = {i.name for i in state.repository.entries[model_id].versions["1.0.0"].manifest.inputs}
        listed = [m["input"] for m in summary["models"][model_id]["no_number"]["missing_inputs"]]
        assert set(listed) <= inputs, (model_id, listed)


# -- 5. a source's own lookback_days on a feature read newest first ----------------------------------------------------


SPEC = {"spec_version": 1, "prefetch_date_limits": True, "features": {
    "egfr": {"label": "eGFR", "unit": EGFR_UNIT, "lookback_days": 365, "sources": [
        {"resource": "Observation", "codes": ["http://loinc.org|98979-8"]},
        # this source's own, longer window (docs/feature-spec.md: "this source's own window (the feature's applies
        # to the rest)")
        {"resource": "Observation", "codes": ["http://loinc.org|62238-1"], "lookback_days": 1000}]}}}


def _spec(tmp_path: Path) -> Any:
    from fhir_mapping.spec import load_feature_spec
    from fhir_mapping.valuesets import ValueSetLibrary

    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return load_feature_spec(path, ValueSetLibrary())


def test_a_source_window_longer_than_the_features_is_read_whatever_else_is_on_record(tmp_path: Path) -> None:
    """With only the 500-day-old result of the long-window source the feature is 45 (read in its own window).
    Adding an unrelated result of the other source from 400 days ago (outside the feature's 365 days, so unusable
    anyway) must not change that; _newest_usable stops reading at the first result older than the feature's
    window ('all after it are older still'), which is false once a source has a longer window of its own."""
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.mapper import map_features
    from fhir_mapping.valuesets import ValueSetLibrary

    spec = _spec(tmp_path)

    def value(resources: list[dict[str, Any]]) -> Any:
        index = ResourceIndex.from_prefetch({"all": F.bundle([F.patient("p1", 60, "male"), *resources], "searchset")})
        result = map_features(spec, index, at=F.NOW, valuesets=ValueSetLibrary(), patient_id="p1")
        return result.values["egfr"].value if "egfr" in result.values else None

    long_window = F.quantity_obs("62238-1", 45, EGFR_UNIT, days=500)
    assert value([long_window]) == 45
    assert value([F.quantity_obs("98979-8", 50, EGFR_UNIT, days=400), long_window]) == 45


def test_prefetch_date_limit_of_a_source_with_its_own_window_is_that_window(tmp_path: Path) -> None:
    """With prefetch_date_limits the source's template asks only for the feature's 365 days, so the EHR never sends
    the results of the 1000-day window the mapper would read for that source."""
    plan = _spec(tmp_path).prefetch_plan(__import__("fhir_mapping.valuesets", fromlist=["x"]).ValueSetLibrary())
    template = next(k.template for k in plan.values() if "62238-1" in k.template)
    assert "today() - 1000 days" in template, template


# -- 6. cards.min_category with NEWS2 (categories listed from the highest band) ----------------------------------------


def test_news2_min_category_hides_lower_bands_not_the_highest(api: Any, tmp_path: Path, local_key: Any) -> None:
    """docs/configuration.md: `cards.min_category` is 'the lowest category that gets a card'. NEWS2's manifest lists
    its bands from high to low, and service_call._below_threshold assumes lowest-first, so with min_category
    'medium' a NEWS2 of 7+ (RCP: emergency assessment) gets no card while a score of 0 still gets one."""
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import SignedClient, make_settings

    from hook_calls import fire_all

    sick = [F.patient("p1", 67, "male"), F.encounter("e1"), F.vital("9279-1", 26, "/min"),
            F.vital("59408-5", 90, "%"), F.vital("8867-4", 135, "/min"), F.vital("8310-5", 39.5, "Cel"),
            F.bp_panel(95, days=0), F.coded_obs("67775-7", "248234008", hours=2)]
    unfiltered = fire(api, "news2-patient-view", sick)  # without the setting: a critical card
    assert unfiltered["summary"].startswith("NEWS2 1") and "(high" in unfiltered["summary"], unfiltered["summary"]
    settings = make_settings(tmp_path, cards={"min_category": {"news2-patient-view": "medium"}})
    with TestClient(create_app(settings)) as tc:
        client = SignedClient(tc, local_key)
        high = fire_all(client, "news2-patient-view", sick)
        low = fire_all(client, "news2-patient-view", news2_record("male", 67))
        assert len(high) == 1 and high[0]["indicator"] == "critical", high
        assert low == [], low


def test_kfre_min_category_never_hides_the_very_high_band(api: Any, tmp_path: Path, local_key: Any) -> None:
    """KFRE tests its 'very high' band (2-year risk above 40%) first, before 'low': ranked by position it sat below
    every threshold, so a deployment showing 'intermediate' and above hid exactly the patients KDIGO 2024 sends to
    prepare for kidney replacement therapy."""
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import SignedClient, make_settings

    from hook_calls import fire_all

    failing = [F.patient("p1", 45, "male"), F.quantity_obs("98979-8", 11, EGFR_UNIT, days=5),
               F.quantity_obs("9318-7", 3000, "mg/g", days=5)]
    assert "(very high" in fire(api, "kfre-4var", failing)["summary"]
    settings = make_settings(tmp_path, cards={"min_category": {"kfre-4var": "intermediate"}})
    with TestClient(create_app(settings)) as tc:
        client = SignedClient(tc, local_key)
        shown = fire_all(client, "kfre-4var", failing)
        assert len(shown) == 1 and "(very high" in shown[0]["summary"], shown
        low = [F.patient("p1", 70, "female"), F.quantity_obs("98979-8", 55, EGFR_UNIT, days=5),
               F.quantity_obs("9318-7", 10, "mg/g", days=5)]
        assert fire_all(client, "kfre-4var", low) == []
