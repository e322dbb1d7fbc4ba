"""Each shipped model reproduces its published worked example through the full HTTP path, from FHIR resources."""

from __future__ import annotations

from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def fire(api: Any, service: str, resources: list[dict[str, Any]], hook: str = "patient-view",
         encounter: str | None = None) -> dict[str, Any]:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == service)
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    if encounter:
        context["encounterId"] = encounter
    prefetch = prefetch_from_resources(entry["prefetch"], resources, context)
    body = {"hook": hook, "hookInstance": "3c6a6a4e-0a56-4b8e-9f2d-6f1f0d8e2b11", "context": context,
            "prefetch": prefetch}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1
    return cards[0]


def saved_resource(card: dict[str, Any]) -> dict[str, Any]:
    return card["suggestions"][0]["actions"][0]["resource"]


def recorded_outputs(api: Any, card: dict[str, Any]) -> dict[str, float]:
    state = api.app.state.cds
    assert state.recorder.flush(10)
    return state.store.predictions_for_card(card["uuid"])[0]["outputs"]


def prevent_record(gender: str, *, creatinine: bool = False, weight_height: bool = False) -> list[dict[str, Any]]:
    """Khan 2024 sample: 50 y, SBP 160 treated, TC 200, HDL 45, no statin, diabetes, non-smoker, eGFR 90, BMI 35."""
    res = [F.patient("p1", 50, gender), F.quantity_obs("2093-3", 200, "mg/dL"), F.quantity_obs("2085-9", 45, "mg/dL"),
           F.bp_panel(160), F.smoking(F.NEVER_SMOKER), F.condition("44054006"), F.med_request("314076")]
    if creatinine:
        # the creatinine that gives eGFR 90 exactly for this patient would be unusual; test the derivation instead
        res.append(F.quantity_obs("2160-0", 0.8, "mg/dL"))
    else:
        res.append(F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"))
    if weight_height:
        res += [F.quantity_obs("29463-7", 88.2, "kg"), F.quantity_obs("8302-2", 158.75, "cm")]
    else:
        res.append(F.quantity_obs("39156-5", 35, "kg/m2"))
    return res


@pytest.mark.parametrize("service", ["prevent-base", "prevent-full"])
@pytest.mark.parametrize(("gender", "cvd", "ascvd", "hf"), [("female", 0.1468, 0.0920, 0.0806),
                                                             ("male", 0.1632, 0.1019, 0.1059)])
def test_prevent_khan_sample(api: Any, service: str, gender: str, cvd: float, ascvd: float, hf: float) -> None:
    card = fire(api, service, prevent_record(gender))
    ra = saved_resource(card)
    assert ra["resourceType"] == "RiskAssessment"
    assert ra["prediction"][0]["probabilityDecimal"] == pytest.approx(cvd, abs=0.00005)
    outputs = recorded_outputs(api, card)
    assert outputs["ascvd_10y"] == pytest.approx(ascvd, abs=0.00005)
    assert outputs["hf_10y"] == pytest.approx(hf, abs=0.00005)
    assert f"{cvd * 100:.1f}%" in card["summary"]
    assert f"heart failure {hf * 100:.1f}%" in card["detail"].split("30-year")[0]  # on the 10-year part of 'Also'
    preds = {p["outcome"]["text"]: p["probabilityDecimal"] for p in ra["prediction"]}
    assert preds["10-year heart failure"] == pytest.approx(hf, abs=0.00005)


def test_prevent_derives_egfr_and_bmi(api: Any) -> None:
    card = fire(api, "prevent-base", prevent_record("female", creatinine=True, weight_height=True))
    state = api.app.state.cds
    assert state.recorder.flush(10)
    features = state.store.prediction(state.store.predictions_for_card(card["uuid"])[0]["prediction_id"])["features"]
    assert features["bmi"]["value"] == pytest.approx(88.2 / 1.5875 ** 2)  # derived from weight and height
    assert features["egfr"]["value"] > 0  # derived from creatinine (CKD-EPI 2021)
    outputs = recorded_outputs(api, card)
    assert 0 < outputs["cvd_10y"] < 1


def test_prevent_full_uses_the_uacr_add_on(api: Any) -> None:
    base = fire(api, "prevent-full", prevent_record("male"))
    with_acr = fire(api, "prevent-full", prevent_record("male") + [F.quantity_obs("9318-7", 300, "mg/g")])
    assert recorded_outputs(api, with_acr)["cvd_10y"] > recorded_outputs(api, base)["cvd_10y"]
    assumed = next(x for x in with_acr["detail"].splitlines() if x.startswith("_Assumed:_"))
    assert "Urine albumin/creatinine ratio" not in assumed and "HbA1c: not recorded" in assumed, assumed
    # the base equations, said so (measurements assumed alike share one entry)
    assert "Urine albumin/creatinine ratio, HbA1c: not recorded" in base["detail"], base["detail"]


@pytest.mark.parametrize(("creatinine", "unit"), [(1.4, "mg/dL"), (123.76, "umol/L")])
def test_egfr_worked_example(api: Any, creatinine: float, unit: str) -> None:
    code = "2160-0" if unit == "mg/dL" else "14682-9"
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), F.quantity_obs(code, creatinine, unit)])
    assert recorded_outputs(api, card)["egfr"] == pytest.approx(57.54, abs=0.005)
    assert card["summary"].startswith("eGFR 58 mL/min/1.73 m² (KDIGO G3a)")
    obs = saved_resource(card)
    assert obs["resourceType"] == "Observation" and obs["code"]["coding"][0]["code"] == "98979-8"
    assert obs["valueQuantity"]["value"] == 58


