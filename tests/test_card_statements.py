"""What a card states to the clinician, checked against the guideline it cites (the twenty-second audit).

Expected categories are written from the guideline texts quoted in each test, never from the model's own output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fhirfactory as F
import pytest
from hook_calls import fire, module_app

AF = "49436004"  # atrial fibrillation (SNOMED CT)
HTN = "38341003"  # hypertensive disorder (SNOMED CT)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("card-statements"))


def category(card: dict[str, Any]) -> tuple[str, str]:
    """("low-moderate", "info") from "CHA2DS2-VASc 1 (low-moderate stroke risk in AF)"."""
    return card["summary"].split("(", 1)[1].split(" stroke risk")[0], card["indicator"]


# 2023 ACC/AHA/ACCP/HRS AF guideline (and ESC 2020): anticoagulation is recommended at a CHA2DS2-VASc of >= 2 in men
# and >= 3 in women, reasonable to consider at 1 in men and 2 in women; a woman's single point is sex alone, low risk
# like a man's 0 (the 2024 ESC guideline drops the sex point: CHA2DS2-VA).
@pytest.mark.parametrize(("sex", "age", "problems", "score", "band"), [
    ("male", 55, [], 0, ("low", "info")),
    ("female", 55, [], 1, ("low", "info")),
    ("male", 68, [], 1, ("low-moderate", "info")),
    ("female", 68, [], 2, ("low-moderate", "info")),
    ("female", 55, [HTN], 2, ("low-moderate", "info")),
    ("male", 55, [HTN], 1, ("low-moderate", "info")),
    ("male", 76, [], 2, ("elevated", "warning")),
    ("female", 68, [HTN], 3, ("elevated", "warning")),
    ("female", 76, [], 3, ("elevated", "warning")),
])
def test_cha2ds2_vasc_bands_for_women_are_one_point_above_mens(api: Any, sex: str, age: int, problems: list[str],
                                                               score: int, band: tuple[str, str]) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", age, sex), F.condition(AF),
                                      *(F.condition(code) for code in problems)])
    assert card["summary"].startswith(f"CHA2DS2-VASc {score} "), card["summary"]
    assert category(card) == band, card["summary"]
    if band[0] == "low":
        assert "not recommended" in card["detail"], card["detail"]
    if band[0] == "low-moderate":  # class 2a in the 2023 guideline: "reasonable", not "may be considered" (2b)
        assert "Oral anticoagulation is reasonable" in card["detail"], card["detail"]
    if band[0] == "elevated":
        assert "recommended for a score ≥2 in men or ≥3 in women" in card["detail"], card["detail"]


def egfr(value: float, days: int = 20) -> dict[str, Any]:
    return F.quantity_obs("98979-8", value, "mL/min/{1.73_m2}", days=days)


def acr(value: float, days: int = 20) -> dict[str, Any]:
    return F.quantity_obs("9318-7", value, "mg/g", days=days)


def creatinine(value: float, days: int) -> dict[str, Any]:
    return F.quantity_obs("2160-0", value, "mg/dL", days=days)


def card_texts(card: dict[str, Any]) -> str:
    out = [card["summary"], card.get("detail", "")]
    for s in card.get("suggestions", []):
        for a in s["actions"]:
            out.append(a["description"])
            res = a["resource"]
            out += [r.get("text", "") for r in res.get("reasonCode", [])]
    return "\n".join(out)


def test_kfre_a_risk_shown_as_5_0_percent_is_not_above_5_percent(api: Any) -> None:
    """NICE NG203 1.5.5: refer at a 5-year KFRE risk "greater than 5%". A man of 60, eGFR 40, ACR 80 mg/g has a
    risk shown as 5.0%: not above 5%, so no referral said to be for a risk above 5%."""
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(40), acr(80)])
    assert card["summary"].startswith("5-year kidney failure risk 5.0% ("), card["summary"]
    assert "(intermediate)" in card["summary"], card["summary"]
    assert "Refer to nephrology" not in [s["label"] for s in card.get("suggestions", [])]
    assert "5-year risk 3% to 5%" in card["detail"] and "≥5%" not in card["detail"], card["detail"]
    higher = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(40), acr(90)])  # shown 5.1% or more
    assert "(high)" in higher["summary"] and "Refer to nephrology" in [s["label"] for s in higher["suggestions"]]


@pytest.mark.parametrize(("age", "gfr", "ratio", "says"), [(85, 25, 2, "eGFR below 30"),
                                                     (80, 55, 350, "300 mg/g or more (A3)"), (70, 45, 30, None)])
def test_kfre_low_risk_does_not_keep_g4_or_a3_in_primary_care(api: Any, age: int, gfr: float, ratio: float,
                                                              says: str | None) -> None:
    """KDIGO 2012 rec. 5.1.1 (kept in KDIGO 2024): refer at eGFR < 30 or a consistent ACR >= 300 mg/g whatever the
    kidney failure risk; the low band had told a woman of 85 with eGFR 25 to continue care in primary care."""
    card = fire(api, "kfre-4var", [F.patient("p1", age, "female"), egfr(gfr), acr(ratio)])
    assert "(low)" in card["summary"], card["summary"]
    if says is None:
        assert "Continue CKD care in primary care" in consider(card), consider(card)
    else:
        assert says in consider(card) and "referral to specialist kidney care" in consider(card), consider(card)
        assert "primary care" not in consider(card), consider(card)


def test_kfre_a_2_year_risk_above_40_percent_speaks_of_preparing_kidney_replacement(api: Any) -> None:
    """KDIGO 2024: a 2-year kidney failure risk above 40% guides preparation for kidney replacement therapy
    (modality education, vascular access, transplant referral)."""
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(12), acr(3000)])
    text = card_texts(card).lower()
    assert "(very high)" in card["summary"], card["summary"]
    assert "kidney replacement therapy" in text and "vascular access" in text, text


@pytest.mark.parametrize(("value", "stage"), [(2.0, "G3b"), (2.8, "G4"), (5.0, "G5")])
def test_an_egfr_stage_of_ckd_says_ckd_needs_three_months(api: Any, value: float, stage: str) -> None:
    """KDIGO 2024: CKD is abnormal kidney function present for more than 3 months. One low value after a normal one
    40 days earlier may be acute kidney injury: the card may not state CKD actions without saying so."""
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), creatinine(0.9, 40), creatinine(value, 1)])
    assert f"(KDIGO {stage})" in card["summary"], card["summary"]
    assert "more than 3 months" in card["detail"] and "acute kidney injury" in card["detail"], card["detail"]


# -- guidance that depends on the record (manifest `advice`, cards/advice.py) ------------------------------------------

APIXABAN = ("1364430", "apixaban 5 MG Oral Tablet")
ATORVASTATIN = ("617312", "atorvastatin calcium 40 MG Oral Tablet")


def consider(card: dict[str, Any]) -> str:
    return next((line for line in card["detail"].splitlines() if line.startswith("**Consider:**")), "")


def details_page(api: Any, card: dict[str, Any]) -> str:
    url = next(x["url"] for x in card["links"] if "/details/" in x["url"])
    return api.client.get(url.replace("http://testserver", "")).text


def prevent_record(age: int, *extra: dict[str, Any], diabetes: bool = False) -> list[dict[str, Any]]:
    return [F.patient("p1", age, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
            F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2"),
            *([F.condition("44054006")] if diabetes else []), *extra]


def test_a_cha2ds2_vasc_of_0_resting_on_an_unchecked_no_does_not_say_anticoagulation_is_not_recommended(
        api: Any) -> None:
    """An EHR that sends the MedicationStatement key but not the MedicationRequest one, with no fhirServer: the
    hypertension and diabetes items (each a point) could not be checked against the orders, and the card had said
    'anticoagulation is not recommended' at 0. It says the score is conditional on them; the details page agrees."""
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from hook_calls import HOOK_INSTANCE, templates

    tmpl = templates(api, "cha2ds2-vasc")
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    record = [F.patient("p1", 60, "male"), F.condition(AF)]
    complete = fire(api, "cha2ds2-vasc", record)
    assert consider(complete).startswith("**Consider:** Anticoagulation is not recommended"), consider(complete)
    prefetch = prefetch_from_resources(tmpl, record, context)
    for key in [k for k, t in tmpl.items() if t.startswith("MedicationRequest?")]:
        prefetch.pop(key)
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    card = api.post("/cds-services/cha2ds2-vasc", json=body).json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 0 (low"), card["summary"]
    line = consider(card)
    assert line.startswith("**Consider:** Not fully checked: hypertension, diabetes (the MedicationRequest search "
                           "could not be obtained); each would add a point"), line
    assert "Only if they are absent is anticoagulation not recommended" in line, line
    page = details_page(api, card)
    assert "Not fully checked: hypertension, diabetes; each would add a point" in page, page


def test_an_anticoagulated_patient_is_not_told_anticoagulation_is_recommended_as_if_untreated(api: Any) -> None:
    """A man of 76 with AF on apixaban: the score (2) stands, the card acknowledges the anticoagulant it found."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 76, "male"), F.condition(AF), F.med_request(*APIXABAN[:1],
                                                                                                display=APIXABAN[1])])
    assert card["summary"].startswith("CHA2DS2-VASc 2 (elevated"), card["summary"]
    assert "Already on an anticoagulant (apixaban" in consider(card), consider(card)
    assert "Oral anticoagulation is recommended for a score" not in card["detail"], card["detail"]
    assert "Already on an anticoagulant (apixaban" in details_page(api, card)
    low = fire(api, "cha2ds2-vasc", [F.patient("p1", 50, "male"), F.condition(AF),
                                     F.med_request(APIXABAN[0], display=APIXABAN[1])])
    assert "check what it is for" in consider(low) and "not recommended" not in consider(low), consider(low)
    untreated = fire(api, "cha2ds2-vasc", [F.patient("p1", 76, "male"), F.condition(AF)])
    assert "Oral anticoagulation is recommended for a score" in consider(untreated), consider(untreated)


