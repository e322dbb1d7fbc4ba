"""Searches that failed beside the whole problem list, AF after ablation, the valve warning for an anticoagulated patient
and what-if inputs that other features follow (thirty-first audit, on the fixes of the twenty-ninth and thirtieth)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import fhirfactory as F
import pytest
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import HOOK_INSTANCE, fire, module_app, templates
from test_details_view import details_path

SNOMED = "http://snomed.info/sct"
AF = "49436004"
APIXABAN = ("1364430", "apixaban 5 MG Oral Tablet")
CTX = {"userId": "Practitioner/example", "patientId": "p1"}
FAILED = {"resourceType": "Bundle", "type": "searchset", "entry": [
    {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-costly"}]},
     "search": {"mode": "outcome"}}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("whole-list"))


def consider(card: dict[str, Any]) -> str:
    return next((line for line in card["detail"].splitlines() if line.startswith("**Consider:**")), "")


def call(api: Any, service: str, record: list[dict[str, Any]], *, fail: tuple[str, ...] = (),
         drop: tuple[str, ...] = ()) -> Any:
    prefetch = prefetch_from_resources(templates(api, service), copy.deepcopy(record), CTX)
    for key in fail:
        assert key in prefetch, key
        prefetch[key] = copy.deepcopy(FAILED)
    for key in drop:
        prefetch.pop(key)
    return api.post(f"/cds-services/{service}", json={"hook": "patient-view", "hookInstance": HOOK_INSTANCE,
                                                       "context": CTX, "prefetch": prefetch})


# -- 1. whole_list (cfb276b): a failed code-filtered Condition search beside the whole problem list read in full ----


def test_cha2ds2_vasc_whole_problem_list_read_does_not_make_heart_failure_unchecked(api: Any) -> None:
    """A man of 55 with AF and nothing else: CHA2DS2-VASc 0, 'anticoagulation is not recommended' (2023
    ACC/AHA/ACCP/HRS). The EHR answered the unfiltered `Condition?patient=p1` (condition-atrial-fibrillation-2) in
    full but failed the code-filtered LV-dysfunction search (condition-chf-3). cfb276b says the whole list 'holds
    whatever a failed code-filtered Condition search would have found', so nothing is unchecked; yet
    _mark_unobtainable still sets fv.unchecked/note for chf, and the card says 'Not fully checked: heart failure /
    LV dysfunction could not be checked in the whole record' -- false: the whole record was read."""
    record = [F.patient("p1", 55, "male"), F.condition(AF, display="Atrial fibrillation")]
    control = fire(api, "cha2ds2-vasc", record)
    assert consider(control).startswith("**Consider:** Anticoagulation is not recommended"), consider(control)
    resp = call(api, "cha2ds2-vasc", record, fail=("condition-chf-3",))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 0 "), card["summary"]
    assert "Not fully checked" not in card["detail"], consider(card)
    assert consider(card).startswith("**Consider:** Anticoagulation is not recommended"), consider(card)


def test_cha2ds2_vasc_valvular_af_search_failed_beside_the_whole_list_does_not_refuse(api: Any) -> None:
    """A man of 70 with AF and hypertension: CHA2DS2-VASc 2, anticoagulation recommended (class 1). The EHR read the
    whole problem list in full (condition-atrial-fibrillation-2) and failed only the code-filtered 'AF due to a valve
    disorder' search (condition-valvular-af-code). Every Condition that search could return is in the list read, and
    none is valvular; yet valvular_af_code, whose only key failed, becomes missing and the population rule refuses
    ('atrial fibrillation due to a heart valve disorder cannot be ruled out'): the whole_list exemption covers only
    the `diagnosis_unread` branch, not a feature all of whose (code-filtered) keys failed."""
    record = [F.patient("p1", 70, "male"), F.condition(AF, display="Atrial fibrillation"),
              F.condition("38341003", display="Hypertension")]
    assert fire(api, "cha2ds2-vasc", record)["summary"].startswith("CHA2DS2-VASc 2 ")  # the control
    resp = call(api, "cha2ds2-vasc", record, fail=("condition-valvular-af-code",))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


# -- 2. _abated_by_status (cfb276b): 'inactive' with a past abatement date ------------------------------------------


def test_cha2ds2_vasc_af_inactive_after_ablation_with_an_abatement_date_is_still_af(api: Any) -> None:
    """2023 ACC/AHA/ACCP/HRS AF guideline: after catheter ablation, continuing anticoagulation is decided by the
    patient's stroke risk (CHA2DS2-VASc), not by the apparent success of the procedure; cha2ds2-vasc/features.yaml
    says so itself ('paroxysmal AF ... or after rhythm control (inactive) is still AF'). An AF marked inactive after
    ablation carries the abatement date R4 con-4 allows for it (sinus rhythm since the ablation). Since cfb276b only
    'remission' keeps a Condition past its abatement date, so this AF ends and a man of 70 with hypertension
    (score 2, anticoagulation recommended) gets 'no current atrial fibrillation on the problem list' and no score."""
    af = F.condition(AF, clinical="inactive", display="Atrial fibrillation")
    af["abatementDateTime"] = F.days_ago(200)
    record = [F.patient("p1", 70, "male"), af, F.condition("38341003", display="Hypertension")]
    card = fire(api, "cha2ds2-vasc", record)
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]


# -- 3. advice order (cfb276b valve advice after the anticoagulant advice) ------------------------------------------


