"""The newest result governs: kidney function for KFRE and PREVENT, and the PREVENT HbA1c / UACR add-ons (audit).

A creatinine newer than a reported eGFR gives the current eGFR (CKD-EPI 2021 with the age when the blood was drawn,
in the eGFR model too); on the same day the reported eGFR stands. A newer creatinine whose number cannot be read (no
unit, a unit that does not convert) is named, and no older eGFR stands in for it. An add-on whose newest value is
outside the validated range is never replaced by an older value, never called "not recorded": no number, and the card
says why, as for any input; one whose newest value is a bound keeps its default, and the page says so.
Expected numbers come from the published equations written out plainly here, never from the service's code.
"""

from __future__ import annotations

import copy

import html
import math
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

EGFR_UNIT = "mL/min/{1.73_m2}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("newest-evidence"))


def primary_risk(card: dict[str, Any]) -> float | None:
    """The first prediction of the card's RiskAssessment (the primary output), None when the card has none."""
    for sug in card.get("suggestions", []):
        for action in sug["actions"]:
            if action["resource"]["resourceType"] == "RiskAssessment":
                return float(action["resource"]["prediction"][0]["probabilityDecimal"])
    return None


# ---- the published equations, written out ----------------------------------------------------------------------
def ckd_epi_2021(creatinine_mg_dl: float, age: int, female: bool) -> float:
    """Inker LA et al., N Engl J Med 2021;385:1737-1749 (race-free creatinine equation)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938 ** age * (1.012 if female else 1.0)


def kfre_5y(age: int, male: bool, egfr: float, acr_mg_g: float) -> float:
    """Tangri N et al., JAMA 2011;305:1553 (4-variable); North American 5-year baseline survival 0.9240."""
    lp = (-0.2201 * (age / 10 - 7.036) + 0.2467 * (int(male) - 0.5642) - 0.5567 * (egfr / 5 - 7.222)
          + 0.4510 * (math.log(acr_mg_g) - 5.137))
    return 1 - 0.9240 ** math.exp(lp)


# Khan SS et al., Circulation 2024 supplement: women, 10-year total CVD. Base model (Table S12) and +HbA1c model;
# term order: age, non-HDL-C, HDL-C, SBP<110, SBP>=110, diabetes, smoking, eGFR<60, eGFR>=60, BP treatment, statin,
# treated SBP, treated non-HDL-C, age x (non-HDL-C, HDL-C, SBP>=110, diabetes, smoking, eGFR<60), constant.
PREVENT_F_CVD_10Y_BASE = (0.7939329, 0.0305239, -0.1606857, -0.2394003, 0.3600781, 0.8667604, 0.5360739, 0.6045917,
                          0.0433769, 0.3151672, -0.1477655, -0.0663612, 0.1197879, -0.0819715, 0.0306769, -0.0946348,
                          -0.27057, -0.078715, -0.1637806, -3.307728)
PREVENT_F_CVD_10Y_HBA1C = (0.7858178, 0.0194438, -0.1521964, -0.2296681, 0.3465777, 0.5366241, 0.5411682, 0.5931898,
                           0.0472458, 0.3158567, -0.1535174, -0.0687752, 0.1054746, -0.0761119, 0.0307469, -0.0905966,
                           -0.2241857, -0.080186, -0.1667286, -3.306162)
HBA1C_IN_DM = 0.1338348  # +HbA1c model, women, 10-year total CVD, per 1 % above 5.3


# Khan 2024 (Circulation 2024;149:430), +UACR model, women, 10-year total CVD: the base model's terms in its order,
# then ln(UACR mg/g); "missing UACR" is 0 (it was measured). preventr R/sysdata.rda `uacr_10yr`, 7 dp.
PREVENT_F_CVD_10Y_UACR = (0.7969249, 0.0256635, -0.1588107, -0.2255701, 0.3396649, 0.8047515, 0.5285338, 0.4803511,
                          0.0434472, 0.2985207, -0.1497787, -0.0742889, 0.106756, -0.0778126, 0.0306768, -0.0907168,
                          -0.2705122, -0.0830564, -0.1389249, -3.738341)
LN_UACR_F_CVD = 0.1793037


def _sample_woman_terms(egfr: float) -> tuple[float, ...]:
    """The Khan 2024 sample woman's terms (50 y, TC 200, HDL 45, SBP 160 treated, diabetes, non-smoker, no statin), in
    the order of the PREVENT coefficient tables, and the constant's 1."""
    age, tc, hdl, sbp, treated, diabetes, smoker, statin = 50, 200, 45, 160, 1, 1, 0, 0
    a = (age - 55) / 10
    non_hdl = (tc - hdl) * 0.02586 - 3.5
    hdl_t = (hdl * 0.02586 - 1.3) / 0.3
    sbp_lo, sbp_hi = (min(sbp, 110) - 110) / 20, (max(sbp, 110) - 130) / 20
    egfr_lo, egfr_hi = (min(egfr, 60) - 60) / -15, (max(egfr, 60) - 90) / -15
    return (a, non_hdl, hdl_t, sbp_lo, sbp_hi, diabetes, smoker, egfr_lo, egfr_hi, treated, statin, treated * sbp_hi,
            statin * non_hdl, a * non_hdl, a * hdl_t, a * sbp_hi, a * diabetes, a * smoker, a * egfr_lo, 1.0)


def prevent_women_cvd_10y_uacr(egfr: float, uacr: float) -> float:
    """The Khan 2024 sample woman with a measured UACR (the +UACR model)."""
    terms = _sample_woman_terms(egfr)
    x = sum(b * t for b, t in zip(PREVENT_F_CVD_10Y_UACR, terms, strict=True)) + LN_UACR_F_CVD * math.log(uacr)
    return math.exp(x) / (1 + math.exp(x))


def prevent_women_cvd_10y(egfr: float, hba1c: float | None = None) -> float:
    """The Khan 2024 sample woman, base model, or the +HbA1c model when `hba1c` is given (she has diabetes)."""
    coefficients = PREVENT_F_CVD_10Y_BASE if hba1c is None else PREVENT_F_CVD_10Y_HBA1C
    x = sum(b * t for b, t in zip(coefficients, _sample_woman_terms(egfr), strict=True))
    if hba1c is not None:
        x += HBA1C_IN_DM * (hba1c - 5.3)  # "missing HbA1c" is 0: it was measured; she has diabetes
    return math.exp(x) / (1 + math.exp(x))


