"""What-if (cds_hooks/details/what_if.py `run_what_if`) against the card the service gives for the same record changed
the same way. docs/cards.md and the module docstring promise: 'The model's guards apply as they do to a hook call'.
Thirty-second audit."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import HOOK_INSTANCE, fire, module_app, templates
from test_details_view import diagnostics, what_if
from test_guideline_thresholds import news2_record, prevent_record
from test_whole_list_and_what_if import CTX, FAILED


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("what-if-agrees"))


def call(api: Any, service: str, record: list[dict[str, Any]], fail: tuple[str, ...] = ()) -> dict[str, Any]:
    """The one card of a patient-view call whose prefetch keys `fail` the EHR could not answer."""
    prefetch = prefetch_from_resources(templates(api, service), copy.deepcopy(record), CTX)
    for key in fail:
        assert key in prefetch, key
        prefetch[key] = copy.deepcopy(FAILED)
    resp = api.post(f"/cds-services/{service}", json={"hook": "patient-view", "hookInstance": HOOK_INSTANCE,
                                                       "context": CTX, "prefetch": prefetch})
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1, cards
    return cards[0]


def without_smoking(record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in record
            if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "72166-2")]


# -- 1. an if_recorded rule whose search failed: the card scores, what-if refuses ---------------------------------------


@pytest.mark.parametrize("fail", [("condition-pregnant-1", "condition-pregnant-2"), ("observation-pregnancy-status",)],
                         ids=["problem-list-search-failed", "pregnancy-status-search-failed"])
def test_news2_what_if_scores_as_the_card_when_a_pregnancy_search_failed(api: Any, fail: tuple[str, ...]) -> None:
    """NEWS2's pregnancy rules are `if_recorded`; the manifest says 'a problem list that could not be read in full
    does not take the ward's score from everyone'. The card (inference/guards.py `_failures`/`_recorded`: refuse only
    when a record exists that cannot be read, `newest_unusable`) gives NEWS2 when the pregnancy search failed, and
    gives it again for the record with RR 22. What-if refuses ('a current pregnancy cannot be ruled out' / 'the
    latest pregnancy status on record cannot be read' -- no such record exists), because run_what_if treats every
    stored missing reason other than 'Nothing usable on record' as an unreadable record."""
    card = call(api, "news2-patient-view", news2_record("female", 28), fail)
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]
    changed = call(api, "news2-patient-view", news2_record("female", 28, F.vital("9279-1", 22, "/min", hours=1)), fail)
    assert changed["summary"].startswith("NEWS2 2 "), changed["summary"]
    resp = what_if(api, card, {"set": {"resp_rate": 22}})
    assert resp.status_code == 200, diagnostics(resp)
    assert resp.json()["primary"]["text"] == "2", resp.json()["primary"]


# -- 2. a population feature that could not be read: what-if says the record SHOWS it ---------------------------------


def test_pce_what_if_does_not_say_the_record_shows_ascvd_when_it_could_not_be_ruled_out(api: Any) -> None:
    """A 'coronary artery disease' problem coded outside the value sets leaves established_ascvd unknown; the card
    says 'established ASCVD cannot be ruled out' (the rule's `unconfirmed` wording). What-if answers 'the record shows
    established atherosclerotic cardiovascular disease' (rule.reason), which is false: run_what_if uses
    `rule.reason` for a missing non-if_recorded feature instead of `rule.unconfirmed`, as guards._failures does."""
    record = F.pce_record() + [F.condition("999999999", display="Coronary artery disease")]
    card = fire(api, "ascvd-pce-10y", record)
    assert "established ASCVD cannot be ruled out" in card["summary"], card["summary"]
    resp = what_if(api, card, {"set": {"sbp": 130}})
    assert resp.status_code == 422, resp.text[:300]
    said = diagnostics(resp)
    assert "the record shows" not in said and "cannot be ruled out" in said, said


# -- 3. a scenario refused with a false reason when its condition's feature is unknown ----------------------------------


@pytest.mark.parametrize("service", ["ascvd-pce-10y", "prevent-base"])
def test_stop_smoking_scenario_does_not_call_a_patient_of_unknown_smoking_status_a_non_smoker(api: Any,
                                                                                            service: str) -> None:
    """No smoking status on record: the card says it is missing ('non-smoking is never assumed', features.yaml).
    What-if 'Stop smoking' answers 'not applicable for this patient (not a current smoker)' -- a statement the record
    does not support (view.scenario_applies -> guards.unmet returns the condition's reason when the value is
    unknown). It should say the smoking status is not known."""
    card = fire(api, service, without_smoking(prevent_record(55)))
    assert "missing Smoking status" in card["summary"], card["summary"]
    resp = what_if(api, card, {"scenario": "Stop smoking"})
    assert resp.status_code == 422
    assert "not a current smoker" not in diagnostics(resp), diagnostics(resp)


def test_start_a_statin_scenario_does_not_say_already_on_a_statin_when_the_medications_could_not_be_read(
        api: Any) -> None:
    """An order whose Medication could not be read: the card says statin use is missing ('missing ... On a statin').
    What-if 'Start a statin' answers 'not applicable for this patient (already on a statin)', which is false: nothing
    shows a statin (same cause as above: guards.unmet gives the reason of a condition whose value is unknown)."""
    med = F.med_request("617312", display="x")
    med.pop("medicationCodeableConcept", None)
    med["medicationReference"] = {"reference": "Medication/unknown1"}
    card = fire(api, "prevent-base", prevent_record(55, med))
    assert "On a statin" in card["summary"] and "missing" in card["summary"], card["summary"]
    resp = what_if(api, card, {"scenario": "Start a statin"})
    assert resp.status_code == 422
    assert "already on a statin" not in diagnostics(resp), diagnostics(resp)


# -- 4. guard order: the card refuses for the population, what-if asks for a value -------------------------------------


def test_pce_what_if_gives_the_population_refusal_before_asking_for_a_missing_input(api: Any) -> None:
    """A prior MI and no total cholesterol: the card refuses (primary prevention only; population rules come before
    missing inputs, runtime.stopped_by_guards). What-if answers 'not known for this patient, so give a value: Total
    cholesterol', inviting a value that cannot give an estimate (giving it then yields the ASCVD refusal):
    run_what_if checks unknown inputs before the population rules."""
    record = [r for r in F.pce_record()
              if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "2093-3")]
    card = fire(api, "ascvd-pce-10y", record + [F.condition("22298006", display="Myocardial infarction")])
    assert "primary prevention" in card["summary"], card["summary"]
    resp = what_if(api, card, {"set": {"sbp": 130}})
    assert resp.status_code == 422
    said = diagnostics(resp)
    assert "give a value" not in said and "primary prevention" in said, said


# -- 5. PREVENT-full add-ons: a placeholder shown as the patient's value, and flags set against their input -----------


def test_prevent_full_what_if_does_not_show_the_hba1c_placeholder_as_the_patients_value(api: Any) -> None:
    """No HbA1c on record: the model runs without the HbA1c term on a placeholder 5.3 % (features.yaml default), which
    the details page shows as 'not recorded' (view._row -> formatting.unmeasured). What-if 'HbA1c 6.0' reports the
    change as 'HbA1c 5.3 % -> 6 %' (changed[].from / from_text), stating a measured 5.3 % the record does not hold."""
    card = fire(api, "prevent-full", prevent_record(55))
    resp = what_if(api, card, {"set": {"hba1c": 6.0}})
    assert resp.status_code == 200, resp.text[:300]
    change = next(c for c in resp.json()["changed"] if c["name"] == "hba1c")
    assert "5.3" not in change["from_text"], change


def test_prevent_full_what_if_uacr_flag_cannot_contradict_its_input(api: Any) -> None:
    """has_uacr is 'computed from another input' (not offered on the page, docs/cards.md) and, since HEAD, follows the
    UACR a what-if sets. But the API still takes it directly: {"uacr": 300, "has_uacr": 0} lists UACR 1 -> 300 mg/g
    as changed yet returns the estimate without the UACR term (6.4 %), where the card for that record (UACR 300) says
    10.7 %; {"has_uacr": 1} alone treats the unmeasured placeholder (1 mg/g) as a measured UACR, an estimate no
    card gives. Such a flag should follow its input (or the request be refused)."""
    card = fire(api, "prevent-full", prevent_record(55))
    changed = fire(api, "prevent-full", prevent_record(55, F.quantity_obs("9318-7", 300, "mg/g", days=5)))
    shown = re.search(r"risk (\S+%)", changed["summary"]).group(1)
    resp = what_if(api, card, {"set": {"uacr": 300, "has_uacr": 0}})
    assert resp.status_code == 422 or resp.json()["primary"]["text"] == shown, (shown, resp.json()["primary"])
    resp = what_if(api, card, {"set": {"has_uacr": 1}})
    assert resp.status_code == 422, resp.json()["primary"]
