"""NEWS2 on encounter-start judges the encounter being started (thirty-sixth audit).

CDS Hooks encounter-start: context.encounterId is "the FHIR Encounter.id of the Encounter being started" for
context.patientId. The service had judged "in hospital" from any open hospital encounter in the record and then filed
the suggested RiskAssessment against the named one: another patient's encounter, an outpatient visit or a finished
one. The RCP's NEWS2 (2017) is for adults in hospital: an observation stay or a non-acute inpatient stay is in
hospital, a patient on leave is not on the ward. A context's `selections` that are not references are a 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.errors import ApiError
from cds_hooks.hooks import validate_context
from hook_calls import module_app, templates

SERVICE = "news2-encounter-start"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("encounter-context"))


def vitals() -> list[dict[str, Any]]:
    """Every vital scores 0 on RCP Chart 1: RR 18, SpO2 98 on air, pulse 72, 36.8 C, SBP 120, alert."""
    return [F.vital("9279-1", 18, "/min", hours=2), F.vital("59408-5", 98, "%", hours=2),
            F.vital("8867-4", 72, "/min", hours=2), F.vital("8310-5", 36.8, "Cel", hours=2),
            F.bp_panel(120, days=0), F.coded_obs("67775-7", "248234008", hours=2)]


def start(api: Any, resources: list[dict[str, Any]], encounter_id: str,
          prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": encounter_id}
    if prefetch is None:
        prefetch = prefetch_from_resources(templates(api, SERVICE), resources, context)
    body = {"hook": "encounter-start", "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21",
            "context": context, "prefetch": prefetch}
    resp = api.post(f"/cds-services/{SERVICE}", json=body)
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1, cards
    return cards[0]


def encounters_filed(card: dict[str, Any]) -> list[str]:
    return [a["resource"].get("encounter", {}).get("reference") for s in card.get("suggestions", [])
            for a in s["actions"] if a["resource"]["resourceType"] == "RiskAssessment"]


def test_the_encounter_being_started_is_the_one_judged(api: Any) -> None:
    """Encounter e1 (inpatient, in progress) is being started: NEWS2 0, filed against e1."""
    card = start(api, [F.patient("p1", 67, "male"), F.encounter("e1"), *vitals()], "e1")
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]
    assert encounters_filed(card) == ["Encounter/e1"]


@pytest.mark.parametrize("hook", ["encounter-start", "patient-view"])
def test_an_encounter_id_naming_another_patients_encounter_is_a_400(api: Any, hook: str) -> None:
    """The prefetch shows the named encounter e9 is Patient/p2's, while p1 has an open inpatient encounter e0: the
    request contradicts itself, and a RiskAssessment for p1 must never be filed against p2's encounter (FHIR R4
    RiskAssessment.encounter). The answer is a 400 naming context.encounterId, on any hook that carries one."""
    res = [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()]
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": "e9"}
    service = SERVICE if hook == "encounter-start" else "news2-patient-view"
    prefetch = prefetch_from_resources(templates(api, service), res, context)
    key = next(k for k in prefetch if k.startswith("encounter-"))
    prefetch[key]["entry"].append({"resource": F.encounter("e9", pid="p2")})
    body = {"hook": hook, "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21", "context": context,
            "prefetch": prefetch}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["expression"] == ["context.encounterId"] and "another patient" in issue["diagnostics"], issue


@pytest.mark.parametrize("named", [F.encounter("e2", klass="AMB"), F.encounter("e2", status="finished")],
                         ids=["outpatient-visit", "finished"])
def test_an_open_inpatient_stay_elsewhere_does_not_qualify_the_encounter_being_started(
        api: Any, named: dict[str, Any]) -> None:
    """The encounter being started (e2) is an outpatient visit, or finished, while an inpatient encounter e0 was left
    open in the record: NEWS2 judges e2, and says so (not that no hospital encounter was found: e0 is one)."""
    res = [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()]
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": "e2"}
    prefetch = prefetch_from_resources(templates(api, SERVICE), res, context)
    key = next(k for k in prefetch if k.startswith("encounter-"))
    prefetch[key]["entry"].append({"resource": named})  # an EHR may send the named encounter whatever its status
    card = start(api, res, "e2", prefetch)
    assert card["summary"] == ("No NEWS2 estimate: NEWS2 is for patients in hospital, and the encounter being "
                               "started is not a hospital encounter in progress"), card["summary"]  # < 140, whole
    assert "no in-progress inpatient or emergency encounter was found" not in card["detail"], card["detail"]
    assert not encounters_filed(card)


def test_patient_view_naming_an_earlier_visit_of_a_patient_now_in_hospital_still_scores(api: Any) -> None:
    """CDS Hooks patient-view: encounterId is optional and names the chart's context only; a patient admitted through
    the emergency department whose chart is opened from the finished ED visit is in hospital (RCP NEWS2: adults in
    hospital) and is scored on the in-progress inpatient encounter."""
    res = [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()]
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": "ed1"}
    prefetch = prefetch_from_resources(templates(api, "news2-patient-view"), res, context)
    key = next(k for k in prefetch if k.startswith("encounter-"))
    prefetch[key]["entry"].append({"resource": F.encounter("ed1", klass="EMER", status="finished")})
    body = {"hook": "patient-view", "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21", "context": context,
            "prefetch": prefetch}
    card = api.post("/cds-services/news2-patient-view", json=body).json()["cards"][0]
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]


def test_a_patient_on_leave_is_not_scored(api: Any) -> None:
    """FHIR R4 Encounter.status onleave: "the Encounter has begun, but the patient is temporarily on leave"."""
    card = start(api, [F.patient("p1", 67, "male"), F.encounter("e1", status="onleave"), *vitals()], "e1")
    assert "No NEWS2 estimate" in card["summary"], card["summary"]


@pytest.mark.parametrize("klass", ["OBSENC", "NONAC", "ACUTE", "EMER"])
def test_hospital_encounter_classes_are_in_hospital(api: Any, klass: str) -> None:
    """HL7 v3 ActCode: OBSENC (observation encounter, a hospital bed) and NONAC (inpatient non-acute, a kind of IMP)
    are hospital stays; the refusal 'no in-progress inpatient or emergency encounter was found' was false for them."""
    card = start(api, [F.patient("p1", 67, "male"), F.encounter("e1", klass=klass), *vitals()], "e1")
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]


def test_an_encounter_search_not_read_is_not_reported_as_no_encounter(api: Any) -> None:
    """Without the Encounter prefetch key (and no fhirServer) nothing was looked at: the summary says so instead of
    'no … encounter was found'."""
    res = [F.patient("p1", 67, "male"), F.encounter("e1"), *vitals()]
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": "e1"}
    prefetch = prefetch_from_resources(templates(api, SERVICE), res, context)
    for key in [k for k in prefetch if k.startswith("encounter-")]:
        prefetch.pop(key)
    card = start(api, res, "e1", prefetch)
    assert "encounter was found" not in card["summary"], card["summary"]
    assert "could not be checked" in card["summary"], card["summary"]


@pytest.mark.parametrize("selections", [[["MedicationRequest/mr1"]], [{"reference": "MedicationRequest/mr1"}], [7]])
def test_selections_that_are_not_references_are_a_400_naming_the_item(selections: list[Any]) -> None:
    """order-sign carries no selections in CDS Hooks 1.0, but the draft orders are checked against any sent: an item
    that is not a string had raised TypeError (a 500)."""
    drafts = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft",
                                      "intent": "order", "subject": {"reference": "Patient/p1"}}}]}
    context = {"userId": "Practitioner/example", "patientId": "p1", "draftOrders": drafts, "selections": selections}
    with pytest.raises(ApiError) as raised:
        validate_context("order-sign", context)
    assert raised.value.status == 400 and "context.selections[0]" in str(raised.value.field), raised.value


@pytest.mark.parametrize(("hook", "service"), [("encounter-start", SERVICE), ("patient-view", "news2-patient-view")])
def test_an_encounter_of_a_group_is_not_another_patients(api: Any, hook: str, service: str) -> None:
    """FHIR R4 Encounter.subject is Reference(Patient | Group): a group session names no other patient, so the call
    is answered (the 400 is for another Patient only)."""
    res = [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()]
    context = {"userId": "Practitioner/example", "patientId": "p1", "encounterId": "g1"}
    prefetch = prefetch_from_resources(templates(api, service), res, context)
    group = F.encounter("g1")
    group["subject"] = {"reference": "Group/ward-3-group"}
    key = next(k for k in prefetch if k.startswith("encounter-"))
    prefetch[key]["entry"].append({"resource": group})
    body = {"hook": hook, "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21", "context": context,
            "prefetch": prefetch}
    assert api.post(f"/cds-services/{service}", json=body).status_code == 200


def test_an_admission_still_planned_when_encounter_start_fires_is_the_hospital_stay(api: Any) -> None:
    """CDS Hooks encounter-start: "In an inpatient setting, this would be the time of admission … The Encounter
    should either be in one of the following states: planned | arrived | triaged | in-progress." An inpatient
    admission still 'planned' is the stay being started: NEWS2 0 (every vital scores 0 on RCP Chart 1). On
    patient-view a planned encounter is not a stay in progress."""
    planned = F.encounter("e1", status="planned")
    card = start(api, [F.patient("p1", 67, "male"), planned, *vitals()], "e1")
    assert card["summary"].startswith("NEWS2 0 "), card["summary"]
    assert encounters_filed(card) == ["Encounter/e1"]
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "news2-patient-view"),
                                       [F.patient("p1", 67, "male"), planned, *vitals()], context)
    body = {"hook": "patient-view", "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21", "context": context,
            "prefetch": prefetch}
    view = api.post("/cds-services/news2-patient-view", json=body).json()["cards"][0]
    assert view["summary"].startswith("No NEWS2 estimate: NEWS2 is for patients in hospital"), view["summary"]


@pytest.mark.parametrize(("system", "scored"), [
    ("http://terminology.hl7.org/CodeSystem/v3-ActCode", True), ("urn:oid:2.16.840.1.113883.5.4", True),
    (None, True), ("http://clinic.example.org/visit-types", False)])
def test_an_encounter_class_is_read_under_the_actcode_system_only(api: Any, system: str | None,
                                                                   scored: bool) -> None:
    """FHIR R4 Encounter.class is a Coding bound to v3 ActEncounterCode: 'EMER' means an emergency encounter under
    ActCode (by its URI or OID, or with no system written), not under a clinic's own visit-type system."""
    named = F.encounter("e1", klass="EMER")
    if system is None:
        del named["class"]["system"]
    else:
        named["class"]["system"] = system
    card = start(api, [F.patient("p1", 67, "male"), named, *vitals()], "e1")
    assert card["summary"].startswith("NEWS2 0 " if scored else "No NEWS2 estimate"), card["summary"]