def khan_woman(*, egfr_days: int | None = 30) -> list[dict[str, Any]]:
    record = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
              F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
              F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
              F.quantity_obs("39156-5", 35, "kg/m2")]
    if egfr_days is not None:
        record.append(F.quantity_obs("98979-8", 90, EGFR_UNIT, days=egfr_days))
    return record


# ---- kidney function: the newest evidence wins ---------------------------------------------------------------------
def test_kfre_uses_a_newer_creatinine_over_a_ten_month_old_egfr(api: Any) -> None:
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, EGFR_UNIT, days=300),
              F.quantity_obs("2160-0", 2.2, "mg/dL", days=5), F.quantity_obs("9318-7", 30, "mg/g", days=5)]
    card = fire(api, "kfre-4var", record)
    current = ckd_epi_2021(2.2, 55, female=True)
    assert current == pytest.approx(25.8, abs=0.05)
    expected = kfre_5y(55, False, current, 30)
    assert expected == pytest.approx(0.129, abs=0.0005)  # the audit's value: referral territory
    assert primary_risk(card) == pytest.approx(expected, abs=1e-6)
    assert "(high)" in card["summary"]
    assert "eGFR: **26 mL/min" in card["detail"]  # reported as a whole number, as the eGFR card does
    assert "stale" not in card["detail"]
    # the details page says what the computed eGFR rests on: the creatinine and the age at its draw, with values
    page = details_page(api, card)
    assert "computed from age at the creatinine 55 years on " in page and "serum creatinine 2.2 mg/dL" in page


@pytest.mark.parametrize(("egfr_days", "creatinine_days"), [(5, 5), (5, 100)])
def test_kfre_keeps_a_reported_egfr_from_the_same_day_or_later(api: Any, egfr_days: int,
                                                               creatinine_days: int) -> None:
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, EGFR_UNIT, days=egfr_days),
              F.quantity_obs("2160-0", 2.2, "mg/dL", days=creatinine_days), F.quantity_obs("9318-7", 30, "mg/g")]
    card = fire(api, "kfre-4var", record)
    assert primary_risk(card) == pytest.approx(kfre_5y(55, False, 45, 30), abs=1e-6)
    assert "eGFR: **45 mL/min" in card["detail"]


def turned(age: int, days_ago: int, gender: str) -> dict[str, Any]:
    """A patient who turned `age` `days_ago` days ago (so one year younger before that day)."""
    birthday = (F.NOW - timedelta(days=days_ago)).date()
    if (birthday.month, birthday.day) == (2, 29):
        birthday -= timedelta(days=1)
    patient = F.patient("p1", age, gender)
    patient["birthDate"] = date(birthday.year - age, birthday.month, birthday.day).isoformat()
    return patient


def test_egfr_from_creatinine_uses_the_age_when_the_blood_was_drawn(api: Any) -> None:
    patient = turned(55, 100, "female")  # turned 55 a hundred days ago: 54 at the creatinine
    record = [patient, F.quantity_obs("2160-0", 2.2, "mg/dL", days=300), F.quantity_obs("9318-7", 30, "mg/g")]
    card = fire(api, "kfre-4var", record)
    expected = kfre_5y(55, False, ckd_epi_2021(2.2, 54, female=True), 30)  # KFRE itself takes today's age
    assert primary_risk(card) == pytest.approx(expected, abs=1e-6)
    assert primary_risk(card) != pytest.approx(kfre_5y(55, False, ckd_epi_2021(2.2, 55, female=True), 30), abs=1e-5)


def saved_observation(card: dict[str, Any]) -> dict[str, Any]:
    for sug in card.get("suggestions", []):
        for action in sug["actions"]:
            if action["resource"]["resourceType"] == "Observation":
                return action["resource"]
    raise AssertionError(f"no Observation on the card: {card['summary']}")


def test_egfr_card_uses_the_age_when_the_creatinine_was_drawn(api: Any) -> None:
    patient = turned(61, 100, "male")  # 61 today; the creatinine of 200 days ago was drawn at 60
    drawn = F.quantity_obs("2160-0", 1.4, "mg/dL", days=200)
    card = fire(api, "egfr-ckd-epi-2021", [patient, drawn])
    # Inker 2021, man: 142 x (1.4 / 0.9)^-1.200 x 0.9938^age = 57.54 at 60 (the kidney.epi worked example); with the
    # age today, 61, it would be 57.54 x 0.9938 = 57.18, shown as 57
    assert ckd_epi_2021(1.4, 60, female=False) == pytest.approx(57.54, abs=0.005)
    assert ckd_epi_2021(1.4, 61, female=False) == pytest.approx(57.18, abs=0.005)
    assert card["summary"] == "eGFR 58 mL/min/1.73 m² (KDIGO G3a)"
    saved = saved_observation(card)  # the eGFR of that specimen: its number and the day it was drawn
    assert saved["valueQuantity"]["value"] == 58
    assert saved["effectiveDateTime"][:10] == drawn["effectiveDateTime"][:10]
    details = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    page = api.client.get(details.removeprefix("http://testserver")).text
    assert "Age at the creatinine" in page and f"60 years on {drawn['effectiveDateTime'][:10]}" in page


def test_egfr_without_a_creatinine_names_the_creatinine_and_a_child_gets_no_order(api: Any) -> None:
    adult = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 40, "male")])
    assert adult["summary"] == "eGFR (CKD-EPI 2021) not calculated: missing Serum creatinine"  # the age follows from it
    child = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 10, "male")])
    assert "not calculated" not in child["summary"] and "for adults (18 years and over)" in child["detail"]
    assert not child.get("suggestions")


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
def test_prevent_uses_a_newer_creatinine_over_an_older_egfr(api: Any, service: str) -> None:
    record = khan_woman(egfr_days=300) + [F.quantity_obs("2160-0", 1.5, "mg/dL", days=5)]
    card = fire(api, service, record)
    current = ckd_epi_2021(1.5, 50, female=True)
    assert 40 < current < 45
    assert primary_risk(card) == pytest.approx(prevent_women_cvd_10y(current), abs=1e-6)
    same_day = fire(api, service, khan_woman(egfr_days=5) + [F.quantity_obs("2160-0", 1.5, "mg/dL", days=5)])
    assert primary_risk(same_day) == pytest.approx(prevent_women_cvd_10y(90), abs=1e-6)