def test_a_statin_user_is_not_offered_a_statin(api: Any) -> None:
    """2018 AHA/ACC cholesterol guideline: for a patient on a statin the questions are adherence, LDL-C response
    and intensity; the PCE (2013 ACC/AHA) estimate is for people not taking one, and a calcium score is for an
    uncertain statin decision (2019 ACC/AHA primary prevention, IIa)."""
    statin = F.med_request(ATORVASTATIN[0], display=ATORVASTATIN[1])
    pce = fire(api, "ascvd-pce-10y", F.pce_record(age=62, gender="male", tc=240, hdl=40, sbp=150) + [statin])
    assert "(intermediate)" in pce["summary"], pce["summary"]
    assert "Already on a statin (atorvastatin" in consider(pce) and "statin is an option" not in pce["detail"]
    assert "Order a coronary artery calcium score" not in [s["label"] for s in pce["suggestions"]]
    without = fire(api, "ascvd-pce-10y", F.pce_record(age=62, gender="male", tc=240, hdl=40, sbp=150))
    assert "Order a coronary artery calcium score" in [s["label"] for s in without["suggestions"]]
    prevent = fire(api, "prevent-full", prevent_record(62, statin))
    assert "Already on a statin" in consider(prevent) and "e.g. statin" not in consider(prevent), consider(prevent)


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-full"])
def test_a_diabetic_adult_of_40_to_75_is_told_a_statin_is_recommended(api: Any, service: str) -> None:
    """2018 AHA/ACC cholesterol guideline (class I): adults 40-75 with diabetes, a moderate-intensity statin
    whatever the estimated risk; at 76 and over it is an individual decision."""
    young = F.pce_record(age=45, gender="female", tc=180, hdl=60, sbp=115, diabetes=True) \
        if service == "ascvd-pce-10y" else prevent_record(45, diabetes=True)
    card = fire(api, service, young)
    assert "moderate-intensity statin is recommended whatever the estimated risk" in consider(card), consider(card)
    old = F.pce_record(age=77, gender="female", tc=180, hdl=60, sbp=115, diabetes=True) \
        if service == "ascvd-pce-10y" else prevent_record(77, diabetes=True)
    assert "whatever the estimated risk" not in fire(api, service, old)["detail"]


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
@pytest.mark.parametrize(("ldl", "unit", "severe"), [(200, "mg/dL", True), (5.2, "mmol/L", True),
                                                     (185, "mg/dL", False), (4.8, "mmol/L", False)])