def test_cha2ds2_vasc_anticoagulated_patient_whose_valve_was_not_checked_is_told_so(api: Any) -> None:
    """A man of 76 with AF on apixaban, the EHR leaving the Device key out (no fhirServer): a mechanical valve
    cannot be ruled out. 2023 ACC/AHA/ACCP/HRS: with a mechanical heart valve warfarin is recommended and DOACs are
    contraindicated (harm). Without the anticoagulant, cfb276b's advice says so ('could not be ruled out ... warfarin,
    not a DOAC'); with apixaban the earlier 'Already on an anticoagulant' advice wins and tells the clinician to
    'check it is an oral one at the AF dose' -- a DOAC at the AF dose, with the valve never mentioned."""
    record = [F.patient("p1", 76, "male"), F.condition(AF, display="Atrial fibrillation"),
              F.med_request(APIXABAN[0], display=APIXABAN[1])]
    untreated = call(api, "cha2ds2-vasc", record[:2], drop=("device-mechanical-valve-2",)).json()["cards"][0]
    assert "not ruled out" in consider(untreated).lower(), consider(untreated)  # the control
    resp = call(api, "cha2ds2-vasc", record, drop=("device-mechanical-valve-2",))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]
    assert "not ruled out" in consider(card).lower() and "warfarin" in consider(card), consider(card)


# -- 4. what-if _rederived (2d5b09c) ----------------------------------------------------------------------------------


def prevent_record(age: int, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [F.patient("p1", age, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
            F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2"), *extra]


def test_prevent_full_what_if_hba1c_in_the_diabetes_range_without_diabetes_is_refused_as_the_card_refuses(
        api: Any) -> None:
    """PREVENT-full refuses an HbA1c >= 6.5 % without diabetes on record (hba1c_undiagnosed; ADA 2025: 6.5 % is the
    diabetes range). A non-diabetic woman of 55 with HbA1c 5.8 % gets an estimate; the card for the same record
    with an HbA1c of 7.2 % refuses. What-if 'HbA1c: 7.2' returns an estimate: _rederived recomputes only features
    with no source of their own, so hba1c_diabetes_range (read from the HbA1c observations) stays 0 and
    hba1c_undiagnosed is never recomputed."""
    refused = fire(api, "prevent-full", prevent_record(55, F.quantity_obs("4548-4", 7.2, "%", days=30)))
    assert refused["summary"].startswith("No "), refused["summary"]  # the control: the card refuses at 7.2 %
    card = fire(api, "prevent-full", prevent_record(55, F.quantity_obs("4548-4", 5.8, "%", days=30)))
    assert not card["summary"].startswith("No "), card["summary"]
    resp = api.client.post(f"{details_path(card)}/what-if", json={"set": {"hba1c": 7.2}})
    assert resp.status_code == 422, resp.text[:600]


def test_prevent_full_what_if_giving_a_uacr_uses_it(api: Any) -> None:
    """PREVENT-full with a UACR (Khan 2024): the what-if field 'Urine albumin/creatinine ratio' is offered to a
    patient with none on record. Setting it to 300 mg/g must give the estimate the card gives for the same record
    with a UACR of 300; has_uacr (present_of: uacr, derived only from uacr) is not recomputed by _rederived, so the
    model keeps has_uacr = 0, ignores the UACR and returns the unchanged estimate."""
    without = fire(api, "prevent-full", prevent_record(55))
    with_uacr = fire(api, "prevent-full", prevent_record(55, F.quantity_obs("9318-7", 300, "mg/g", days=30)))
    assert without["summary"] != with_uacr["summary"], (without["summary"], with_uacr["summary"])
    resp = api.client.post(f"{details_path(without)}/what-if", json={"set": {"uacr": 300}})
    assert resp.status_code == 200, resp.text[:600]
    got = resp.json()["primary"]["text"]
    assert got in with_uacr["summary"], (got, with_uacr["summary"], without["summary"])


def test_cha2ds2_vasc_mitral_stenosis_search_failed_beside_the_whole_list_is_not_called_unruled_out(api: Any) -> None:
    """Same root cause as the heart-failure case, for the valve advice cfb276b added: a man of 76 with AF (score 2,
    anticoagulation recommended). The whole problem list was read in full (condition-atrial-fibrillation-2, which
    feeds mitral_stenosis too), only the code-filtered mitral-stenosis search failed. The card replaces the class 1
    recommendation by 'Not fully checked: mitral stenosis ... could not be ruled out in the whole record' although the
    whole record was read and holds no mitral stenosis."""
    record = [F.patient("p1", 76, "male"), F.condition(AF, display="Atrial fibrillation")]
    resp = call(api, "cha2ds2-vasc", record, fail=("condition-mitral-stenosis-1",))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"].startswith("CHA2DS2-VASc 2 "), card["summary"]
    assert "Not fully checked" not in card["detail"], consider(card)
    assert consider(card).startswith("**Consider:** Oral anticoagulation is recommended"), consider(card)


def test_kfre_kidney_failure_search_failed_beside_the_whole_list_does_not_refuse(api: Any) -> None:
    """KFRE (Tangri 2016; KDIGO 2024 uses it for CKD G3-G5 not on KRT): a man of 60, eGFR 40, UACR 100 mg/g. The
    whole problem list (condition-kidney-replacement-1, `Condition?patient=p1`) was read in full and holds no kidney
    failure; only the code-filtered kidney-failure search (condition-kidney-failure) failed. cfb276b's whole_list
    rule should make that harmless, but kidney_failure's only key failed, so it becomes missing and the card refuses
    ('cannot be ruled out')."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}", days=5),
              F.quantity_obs("9318-7", 100, "mg/g", days=5)]
    control = fire(api, "kfre-4var", record)
    assert not control["summary"].startswith("No "), control["summary"]
    resp = call(api, "kfre-4var", record, fail=("condition-kidney-failure",))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card["summary"] == control["summary"], card["summary"]