def _text_bound(code: str, text: str, days: int) -> dict[str, Any]:
    """A result whose value is a bound written as text (valueString '>90'), as many laboratory interfaces send it."""
    res = F.quantity_obs(code, 0, "mg/dL", days=days)
    del res["valueQuantity"]
    res["valueString"] = text
    return res


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
@pytest.mark.parametrize("written", ["comparator", "text"])
def test_a_reported_egfr_bound_gives_way_to_the_creatinine_of_the_same_day(api: Any, service: str,
                                                                          written: str) -> None:
    """The laboratory reports the creatinine 0.6 mg/dL and, from the same specimen, eGFR '>90' (a Quantity with a
    comparator, or the text '>90'): the bound is no number, the creatinine is; CKD-EPI 2021 for a woman of 50 gives
    109.3 (Inker 2021), and PREVENT uses it."""
    bound = F.quantity_obs("98979-8", 90, EGFR_UNIT, days=5)
    bound["valueQuantity"]["comparator"] = ">"
    if written == "text":
        bound = _text_bound("98979-8", ">90 mL/min/1.73m2", days=5)
    card = fire(api, service, khan_woman(egfr_days=None) + [bound, F.quantity_obs("2160-0", 0.6, "mg/dL", days=5)])
    current = ckd_epi_2021(0.6, 50, female=True)
    assert current == pytest.approx(109.3, abs=0.05)
    assert primary_risk(card) == pytest.approx(prevent_women_cvd_10y(current), abs=1e-6)


# ---- kidney evidence that cannot be read: named, and an older eGFR does not stand in for it ------------------------
def unread_creatinine(value: float, days: int, unit: str | None) -> dict[str, Any]:
    """A serum creatinine as an EHR may send it: without a unit, or with one that is not a concentration or not UCUM."""
    res = F.quantity_obs("2160-0", value, "mg/dL", days=days)
    res["valueQuantity"] = {"value": value} if unit is None else {"value": value, "unit": unit}
    return res


UNREAD = [(None, "no unit given"), ("mg", "unit 'mg' cannot be converted to 'mg/dL'"),
          ("xyz", "unit 'xyz' is not a recognised UCUM unit")]


def details_page(api: Any, card: dict[str, Any], *, raw: bool = False) -> str:
    url = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    page = api.client.get(url.removeprefix("http://testserver")).text
    return page if raw else html.unescape(page)


@pytest.mark.parametrize(("unit", "why"), UNREAD)
@pytest.mark.parametrize("older_creatinine", [False, True])
def test_kfre_names_a_newer_creatinine_it_cannot_read_and_does_not_use_an_older_egfr(
        api: Any, unit: str | None, why: str, older_creatinine: bool) -> None:
    newest = unread_creatinine(2.2, 5, unit)
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, EGFR_UNIT, days=300), newest,
              F.quantity_obs("9318-7", 30, "mg/g", days=5)]
    if older_creatinine:  # readable, newer than the reported eGFR, older than the one that cannot be read
        record.append(F.quantity_obs("2160-0", 1.2, "mg/dL", days=200))
    card = fire(api, "kfre-4var", record)
    # the reported eGFR 45 of 10 months ago gave 1.6 % (low: "continue in primary care"); had 2.2 been mg/dL, the
    # creatinine of 5 days ago gives CKD-EPI 2021 25.8 and 12.9 % (high: refer). The newest evidence cannot be read,
    # so there is no number, and the card says which result and why
    assert kfre_5y(55, False, 45, 30) == pytest.approx(0.016, abs=0.0005)
    assert kfre_5y(55, False, ckd_epi_2021(2.2, 55, female=True), 30) == pytest.approx(0.129, abs=0.0005)
    assert primary_risk(card) is None
    assert card["summary"] == "Kidney failure risk (KFRE) not calculated: missing eGFR"
    day = newest["effectiveDateTime"][:10]
    assert f"Newest serum creatinine ({day}) not usable: unusable unit: " in card["detail"]
    assert card["suggestions"][0]["label"] == "Order Creatinine [Mass/volume] in Serum or Plasma"
    page = details_page(api, card)
    assert why in page and newest["id"] in page
    assert f"the recorded eGFR 45 mL/min/1.73 m² of {F.days_ago(300)[:10]}" in page


@pytest.mark.parametrize(("value", "why"), [
    ({"valueString": "2.2 mg/dL"}, "the result is text ('2.2 mg/dL'), not a quantity"),
    ({"valueInteger": 2}, "has valueInteger instead of a valueQuantity"),  # valid R4, but no unit
    ({"valueQuantity": {"unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}},
     "valueQuantity has no numeric value"),
])
def test_kfre_names_a_newer_creatinine_reported_as_text_and_does_not_use_an_older_egfr(
        api: Any, value: dict[str, Any], why: str) -> None:
    """A creatinine of 5 days ago reported as text ('2.2 mg/dL'), or as a quantity without its number: a result was
    reported, so the reported eGFR 45 of 10 months ago (1.6 %, 'continue in primary care') is not the current kidney
    function — had it been read, 2.2 mg/dL gives CKD-EPI 2021 25.8 and 12.9 % (refer). The text is never parsed."""
    newest = F.quantity_obs("2160-0", 2.2, "mg/dL", days=5)
    del newest["valueQuantity"]
    newest.update(value)
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, EGFR_UNIT, days=300), newest,
              F.quantity_obs("9318-7", 30, "mg/g", days=5)]
    card = fire(api, "kfre-4var", record)
    assert primary_risk(card) is None
    assert card["summary"] == "Kidney failure risk (KFRE) not calculated: missing eGFR"
    assert f"Newest serum creatinine ({newest['effectiveDateTime'][:10]}) not usable: {why[:20]}" in card["detail"]
    page = details_page(api, card)
    assert why in page and newest["id"] in page


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
def test_prevent_does_not_use_an_older_egfr_over_a_newer_creatinine_it_cannot_read(api: Any, service: str) -> None:
    newest = unread_creatinine(1.5, 5, None)
    card = fire(api, service, khan_woman(egfr_days=300) + [newest])
    assert primary_risk(card) is None  # not the 14.7 % of the reported eGFR 90 of 10 months ago
    assert card["summary"].endswith("not calculated: missing eGFR")
    assert f"Newest serum creatinine ({newest['effectiveDateTime'][:10]}) not usable" in card["detail"]


