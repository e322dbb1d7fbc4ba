"""The 2013 PCE worked example (Goff 2013 Table A) reproduced end to end through the CDS Hooks endpoint."""

from __future__ import annotations

import math
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources

SERVICE = "/cds-services/ascvd-pce-10y"


def discovery_templates(api: Any) -> dict[str, str]:
    resp = api.get("/cds-services")
    assert resp.status_code == 200
    entry = next(s for s in resp.json()["services"] if s["id"] == "ascvd-pce-10y")
    return entry["prefetch"]


def call(api: Any, resources: list[dict[str, Any]], pid: str = "p1") -> Any:
    templates = discovery_templates(api)
    prefetch = prefetch_from_resources(templates, resources, {"userId": "Practitioner/example", "patientId": pid})
    return api.post(SERVICE, json=F.hook_request(prefetch, pid=pid))


def risk_assessment(card: dict[str, Any]) -> dict[str, Any]:
    for sug in card.get("suggestions", []):
        for action in sug["actions"]:
            if action.get("resource", {}).get("resourceType") == "RiskAssessment":
                return action["resource"]
    raise AssertionError("no RiskAssessment suggestion on the card")


@pytest.mark.parametrize(
    ("gender", "race", "published"),
    [("female", "white", 2.1), ("female", "black", 3.0), ("male", "white", 5.4), ("male", "black", 6.1)],
)
def test_goff_table_a_worked_example_through_http(api: Any, gender: str, race: str, published: float) -> None:
    resp = call(api, F.pce_record(gender=gender, race=race))
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1
    ra = risk_assessment(cards[0])
    probability = ra["prediction"][0]["probabilityDecimal"]
    assert round(probability * 100, 1) == published
    assert f"{published:.1f}%" in cards[0]["summary"]
    assert ra["subject"] == {"reference": "Patient/p1"}
    assert ra["method"]["coding"][0]["code"] == "ascvd-pce-10y"
    assert ra["method"]["coding"][0]["version"] == "1.0.0"
    basis = {b["reference"] for b in ra["basis"]}
    assert any(ref.startswith("Observation/obs") for ref in basis)
    assert any(ref.startswith("Observation/bp") for ref in basis)


def test_card_follows_the_spec(api: Any) -> None:
    card = call(api, F.pce_record(gender="male", race="white", sbp=150, smoker=True)).json()["cards"][0]
    assert len(card["summary"]) < 140
    assert card["indicator"] == "warning"
    assert card["selectionBehavior"] == "any"  # save the estimate, and the guideline's optional CAC follow-up
    follow_up = card["suggestions"][1]
    assert follow_up["label"] == "Order a coronary artery calcium score" and follow_up["isRecommended"] is False
    assert card["source"]["label"] and card["source"]["url"].endswith("/models/ascvd-pce-10y/card")
    for key, value in card.items():
        assert value not in (None, "", [], {}), f"empty optional field {key}"
    detail = card["detail"]
    for needle in ("Systolic blood pressure: **150 mmHg**", "Smoking status: **Current smoker**", "**Consider:**"):
        assert needle in detail
    assert "Observation/" not in detail and "mm[Hg]" not in detail  # no resource ids, no raw UCUM on the card
    assert card["links"][0]["label"] == "Full reasoning, sources and what-if"  # everything else is one click away
    assert all(r["display"] for r in card["overrideReasons"])


def test_race_not_recorded_uses_white_equations_and_says_so(api: Any) -> None:
    card = call(api, F.pce_record(race=None)).json()["cards"][0]
    assert round(risk_assessment(card)["prediction"][0]["probabilityDecimal"] * 100, 1) == 2.1
    assert "Race (equation set): White equations (recorded: not recorded)" in card["detail"]
    assert "_Assumed:_" in card["detail"]


def aa_woman_goff_profile() -> float:
    """Goff 2013 African American women equation, high-precision set (ACC estimator), at the Table A profile:
    55 years, TC 213 mg/dL, HDL 50 mg/dL, untreated SBP 120 mmHg, non-smoker, no diabetes."""
    la, lt, lh, ls = math.log(55), math.log(213), math.log(50), math.log(120)
    s = 17.1141 * la + 0.9396 * lt - 18.9196 * lh + 4.4748 * la * lh + 27.8197 * ls - 6.0873 * la * ls
    return 1 - 0.95334 ** math.exp(s - 86.6081)


