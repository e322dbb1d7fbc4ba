"""Kidney records as laboratories write them, read by the eGFR (CKD-EPI 2021) and KFRE services (audit 59).

References: KDIGO 2012 acute kidney injury definition (serum creatinine up by 0.3 mg/dL or more within 48 hours, or
to 1.5 times baseline within 7 days), kept in KDIGO 2024; Inker 2021 (CKD-EPI 2021 assumes a steady state); Tangri
2011/2016 (KFRE: stable CKD G3-G5)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, horizon_years, module_app

KFRE, EGFR = "kfre-4var", "egfr-ckd-epi-2021"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("kidney-records"))


def _has_number(card: dict[str, Any]) -> bool:
    """A card that gives its number: neither 'No … estimate' nor '… not calculated'."""
    return not card["summary"].startswith("No ") and "not calculated" not in card["summary"]


def _creatinines(*pairs: tuple[float, int]) -> list[dict[str, Any]]:
    """Serum creatinines (mg/dL) taken so many hours ago."""
    out = []
    for value, hours in pairs:
        obs = F.quantity_obs("2160-0", value, "mg/dL")
        obs["effectiveDateTime"] = (F.NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
        out.append(obs)
    return out


def _record(*pairs: tuple[float, int]) -> list[dict[str, Any]]:
    return [F.patient("p1", 60, "male"), *_creatinines(*pairs), F.quantity_obs("9318-7", 300, "mg/g", days=30)]


@pytest.mark.parametrize("service", [KFRE, EGFR])
@pytest.mark.parametrize(("pairs", "why"), [
    (((1.0, 72), (2.6, 24)), "2.6 times the value of 3 days before"),
    (((1.2, 40), (1.5, 2)), "up by 0.3 mg/dL within 48 hours"),
    (((1.4, 150), (2.1, 3)), "1.5 times the value of 6 days before"),
], ids=["1.0-to-2.6", "up-0.3-in-48h", "1.5x-in-7-days"])
def test_a_creatinine_rising_as_in_acute_kidney_injury_gives_no_kidney_number(
        api: Any, service: str, pairs: tuple[tuple[float, int], ...], why: str) -> None:
    """A creatinine rising by KDIGO's acute kidney injury criteria is not a steady state: no eGFR stage and no
    kidney failure risk (the card had said 'eGFR 27 (G4)' and 'KFRE 31.4 % (high)', with a referral)."""
    card = fire(api, service, _record(*pairs))
    assert not _has_number(card), (why, card["summary"])
    assert "acute kidney injury" in card["detail"], card["detail"]


@pytest.mark.parametrize("service", [KFRE, EGFR])
@pytest.mark.parametrize(("pairs", "why"), [
    (((1.5, 120), (1.6, 2)), "up by 0.1 mg/dL: stable"),
    (((1.0, 300), (2.0, 2)), "the lower value is older than 7 days, and nothing else within 48 hours"),
    (((2.6, 40), (1.6, 2)), "falling, not rising"),
], ids=["stable", "old-baseline", "falling"])
def test_a_creatinine_not_rising_so_keeps_its_number(api: Any, service: str, pairs: tuple[tuple[float, int], ...],
                                                    why: str) -> None:
    """Creatinines that do not meet the criteria leave the estimate as before."""
    card = fire(api, service, _record(*pairs))
    assert _has_number(card), (why, card["summary"], card["detail"])


def _risk_assessment(card: dict[str, Any]) -> dict[str, Any]:
    return next(a["resource"] for s in card.get("suggestions", []) for a in s["actions"]
                if a["resource"]["resourceType"] == "RiskAssessment")


def test_kfre_files_its_very_high_category_on_the_2_year_prediction_it_was_chosen_on(api: Any) -> None:
    """KFRE's 'very high' is a 2-year risk above 40 % (KDIGO 2024). A man of 60 with eGFR 20 and a urine ACR of
    1500 mg/g has a 2-year risk of 43 %: the RiskAssessment carries 'very high' on the 2-year prediction, and none on
    the 5-year one (FHIR R4: qualitativeRisk qualifies its own prediction; it had been on the 5-year one)."""
    card = fire(api, KFRE, [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 20, "mL/min/{1.73_m2}"),
                            F.quantity_obs("9318-7", 1500, "mg/g")])
    by_horizon = {horizon_years(p): p for p in _risk_assessment(card)["prediction"]}
    assert by_horizon[2]["qualitativeRisk"]["text"] == "very high", by_horizon
    assert "qualitativeRisk" not in by_horizon[5], by_horizon


def test_kfre_files_a_5_year_category_on_the_5_year_prediction(api: Any) -> None:
    """A category chosen on the primary (5-year) risk stays on the 5-year prediction."""
    card = fire(api, KFRE, [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
                            F.quantity_obs("9318-7", 300, "mg/g")])
    by_horizon = {horizon_years(p): p for p in _risk_assessment(card)["prediction"]}
    assert "qualitativeRisk" in by_horizon[5] and "qualitativeRisk" not in by_horizon[2], by_horizon


def test_a_creatinine_coded_77140_2_is_read(api: Any) -> None:
    """LOINC 77140-2 'Creatinine [Moles/volume] in Serum, Plasma or Blood' is how laboratories reporting in µmol/L
    code creatinine: 124 µmol/L is 1.40 mg/dL, eGFR 57-58 (G3a) for a man of 60 (Inker 2021). It had been 'missing
    Serum creatinine' with an order for another."""
    card = fire(api, EGFR, [F.patient("p1", 60, "male"), F.quantity_obs("77140-2", 124, "umol/L")])
    assert "G3a" in card["summary"], card["summary"]