@pytest.mark.parametrize("service", ["kfre-4var", "prevent-base", "prevent-full"])
@pytest.mark.parametrize(("value", "unit", "code"), [(0, "mg/dL", "2160-0"), (-1.2, "mg/dL", "2160-0"),
                                                      (0, "umol/L", "14682-9")])
def test_a_newest_creatinine_the_equation_has_no_value_for_is_not_replaced_by_an_older_egfr(
        api: Any, service: str, value: float, unit: str, code: str) -> None:
    """CKD-EPI 2021 (Inker 2021) takes a creatinine above 0: one of 0 or below, newer than a reported eGFR, is a result
    that cannot be used; the reported eGFR of 60 days earlier was scored as if current (KFRE 'high', a referral)."""
    newest = F.quantity_obs(code, value, unit, days=5)
    if service == "kfre-4var":
        record = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, EGFR_UNIT, days=60), newest,
                  F.quantity_obs("9318-7", 100, "mg/g", days=5)]
    else:
        record = khan_woman(egfr_days=60) + [newest]
    card = fire(api, service, record)
    assert primary_risk(card) is None, card["summary"]
    assert card["summary"].endswith("not calculated: missing eGFR"), card["summary"]
    assert f"Newest serum creatinine ({newest['effectiveDateTime'][:10]}) not usable: eGFR cannot be computed from it" \
        in card["detail"], card["detail"]
    assert not any(s["label"] == "Refer to nephrology" for s in card.get("suggestions", []))


@pytest.mark.parametrize(("comparator", "value", "outside"), [(">", 60, True), (">=", 90, True), (">", 45, False),
                                                            ("<", 15, False), ("<", 10, True)])
def test_a_newest_egfr_bound_outside_the_validated_range_places_the_patient_outside_it(
        api: Any, comparator: str, value: float, outside: bool) -> None:
    """KFRE is for CKD G3a-G5 (validated to eGFR 59.999; Tangri 2011). A lab eGFR reported as '>60' was 'missing eGFR'
    with an order for a creatinine drawn 5 days ago; it says the patient is above the range. A bound inside the
    range ('>45', '<15') is still no number and no range refusal: the value could lie anywhere within it."""
    bound = F.quantity_obs("98979-8", value, EGFR_UNIT, days=5)
    bound["valueQuantity"]["comparator"] = comparator
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), bound, F.quantity_obs("9318-7", 100, "mg/g", days=5)])
    assert primary_risk(card) is None
    if outside:
        assert card["summary"].startswith(f"No Kidney failure risk (KFRE) estimate: eGFR {comparator}{value} mL/min"), \
            card["summary"]
        assert f"eGFR {comparator}{value} mL/min/1.73 m² is outside the range the model was validated for (10–" \
            in card["detail"], card["detail"]
        assert not card.get("suggestions"), card["suggestions"]
    else:
        assert card["summary"] == "Kidney failure risk (KFRE) not calculated: missing eGFR", card["summary"]


def test_a_reported_egfr_of_the_same_day_stands_over_a_creatinine_it_cannot_read(api: Any) -> None:
    record = [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 45, EGFR_UNIT, days=5),
              unread_creatinine(2.2, 5, None), F.quantity_obs("9318-7", 30, "mg/g", days=5)]
    assert primary_risk(fire(api, "kfre-4var", record)) == pytest.approx(kfre_5y(55, False, 45, 30), abs=1e-6)


@pytest.mark.parametrize("newest", [unread_creatinine(2.2, 5, None),
                                    {**unread_creatinine(2.2, 5, None), "valueString": "2.2 mg/dL"}])
def test_egfr_card_gives_no_number_when_the_newest_creatinine_cannot_be_read(api: Any, newest: dict[str, Any]) -> None:
    """The eGFR of an older specimen (Inker 2021: 57.54 at 60, shown 58, G3a) is not the patient's eGFR when a
    creatinine of 5 days ago was reported (2.2 mg/dL would give 24.6, G4): no number, and the card names it."""
    if "valueString" in newest:
        newest = {k: v for k, v in newest.items() if k != "valueQuantity"}
    patient = turned(61, 100, "male")  # 60 at the readable creatinine of 200 days ago
    card = fire(api, "egfr-ckd-epi-2021", [patient, newest, F.quantity_obs("2160-0", 1.4, "mg/dL", days=200)])
    assert ckd_epi_2021(1.4, 60, female=False) == pytest.approx(57.54, abs=0.005)
    assert card["summary"] == "eGFR (CKD-EPI 2021) not calculated: missing Serum creatinine", card["summary"]
    assert f"Newest result ({newest['effectiveDateTime'][:10]}) not usable: " in card["detail"]
    assert "58" not in card["summary"]
    assert newest["id"] in details_page(api, card)


# ---- add-ons: the newest value governs; outside the validated range there is no number -----------------------------
def row_of(page: str, label: str) -> str:
    """The text of the (raw HTML) details page's table row for an input."""
    import re

    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        if cells and cells[0] == label:
            return " | ".join(cells)
    raise AssertionError(f"no row {label!r}")


@pytest.mark.parametrize(("comparator", "value"), [("<", 3), ("<", 300), ("<=", 30)])
def test_a_newest_uacr_below_a_limit_gives_no_number_rather_than_the_equations_without_it(
        api: Any, comparator: str, value: float) -> None:
    """A UACR bound was measured: the equations without UACR are for a patient in whom it was not (Khan 2024), and the
    +UACR model is monotone in UACR, so '<3 mg/g' gives the sample woman at most 10.7 % against the base model's
    14.68 %, and '<300' anything up to 21.5 %: no number, never the base model nor the older 300 mg/g."""
    bound = F.quantity_obs("9318-7", value, "mg/g", days=20)
    bound["valueQuantity"]["comparator"] = comparator
    assert prevent_women_cvd_10y(90) == pytest.approx(0.1468, abs=0.00005)
    assert prevent_women_cvd_10y_uacr(90, 3) < prevent_women_cvd_10y(90) - 0.03
    card = fire(api, "prevent-full", khan_woman() + [bound, F.quantity_obs("9318-7", 300, "mg/g", days=300)])
    assert primary_risk(card) is None, card["summary"]
    assert f"({comparator}{value} mg/g)" in html.unescape(card["detail"])
    page = details_page(api, card)
    assert "value is a bound" in page and "equations without it are for a patient in whom it was not measured" in page


