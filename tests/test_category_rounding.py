"""A card never contradicts itself at a category boundary: the number it shows, the category it names, the band that
category states, the value saved to the chart, and a refusal's value against the range it states all agree.

Rule (docs/cards.md): the category is chosen on the output as the card shows it (rounded to the output's declared
decimals). Expected numbers come from the published equations written out below, never from the service's code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

EGFR_UNIT = "mL/min/{1.73_m2}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("category-rounding"))


# ---- the published equations, written out ----------------------------------------------------------------------
def ckd_epi_2021_male(scr: float, age: int) -> float:
    """Inker 2021, NEJM 385:1737: 142 × min(Scr/0.9, 1)^−0.302 × max(Scr/0.9, 1)^−1.200 × 0.9938^age (men)."""
    return 142 * min(scr / 0.9, 1) ** -0.302 * max(scr / 0.9, 1) ** -1.200 * 0.9938 ** age


def pce_white_male(age: int, tc: float, hdl: float, sbp: float) -> float:
    """Goff 2013 Table A, white men, untreated SBP, non-smoker, no diabetes."""
    ln_age = math.log(age)
    s = (12.344 * ln_age + 11.853 * math.log(tc) - 2.664 * ln_age * math.log(tc) - 7.990 * math.log(hdl)
         + 1.769 * ln_age * math.log(hdl) + 1.764 * math.log(sbp))
    return 1 - 0.9144 ** math.exp(s - 61.18)


def kfre_5y(age: int, male: int, egfr: float, acr_mg_g: float) -> float:
    """Tangri 2011 4-variable equation, North American 5-year baseline survival 0.9240 (Tangri 2016)."""
    lp = (-0.2201 * (age / 10 - 7.036) + 0.2467 * (male - 0.5642) - 0.5567 * (egfr / 5 - 7.222)
          + 0.4510 * (math.log(acr_mg_g) - 5.137))
    return 1 - 0.9240 ** math.exp(lp)


def kdigo_stage(egfr_reported: int) -> str:
    """KDIGO 2024 GFR categories, on eGFR as laboratories report it (a whole number)."""
    for stage, below in (("G5", 15), ("G4", 30), ("G3b", 45), ("G3a", 60), ("G2", 90)):
        if egfr_reported < below:
            return stage
    return "G1"


def band_holds(number: float, description: str) -> bool:
    """Whether a number lies in the band a category description states: '45–59', '5% to <7.5%', '3% to 5%', '<3%',
    '≥20%', '>5%'."""
    text = description.replace("%", "")
    if m := re.search(r"(\d+(?:\.\d+)?) to <(\d+(?:\.\d+)?)", text):
        return float(m[1]) <= number < float(m[2])
    if m := re.search(r"(\d+(?:\.\d+)?) to (\d+(?:\.\d+)?)", text):  # '3% to 5%': both ends in
        return float(m[1]) <= number <= float(m[2])
    if m := re.search(r"(\d+(?:\.\d+)?)–(\d+(?:\.\d+)?)", text):
        return float(m[1]) <= number <= float(m[2])
    if m := re.search(r">(\d+(?:\.\d+)?)", text):  # '>5%': above it, as NICE's "greater than 5%"
        return number > float(m[1])
    if m := re.search(r"<(\d+(?:\.\d+)?)", text):
        return number < float(m[1])
    if m := re.search(r"≥(\d+(?:\.\d+)?)", text):
        return number >= float(m[1])
    raise AssertionError(f"no band in {description!r}")


def headline(card: dict[str, Any]) -> tuple[float, str, str]:
    """The number, category and band on the card's first line: '**eGFR …: 60 mL/min/1.73 m² (G2)** — … (eGFR
    60–89)', '**10-year ASCVD risk: 7.5% (intermediate)** — …'."""
    first = card["detail"].splitlines()[0]
    m = re.match(r"\*\*.*: ([\d.]+)(?:%| mL/min/1\.73 m²)? \(([^)]+)\)\*\* — (.*)$", first)
    assert m, first
    return float(m[1]), m[2], m[3]


def chart_value(card: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return next(a["resource"] for s in card["suggestions"] for a in s["actions"]
                if a["resource"]["resourceType"] == resource_type)


# ---- eGFR: KDIGO stage on the whole number shown, as a laboratory reports and stages it -------------------------
@pytest.mark.parametrize(("age", "creatinine", "boundary"), [
    (74, 0.90, 90),   # eGFR 89.6 -> reported 90, G1
    (50, 1.43, 60),   # 59.7 -> 60, G2
    (50, 1.82, 45),   # 44.7 -> 45, G3a
    (50, 2.56, 30),   # 29.7 -> 30, G3b
    (50, 4.58, 15),   # 14.8 -> 15, G4
])
def test_egfr_just_under_a_kdigo_boundary_is_staged_as_shown(api: Any, age: int, creatinine: float,
                                                             boundary: int) -> None:
    egfr = ckd_epi_2021_male(creatinine, age)
    assert boundary - 0.5 < egfr < boundary  # the record sits where rounding crosses the boundary
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", age, "male"),
                                           F.quantity_obs("2160-0", creatinine, "mg/dL")])
    reported = boundary  # the laboratory's whole number
    stage = kdigo_stage(reported)
    assert card["summary"] == f"eGFR {reported} mL/min/1.73 m² (KDIGO {stage})"
    shown, category, band = headline(card)
    assert (shown, category) == (reported, stage)
    assert band_holds(shown, band), band
    # the Observation offered for the chart holds the number the card shows
    assert chart_value(card, "Observation")["valueQuantity"]["value"] == reported