def kfre_record(egfr: float = 45, acr: float = 30, acr_unit: str = "mg/g") -> list[dict[str, Any]]:
    code = "9318-7" if acr_unit == "mg/g" else "14958-3"
    return [F.patient("p1", 55, "female"), F.quantity_obs("98979-8", egfr, "mL/min/{1.73_m2}"),
            F.quantity_obs(code, acr, acr_unit)]


@pytest.mark.parametrize(("acr", "unit"), [(30, "mg/g"), (30 / 8.84, "mg/mmol")])
def test_kfre_worked_example(api: Any, acr: float, unit: str) -> None:
    card = fire(api, "kfre-4var", kfre_record(acr=acr, acr_unit=unit))
    outputs = recorded_outputs(api, card)
    assert outputs["risk_2y"] == pytest.approx(0.0052, abs=0.00005)
    assert outputs["risk_5y"] == pytest.approx(0.0162, abs=0.00005)
    assert card["summary"] == "5-year kidney failure risk 1.6% (low)"


def test_kfre_gives_no_number_outside_its_population(api: Any) -> None:
    card = fire(api, "kfre-4var", kfre_record(egfr=75))
    assert "%" not in card["summary"] and "eGFR 75" in card["detail"] and "10–60" in card["detail"]
    dialysis = fire(api, "kfre-4var", kfre_record() + [F.condition("Z99.2", ICD)])
    assert "not for patients on dialysis" in dialysis["detail"]
    assert "suggestions" not in dialysis


def test_cha2ds2_vasc_worked_example(api: Any) -> None:
    record = [F.patient("p1", 70, "female"), F.condition("49436004"), F.condition("38341003"),
              F.condition("44054006")]
    card = fire(api, "cha2ds2-vasc", record)
    assert card["summary"].startswith("CHA2DS2-VASc 4 (elevated")
    assert card["indicator"] == "warning"
    assert recorded_outputs(api, card)["score"] == 4
    without_af = fire(api, "cha2ds2-vasc", [r for r in record if r.get("code", {}).get("coding", [{}])[0].get(
        "code") != "49436004"])
    assert "%" not in without_af["summary"] and "atrial fibrillation" in without_af["detail"]
    assert "CHA2DS2-VASc 4" not in without_af["summary"]


def news2_vitals(hours: float = 2) -> list[dict[str, Any]]:
    return [F.vital("9279-1", 18, "/min", hours=hours), F.vital("59408-5", 98, "%", hours=hours),
            F.vital("8867-4", 72, "/min", hours=hours), F.vital("8310-5", 36.8, "Cel", hours=hours),
            F.bp_panel(120, days=0), F.coded_obs("67775-7", "248234008", hours=hours)]


def test_news2_worked_example_on_encounter_start(api: Any) -> None:
    record = [F.patient("p1", 67, "male"), F.encounter("e1"), *news2_vitals()]
    card = fire(api, "news2-encounter-start", record, hook="encounter-start", encounter="e1")
    assert card["summary"].startswith("NEWS2 0 (low")
    assert card["indicator"] == "info"


def test_news2_three_in_one_parameter_is_low_medium(api: Any) -> None:
    record = [F.patient("p1", 67, "male"), F.encounter("e1"), *news2_vitals()]
    record[2] = F.vital("9279-1", 26, "/min")  # respiration rate ≥25 scores 3 on its own
    card = fire(api, "news2-encounter-start", record, hook="encounter-start", encounter="e1")
    assert card["summary"].startswith("NEWS2 3 (low–medium")
    assert card["indicator"] == "warning"


def test_news2_vitals_older_than_a_day_are_missing(api: Any) -> None:
    record = [F.patient("p1", 67, "male"), F.encounter("e1"), *news2_vitals(hours=30)]
    card = fire(api, "news2-encounter-start", record, hook="encounter-start", encounter="e1")
    assert "not calculated" in card["summary"]
    assert "last 1 day" in card["detail"]


def test_news2_needs_a_hospital_encounter(api: Any) -> None:
    record = [F.patient("p1", 67, "male"), F.encounter("e1", klass="AMB"), *news2_vitals()]
    card = fire(api, "news2-patient-view", record, encounter="e1")
    assert "NEWS2 is for patients in hospital" in card["detail"]