@pytest.mark.parametrize("older", [[F.quantity_obs("9318-7", 40, "mg/g", days=300)], []])
def test_a_newest_uacr_above_a_limit_gives_no_number_rather_than_the_equations_without_it(
        api: Any, older: list[dict[str, Any]]) -> None:
    """UACR '>300 mg/g': at 300 the +UACR model already gives the Khan 2024 sample woman more than the base model's
    14.68 % (intermediate), and more above it; the equations without UACR (for a patient in whom it was not measured)
    would understate her risk, and an older 40 mg/g is not the current value. No number, and the card says why."""
    bound = F.quantity_obs("9318-7", 300, "mg/g", days=20)
    bound["valueQuantity"]["comparator"] = ">"
    assert prevent_women_cvd_10y_uacr(90, 300) > prevent_women_cvd_10y(90) + 0.05  # 21.5 % against 14.7 %
    card = fire(api, "prevent-full", khan_woman() + [bound] + older)
    assert primary_risk(card) is None
    assert "(>300 mg/g)" in html.unescape(card["detail"]) and "14.7" not in card["summary"]
    assert "equations without it are for a patient in whom it was not measured" in details_page(api, card)


@pytest.mark.parametrize("text", [">300 mg/g", "> 300", "≥300 mg/g Cr"])
def test_a_newest_uacr_written_as_text_above_a_limit_gives_no_number(api: Any, text: str) -> None:
    """The text '>300 mg/g' says what a Quantity '>300 mg/g' says: the +UACR model at 300 already gives the Khan 2024
    sample woman 21.5 % against the base model's 14.68 %, so the equations without UACR would understate her risk."""
    assert prevent_women_cvd_10y_uacr(90, 300) > prevent_women_cvd_10y(90) + 0.05
    card = fire(api, "prevent-full", khan_woman() + [_text_bound("9318-7", text, days=20),
                                                      F.quantity_obs("9318-7", 40, "mg/g", days=300)])
    assert primary_risk(card) is None, card["summary"]
    assert "14.7" not in card["summary"] and "Urine albumin/creatinine ratio" in card["detail"]
    assert f"value is a bound (text '{text}'), not a measurement" in details_page(api, card)


def test_text_that_holds_a_bound_and_a_measurement_is_not_read_as_a_bound(api: Any) -> None:
    """'<30 mg/g; repeat 450 mg/g' also reports a measurement: it is text with numbers (unreadable), not a bound below
    the limit, so PREVENT-full gives no number rather than the equations without UACR; the card quotes it whole."""
    card = fire(api, "prevent-full", khan_woman() + [_text_bound("9318-7", "<30 mg/g; repeat 450 mg/g", days=20)])
    assert primary_risk(card) is None, card["summary"]
    assert "the result is text ('<30 mg/g, repeat 450 mg/g'), not a quantity" in html.unescape(card["detail"])
    thousands = fire(api, "prevent-full", khan_woman() + [_text_bound("9318-7", ">1,000 mg/g", days=20)])
    assert primary_risk(thousands) is None
    assert "value is a bound (text '>1,000 mg/g'), not a measurement" in html.unescape(thousands["detail"])


def test_a_newest_uacr_written_as_text_below_a_limit_gives_no_number(api: Any) -> None:
    """'<3 mg/g' as text says what the Quantity '<3 mg/g' says: no number (see the test above), never the older
    40 mg/g."""
    card = fire(api, "prevent-full", khan_woman() + [_text_bound("9318-7", "<3 mg/g", days=20),
                                                      F.quantity_obs("9318-7", 40, "mg/g", days=300)])
    assert primary_risk(card) is None, card["summary"]
    assert "value is a bound (text '<3 mg/g'), not a measurement" in details_page(api, card)


@pytest.mark.parametrize("written", [{"valueString": "450 mg/g"}, {"valueString": "35 (see report)"},
                                     {"valueString": "positive"}, {"valueString": "Trace"},  # a result, in words
                                     {"valueQuantity": {"value": 450}}, {"valueInteger": 450},
                                     {"valueQuantity": {"value": 450, "unit": "mg/L"}}])
def test_a_newest_uacr_that_cannot_be_read_gives_no_number(api: Any, written: dict[str, Any]) -> None:
    """The newest UACR (20 days ago) was measured but cannot be read. Neither the older 40 mg/g (not its current
    value) nor the equations without UACR (Khan 2024: for a patient in whom it was not measured; they give the sample
    woman 14.68 %, where 450 mg/g would give more than 21.5 %) is her risk: no number, and the card names the UACR."""
    text = F.quantity_obs("9318-7", 0, "mg/g", days=20)
    del text["valueQuantity"]
    text.update(written)
    card = fire(api, "prevent-full", khan_woman() + [text, F.quantity_obs("9318-7", 40, "mg/g", days=300)])
    assert prevent_women_cvd_10y_uacr(90, 300) > prevent_women_cvd_10y(90) + 0.05
    assert primary_risk(card) is None, card["summary"]
    assert "Urine albumin/creatinine ratio" in card["summary"] + card["detail"]
    assert "14.7" not in card["summary"]


def _pce_man(*cholesterol: dict[str, Any]) -> list[dict[str, Any]]:
    return [F.patient("p1", 55, "male"), F.quantity_obs("2085-9", 50, "mg/dL"), F.bp_panel(120),
            F.smoking(F.NEVER_SMOKER), *cholesterol]


def _text_result(code: str, text: str, days: int) -> dict[str, Any]:
    res = F.quantity_obs(code, 0, "mg/dL", days=days)
    del res["valueQuantity"]
    res["valueString"] = text
    return res