def test_prevent_with_ldl_of_190_or_more_says_a_high_intensity_statin_whatever_the_risk(
        api: Any, service: str, ldl: float, unit: str, severe: bool) -> None:
    """2018 AHA/ACC cholesterol guideline: LDL-C >= 190 mg/dL (4.9 mmol/L) -> high-intensity statin without risk
    estimation (class I). A woman of 45 with a low PREVENT estimate and LDL-C 200 may not be told "lifestyle"."""
    card = fire(api, service, prevent_record(45, F.quantity_obs("13457-7", ldl, unit)))
    line = consider(card)
    assert ("high-intensity statin whatever the estimated risk" in line) is severe, line
    if severe:
        assert not any("calcium" in s["label"].lower() for s in card.get("suggestions", [])), card["suggestions"]


# -- NEWS2 (RCP 2017) ---------------------------------------------------------------------------------------------------


def news2_record(sex: str = "male", age: int = 67, temp: float = 36.8, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Every vital but the temperature scores 0 on Chart 1: RR 18, SpO2 96 on air, pulse 72, SBP 120, alert."""
    return [F.patient("p1", age, sex), F.encounter("e1"), F.vital("9279-1", 18, "/min"), F.vital("59408-5", 96, "%"),
            F.vital("8867-4", 72, "/min"), F.vital("8310-5", temp, "Cel"), F.bp_panel(120, days=0),
            F.coded_obs("67775-7", "248234008", hours=2), *extra]


ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def recent(condition: dict[str, Any], days: int = 60) -> dict[str, Any]:
    return {**condition, "onsetDateTime": F.days_ago(days)}


@pytest.mark.parametrize("pregnancy", [F.condition("77386006", display="Pregnancy"),
                                       F.condition("O26.891", ICD10CM, display="Other specified pregnancy conditions"),
                                       F.condition("Z3A.32", ICD10CM, display="32 weeks gestation of pregnancy"),
                                       F.condition("O24.410", ICD10CM, display="Gestational diabetes in pregnancy"),
                                       F.condition("65147003", display="Twin pregnancy")])
def test_news2_gives_no_score_in_pregnancy(api: Any, pregnancy: dict[str, Any]) -> None:
    """RCP 2017: NEWS2 is not for use in pregnancy; an obstetric early warning score applies."""
    card = fire(api, "news2-patient-view", news2_record("female", 28, 36.8, recent(pregnancy)))
    assert card["summary"].startswith("No NEWS2"), card["summary"]
    assert "not for use in pregnancy" in card["detail"] and "obstetric early warning score" in card["detail"]
    delivered = recent(F.condition("77386006", clinical="resolved", display="Pregnancy"))
    assert fire(api, "news2-patient-view", news2_record("female", 28, 36.8, delivered))["summary"].startswith(
        "NEWS2 0 ")


@pytest.mark.parametrize(("statuses", "withheld"), [
    ([("82810-3", "LA15173-0", "http://loinc.org", 3)], True),            # Pregnant, charted on admission
    ([("82810-3", "77386006", "http://snomed.info/sct", 3)], True),
    ([("11449-6", "LA15173-0", "http://loinc.org", 30)], True),           # Pregnancy status - Reported
    ([("82810-3", "LA15173-0", "http://loinc.org", 200),                  # pregnant then, not pregnant now
      ("82810-3", "LA26683-5", "http://loinc.org", 1)], False),
    ([("82810-3", "LA4489-6", "http://loinc.org", 1)], False),            # Unknown
    ([("82810-3", "LA15173-0", "http://loinc.org", 400)], False),         # longer ago than any pregnancy lasts
    ([("82810-3", "102874004", "http://snomed.info/sct", 1)], None),      # "Possible pregnancy": not an answer
])
def test_news2_reads_the_charted_pregnancy_status(api: Any, statuses: list[tuple[str, str, str, int]],
                                                   withheld: bool | None) -> None:
    """RCP 2017: NEWS2 is not for use in pregnancy. Wards chart pregnancy as an Observation (LOINC 82810-3 Pregnancy
    status, answers LL4129-4: LA15173-0 Pregnant, LA26683-5 Not pregnant, LA4489-6 Unknown) more often than on the
    problem list; the newest answer counts, and one the list does not hold cannot rule a pregnancy out."""
    obs = [F.coded_obs(code, answer, days=days, answer_system=system) for code, answer, system, days in statuses]
    card = fire(api, "news2-patient-view", news2_record("female", 28, 36.8, *obs))
    if withheld is None:
        assert card["summary"].startswith("No NEWS2"), card["summary"]
        assert "latest pregnancy status on record cannot be read" in card["detail"], card["detail"]
    elif withheld:
        assert card["summary"].startswith("No NEWS2"), card["summary"]
        assert "latest pregnancy status on record is pregnant" in card["detail"], card["detail"]
        assert "obstetric early warning score" in card["detail"]
    else:
        assert card["summary"].startswith("NEWS2 0 "), card["summary"]


@pytest.mark.parametrize("condition", [
    F.condition("77386006", display="Pregnancy"),  # onset 900 days ago, never closed: no pregnancy lasts that long
    recent(F.condition("O24.430", ICD10CM, display="Gestational diabetes in the puerperium, diet controlled")),
    recent(F.condition("O26.63", ICD10CM, display="Liver and biliary tract disorders in the puerperium")),
])
def test_news2_is_not_withheld_for_a_pregnancy_that_is_over(api: Any, condition: dict[str, Any]) -> None:
    card = fire(api, "news2-patient-view", news2_record("female", 28, 36.8, condition))
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]


@pytest.mark.parametrize(("sex", "age"), [("male", 67), ("female", 85)])
def test_a_problem_list_not_read_in_full_does_not_take_news2_away(api: Any, sex: str, age: int) -> None:
    """A long problem list whose next page is not read: no pregnancy can be ruled out, but a pregnancy rule that
    refused then would take the ward's score from everyone; it stands on what the record shows."""
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from hook_calls import HOOK_INSTANCE, templates

    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "news2-patient-view"), news2_record(sex, age), context)
    key = next(k for k in prefetch if k.startswith("condition-pregnant"))
    bundle = prefetch[key] or {"resourceType": "Bundle", "type": "searchset", "entry": []}
    bundle["link"] = [{"relation": "next", "url": "http://127.0.0.1:1/fhir/Condition?page=2"}]
    prefetch[key] = bundle
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    card = api.post("/cds-services/news2-patient-view", json=body).json()["cards"][0]
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]