def test_egfr_away_from_a_boundary_keeps_its_stage(api: Any) -> None:
    egfr = ckd_epi_2021_male(1.4, 60)  # kidney.epi worked example: 57.54
    assert egfr == pytest.approx(57.54, abs=0.005)
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.4, "mg/dL")])
    assert card["summary"] == "eGFR 58 mL/min/1.73 m² (KDIGO G3a)"
    assert chart_value(card, "Observation")["valueQuantity"]["value"] == 58


# ---- risks: the ACC/AHA and KFRE bands applied to the percentage the card shows ---------------------------------
def acc_aha_band(pct_shown: float) -> str:
    """2019 ACC/AHA primary prevention: <5 low, 5 to <7.5 borderline, 7.5 to <20 intermediate, ≥20 high."""
    return "low" if pct_shown < 5 else "borderline" if pct_shown < 7.5 else "intermediate" if pct_shown < 20 \
        else "high"


@pytest.mark.parametrize(("age", "tc", "sbp", "shown"), [
    (55, 172, 132, 5.0),    # 4.96%
    (55, 181, 162, 7.5),    # 7.46%
    (65, 229, 160, 20.0),   # 19.97%
    (55, 213, 120, 5.4),    # the Goff 2013 Table A white-men profile, away from a bound
])
def test_pce_category_agrees_with_the_percentage_shown(api: Any, age: int, tc: float, sbp: float,
                                                       shown: float) -> None:
    risk = pce_white_male(age, tc, 50, sbp)
    assert round(risk * 100, 1) == shown
    card = fire(api, "ascvd-pce-10y", F.pce_record(age=age, gender="male", race="white", tc=tc, hdl=50, sbp=sbp))
    category = acc_aha_band(shown)
    assert card["summary"] == f"10-year ASCVD risk {shown:.1f}% ({category})"
    number, label, band = headline(card)
    assert (number, label) == (shown, category)
    assert band_holds(number, band), band
    assert chart_value(card, "RiskAssessment")["prediction"][0]["qualitativeRisk"]["text"] == category


@pytest.mark.parametrize(("egfr", "acr", "shown", "category"), [
    (41, 43, 3.0, "intermediate"),   # 2.96%
    (41, 138, 5.0, "intermediate"),  # 4.96%: shown 5.0%, not above NICE NG203's "greater than 5%"
    (41, 150, 5.1, "high"),          # above it: referral
    (45, 30, 1.6, "low"),            # Tangri worked example: 1.62%
])
def test_kfre_category_agrees_with_the_percentage_shown(api: Any, egfr: int, acr: int, shown: float,
                                                        category: str) -> None:
    assert round(kfre_5y(55, 0, egfr, acr) * 100, 1) == shown
    card = fire(api, "kfre-4var", [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", egfr, EGFR_UNIT),
                                   F.quantity_obs("9318-7", acr, "mg/g")])
    assert card["summary"] == f"5-year kidney failure risk {shown:.1f}% ({category})"
    number, label, band = headline(card)
    assert (number, label) == (shown, category)
    assert band_holds(number, band), band
    referral = [s for s in card["suggestions"] if s["label"] == "Refer to nephrology"]
    assert bool(referral) == (category == "high")


# ---- refusals: the value reads outside the range the card states ------------------------------------------------
def assert_visibly_outside(reason: str) -> None:
    m = re.search(r" (-?[\d.]+) [^(]*is outside the range the model was validated for "
                  r"\(([\d.]+)–([\d.]+)[ )]", reason)
    assert m, reason
    value, low, high = (float(g) for g in m.groups())
    assert not low <= value <= high, reason


@pytest.mark.parametrize(("service", "record", "reason"), [
    ("egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 0.05, "mg/dL")],
     "Serum creatinine 0.05 mg/dL is outside the range the model was validated for (0.1–20 mg/dL)"),
    ("egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 25, "mg/dL")],
     "Serum creatinine 25 mg/dL is outside the range the model was validated for (0.1–20 mg/dL)"),
    # KFRE is for eGFR below 60: a laboratory's eGFR of 60 is outside, and the range says so
    ("kfre-4var", [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", 60, EGFR_UNIT),
                   F.quantity_obs("9318-7", 30, "mg/g")],
     "eGFR 60 mL/min/1.73 m² is outside the range the model was validated for (10–59.999 mL/min/1.73 m²)"),
])
def test_a_refused_value_reads_outside_the_range_stated(api: Any, service: str, record: list[dict[str, Any]],
                                                        reason: str) -> None:
    card = fire(api, service, record)
    assert card["summary"].startswith("No ") and reason in card["detail"], card["detail"]
    assert_visibly_outside(reason)


def test_an_hba1c_just_under_its_range_reads_outside_it(api: Any) -> None:
    """PREVENT's HbA1c add-on is validated for 4.5–15 %: a newest 4.497 % refuses (the newest value governs), and the
    card says 4.497, not 4.5, which would read as inside the range."""
    record = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),  # Khan 2024 sample woman
              F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
              F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
              F.quantity_obs("98979-8", 90, EGFR_UNIT), F.quantity_obs("39156-5", 35, "kg/m2"),
              F.quantity_obs("4548-4", 4.497, "%", days=5)]
    card = fire(api, "prevent-full", record)
    assert card["summary"].startswith("No "), card["summary"]
    reason = next(line for line in card["detail"].splitlines() if "HbA1c" in line and "outside" in line)
    assert "4.497" in reason
    assert_visibly_outside(reason)