@pytest.mark.parametrize("comment", ["see comment", "TNP", "Specimen hemolyzed"])
def test_a_newest_text_without_a_number_is_a_comment_and_the_older_value_stands(api: Any, comment: str) -> None:
    """'Test not performed', 'see comment': no result was given, so the cholesterol of 30 days ago is the current one
    (the same number as without the comment row)."""
    older = F.quantity_obs("2093-3", 170, "mg/dL", days=30)
    plain = primary_risk(fire(api, "ascvd-pce-10y", _pce_man(copy.deepcopy(older))))
    assert plain is not None
    card = fire(api, "ascvd-pce-10y", _pce_man(older, _text_result("2093-3", comment, 7)))
    assert primary_risk(card) == pytest.approx(plain, abs=1e-9)


@pytest.mark.parametrize("text_first", [True, False])
def test_a_readable_result_of_the_same_moment_wins_over_one_that_cannot_be_read(api: Any, text_first: bool) -> None:
    """An interface sends the value and a text row of the same moment: the value is used, whatever their order."""
    value = F.quantity_obs("2093-3", 290, "mg/dL", days=7)
    text = _text_result("2093-3", "290 mg/dL", 7)
    text["effectiveDateTime"] = value["effectiveDateTime"]
    plain = primary_risk(fire(api, "ascvd-pce-10y", _pce_man(copy.deepcopy(value))))
    card = fire(api, "ascvd-pce-10y", _pce_man(*([text, value] if text_first else [value, text])))
    assert plain is not None and primary_risk(card) == pytest.approx(plain, abs=1e-9)


def test_pce_gives_no_number_when_the_newest_cholesterol_is_text(api: Any) -> None:
    """Total cholesterol '290' as text last week, 170 mg/dL readable a year ago: the older value is not the current
    one, so no number (the Goff 2013 equations from 170 would say less than from 290)."""
    record = [F.patient("p1", 55, "male"), F.quantity_obs("2093-3", 170, "mg/dL", days=330),
              F.quantity_obs("2085-9", 50, "mg/dL"), F.bp_panel(120), F.smoking(F.NEVER_SMOKER)]
    text = F.quantity_obs("2093-3", 0, "mg/dL", days=7)
    del text["valueQuantity"]
    text["valueString"] = "290"
    card = fire(api, "ascvd-pce-10y", record + [text])
    assert primary_risk(card) is None and "not calculated" in card["summary"], card["summary"]
    assert "the result is text ('290')" in card["detail"]


@pytest.mark.parametrize("older", [[F.quantity_obs("4548-4", 7.5, "%", days=200)], []])
def test_out_of_range_newest_hba1c_gives_no_number_and_says_why(api: Any, older: list[dict[str, Any]]) -> None:
    card = fire(api, "prevent-full", khan_woman() + [F.quantity_obs("4548-4", 16, "%", days=5)] + older)
    assert primary_risk(card) is None
    assert card["summary"].startswith("No PREVENT")
    assert "HbA1c 16 % is outside the range the model was validated for (4.5–15 %)" in card["detail"]
    assert "not recorded" not in card["detail"] and "7.5" not in card["detail"]


def test_in_range_newest_hba1c_is_used_over_an_older_out_of_range_one(api: Any) -> None:
    record = khan_woman() + [F.quantity_obs("4548-4", 7.5, "%", days=5), F.quantity_obs("4548-4", 16, "%", days=200)]
    card = fire(api, "prevent-full", record)
    assert primary_risk(card) == pytest.approx(prevent_women_cvd_10y(90, hba1c=7.5), abs=1e-6)


def test_out_of_range_uacr_gives_no_number_and_says_why(api: Any) -> None:
    card = fire(api, "prevent-full", khan_woman() + [F.quantity_obs("9318-7", 90000, "mg/g", days=5),
                                                     F.quantity_obs("9318-7", 40, "mg/g", days=300)])
    assert primary_risk(card) is None
    assert ("Urine albumin/creatinine ratio 90000 mg/g is outside the range the model was validated for "
            "(0.1–25000 mg/g)") in card["detail"]


def _lisinopril_statement(end: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationStatement", "id": "ms-lisinopril", "status": "active",
                           "subject": {"reference": "Patient/p1"},
                           "medicationCodeableConcept": {"coding": [{"system": F.RXNORM, "code": "314076",
                                                                     "display": "lisinopril 10 MG Oral Tablet"}]},
                           "effectivePeriod": {"start": "2020-01-01"}}
    if end is not None:
        res["effectivePeriod"]["end"] = end
    return res


def test_a_medication_whose_period_ends_today_is_still_taken(api: Any) -> None:
    """effectivePeriod.end '<today>' includes the whole day (FHIR R4 Period): the PCE counts the treatment, as with
    no end at all; an end two days ago does not (yesterday, written as a date without a zone, may not have ended yet
    where the record was written: UTC-12 is still on it until noon UTC today)."""
    chol = F.quantity_obs("2093-3", 213, "mg/dL")
    open_ended = primary_risk(fire(api, "ascvd-pce-10y", _pce_man(chol, _lisinopril_statement(None))))
    today = primary_risk(fire(api, "ascvd-pce-10y", _pce_man(chol, _lisinopril_statement(F.NOW.date().isoformat()))))
    two_days_ago = (F.NOW - timedelta(days=2)).date().isoformat()
    ended = primary_risk(fire(api, "ascvd-pce-10y", _pce_man(chol, _lisinopril_statement(two_days_ago))))
    assert open_ended is not None and today == open_ended
    assert ended is not None and ended < open_ended  # untreated at 120 mmHg: the lower equation term


def test_no_egfr_is_computed_from_a_creatinine_drawn_before_18(api: Any) -> None:
    """CKD-EPI 2021 is for adults (Inker 2021): a patient of 18 whose only creatinine was drawn at 17 has no eGFR from
    it (the eGFR service refuses the same specimen); KFRE had used 49 from it. At 18 the same record gives one."""
    record = [turned(18, 100, "male"),  # 17 at the creatinine drawn 200 days ago
              F.quantity_obs("2160-0", 2.0, "mg/dL", days=200), F.quantity_obs("9318-7", 300, "mg/g")]
    card = fire(api, "kfre-4var", record)
    assert card["summary"] == "Kidney failure risk (KFRE) not calculated: missing eGFR", card["summary"]
    assert "CKD-EPI 2021 is for adults, and this creatinine was drawn before the age of 18" in details_page(api, card)
    adult = fire(api, "kfre-4var", [turned(18, 300, "male"), *record[1:]])  # 18 at the draw
    assert primary_risk(adult) is not None, adult["summary"]


