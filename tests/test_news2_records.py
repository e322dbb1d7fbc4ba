"""NEWS2 from vital signs as EHRs and device gateways chart them (audit 53): the sickest patients' readings, blood
pressure panels the mapper cannot read, and vital-signs panels that carry their readings as components.

Expected scores come from the RCP's NEWS2 Chart 1 (Royal College of Physicians, National Early Warning Score 2,
2017), never from the model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

SERVICE = "news2-patient-view"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("news2-records"))


def _at(hours: float) -> str:
    return (F.NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def calm_set() -> list[dict[str, Any]]:
    """A man of 67 on an in-progress inpatient encounter whose readings of three hours ago score 0 on Chart 1:
    respiration 18 (12–20: 0), SpO2 96 % on air (≥96: 0), systolic 120 (111–219: 0), pulse 72 (51–90: 0), alert
    (0), 36.8 °C (36.1–38.0: 0)."""
    bp = F.bp_panel(120, days=0)
    bp["effectiveDateTime"] = _at(3)
    return [F.patient("p1", 67, "male"), F.encounter("e1"),
            F.vital("9279-1", 18, "/min", hours=3), F.vital("59408-5", 96, "%", hours=3),
            F.vital("8867-4", 72, "/min", hours=3), F.vital("8310-5", 36.8, "Cel", hours=3), bp,
            F.coded_obs("67775-7", "248234008", hours=3)]


def _without(record: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in record if not any(c.get("code") == code for c in r.get("code", {}).get("coding", []))]


@pytest.mark.parametrize(("code", "value", "unit"), [
    ("8310-5", 29.5, "Cel"),   # moderate accidental hypothermia: "≤35.0" scores 3
    ("8310-5", 45.5, "Cel"),   # heat stroke: "≥39.1" scores 2, with a 3 nowhere: see below
    ("59408-5", 45, "%"),      # profound hypoxaemia: Scale 1 "≤91" scores 3
    ("8867-4", 260, "/min"),   # SVT, 1:1 flutter, pre-excited AF: "≥131" scores 3
    ("8867-4", 18, "/min"),    # complete heart block: "≤40" scores 3
])
def test_the_sickest_patients_readings_are_scored_not_refused(api: Any, code: str, value: float, unit: str) -> None:
    """Chart 1's bands are open-ended: every temperature of 35.0 °C or less scores 3, every SpO2 of 91 % or less (Scale
    1), every pulse of 131 or more and of 40 or less. A reading of 29.5 °C, 45 %, 260/min or 18/min is a real reading
    of a critically ill patient, not an implausible one, and the card must score it. It had said "No NEWS2 estimate:
    … outside the range the model was validated for (30–44 °C)", an info card with no escalation, for exactly the
    patients NEWS2 exists to catch."""
    card = fire(api, SERVICE, _without(calm_set(), code) + [F.vital(code, value, unit, hours=0.5)])
    expected = "NEWS2 2" if value == 45.5 else "NEWS2 3"
    assert card["summary"].startswith(expected), (card["summary"], card["detail"])


@pytest.mark.parametrize(("code", "value", "unit"), [("8310-5", 98.6, "Cel"), ("59408-5", 0.88, "%")])
def test_what_cannot_be_a_reading_is_still_turned_away(api: Any, code: str, value: float, unit: str) -> None:
    """98.6 charted as °C (a Fahrenheit reading under the wrong unit) and 0.88 as % (a fraction) are no readings:
    scoring them would give a number for a patient the chart says nothing about."""
    card = fire(api, SERVICE, _without(calm_set(), code) + [F.vital(code, value, unit, hours=0.5)])
    assert card["summary"].startswith("No NEWS2 estimate"), card["summary"]


def _text_panel() -> dict[str, Any]:
    """A blood pressure panel whose result is one text value, as an HL7 v2 feed sends a pressure (an OBX of type ST)."""
    panel = F.vital("85354-9", 0, "mm[Hg]", hours=0.5)
    del panel["valueQuantity"]
    panel["valueString"] = "85/50"
    return panel


def _snomed_systolic_panel() -> dict[str, Any]:
    """A blood pressure panel whose systolic component is coded in SNOMED CT (271649006 Systolic blood pressure)."""
    panel = F.bp_panel(85, 50, days=0)
    panel["effectiveDateTime"] = _at(0.5)
    panel["component"][0]["code"] = {"coding": [{"system": F.SNOMED, "code": "271649006",
                                                 "display": "Systolic blood pressure"}]}
    return panel


def test_a_newer_blood_pressure_written_as_text_is_named_not_passed_over_for_an_older_one(api: Any) -> None:
    """A panel charted 30 minutes ago as '85/50' after 120/80 three hours ago. Chart 1 scores a systolic of 90 or less
    3, so the newest pressure decides whether this patient needs urgent review; a panel the mapper cannot read is a
    reading it must name, never one to drop while the card scores the older 120 ("NEWS2 0 … at least every 12
    hours"), as it already names a standalone systolic written as text."""
    card = fire(api, SERVICE, calm_set() + [_text_panel()])
    assert card["summary"].startswith("NEWS2 not calculated"), (card["summary"], card["detail"])
    assert "the panel's result is text ('85/50'), not a component 8480-6" in card["detail"], card["detail"]
    assert "**120 mmHg**" not in card["detail"], card["detail"]


def test_a_systolic_coded_in_snomed_ct_is_read(api: Any) -> None:
    """The same 85/50 with its systolic component coded 271649006 (SNOMED CT): a systolic of 85 scores 3 (Chart 1,
    ≤90), NEWS2 3 with a 3 in one parameter (low–medium: urgent ward-based review)."""
    card = fire(api, SERVICE, calm_set() + [_snomed_systolic_panel()])
    assert card["summary"].startswith("NEWS2 3"), (card["summary"], card["detail"])
    assert "**85 mmHg**" in card["detail"], card["detail"]


def test_a_blood_pressure_panel_without_a_systolic_still_gives_way_to_the_last_one_measured(api: Any) -> None:
    """A panel with only a diastolic (the systolic not measured) holds no systolic: the newest systolic measured, three
    hours ago, is scored; nothing was charted that cannot be read."""
    panel = F.bp_panel(85, 50, days=0)
    panel["effectiveDateTime"] = _at(0.5)
    panel["component"] = panel["component"][1:]
    card = fire(api, SERVICE, calm_set() + [panel])
    assert card["summary"].startswith("NEWS2 0"), (card["summary"], card["detail"])


def test_a_vital_signs_panel_with_components_is_scored(api: Any) -> None:
    """A vital-signs panel (LOINC 85353-1) charted 30 minutes ago with its readings as components, as device gateways
    send a set: respiration 26 (≥25: 3), SpO2 89 % (≤91: 3), systolic 85 (≤90: 3), pulse 135 (≥131: 3) and 39.5 °C
    (≥39.1: 2), alert: NEWS2 14, high (Chart 2: 7 or more). The older calm set must not be scored in its place."""
    comps = [("8480-6", 85, "mm[Hg]"), ("8462-4", 50, "mm[Hg]"), ("9279-1", 26, "/min"), ("8867-4", 135, "/min"),
             ("59408-5", 89, "%"), ("8310-5", 39.5, "Cel")]
    panel = {"resourceType": "Observation", "id": "vs-panel", "status": "final",
             "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                       "code": "vital-signs"}]}],
             "code": {"coding": [{"system": F.LOINC, "code": "85353-1"}]},
             "subject": {"reference": "Patient/p1"}, "effectiveDateTime": _at(0.5),
             "component": [{"code": {"coding": [{"system": F.LOINC, "code": c}]},
                            "valueQuantity": {"value": v, "unit": u, "system": F.UCUM, "code": u}}
                           for c, v, u in comps]}
    card = fire(api, SERVICE, calm_set() + [panel])
    assert card["summary"].startswith("NEWS2 14 (high"), (card["summary"], card["detail"])


def test_a_pulse_oximetry_reading_written_as_text_leaves_oxygen_as_charted(api: Any) -> None:
    """The oxygen flow is read from a component of the SpO2 reading (US Core pulse oximetry). An SpO2 reading whose
    own value is text says nothing about oxygen: the patient stays on air as charted, and it is the SpO2 the card
    names as unreadable."""
    spo2 = F.vital("59408-5", 0, "%", hours=0.5)
    del spo2["valueQuantity"]
    spo2["valueString"] = "96 %"
    card = fire(api, SERVICE, calm_set() + [spo2])
    missing = [line for line in card["detail"].splitlines() if line.startswith("- ")]
    assert missing == ["- SpO2: Newest result (" + spo2["effectiveDateTime"][:10] + ") not usable: the result is text "
                       "('96 %'), not a quantity"], card["detail"]


@pytest.mark.parametrize(("code", "alert"), [("248234008", True), ("255373000", False), ("300202002", False),
                                             ("450847001", False), ("422768004", False)])
def test_acvpu_answers_of_the_avpu_value_sets_are_read(api: Any, code: str, alert: bool) -> None:
    """SNOMED CT answers of the AVPU scale as the IHE paramedicine value set (Mentally alert 248234008, Verbal
    255373000, Responds to pain 450847001, Unresponsive 422768004) and others (Responds to voice 300202002) chart
    it: Chart 1 scores anything but Alert 3, so the calm set scores 3 (low–medium) unless the patient is alert."""
    record = _without(calm_set(), "67775-7") + [F.coded_obs("67775-7", code, hours=0.5)]
    card = fire(api, SERVICE, record)
    assert card["summary"].startswith("NEWS2 0" if alert else "NEWS2 3"), (card["summary"], card["detail"])


def _woman() -> list[dict[str, Any]]:
    """The calm set for a woman of 30."""
    return [F.patient("p1", 30, "female")] + calm_set()[1:]


def _delivery(days: int, *, kind: str = "Procedure") -> dict[str, Any]:
    if kind == "Procedure":
        return {"resourceType": "Procedure", "id": f"delivery-{days}", "status": "completed",
                "code": {"coding": [{"system": F.SNOMED, "code": "11466000", "display": "Cesarean section"}]},
                "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(days)}
    outcome = F.condition("Z37.0", "http://hl7.org/fhir/sid/icd-10-cm", clinical="resolved",
                          display="Single live birth")
    outcome["onsetDateTime"] = F.days_ago(days)
    return outcome


def _pregnant_status(days: int) -> dict[str, Any]:
    return F.coded_obs("82810-3", "LA15173-0", days=days, answer_system=F.LOINC)


def _pregnancy_on_the_problem_list(days: int) -> dict[str, Any]:
    pregnancy = F.condition("77386006", display="Pregnancy")
    pregnancy["onsetDateTime"] = F.days_ago(days)
    return pregnancy


@pytest.mark.parametrize("kind", ["Procedure", "Condition"])
@pytest.mark.parametrize("pregnancy", [_pregnant_status, _pregnancy_on_the_problem_list])
def test_a_pregnancy_recorded_before_a_delivery_of_months_ago_no_longer_withholds_news2(
        api: Any, kind: str, pregnancy: Any) -> None:
    """"Pregnant" charted 200 days ago (or a pregnancy left open on the problem list), then a caesarean section (or
    Z37.0 Single live birth) 100 days ago: she is no longer pregnant, nor within the six weeks after the birth in
    which maternity services chart an obstetric early warning score. The RCP's exclusion ("not for use in
    pregnancy") no longer applies, and her calm set scores NEWS2 0; the details page says what ended it."""
    from test_details_view import details_path

    card = fire(api, SERVICE, _woman() + [pregnancy(200), _delivery(100, kind=kind)])
    assert card["summary"].startswith("NEWS2 0"), (card["summary"], card["detail"])
    page = api.client.get(details_path(card)).text
    assert f"ended: a delivery on {F.days_ago(100)[:10]}" in page


@pytest.mark.parametrize(("pregnant_days", "delivery_days"), [(200, 20), (50, 100)])
def test_a_pregnancy_stands_within_six_weeks_of_a_delivery_or_when_recorded_after_it(
        api: Any, pregnant_days: int, delivery_days: int) -> None:
    """A delivery 20 days ago: within the six weeks after a birth an obstetric early warning score applies, so NEWS2
    is still withheld. "Pregnant" charted 50 days ago, after a delivery 100 days ago: a new pregnancy, withheld."""
    card = fire(api, SERVICE, _woman() + [_pregnant_status(pregnant_days), _delivery(delivery_days)])
    assert card["summary"].startswith("No NEWS2 estimate"), (card["summary"], card["detail"])
    assert "pregnancy" in card["summary"] or "pregnancy" in card["detail"], card


def test_a_delivery_search_not_answered_leaves_the_pregnancy_checks_as_read(api: Any) -> None:
    """An EHR that sends none of the Procedure keys (the deliveries) and no fhirServer: a delivery can only end a
    pregnancy on record, so with none on record nothing is unchecked ("Current pregnancy: No — not fully checked"
    would be false), and a "Pregnant" status still withholds NEWS2."""
    from hook_calls import fire_all

    calm = fire_all(api, SERVICE, _woman(), unsent=("Procedure?patient={{context.patientId}}&code="
                                                     "http://snomed.info/sct|236973005",
                                                     "Procedure?patient={{context.patientId}}"))
    assert calm[0]["summary"].startswith("NEWS2 0"), calm[0]
    assert "pregnan" not in calm[0]["detail"].lower(), calm[0]["detail"]
    pregnant = fire_all(api, SERVICE, _woman() + [_pregnant_status(200)], unsent=("Procedure?",))
    assert pregnant[0]["summary"].startswith("No NEWS2 estimate"), pregnant[0]


@pytest.mark.parametrize(("comparator", "number", "expected"), [
    ("<", 35, "NEWS2 3"), ("<=", 35.0, "NEWS2 3"), (">", 39.5, "NEWS2 2"), (">=", 39.1, "NEWS2 2"),
    ("<", 36, None), (">", 38.5, None), (">", 39.0, None), ("<", 35.05, "NEWS2 3"), ("<", 35.1, None),
    ("<", 35.06, None)])
def test_a_temperature_written_as_a_bound_is_scored_when_every_value_it_allows_scores_alike(
        api: Any, comparator: str, number: float, expected: str | None) -> None:
    """Chart 1 scores a temperature of 35.0 °C or less 3 and one of 39.1 or more 2, read to 0.1 °C. A thermometer
    that reads '<35 °C' has charted a temperature that scores 3 whatever it is, and '>39.5 °C' one that scores 2:
    the card scores them, showing the bound as written. A bound that spans two bands ('<36 °C': 3 or 1; '>38.5 °C':
    1 or 2; '>39 °C': 39.04 is read as 39.0, scoring 1, and 39.2 scores 2; '<35.1 °C' and '<35.06 °C': 35.0 or
    35.1 once read to 0.1 °C) gives no score, as before; '<35.05 °C' is 35.0 or less once read, so it scores 3."""
    temp = F.vital("8310-5", number, "Cel", hours=0.5)
    temp["valueQuantity"]["comparator"] = comparator
    card = fire(api, SERVICE, _without(calm_set(), "8310-5") + [temp])
    if expected is None:
        assert card["summary"].startswith("NEWS2 not calculated"), (card["summary"], card["detail"])
        assert "value is a bound" in card["detail"], card["detail"]
    else:
        assert card["summary"].startswith(expected), (card["summary"], card["detail"])
        shown = comparator.replace("<", "&lt;").replace(">", "&gt;")  # the card escapes record text for Markdown
        assert f"Temperature: **{shown}" in card["detail"], card["detail"]
        from test_details_view import details_path

        page = api.client.get(details_path(card)).text
        assert f"{shown}{number:g} °C" in page, "the details page shows the bound as the card does"


def test_a_fahrenheit_bound_is_read_in_celsius_and_shown_as_written(api: Any) -> None:
    """'<95 °F' is below 35.0 °C (95 °F is 35.0 °C): scored 3 as every reading of 35.0 or less, shown as written."""
    temp = F.vital("8310-5", 95, "[degF]", hours=0.5)
    temp["valueQuantity"]["comparator"] = "<"
    card = fire(api, SERVICE, _without(calm_set(), "8310-5") + [temp])
    assert card["summary"].startswith("NEWS2 3"), (card["summary"], card["detail"])
    assert "Temperature: **&lt;95 °F**" in card["detail"], card["detail"]


# -- audit 60: vital signs under the codes wards chart them, and readings not yet final ---------------------------------


@pytest.mark.parametrize("code", ["8333-7", "8332-9", "8328-7", "76011-6", "75539-7"],
                         ids=["tympanic", "rectal", "axillary", "ear", "temporal-artery"])
def test_a_temperature_coded_by_where_it_was_taken_is_scored(api: Any, code: str) -> None:
    """Wards take temperatures by ear, mouth, armpit or forehead, and many feeds code the site (LOINC 8333-7 tympanic
    membrane ...) without the generic 8310-5. A tympanic 39.5 °C half an hour ago scores 2 (Chart 1: >=39.1); the
    card had scored the 36.8 °C of three hours before, NEWS2 0."""
    card = fire(api, SERVICE, calm_set() + [F.vital(code, 39.5, "Cel", hours=0.5)])
    assert card["summary"].startswith("NEWS2 2 "), card["summary"]
    assert "39.5" in card["detail"], card["detail"]


def test_a_skin_temperature_is_not_a_body_temperature(api: Any) -> None:
    """A body-surface (skin) temperature (LOINC 61008-9) is not what Chart 1 scores: it is not read."""
    card = fire(api, SERVICE, calm_set() + [F.vital("61008-9", 34.0, "Cel", hours=0.5)])
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]


def test_a_pulse_counted_by_palpation_is_scored(api: Any) -> None:
    """LOINC 8893-0 (heart rate, peripheral artery, by palpation): a pulse of 135 half an hour ago scores 3 (Chart 1:
    >=131), a single red score: low-medium. It had been passed over for the older 72."""
    card = fire(api, SERVICE, calm_set() + [F.vital("8893-0", 135, "/min", hours=0.5)])
    assert card["summary"].startswith("NEWS2 3 "), card["summary"]


@pytest.mark.parametrize(("answer", "expected"), [("248234008", "NEWS2 0 "), ("300202002", "NEWS2 3 ")])
def test_acvpu_charted_under_the_uk_snomed_observable_is_read(api: Any, answer: str, expected: str) -> None:
    """NHS NEWS2 records chart ACVPU under SNOMED CT 1104441000000107 ('ACVPU (Alert Confusion Voice Pain
    Unresponsive) scale score'); the card had said 'missing Consciousness'. Voice scores 3 (Chart 1)."""
    obs = F.coded_obs("67775-7", answer, hours=0.5)
    obs["code"] = {"coding": [{"system": F.SNOMED, "code": "1104441000000107",
                               "display": "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score"}]}
    card = fire(api, SERVICE, _without(calm_set(), "67775-7") + [obs])
    assert card["summary"].startswith(expected), card["summary"]


def test_a_newest_reading_not_yet_final_is_named_not_passed_over_for_an_older_one(api: Any) -> None:
    """An SpO2 of 88 % half an hour ago, charted 'preliminary' (device data not yet validated): the card had scored
    the 96 % of three hours before, NEWS2 0, and said nothing of the 88 % (which scores 3 on Scale 1). It is not
    scored unvalidated either: NEWS2 is not given, and the card names the reading."""
    newer = F.vital("59408-5", 88, "%", hours=0.5)
    newer["status"] = "preliminary"
    card = fire(api, SERVICE, calm_set() + [newer])
    assert "not calculated" in card["summary"] and "SpO2" in card["summary"], card["summary"]
    assert "preliminary, not yet final: value 88 %" in card["detail"], card["detail"]
    # an older preliminary reading under a newer final one changes nothing
    older = F.vital("59408-5", 88, "%", hours=5)
    older["status"] = "preliminary"
    assert fire(api, SERVICE, calm_set() + [older])["summary"].startswith("NEWS2 0 ")
    # nor does a reading only registered (no result yet)
    registered = F.vital("59408-5", 88, "%", hours=0.5)
    registered["status"] = "registered"
    assert fire(api, SERVICE, calm_set() + [registered])["summary"].startswith("NEWS2 0 ")


def test_a_newest_acvpu_not_yet_final_is_named(api: Any) -> None:
    """The same for a coded reading: 'Responds to voice' charted preliminary is named, not replaced by 'Alert'."""
    newer = F.coded_obs("67775-7", "300202002", hours=0.5)
    newer["status"] = "preliminary"
    card = fire(api, SERVICE, calm_set() + [newer])
    assert "not calculated" in card["summary"] and "Consciousness" in card["summary"], card["summary"]
    assert "preliminary, not yet final: answer" in card["detail"], card["detail"]
