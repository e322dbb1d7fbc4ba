"""Reading rules across every shipped model (thirtieth audit): a bound on the validated range's edge, abatement by status,
min_category ranked by severity (an eGFR is worse when lower), valvular AF that could not be ruled out, and a code-
filtered search failing beside the whole problem list. Each expectation comes from the record read plainly and the
guideline cited."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fhirfactory as F
import pytest
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import HOOK_INSTANCE, fire, fire_all, module_app, templates

SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("reading-rules"))


def bound(code: str, comparator: str, value: float, unit: str, days: int = 1) -> dict[str, Any]:
    obs = F.quantity_obs(code, value, unit, days=days)
    obs["valueQuantity"]["comparator"] = comparator
    return obs


# -- 1. a bound at the validated range's edge (adca8c8, inference/guards.py + fhir_mapping/formatting.outside_range) --


@pytest.mark.parametrize("written", [(">", 20.0), ("<", 0.1)])
def test_egfr_creatinine_reported_beyond_the_assay_range_is_quoted_as_written(api: Any,
                                                                              written: tuple[str, float]) -> None:
    """Chemistry analysers report a serum creatinine outside their measuring range as a bound ('>20 mg/dL',
    '<0.10 mg/dL'); the refusal is right (the eGFR model is validated for 0.1-20 mg/dL), but the card must quote the
    patient's value and the range as a clinician reads them. outside_range() widens the decimals until the value reads
    outside the range, which a bound at the edge never does, so the card printed '0.10000000000000000555'."""
    comparator, value = written
    card = fire(api, "egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), bound("2160-0", comparator, value, "mg/dL")])
    text = card["summary"] + "\n" + card.get("detail", "")
    assert "outside the range" in text, text
    assert "0.1000000000" not in text, text
    assert "(0.1–20 mg/dL)" in text, text


# -- 5. Manifest.by_severity for cards.min_category (2d5b09c, cds_hooks/service_call._below_threshold) ----------------


def test_egfr_min_category_never_hides_kidney_failure(api: Any, tmp_path: Path, local_key: Any) -> None:
    """KDIGO 2012/2024 GFR categories: G1 (>=90) is the least and G5 (<15, kidney failure) the most severe. The eGFR
    model lists G5 first with `below: 15`, and by_severity ranks every `below` category as the lowest risk, so
    `min_category: G3a` ('show G3a and worse', docs/configuration.md: 'the lowest category that gets a card') hid
    the G5 and G4 cards and showed G1 and G2."""
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import SignedClient, make_settings

    failing = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 6.0, "mg/dL", days=200),
               F.quantity_obs("2160-0", 6.2, "mg/dL", days=1)]
    healthy = [F.patient("p1", 40, "male"), F.quantity_obs("2160-0", 0.8, "mg/dL", days=1)]
    assert "(KDIGO G5)" in fire(api, "egfr-ckd-epi-2021", failing)["summary"]  # the control: G5 unfiltered
    settings = make_settings(tmp_path, cards={"min_category": {"egfr-ckd-epi-2021": "G3a"}})
    with TestClient(create_app(settings)) as tc:
        client = SignedClient(tc, local_key)
        shown = fire_all(client, "egfr-ckd-epi-2021", failing)
        assert len(shown) == 1 and "G5" in shown[0]["summary"], shown
        assert fire_all(client, "egfr-ckd-epi-2021", healthy) == []  # G1 is below G3a


# -- 6. a population feature's key left out (02b099a advice `unchecked`, 4107a33 _mark_unobtainable) ----------------


def test_cha2ds2_vasc_does_not_rule_out_anticoagulation_when_the_valve_record_was_not_obtained(api: Any) -> None:
    """2023 ACC/AHA/ACCP/HRS AF guideline (and 2020 ACC/AHA valvular guideline): with a mechanical heart valve a
    vitamin K antagonist is recommended whatever the CHA2DS2-VASc score; the score is not for valvular AF. A man of 55
    with AF whose mechanical valve is recorded as a Device (implant list), and an EHR that leaves the Device prefetch
    key out (no fhirServer): the valve cannot be ruled out, yet the card scores 0 and says 'Anticoagulation is not
    recommended' (the `unchecked` advice lists only chf/hypertension/diabetes/stroke/vascular, and the population rule
    takes the unchecked 'No' as read)."""
    valve = {"resourceType": "Device", "id": "dev1", "status": "active", "patient": {"reference": "Patient/p1"},
             "type": {"coding": [{"system": SNOMED, "code": "705991002",
                                  "display": "Mechanical heart valve prosthesis"}]}}
    record = [F.patient("p1", 55, "male"), F.condition("49436004", display="Atrial fibrillation"), valve]
    assert "valvular AF" in fire(api, "cha2ds2-vasc", record)["summary"]  # the control: with the Device key
    ctx = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "cha2ds2-vasc"), copy.deepcopy(record), ctx)
    prefetch.pop("device-mechanical-valve-2")
    resp = api.post("/cds-services/cha2ds2-vasc", json={"hook": "patient-view", "hookInstance": HOOK_INSTANCE,
                                                        "context": ctx, "prefetch": prefetch})
    assert resp.status_code in (200, 412), resp.text
    cards = resp.json().get("cards", [])
    text = "\n".join(c["summary"] + "\n" + c.get("detail", "") for c in cards)
    assert "Anticoagulation is not recommended" not in text, text
    assert "Not fully checked, so not ruled out: mechanical heart valve" in text, text
    assert "the Device search could not be obtained" in text and "warfarin is recommended" in text, text


# -- 3. _abated_by_status (9a33b2c, fhir_mapping/mapper._read) --------------------------------------------------------


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "cha2ds2-vasc"])
def test_a_steroid_induced_diabetes_that_abated_years_ago_is_not_diabetes(api: Any, service: str) -> None:
    """Goff 2013 (PCE): diabetes = fasting glucose >= 126 mg/dL or glucose-lowering treatment; ESC 2020 CHA2DS2-VASc
    D: treated, or fasting glucose > 125 mg/dL. FHIR R4 condition-clinical 'inactive': 'no longer evidence of the
    condition' (unlike 'remission': a risk of it returning). A steroid-induced diabetes (SNOMED 190447002) marked
    inactive, abated 4 years ago when the steroid stopped, HbA1c 5.3 %, no glucose-lowering drug: no diabetes.
    cha2ds2-vasc/features.yaml says so itself ('a steroid-induced ... diabetes that has resolved is not the D');
    before 9a33b2c its abatement date ended it, now the 'inactive' status keeps it counting."""
    steroid = F.condition("190447002", clinical="inactive", display="Steroid-induced diabetes")
    steroid["abatementDateTime"] = F.days_ago(1460)
    a1c = F.quantity_obs("4548-4", 5.3, "%", days=30)
    if service == "ascvd-pce-10y":
        card = fire(api, service, F.pce_record(gender="male") + [steroid, a1c])
        assert "Diabetes: **Yes**" not in card["detail"], card["detail"]
        assert "With diabetes at 40–75" not in card["detail"], card["detail"]
    else:
        card = fire(api, service, [F.patient("p1", 55, "male"), F.condition("49436004"), steroid, a1c])
        assert card["summary"].startswith("CHA2DS2-VASc 0 "), card["summary"]


def test_cha2ds2_vasc_keeps_its_score_when_a_code_filtered_search_failed_but_the_whole_problem_list_came(
        api: Any) -> None:
    """A man of 70 with AF and hypertension: CHA2DS2-VASc 2 (age 65-74, H), anticoagulation recommended (2023
    ACC/AHA/ACCP/HRS, class 1). The EHR answered `Condition?patient=p1` (condition-atrial-fibrillation-2: every
    Condition of the patient) but failed the code-filtered heart-failure search (condition-chf-3, e.g. a URL too long
    for its code list). Every Condition that search could return is in the complete list that was read, so nothing is
    unchecked; since 4107a33 (`_mark_unobtainable`: a failed Condition key makes a required input missing) the call is
    a 412 and the clinician gets no score at all."""
    record = [F.patient("p1", 70, "male"), F.condition("49436004", display="Atrial fibrillation"),
              F.condition("38341003", display="Hypertension")]
    ctx = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "cha2ds2-vasc"), copy.deepcopy(record), ctx)
    assert templates(api, "cha2ds2-vasc")["condition-atrial-fibrillation-2"] == "Condition?patient={{context.patientId}}"
    assert len(prefetch["condition-atrial-fibrillation-2"]["entry"]) == 2  # the whole problem list was sent
    prefetch["condition-chf-3"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-costly"}]},
         "search": {"mode": "outcome"}}]}
    resp = api.post("/cds-services/cha2ds2-vasc", json={"hook": "patient-view", "hookInstance": HOOK_INSTANCE,
                                                        "context": ctx, "prefetch": prefetch})
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


def test_a_low_cha2ds2_vasc_with_the_valve_and_the_orders_unchecked_does_not_rule_out_anticoagulation(
        api: Any) -> None:
    """A man of 55 with AF, from an EHR that sent neither the Device key nor the order keys: CHA2DS2-VASc 0 as
    scored, but hypertension and diabetes were not checked against the orders and each would make it 1, where oral
    anticoagulation is reasonable (2023 ACC/AHA/ACCP/HRS AF guideline, class 2a). The valve advice, which comes
    first, had said "without them, anticoagulation is not recommended at this score" with no condition."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 55, "male"), F.condition("49436004")],
                unsent=("Device?", "MedicationRequest?", "MedicationStatement?"))
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    consider = next(x for x in card["detail"].splitlines() if x.startswith("**Consider:**"))
    assert "not recommended at this score, if its other “No”s hold" in consider, consider
    assert "Hypertension, Diabetes: No — not fully checked (the MedicationRequest and MedicationStatement searches " \
        "could not be obtained)" in card["detail"], card["detail"]