@pytest.mark.parametrize("code", ["30000-4", "32294-1"])
def test_a_urine_acr_coded_as_laboratories_code_it_is_read(api: Any, code: str) -> None:
    """LOINC 30000-4 (Microalbumin/Creatinine [Ratio] in Urine) and 32294-1 (Albumin/Creatinine [Ratio] in Urine) are
    spot-urine ACRs in wide use. KFRE with one of 300 mg/g and an eGFR of 40 (man of 60) is 8.8 % at 5 years (Tangri
    2011); it had been 'missing Urine albumin/creatinine ratio' with an order for one."""
    card = fire(api, KFRE, [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
                            F.quantity_obs(code, 300, "mg/g")])
    assert "8.8%" in card["summary"], card["summary"]
    egfr = fire(api, EGFR, [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.8, "mg/dL"),
                            F.quantity_obs(code, 50, "mg/g")])
    assert not any(s["label"].startswith("Order urine albumin") for s in egfr.get("suggestions", [])), egfr


@pytest.mark.parametrize(("service", "record"), [
    ("ascvd-pce-10y", F.pce_record(age=55, gender="male")),
    (KFRE, [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
            F.quantity_obs("9318-7", 300, "mg/g")]),
])
def test_a_risk_assessment_states_its_kind_its_time_frame_and_its_source(api: Any, service: str,
                                                                        record: list[dict[str, Any]]) -> None:
    """FHIR R4 RiskAssessment: `code` is the kind of assessment (SNOMED 441829007 for the PCE; it had been written
    as the outcome, which is the event predicted); a prediction's time frame is a period from the assessment
    (whenRange reads as an age range: {high: 10 a} alone said 'up to age 10'); the note cites its source once,
    without a doubled full stop."""
    ra = _risk_assessment(fire(api, service, record))
    for pred in ra["prediction"]:
        assert "whenRange" not in pred and pred["whenPeriod"]["start"] == ra["occurrenceDateTime"], pred
        assert all(c.get("code") != "441829007" for c in pred["outcome"].get("coding", [])), pred["outcome"]
    assert horizon_years(ra["prediction"][0]) == (10 if service == "ascvd-pce-10y" else 5)
    assert ".." not in ra["note"][0]["text"], ra["note"]
    if service == "ascvd-pce-10y":
        assert ra["code"]["coding"][0]["code"] == "441829007", ra.get("code")


def _creatinine_for(egfr: float, age: int) -> float:
    """CKD-EPI 2021 (Inker 2021) for a man, above kappa 0.9, solved for serum creatinine (mg/dL)."""
    return 0.9 * (egfr / (142 * 0.9938 ** age)) ** (-1 / 1.2)


@pytest.mark.parametrize(("egfr", "shown", "scored"), [(59.7, "60", False), (9.7, "10", True), (59.4, "59", True)])
def test_kfre_tests_a_computed_egfr_against_its_range_as_the_egfr_card_reports_it(
        api: Any, egfr: float, shown: str, scored: bool) -> None:
    """A computed eGFR is reported as a whole number (the eGFR card's 'eGFR 60 (G2)'): KFRE, for eGFR below 60, is
    not given for a creatinine whose eGFR is 59.7 (it had scored him 'in CKD' from a 59.7 no card shows), and is
    given at 9.7, which the eGFR card reports as 10 (it had refused '9.7 ... outside 10-60')."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", round(_creatinine_for(egfr, 60), 4), "mg/dL"),
              F.quantity_obs("9318-7", 500, "mg/g")]
    assert fire(api, EGFR, record)["summary"].startswith(f"eGFR {shown} ")
    card = fire(api, KFRE, record)
    assert _has_number(card) == scored, card["summary"]
    assert f"{egfr}" not in card["summary"] + card["detail"], card["detail"]


@pytest.mark.parametrize(("creatinine_days", "egfr_days", "given"), [(40, 1, False), (1, 40, True), (5, 5, True)],
                         ids=["egfr-newer", "creatinine-newer", "same-day"])
def test_the_egfr_card_gives_no_older_number_beside_a_newer_laboratory_egfr(api: Any, creatinine_days: int,
                                                                           egfr_days: int, given: bool) -> None:
    """A creatinine of 1.0 mg/dL 40 days ago (eGFR 86, G2 for a man of 60) and a laboratory-reported CKD-EPI 2021
    eGFR of 45 yesterday: the card had said 'eGFR 86 (G2) - Not CKD on its own', older than what the laboratory
    reported (KFRE reads the 45). With the creatinine the newer, or both of one day, the eGFR is computed as before."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL", days=creatinine_days),
              F.quantity_obs("98979-8", 45, "mL/min/{1.73_m2}", days=egfr_days)]
    card = fire(api, EGFR, record)
    assert _has_number(card) == given, card["summary"]
    if not given:
        assert "newer eGFR" in card["detail"], card["detail"]