@pytest.mark.parametrize(("temp", "shown", "score"), [(35.0, "35", 3), (35.04, "35", 3), (35.05, "35.1", 1),
                                                      (38.05, "38.1", 1), (39.05, "39.1", 2), (36.05, None, 0)])
def test_news2_scores_the_temperature_it_shows(api: Any, temp: float, shown: str | None, score: int) -> None:
    """RCP Chart 1 at 0.1 °C: <=35.0 scores 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2; a reading charted to
    two decimals is read at the chart's precision, and the card shows the number it scored."""
    card = fire(api, "news2-patient-view", news2_record("male", 67, temp))
    if shown is not None:  # a temperature that scores 0 is not among the inputs the card lists
        assert f"Temperature: **{shown} °C" in card["detail"], card["detail"]
    assert card["summary"].startswith(f"NEWS2 {score} "), card["summary"]


@pytest.mark.parametrize(("temp", "score"), [(36.8, 0), (35.5, 1), (39.5, 2)])
def test_news2_response_at_0_is_routine_monitoring_and_at_1_to_4_a_nurse_assessment(api: Any, temp: float,
                                                                                    score: int) -> None:
    """RCP 2017 Chart 3: a score of 0 means routine NEWS monitoring at least 12-hourly; only 1-4 asks a registered
    nurse to assess the patient (at least 4-6-hourly observations)."""
    card = fire(api, "news2-patient-view", news2_record("male", 67, temp))
    assert card["summary"].startswith(f"NEWS2 {score} (low"), card["summary"]
    if score == 0:
        assert "every 12 hours" in consider(card) and "nurse" not in consider(card), consider(card)
    else:
        assert "registered nurse assesses" in consider(card) and "4–6 hours" in consider(card), consider(card)


def test_a_computed_egfr_is_shown_as_computed_from_its_creatinine_not_converted(api: Any) -> None:
    """An eGFR is computed from the creatinine by CKD-EPI 2021 (Inker 2021), not a unit conversion of it: the KFRE card
    had read 'eGFR: 45.7 mL/min/1.73 m² · converted from 150 µmol/L'."""
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(40, days=60),
                                   F.quantity_obs("14682-9", 150, "umol/L", days=5), acr(100)])
    row = next(line for line in card["detail"].splitlines() if line.startswith("- eGFR:"))
    assert "converted" not in row and "computed from serum creatinine 150 µmol/L" in row, row
    reported = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(40, days=5), acr(100)])
    row = next(line for line in reported["detail"].splitlines() if line.startswith("- eGFR:"))
    assert "computed" not in row, row