@pytest.mark.parametrize(("code", "system", "display"), [
    ("E11.51", "http://hl7.org/fhir/sid/icd-10-cm", "Type 2 diabetes mellitus with diabetic peripheral angiopathy "
                                                    "without gangrene"),
    ("E11.52", "http://hl7.org/fhir/sid/icd-10-cm", None),
    ("E10.51", "http://hl7.org/fhir/sid/icd-10-cm", None)])
def test_diabetic_peripheral_angiopathy_is_vascular_disease_and_diabetes(api: Any, code: str, system: str,
                                                                         display: str | None) -> None:
    """Lip 2010 / 2023 ACC/AHA/ACCP/HRS: V is prior MI, peripheral artery disease or aortic plaque; diabetic
    peripheral angiopathy is PAD (the SNOMED CT list already counted it). A man of 55 with AF: diabetes 1 + vascular
    1 = CHA2DS2-VASc 2, by hand."""
    cond = F.condition(code, system, display=display) if display else F.condition(code, system)
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 55, "male"), F.condition("49436004"), cond])
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


def test_who_sequelae_of_stroke_unspecified_is_a_prior_stroke(api: Any) -> None:
    """WHO ICD-10 I69.4 (sequelae of stroke, not specified as haemorrhage or infarction) is a prior stroke, as I64 is:
    2 points (Lip 2010), so a man of 55 with AF scores 2."""
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 55, "male"), F.condition("49436004"),
                                      F.condition("I69.4", "http://hl7.org/fhir/sid/icd-10")])
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


def test_diabetic_peripheral_angiopathy_is_clinical_ascvd_for_the_pce(api: Any) -> None:
    """2018 AHA/ACC: clinical ASCVD includes peripheral artery disease of atherosclerotic origin; the PCE are for
    primary prevention, so a patient with ICD-10-CM E11.51 gets no primary-prevention estimate."""
    card = fire(api, "ascvd-pce-10y", F.pce_record() + [F.condition("E11.51", "http://hl7.org/fhir/sid/icd-10-cm")])
    assert card["summary"].startswith("No 10-year ASCVD risk estimate: The Pooled Cohort Equations are for primary "
                                      "prevention"), card["summary"]