def test_detailed_race_code_alone_selects_the_african_american_equations(api: Any) -> None:
    """US Core race with only a `detailed` CDC code: 2058-6 African American is under OMB 2054-5 Black or African
    American, so the African American women equation applies (Goff 2013 Table A: 3.0 %)."""
    record = F.pce_record(race=None)
    record[0]["extension"] = [{"url": F.RACE_URL, "extension": [
        {"url": "detailed", "valueCoding": {"system": F.OMB, "code": "2058-6", "display": "African American"}},
        {"url": "text", "valueString": "African American"}]}]
    card = call(api, record).json()["cards"][0]
    probability = risk_assessment(card)["prediction"][0]["probabilityDecimal"]
    assert probability == pytest.approx(aa_woman_goff_profile(), abs=5e-6)
    assert round(probability * 100, 1) == 3.0 and "3.0%" in card["summary"]
    assert "White equations" not in card["detail"]


def test_race_written_only_as_text_is_named_on_the_card(api: Any) -> None:
    record = F.pce_record(race=None)
    record[0]["extension"] = [{"url": F.RACE_URL, "extension": [{"url": "text", "valueString": "Black"}]}]
    card = call(api, record).json()["cards"][0]
    assert round(risk_assessment(card)["prediction"][0]["probabilityDecimal"] * 100, 1) == 2.1
    assert "Race (equation set): White equations (recorded: as text 'Black', no race or ethnicity code)" \
        in card["detail"]


def test_missing_lipids_offers_a_lipid_panel_order(api: Any) -> None:
    record = [r for r in F.pce_record() if r.get("code", {}).get("coding", [{}])[0].get("code") != "2093-3"]
    card = call(api, record).json()["cards"][0]
    assert "not calculated" in card["summary"] and "Total cholesterol" in card["summary"]
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert order["resourceType"] == "ServiceRequest"
    assert order["code"]["coding"][0] == {"system": "http://loinc.org", "code": "24331-1", "display": "Lipid panel"}
    assert order["subject"] == {"reference": "Patient/p1"}


def test_out_of_range_gives_no_number_and_says_why(api: Any) -> None:
    card = call(api, F.pce_record(age=35)).json()["cards"][0]
    assert "suggestions" not in card
    assert "%" not in card["summary"]
    assert "Age 35 years is outside the range the model was validated for (40–79 years)" in card["detail"]


def test_record_text_cannot_inject_markdown_or_html(api: Any) -> None:
    record = F.pce_record(race="asian")
    coding = record[0]["extension"][0]["extension"][0]["valueCoding"]
    coding["display"] = "Asian <img src=x onerror=alert(1)> [click](javascript:alert(1)) **bold**"
    card = call(api, record).json()["cards"][0]
    detail = card["detail"]
    assert "Asian" in detail  # the recorded race is reported ...
    assert "<img" not in detail and "&lt;img" in detail  # ... with HTML neutralised
    assert "[click](javascript" not in detail and "\\[click\\]" in detail  # ... and Markdown links broken
    assert "**bold**" not in detail


def test_discovery_declares_the_prefetch_the_model_needs(api: Any) -> None:
    services = {s["id"]: s for s in api.get("/cds-services").json()["services"]}
    pce = services["ascvd-pce-10y"]
    assert pce["hook"] == "patient-view" and pce["title"] and pce["description"]
    templates = pce["prefetch"]
    assert templates["patient"] == "Patient/{{context.patientId}}"
    joined = " ".join(templates.values())
    for code in ("2093-3", "14647-2", "2085-9", "14646-4", "85354-9", "55284-4", "8480-6", "72166-2"):
        assert code in joined
    assert any(t.startswith("Condition?patient=") for t in templates.values())
    assert any(t.startswith("MedicationRequest?patient=") and "status=active" in t for t in templates.values())
    assert "Observation" in pce["usageRequirements"]
    assert {"news2-encounter-start", "news2-patient-view"} <= set(services)
    assert services["news2-encounter-start"]["hook"] == "encounter-start"