def test_news2_two_readings_of_one_moment_that_disagree_do_not_depend_on_the_bundle_order(api: Any) -> None:
    """Two respiration rates charted for the same minute (a flowsheet row corrected by a second entry): RR 30 scores
    3, RR 14 scores 0 (RCP Chart 1), and a searchset's order within one time is unspecified. The card had taken the
    first in the bundle (NEWS2 3 one way, 0 the other); which is current is not known, and it says so."""
    a, b = F.vital("9279-1", 30, "/min", hours=1), F.vital("9279-1", 14, "/min", hours=1)
    rest = news2_record("male", 67, 36.8)[:2] + news2_record("male", 67, 36.8)[3:]  # without its RR 18
    cards = [fire(api, "news2-patient-view", [*rest, *pair]) for pair in ((a, b), (b, a))]
    assert cards[0]["summary"] == cards[1]["summary"], [c["summary"] for c in cards]
    assert "not calculated" in cards[0]["summary"], cards[0]["summary"]
    assert "Which reading is the newest is not known" in cards[0]["detail"], cards[0]["detail"]
    page = api.client.get(__import__("test_details_view").details_path(cards[0])).text
    assert "both are charted for the same moment" in page, page  # not "a time is needed for … a date alone"
    same = fire(api, "news2-patient-view", [*rest, a, F.vital("9279-1", 30, "/min", hours=1)])
    assert same["summary"].startswith("NEWS2 3 "), same["summary"]  # two entries that agree are one reading


def test_an_egfr_offered_to_the_chart_carries_its_unit(api: Any) -> None:
    """A number without its unit in the headline or the save action is not a result a clinician can chart."""
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), creatinine(2.0, 1)])
    assert "eGFR (CKD-EPI 2021): 38 mL/min/1.73 m² (G3b)" in card["detail"], card["detail"]
    assert [a["description"] for s in card["suggestions"] for a in s["actions"]][0] == \
        "Record an Observation: 38 mL/min/1.73 m²"