def test_an_encounter_being_started_that_the_record_does_not_hold_is_not_scored_on_another(api: Any) -> None:
    """Encounter e2 is being started, but the Encounter search answered only an old inpatient stay e0 left open: what
    e2 is (an outpatient visit, or a stay) cannot be checked. NEWS2 had been scored because e0 was open and filed
    against Encounter/e2; now no score is given, and the card says the encounter could not be checked."""
    card = start(api, [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()], "e2")
    assert not card["summary"].startswith("NEWS2 "), card["summary"]
    assert "Encounter/e2" not in encounters_filed(card)
    assert "whether the encounter being started is a hospital encounter could not be checked" in card["detail"], \
        card["detail"]


def test_patient_view_naming_no_encounter_is_still_scored(api: Any) -> None:
    """patient-view names no encounter it acts on: the check of the encounter being started does not apply, and the
    open inpatient stay gives the score."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    res = [F.patient("p1", 67, "male"), F.encounter("e0"), *vitals()]
    prefetch = prefetch_from_resources(templates(api, "news2-patient-view"), res, context)
    resp = api.post("/cds-services/news2-patient-view", json={
        "hook": "patient-view", "hookInstance": "0e7d3c52-3a53-4c1e-9f0e-3c0f6a8e5d21", "context": context,
        "prefetch": prefetch})
    assert resp.status_code == 200 and resp.json()["cards"][0]["summary"].startswith("NEWS2 0 "), resp.text