@pytest.mark.parametrize("flag", ["H", "HH", "L", "A", "positive"])
def test_a_newest_result_given_only_as_a_flag_is_a_result_not_a_comment(api: Any, flag: str) -> None:
    """A creatinine of 10 days ago reported only as the abnormal flag 'H' says the newest value is high: the eGFR of
    the 1.0 mg/dL of 100 days ago (CKD-EPI 2021 at 60: 83) is not the patient's eGFR now. No number, naming it."""
    card = fire(api, "egfr-ckd-epi-2021", [turned(61, 200, "male"), F.quantity_obs("2160-0", 1.0, "mg/dL", days=100),
                                           _text_result("2160-0", flag, days=10)])
    assert card["summary"] == "eGFR (CKD-EPI 2021) not calculated: missing Serum creatinine", card["summary"]
    assert f"the result is text ('{flag}'), not a quantity" in card["detail"]


def test_a_birth_year_alone_gives_no_number_when_the_egfr_shown_would_differ(api: Any) -> None:
    """Born '1960' (65 or 66), creatinine 1.6 mg/dL a month ago: KFRE's risk reads the same at either age, but the eGFR
    the card shows (CKD-EPI 2021 takes the age at the draw, Inker 2021) does not, so the age is missing, naming both."""
    patient = F.patient("p1", 66, "male")
    patient["birthDate"] = str(F.NOW.year - 66)
    record = [patient, F.quantity_obs("2160-0", 1.6, "mg/dL", days=30), F.quantity_obs("9318-7", 20, "mg/g")]
    assert round(ckd_epi_2021(1.6, 65, female=False), 1) != round(ckd_epi_2021(1.6, 66, female=False), 1)
    card = fire(api, "kfre-4var", record)
    assert primary_risk(card) is None, card["summary"]
    assert "65 or 66" in card["detail"], card["detail"]
    # the eGFR line says what is missing (the age at the draw), not that nothing usable is on record
    assert "- eGFR: Cannot be computed without age at the creatinine" in card["detail"], card["detail"]
    assert "- eGFR: Nothing usable on record" not in card["detail"]



def _creatinine(code: str, value: float, unit: str, at: str | None = None) -> dict[str, Any]:
    obs = F.quantity_obs(code, value, unit, days=2)
    if at is not None:
        obs["effectiveDateTime"] = at
    return obs


def test_two_serum_creatinines_of_one_moment_that_disagree_give_no_egfr_whatever_the_bundle_order(api: Any) -> None:
    """Inker 2021 by hand, a man of 60: serum creatinine 1.4 mg/dL gives 57.5 (KDIGO G3a), 2.0 mg/dL gives 37.5
    (G3b). Both charted as serum creatinine for the same effectiveDateTime: a searchset's order within one moment is
    no order, and the card had taken whichever came first. It names both and gives no number either way."""
    a = _creatinine("2160-0", 1.4, "mg/dL")
    b = _creatinine("2160-0", 2.0, "mg/dL", a["effectiveDateTime"])
    cards = [fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
             for x, y in ((a, b), (b, a))]
    for card in cards:
        assert "not calculated" in card["summary"], card["summary"]
        assert "1.4 mg/dL" in card["detail"] and "2 mg/dL" in card["detail"], card["detail"]
        assert "Two results charted for the same moment disagree" in card["detail"], card["detail"]


def test_one_serum_creatinine_written_in_two_units_is_one_result(api: Any) -> None:
    """The same serum creatinine sent in mg/dL and in µmol/L (1.4 mg/dL = 123.8 µmol/L, the second rounded to
    124): the two agree within rounding, so the eGFR stands (Inker 2021: 57.54 for a man of 60; the card shows the
    age today)."""
    a = _creatinine("2160-0", 1.4, "mg/dL")
    b = _creatinine("14682-9", 124, "umol/L", a["effectiveDateTime"])
    for x, y in ((a, b), (b, a)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "not calculated" not in card["summary"], card["summary"]
        assert "G3a" in card["summary"], card["summary"]


@pytest.mark.parametrize(("serum", "blood"), [
    (("2160-0", 1.4, "mg/dL"), ("38483-4", 2.0, "mg/dL")), (("2160-0", 1.4, "mg/dL"), ("59826-8", 176.8, "umol/L")),
    (("14682-9", 123.8, "umol/L"), ("38483-4", 2.0, "mg/dL"))])
def test_a_serum_creatinine_stands_before_a_whole_blood_one_of_the_same_moment(
        api: Any, serum: tuple[str, float, str], blood: tuple[str, float, str]) -> None:
    """CKD-EPI 2021 is a serum (or plasma) creatinine equation (Inker 2021); a whole-blood creatinine (LOINC
    38483-4 mass, 59826-8 molar: a point-of-care or blood-gas analyser) drawn at the same moment is not the one the
    equation describes. Serum 1.4 mg/dL gives 57.5 (G3a) for a man of 60; whole blood 2.0 mg/dL would give 37.5
    (G3b). Whichever the bundle lists first, the serum result stands."""
    first = _creatinine(*serum)
    whole = _creatinine(blood[0], blood[1], blood[2], first["effectiveDateTime"])
    for x, y in ((whole, first), (first, whole)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "G3a" in card["summary"], card["summary"]
        assert "G3b" not in card["summary"], card["detail"]


def test_a_whole_blood_creatinine_in_micromoles_is_read_when_alone(api: Any) -> None:
    """A whole-blood creatinine in µmol/L (LOINC 59826-8) is a creatinine the service reads when no serum result is
    there: 123.8 µmol/L = 1.4 mg/dL gives G3a for a man of 60 (Inker 2021: 57.54)."""
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), _creatinine("59826-8", 123.8, "umol/L")])
    assert "G3a" in card["summary"], card["summary"]