def test_the_egfr_card_does_not_order_a_urine_acr_the_record_holds_from_this_year(api: Any) -> None:
    """KDIGO 2024: test urine ACR in CKD (at least yearly); one from 10 days ago needs no new order."""
    patient = [F.patient("p1", 60, "male"), creatinine(2.0, 1)]
    fresh = fire(api, "egfr-ckd-epi-2021", [*patient, acr(80, days=10)])
    assert "(KDIGO G3b)" in fresh["summary"], fresh["summary"]
    assert "Order urine albumin/creatinine ratio" not in [s["label"] for s in fresh["suggestions"]]
    assert "from the last year is on record" in consider(fresh), consider(fresh)
    old = fire(api, "egfr-ckd-epi-2021", [*patient, acr(80, days=400)])
    assert "Order urine albumin/creatinine ratio" in [s["label"] for s in old["suggestions"]]
    no_result = acr(80, days=10)
    del no_result["valueQuantity"]
    no_result["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                 "code": "error"}]}
    failed = fire(api, "egfr-ckd-epi-2021", [*patient, no_result])  # a test with no result measured nothing
    assert "Order urine albumin/creatinine ratio" in [s["label"] for s in failed["suggestions"]]
    for text, measured in (("QNS", False), ("Test not performed", False), ("32 mg/g", True), ("negative", True)):
        as_text = acr(80, days=10)
        del as_text["valueQuantity"]
        as_text["valueString"] = text  # text without a number says no result was given (the mapper's own reading)
        card = fire(api, "egfr-ckd-epi-2021", [*patient, as_text])
        assert ("Order urine albumin/creatinine ratio" not in [s["label"] for s in card["suggestions"]]) is measured, \
            (text, [s["label"] for s in card["suggestions"]])


def test_the_pce_gives_no_estimate_for_ldl_of_190_or_more(api: Any) -> None:
    """2018 AHA/ACC cholesterol guideline (class I): LDL-C >= 190 mg/dL, a high-intensity statin without risk
    estimation. A recorded LDL-C of 205 refuses; 189 does not; no LDL-C on record refuses nothing."""
    record = F.pce_record(age=50, gender="female", tc=290, hdl=60, sbp=115)
    high = fire(api, "ascvd-pce-10y", record + [F.quantity_obs("13457-7", 205, "mg/dL")])
    assert high["summary"].startswith("No 10-year ASCVD risk"), high["summary"]
    assert "LDL-C of 190 mg/dL or more" in high["detail"] and "high-intensity statin" in high["detail"]
    assert "%" in fire(api, "ascvd-pce-10y", record + [F.quantity_obs("13457-7", 189, "mg/dL")])["summary"]
    none = fire(api, "ascvd-pce-10y", record)
    page = details_page(api, none)
    assert "%" in none["summary"] and "no LDL cholesterol in the last 2 years" not in page
    assert "checked only when recorded" in page
    mmol = fire(api, "ascvd-pce-10y", record + [F.quantity_obs("18262-6", 5.3, "mmol/L")])  # 205 mg/dL
    assert mmol["summary"].startswith("No 10-year ASCVD risk"), mmol["summary"]
    # an LDL-C on record that cannot be read ('>400', no unit) is not "not on record"
    bound = F.quantity_obs("13457-7", 400, "mg/dL")
    bound["valueQuantity"]["comparator"] = ">"
    bare = F.quantity_obs("13457-7", 212, "mg/dL")
    del bare["valueQuantity"]["unit"], bare["valueQuantity"]["code"]
    for unreadable in (bound, bare):
        card = fire(api, "ascvd-pce-10y", record + [unreadable])
        assert card["summary"].startswith("No 10-year ASCVD risk"), card["summary"]
        ldl_row = next(row for row in details_page(api, card).split("<tr") if "LDL cholesterol" in row)
        assert "not on record" not in ldl_row, ldl_row


def med_text(text: str) -> dict[str, Any]:
    order = F.med_request("0")
    order["medicationCodeableConcept"] = {"text": text}
    return order


def test_advice_quotes_the_record_as_text_whole_and_escaped(api: Any) -> None:
    """Record text is never markup on a card (cards/markdown.py), and a full stop inside a drug's name is not the end
    of the advice."""
    man = [F.patient("p1", 76, "male"), F.condition(AF)]
    card = fire(api, "cha2ds2-vasc", [*man, med_text("apixaban 5 mg [see protocol](https://evil.example/x) **STOP**")])
    assert "apixaban 5 mg \\[see protocol\\](https://evil.example/x) \\*\\*STOP\\*\\*" in consider(card), consider(card)
    card = fire(api, "cha2ds2-vasc", [*man, med_text("Eliquis 5 mg tab. Take one twice daily")])
    assert "Eliquis 5 mg tab. Take one twice daily" in consider(card) and "bleeding risk" in consider(card)


def test_an_order_whose_doses_start_later_is_not_taken_yet(api: Any) -> None:
    from datetime import timedelta

    order = F.med_request(ATORVASTATIN[0], display=ATORVASTATIN[1])
    order["dosageInstruction"] = [{"text": "40 mg at night", "timing": {"repeat": {
        "boundsPeriod": {"start": (F.NOW + timedelta(days=30)).date().isoformat()}, "frequency": 1, "period": 1,
        "periodUnit": "d"}}}]
    card = fire(api, "ascvd-pce-10y", F.pce_record(age=62, gender="male", tc=240, hdl=40, sbp=150) + [order])
    assert "Already on a statin" not in consider(card), consider(card)
    order["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = F.days_ago(30)[:10]
    card = fire(api, "ascvd-pce-10y", F.pce_record(age=62, gender="male", tc=240, hdl=40, sbp=150) + [order])
    assert "Already on a statin" in consider(card), consider(card)


def test_the_monitoring_report_names_the_band_it_flags() -> None:
    """CHA2DS2-VASc's elevated band is read on CHA2DS2-VA >= 2, not on the primary score."""
    from inference.repository import ModelRepository
    from monitoring.evaluation import flag_rule

    from conftest import ROOT

    manifest = ModelRepository(ROOT / "models").load().entries["cha2ds2-vasc"].champion.manifest
    assert flag_rule(manifest, None).startswith("score_va ≥ 2 ("), flag_rule(manifest, None)


def test_a_diabetic_at_high_risk_keeps_the_high_intensity_wording(api: Any) -> None:
    """2018 AHA/ACC: in diabetes with more risk factors a high-intensity statin is reasonable; at >= 20% the band's
    own high-intensity wording is the stronger statement, not "moderate-intensity is recommended"."""
    card = fire(api, "ascvd-pce-10y", F.pce_record(age=70, gender="male", tc=260, hdl=35, sbp=170, smoker=True,
                                                   diabetes=True))
    assert "(high)" in card["summary"], card["summary"]
    assert "high-intensity statin" in consider(card) and "whatever the estimated risk" not in consider(card)


def _with_spo2(record: list[dict[str, Any]], spo2: float) -> list[dict[str, Any]]:
    for res in record:
        if res.get("code", {}).get("coding", [{}])[0].get("code") == "59408-5":
            res["valueQuantity"]["value"] = spo2
    return record


def test_news2_says_when_spo2_was_scored_on_scale_2_and_for_which_diagnosis(api: Any) -> None:
    """RCP 2017 (NEWS2, Chart 1 and section on Scale 2): Scale 2 (target 88-92 %) is for hypercapnic respiratory
    failure, a clinician decides on it, and its use is recorded. SpO2 90 % on air scores 0 on Scale 2 and 3 on Scale
    1: a card showing 'SpO2: 90 %' beside 'NEWS2 0' without naming the scale reads as an error, and a clinician cannot
    check the choice. The card and the details page name the scale and the coded diagnosis it rests on."""
    from test_details_view import details_path

    copd = F.condition("J96.12", ICD10CM, display="Chronic respiratory failure with hypercapnia")
    card = fire(api, "news2-patient-view", _with_spo2(news2_record("male", 67, 36.8, copd), 90))
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]  # Scale 2: 88-92 % scores 0
    assert "SpO2 scored on Scale 2 (target 88–92 %)" in card["detail"], card["detail"]
    assert "Chronic respiratory failure with hypercapnia" in card["detail"], card["detail"]
    page = api.client.get(details_path(card)).text
    assert 'id="notes"' in page and "SpO2 scored on Scale 2" in page, page
    scale1 = fire(api, "news2-patient-view", _with_spo2(news2_record("male", 67, 36.8), 90))
    assert scale1["summary"].startswith("NEWS2 3 "), scale1["summary"]  # Scale 1: 90-91 % scores 3
    assert "scored on Scale 2" not in scale1["detail"] and "Scale 1" in scale1["detail"], scale1["detail"]
    assert 'id="notes"' not in api.client.get(details_path(scale1)).text


def test_news2_names_a_hypercapnic_failure_no_longer_current_and_does_not_score_on_scale_2_from_it(api: Any) -> None:
    """RCP 2017: Scale 2 is for hypercapnic respiratory failure confirmed on a prior or the current admission, once
    a clinician prescribes it. An acute episode closed as resolved at discharge (J96.02, abated 400 days ago) is not
    taken as that prescription, as Scale 2 lowers the SpO2 score (SpO2 90 % on air: 3 on Scale 1, 0 on Scale 2;
    Chart 1); the card names the episode so that a clinician can decide, and the details page does not say that no
    hypercapnic failure is recorded."""
    from test_details_view import details_path

    cond = F.condition("J96.02", ICD10CM, clinical="resolved", display="Acute respiratory failure with hypercapnia")
    cond["abatementDateTime"] = F.days_ago(400)
    card = fire(api, "news2-patient-view", _with_spo2(news2_record("male", 67, 36.8, cond), 90))
    assert card["summary"].startswith("NEWS2 3 "), card["summary"]
    note = next(line for line in card["detail"].splitlines() if "Scale 1" in line and "no longer current" in line)
    assert "(Acute respiratory failure with hypercapnia)" in note and "prescribe Scale 2" in note, note
    page = api.client.get(details_path(card)).text
    assert "no longer current (Acute respiratory failure with hypercapnia)" in page, page
    assert "no hypercapnic respiratory failure recorded" not in page


def test_news2_scale_2_note_names_the_record_on_the_details_page_and_without_a_display(api: Any) -> None:
    """The note names the record the scale rests on, on the details page as on the card (the stored value is
    'Scale 2', which names no record), and for a Condition coded without a display (J96.12 alone, as interface
    engines send it) by the value set's words for the code, not '(on record)'."""
    from test_details_view import details_path

    copd = F.condition("J96.12", ICD10CM, display="Chronic respiratory failure with hypercapnia")
    card = fire(api, "news2-patient-view", _with_spo2(news2_record("male", 67, 36.8, copd), 90))
    page = api.client.get(details_path(card)).text
    assert "on record (Chronic respiratory failure with hypercapnia)" in page, page
    bare = F.condition("J96.12", ICD10CM)
    del bare["code"]["coding"][0]["display"]
    card = fire(api, "news2-patient-view", _with_spo2(news2_record("male", 67, 36.8, bare), 90))
    note = next(line for line in card["detail"].splitlines() if "Scale 2" in line)
    assert "on record (Chronic respiratory failure with hypercapnia)" in note, note


@pytest.mark.parametrize("unit", ["mL/min/1.73 m²", "mL/min/1.73m²", "mL/min/1.73 m^2", "mL/min per 1.73 m2"])
def test_an_egfr_written_in_the_units_labs_print_is_read(api: Any, unit: str) -> None:
    """KDIGO and labs write eGFR in mL/min/1.73 m² (this service's own cards print it so); sent as Quantity.unit
    text without a UCUM code it was 'not usable' and KFRE gave no number. By hand (Tangri 2016, North America): a
    man of 60, eGFR 40, ACR 100 mg/g: lp = -0.2201*(60/10 - 7.036) + 0.2467*(1 - 0.5642) - 0.5567*(40/5 - 7.222)
    + 0.4510*(ln 100 - 5.137) = 0.2280 + 0.1075 - 0.4331 - 0.2398 = -0.3374; 5-year risk 1 - 0.9240^exp(-0.3374)
    = 5.5 %."""
    reported = F.quantity_obs("98979-8", 40, unit, days=20, ucum=False)
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), reported, acr(100)])
    assert card["summary"].startswith("5-year kidney failure risk 5.5%"), card["summary"]