def _egfr_text(text: str) -> dict[str, Any]:
    obs = F.quantity_obs("98979-8", 0, "mL/min/{1.73_m2}", days=20)
    del obs["valueQuantity"]
    obs["valueString"] = text
    return obs


@pytest.mark.parametrize(("text", "outside"), [(">60", True), ("> 60", True), (">90", True), ("<15", False),
                                               (">60 mL/min/1.73m2", True)])
def test_a_laboratory_egfr_written_as_bare_text_above_60_is_outside_kfres_range(api: Any, text: str,
                                                                                outside: bool) -> None:
    """Laboratories report a CKD-EPI eGFR above 60 as '>60', often as text without a unit: eGFR has one unit, so it
    is read in mL/min/1.73 m² and lies wholly outside KFRE's 10-60 (Tangri 2011, CKD G3-G5). The card had said
    'not calculated: missing eGFR', with an order for a creatinine. '<15' may be 12, inside the range: no number,
    and the card says the value is a bound."""
    card = fire(api, KFRE, [F.patient("p1", 60, "male"), _egfr_text(text), F.quantity_obs("9318-7", 100, "mg/g")])
    assert not _has_number(card), card["summary"]
    if outside:
        assert card["summary"].startswith("No Kidney failure risk (KFRE) estimate: eGFR >"), card["summary"]
        assert "outside the range the model was validated for (10–60" in card["summary"], card["summary"]
        assert not card.get("suggestions"), card.get("suggestions")  # no creatinine ordered for a known eGFR
    else:
        assert "not calculated: missing eGFR" in card["summary"], card["summary"]
        assert "value is a bound (text '&lt;15')" in card["detail"], card["detail"]


def _pregnancy(days: int) -> dict[str, Any]:
    pregnancy = F.condition("77386006", display="Pregnancy")
    pregnancy["onsetDateTime"] = F.days_ago(days)
    return pregnancy


def _caesarean(days: int) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"delivery-{days}", "status": "completed",
            "code": {"coding": [{"system": F.SNOMED, "code": "11466000", "display": "Cesarean section"}]},
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(days)}


@pytest.mark.parametrize("service", [EGFR, KFRE])
@pytest.mark.parametrize(("extra", "refused"), [
    (lambda: [_pregnancy(120)], True),
    (lambda: [F.coded_obs("82810-3", "LA15173-0", days=30, answer_system=F.LOINC)], True),  # status: pregnant
    (lambda: [_pregnancy(250), _caesarean(20)], True),  # within six weeks of the delivery
    (lambda: [_pregnancy(290), _caesarean(60)], False),  # more than six weeks after it
    (lambda: [], False),
], ids=["pregnancy-on-the-problem-list", "pregnancy-status", "delivered-20-days-ago", "delivered-60-days-ago",
        "not-pregnant"])
def test_a_pregnant_woman_gets_no_creatinine_based_kidney_number(api: Any, service: str, extra: Any,
                                                                  refused: bool) -> None:
    """KDIGO 2024: creatinine-based eGFR equations are not validated in pregnancy, when GFR rises by up to half and
    serum creatinine falls; a woman of 30 with creatinine 1.1 mg/dL (CKD-EPI 2021: eGFR 67, G2) and an ACR of 300
    mg/g had been given 'eGFR 67 (G2)' and a KFRE. Six weeks after a delivery the numbers apply again."""
    record = [F.patient("p1", 30, "female"), F.quantity_obs("2160-0", 1.1, "mg/dL", days=10),
              F.quantity_obs("98979-8", 45, "mL/min/{1.73_m2}", days=10) if service == KFRE else None,
              F.quantity_obs("9318-7", 300, "mg/g", days=10), *extra()]
    card = fire(api, service, [r for r in record if r is not None])
    assert _has_number(card) is not refused, card["summary"]
    if refused:
        assert "not validated in pregnancy" in card["summary"] + card["detail"], card["detail"]
        assert "pregnancy reference ranges" in card["detail"], card["detail"]


def test_the_nephrology_referral_a_kfre_card_suggests_is_coded(api: Any) -> None:
    """The draft ServiceRequest had text alone; an EHR routes a referral by its code: SNOMED CT 306125004 'Referral to
    nephrology service', as HL7's Clinical Practice Guidelines IG codes its nephrology referral."""
    card = fire(api, KFRE, [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
                            F.quantity_obs("9318-7", 90, "mg/g")])
    referral = next(s for s in card["suggestions"] if s["label"] == "Refer to nephrology")
    request = referral["actions"][0]["resource"]
    assert request["resourceType"] == "ServiceRequest"
    assert {"system": "http://snomed.info/sct", "code": "306125004", "display": "Referral to nephrology service"} in \
        request["code"]["coding"], request["code"]