def test_two_serum_creatinines_in_two_units_that_disagree_give_no_egfr(api: Any) -> None:
    """A serum creatinine of 1.4 mg/dL (LOINC 2160-0) and one of 177 µmol/L (14682-9, 2.0 mg/dL) charted for the
    same moment: both are serum results, neither is preferred, and they give G3a or G3b (Inker 2021, man of 60:
    57.5 or 37.5), so there is no number, whichever the bundle lists first."""
    a = _creatinine("2160-0", 1.4, "mg/dL")
    b = _creatinine("14682-9", 177, "umol/L", a["effectiveDateTime"])
    for x, y in ((a, b), (b, a)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "not calculated" in card["summary"], card["summary"]
        assert "Two results charted for the same moment disagree" in card["detail"], card["detail"]


def test_a_preferred_code_outside_the_sources_codes_is_refused_naming_it() -> None:
    """`prefer_codes` orders results the source reads; a code the source does not read could never be preferred,
    so the spec is refused, naming the code."""
    from pydantic import ValidationError

    from fhir_mapping.spec import Source

    with pytest.raises(ValidationError, match=r"prefer_codes.*http://loinc.org\|14682-9 is not"):
        Source(resource="Observation", codes=("http://loinc.org|2160-0",), prefer_codes=("http://loinc.org|14682-9",))


def test_one_creatinine_in_two_units_agrees_within_the_rounding_of_each(api: Any) -> None:
    """0.47 mg/dL and 42 µmol/L of one draw: 0.47 × 88.4 = 41.5, which a laboratory reports as 42; read back,
    0.475 mg/dL, 1.1 % away. The two agree within half a step of the last digit each was written with (± 0.005 mg/dL
    and ± 0.5 µmol/L), so they are one result and the eGFR is given (Inker 2021, woman of 70 at 0.47 mg/dL: above
    90, G1)."""
    mg = _creatinine("2160-0", 0.47, "mg/dL")
    umol = _creatinine("14682-9", 42, "umol/L", mg["effectiveDateTime"])
    for x, y in ((mg, umol), (umol, mg)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 70, "female"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "not calculated" not in card["summary"], card["summary"] + card["detail"]


def test_a_corrected_creatinine_stands_over_the_final_one_it_corrects(api: Any) -> None:
    """FHIR R4 ObservationStatus 'corrected': after being final, the result was modified to correct an error. A
    final 2.0 mg/dL and its correction, 1.4 mg/dL, of one draw: the correction stands (Inker 2021, man of 60: 57.5,
    G3a), whatever the bundle order; of two final reports of one moment, the later `issued` stands."""
    final = _creatinine("2160-0", 2.0, "mg/dL")
    final["issued"] = F.days_ago(2)
    corrected = {**copy.deepcopy(final), "id": "obs-corrected", "status": "corrected",
                 "valueQuantity": {**final["valueQuantity"], "value": 1.4}, "issued": F.days_ago(1)}
    for x, y in ((final, corrected), (corrected, final)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "G3a" in card["summary"], card["summary"] + card["detail"]
    reissued = {**copy.deepcopy(corrected), "status": "final"}
    for x, y in ((final, reissued), (reissued, final)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "G3a" in card["summary"], card["summary"] + card["detail"]


def test_a_creatinine_written_as_a_date_alone_may_be_the_later_one_of_its_day(api: Any) -> None:
    """Two creatinines of one day: 2.0 mg/dL written as a date alone and 1.0 mg/dL at a time that day (Inker 2021,
    man of 60: 38, G3b, or 86, G2). The date alone may be the evening repeat, so neither is known to be the newest:
    no number, naming both, rather than the timed one by default."""
    timed = _creatinine("2160-0", 1.0, "mg/dL")
    dated = {**_creatinine("2160-0", 2.0, "mg/dL"), "id": "obs-dated",
             "effectiveDateTime": timed["effectiveDateTime"][:10]}
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), dated, timed])
    assert "not calculated" in card["summary"], card["summary"]
    assert "Which reading is the newest is not known" in card["detail"], card["detail"]
    assert "1 mg/dL" in card["detail"] and "2 mg/dL" in card["detail"], card["detail"]


def test_two_creatinines_written_with_decimals_agree_only_within_one_percent(api: Any) -> None:
    """1.40 and 1.35 mg/dL of one moment (Inker 2021, man of 60: 57.5, G3a, or 60.1, G2) are 3.6 % apart. A
    decimal's written precision is lost once parsed ('1.40' is the float 1.4), so only the 1 % rule and whole
    numbers' rounding make two readings one: these two disagree, and there is no number whatever the order."""
    a = _creatinine("2160-0", 1.40, "mg/dL")
    b = _creatinine("2160-0", 1.35, "mg/dL", a["effectiveDateTime"])
    for x, y in ((a, b), (b, a)):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "not calculated" in card["summary"], card["summary"]


def test_a_lab_result_dated_by_the_day_is_a_day_where_the_record_is(api: Any) -> None:
    """A date alone is a day where the record is (its zone read from the record's times). In Sydney (+11:00), 2.0
    mg/dL dated by the day and 1.0 mg/dL at 09:00 that day: either may be the later (Inker 2021, man of 60: 38 or
    86), so no number. At -12:00, 1.0 mg/dL at 20:00 on one day and 2.0 mg/dL dated the next (sorted by midnight
    UTC, before the evening result): the timed one is not known to be the newest, so no number either."""
    day = F.days_ago(3)[:10]
    nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    east = [{**_creatinine("2160-0", 1.0, "mg/dL"), "effectiveDateTime": f"{day}T09:00:00+11:00"},
            {**_creatinine("2160-0", 2.0, "mg/dL"), "id": "obs-day", "effectiveDateTime": day}]
    west = [{**_creatinine("2160-0", 1.0, "mg/dL"), "effectiveDateTime": f"{day}T20:00:00-12:00"},
            {**_creatinine("2160-0", 2.0, "mg/dL"), "id": "obs-next", "effectiveDateTime": nxt}]
    for x, y in (east, east[::-1]):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "Which reading is the newest is not known" in card["detail"], card["detail"]
    for x, y in (west, west[::-1]):
        card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)])
        assert "not calculated" in card["summary"], card["summary"] + card["detail"]