@pytest.mark.parametrize("value, unit, a3", [
    (280, "mg/g", False),  # A2 in mg/g, though 280 mg/g is 31.7 mg/mmol
    (300, "mg/g", True),
    (30, "mg/mmol", True),  # 265 mg/g: A3 in mg/mmol
    (28, "mg/mmol", False),
    (0.31, "g/g", True),  # 310 mg/g: the same unit written with another prefix
    (0.28, "g/g", False),
    (310, "mg/g{creat}", True),
])
def test_kfre_refers_for_a3_in_the_unit_the_laboratory_wrote(api: Any, value: float, unit: str, a3: bool) -> None:
    """KDIGO 2024 (Table 4, as 2012's Table 7) writes A3 as an ACR above 30 mg/mmol or 300 mg/g: rounded
    equivalents, not a conversion. The eGFR card categorises an ACR in the unit written, so the KFRE card's A3
    referral must too: 280 mg/g had been called A3 there ('30 mg/mmol (265 mg/g) or more') and A2 on the eGFR card
    of the same record. g/g is mg/g with another prefix: 0.31 g/g is 310 mg/g."""
    sent = F.quantity_obs("9318-7", value, unit, days=20, ucum=unit != "mg/g{creat}")
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(50), sent])
    assert card["summary"].startswith("5-year kidney failure risk"), card["summary"]
    line = consider(card)
    written = "30 mg/mmol or more (A3)" if unit == "mg/mmol" else "300 mg/g or more (A3)"
    assert (written in line) is a3, line
    assert ("A3" in line) is a3, line
    page = details_page(api, card)
    assert (written in page) is a3  # the details page makes the same choice from the stored prediction
    if unit != "mg/g{creat}":
        egfr_card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), creatinine(1.5, 20), sent])
        assert ("Albuminuria A3" in egfr_card["detail"]) is a3, egfr_card["detail"]
        assert ("Albuminuria A2" in egfr_card["detail"]) is not a3, egfr_card["detail"]


def test_kfre_offers_no_order_for_an_acr_just_resulted_below_the_detection_limit(api: Any) -> None:
    """An ACR written '<3 mg/g' 20 days ago is a result below the lab's detection limit, not a missing test: KFRE has
    no number for it (the card says why), and a repeat would be written the same way, so the card offers no order
    for another ACR. With no ACR at all the order stands."""
    bound = acr(3)
    bound["valueQuantity"]["comparator"] = "<"
    card = fire(api, "kfre-4var", [F.patient("p1", 70, "female"), egfr(25), bound])
    assert "not calculated" in card["summary"], card["summary"]
    assert "value is a bound (&lt;3 mg/g)" in card["detail"], card["detail"]
    assert not any("Albumin" in s["label"] for s in card.get("suggestions", [])), card.get("suggestions")
    none = fire(api, "kfre-4var", [F.patient("p1", 70, "female"), egfr(25)])
    assert any("Albumin" in s["label"] for s in none.get("suggestions", [])), none.get("suggestions")


@pytest.mark.parametrize(("hours", "flag"), [(20, "stale: 20 hours old"), (13, "stale: 13 hours old"), (11, None)])
def test_news2_flags_a_vital_sign_older_than_12_hours(api: Any, hours: int, flag: str | None) -> None:
    """NEWS2 reads each vital sign of the last 24 hours, and the RCP's least frequent observations are 12-hourly
    (Chart 3, score 0): a respiration rate of 26 charted 20 hours ago scores 3 beside readings of this hour, and the
    card flagged nothing (its 'stale' flag started at a day, the whole window)."""
    record = news2_record("male", 67, 36.8)
    record[2] = F.vital("9279-1", 26, "/min", hours=hours)
    card = fire(api, "news2-patient-view", record)
    assert card["summary"].startswith("NEWS2 3 "), card["summary"]
    row = next(line for line in card["detail"].splitlines() if line.startswith("- Respiration rate:"))
    assert (flag in row) if flag else ("stale" not in row), row


def test_kfre_does_not_show_an_egfr_it_scored_as_the_edge_it_excludes(api: Any) -> None:
    """KFRE is validated for CKD G3-G5, eGFR below 60 (Tangri 2011); a computed eGFR of 59.99 is inside and scored,
    and had been shown as 'eGFR: 60' (the value the card refuses elsewhere as outside the range)."""
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(59.99), acr(100)])
    assert "%" in card["summary"], card["summary"]
    row = next(line for line in card["detail"].splitlines() if line.startswith("- eGFR:"))
    assert "**59.99 mL/min/1.73 m²**" in row, row
    plain = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(45.4), acr(100)])
    row = next(line for line in plain["detail"].splitlines() if line.startswith("- eGFR:"))
    assert "**45 mL/min/1.73 m²**" in row or "**45.4 mL/min/1.73 m²**" in row, row


@pytest.mark.parametrize(("days", "offered"), [(20, False), (300, True)])
def test_the_acr_order_after_a_result_below_detection_follows_its_age_on_card_and_page(api: Any, days: int,
                                                                                   offered: bool) -> None:
    """An ACR resulted '<3 mg/g' 20 days ago needs no repeat yet; one of 300 days ago does (KDIGO 2012 Figure 11:
    G4 is monitored about three times a year, and the ACR look-back is a year): the card offers the order only then,
    and the details page says the same."""
    from test_details_view import details_path

    bound = acr(3, days=days)
    bound["valueQuantity"]["comparator"] = "<"
    card = fire(api, "kfre-4var", [F.patient("p1", 70, "female"), egfr(25), bound])
    assert any("Albumin" in s["label"] for s in card.get("suggestions", [])) is offered, card.get("suggestions")
    page = api.client.get(details_path(card)).text
    assert ("order: Albumin/Creatinine" in page) is offered, page


@pytest.mark.parametrize("text", ["<3 mg/g", "<0.3 mg/mmol"])
def test_an_acr_written_as_a_text_bound_is_not_ordered_again_on_card_or_page(api: Any, text: str) -> None:
    """A lab that writes its below-detection ACR as text reports the same fact as a Quantity with comparator '<':
    20 days into the year's look-back no repeat is due, on the card and on the details page alike (the card had
    offered the order for a text bound while the page withheld it)."""
    from test_details_view import details_path

    bound = acr(3, days=20)
    bound.pop("valueQuantity")
    bound["valueString"] = text
    card = fire(api, "kfre-4var", [F.patient("p1", 70, "female"), egfr(25), bound])
    assert not any("Albumin" in s["label"] for s in card.get("suggestions", [])), card.get("suggestions")
    assert "order: Albumin/Creatinine" not in api.client.get(details_path(card)).text


def test_the_details_page_shows_a_scored_egfr_inside_its_range_as_the_card_does(api: Any) -> None:
    """KFRE scores an eGFR of 59.99 (validated to 59.999, below 60; Tangri 2011): the card shows 59.99, and the
    details page had shown '60' with the range '10–60', both values the model refuses."""
    from test_details_view import details_path

    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), egfr(59.99), acr(100)])
    page = api.client.get(details_path(card)).text
    assert "59.99 mL/min/1.73 m²" in page, page
    assert "10–59.999 mL/min/1.73 m²" in page and "10–60 mL/min/1.73 m²" not in page, page
