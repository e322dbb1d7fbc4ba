"""A search the EHR or its FHIR server says failed or left results out is never read as a complete "No".

Found by the twenty-third audit: an HTTP 200 searchset holding only an OperationOutcome (search.mode = outcome,
severity error), or a `total` above the entries sent, was read as "no diabetes on record"; a `next` link to another
path of the fhirServer's host got the bearer token; a scope that does not grant Condition, answered by a server that
filters by scope, gave "Diabetes: No"; an order whose Medication could not be retrieved counted as "not treated".
The expected answers are written from the FHIR R4 and CDS Hooks 2.0 texts quoted in each test, not from the code.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from typing import Any

import fhirfactory as F
import httpx
import pytest
import respx
from conftest import SignedClient

from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.prefetch import fetch_medications, resolve_prefetch
from cds_hooks.search_completeness import search_problem
from cds_hooks.smart_scopes import granted, template_type

SERVICE = "/cds-services/ascvd-pce-10y"
FHIR = "http://127.0.0.1:1/fhir"  # allowed for the test client in conftest; answered by respx, never contacted
KEY = "condition-diabetes-1"
AUTH = {"access_token": "tok-abc.123", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "cds-onnx"}
ERROR = {"resourceType": "OperationOutcome",
         "issue": [{"severity": "error", "code": "too-costly", "diagnostics": "narrow the search"}]}
SUPPRESSED = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "suppressed"}]}
DIABETES = F.condition("44054006", display="Diabetes mellitus type 2")


def searchset(resources: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources], **extra}


def outcome_entry(outcome: dict[str, Any], mode: str | None = "outcome") -> dict[str, Any]:
    return {"resource": outcome, **({"search": {"mode": mode}} if mode else {})}


# -- what a search Bundle says about itself (FHIR R4 Bundle.total, Bundle.entry.search.mode) -------------------------


def test_an_error_outcome_entry_means_the_search_failed() -> None:
    """R4 IssueSeverity 'error': "The issue is sufficiently important to cause the action to fail"."""
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome_entry(ERROR)]}
    assert search_problem(bundle).kind == "failed"
    fatal = copy.deepcopy(bundle)
    fatal["entry"][0]["resource"]["issue"][0]["severity"] = "fatal"
    assert search_problem(fatal).kind == "failed"
    # an outcome without search.mode (servers that omit it) is still an outcome, never the patient's data
    assert search_problem({"resourceType": "Bundle", "type": "searchset",
                           "entry": [outcome_entry(ERROR, mode=None)]}).kind == "failed"


def test_a_warning_that_results_were_withheld_or_cut_short_means_partial() -> None:
    """R4 IssueType 'suppressed': "Some information was not or might not have been returned due to business rules,
    consent or privacy rules, or access permission constraints"; 'incomplete', 'throttled' and 'too-costly' say the
    same of a search stopped early."""
    for code in ("suppressed", "incomplete", "throttled", "too-costly"):
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": code}]}
        problem = search_problem(searchset([DIABETES], entry=None) | {"entry": [outcome_entry(outcome)]})
        assert problem is not None and problem.kind == "partial", code


def test_a_total_above_the_matches_sent_means_partial() -> None:
    """R4 Bundle.total: "the total number of entries of type 'match' across all pages in the search". Entries
    included (search.mode = include) and outcomes are not matches."""
    assert search_problem({"resourceType": "Bundle", "type": "searchset", "total": 3}).kind == "partial"
    included = {"resourceType": "Medication", "id": "m1"}
    two = searchset([DIABETES], total=2)
    two["entry"].append({"resource": included, "search": {"mode": "include"}})
    assert search_problem(two).kind == "partial"
    assert search_problem(searchset([DIABETES], total=1)) is None
    assert search_problem(searchset([DIABETES])) is None  # no total: nothing said
    # entries without search.mode (prefetch Bundles rarely carry it) count as matches
    assert search_problem({"resourceType": "Bundle", "type": "searchset", "total": 1,
                           "entry": [{"resource": DIABETES}]}) is None


def test_information_that_says_nothing_about_completeness_is_not_a_problem() -> None:
    note = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": "no results"}]}
    assert search_problem({"resourceType": "Bundle", "type": "searchset", "total": 0,
                           "entry": [outcome_entry(note)]}) is None
    assert search_problem(DIABETES) is None


# -- resolving prefetch with these Bundles ---------------------------------------------------------------------------


def resolve(prefetch: dict[str, Any] | None, handler: Callable[[httpx.Request], httpx.Response] | None = None,
            *, scope: str | None = "patient/*.read", token_patient: str | None = None,
            templates: dict[str, str] | None = None) -> Any:
    templates = templates or {KEY: "Condition?patient={{context.patientId}}"}

    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler or (lambda r: httpx.Response(500)))) as c:
            return await resolve_prefetch(templates, prefetch, context={"patientId": "p1"},
                                          fhir_server=FHIR if handler else None, access_token="t", client=c,
                                          scope=scope, token_patient=token_patient)
    return asyncio.run(go())


def test_an_ehrs_failed_search_is_a_failed_key_without_a_server_and_asked_again_with_one() -> None:
    """CDS Hooks 2.0 §Prefetch: "CDS Services SHOULD check any prefetched data for the existence of
    OperationOutcomes"; with a fhirServer the service can run the search itself."""
    failed = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome_entry(ERROR)]}
    out = resolve({KEY: failed})
    assert KEY in out.failed and "error (too-costly)" in out.failed[KEY] and KEY not in out.resources
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json=searchset([DIABETES]))
    out = resolve({KEY: failed}, server)
    assert asked and out.resources[KEY]["entry"][0]["resource"]["id"] == DIABETES["id"]
    assert not out.failed and not out.truncated


def test_a_servers_failed_search_is_a_failed_key() -> None:
    out = resolve(None, lambda r: httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                                           "entry": [outcome_entry(ERROR)]}))
    assert KEY in out.failed and KEY not in out.resources


def test_a_partial_search_is_kept_but_marked_cut_short() -> None:
    out = resolve({KEY: {"resourceType": "Bundle", "type": "searchset", "total": 3}})
    assert out.resources[KEY] is not None and out.truncated == [KEY]
    assert "counted 3 matches but 0 were sent" in out.truncated_why[KEY]
    out = resolve(None, lambda r: httpx.Response(200, json=searchset([], total=250)
                                                 | {"entry": [outcome_entry(SUPPRESSED)]}))
    assert out.truncated == [KEY] and "suppressed" in out.truncated_why[KEY]
    # the EHR's partial answer is asked for again; when the server cannot answer, the partial answer stays, cut short
    partial = searchset([DIABETES], total=5)
    out = resolve({KEY: partial}, lambda r: httpx.Response(503))
    assert out.resources[KEY] is partial and out.truncated == [KEY] and not out.failed


# -- the bearer token goes only under fhirServer's base ---------------------------------------------------------------


@pytest.mark.parametrize("link", [
    "http://127.0.0.1:1/internal-admin/export?all=true",  # same origin, another path
    "http://127.0.0.1:1/fhirx/Condition?page=2",  # a prefix that is not the base path
    "http://127.0.0.1:1/fhir/../admin/Condition",  # dot segments climbing out of it
    "http://127.0.0.1:1/fhir/%2e%2e/admin",
    "/fhir/Condition?page=2",  # not an absolute URL
])
def test_a_next_link_outside_the_fhir_base_is_never_followed(link: str) -> None:
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path == "/fhir/Condition":
            return httpx.Response(200, json=searchset([], link=[{"relation": "next", "url": link}]))
        return httpx.Response(200, json=searchset([]))
    out = resolve(None, server)
    assert asked == [f"{FHIR}/Condition?patient=p1"], asked
    assert KEY in out.failed and "refused to follow" in out.failed[KEY]
    asked.clear()
    # a first page the EHR sent itself: never followed either, and kept as cut short, with the reason
    out = resolve({KEY: searchset([], link=[{"relation": "next", "url": link}])}, server)
    assert asked == [] and KEY not in out.failed and KEY in out.truncated
    assert "refused to follow" in out.truncated_why[KEY]


@pytest.mark.parametrize("link", [f"{FHIR}/Condition?page=2", f"{FHIR}?_getpages=abc&_getpagesoffset=20",
                                  f"{FHIR}/"])
def test_a_next_link_under_the_fhir_base_is_followed(link: str) -> None:
    """HAPI pages at the base itself (`/fhir?_getpages=`); Epic and Oracle Health under it."""
    pages = iter([searchset([], link=[{"relation": "next", "url": link}]), searchset([DIABETES])])
    out = resolve(None, lambda r: httpx.Response(200, json=next(pages)))
    assert not out.failed and out.resources[KEY]["entry"][0]["resource"]["id"] == DIABETES["id"]


# -- scopes (SMART App Launch v1 and v2) -------------------------------------------------------------------------------


def test_scopes_say_what_the_token_may_read() -> None:
    assert granted("patient/*.read", "Condition", "search") == "all"
    assert granted("user/Condition.read launch", "Condition", "search") == "all"
    assert granted("patient/Condition.rs", "Condition", "search") == "all"
    assert granted("patient/Condition.r", "Condition", "search") == "none"  # v2: read is not search
    assert granted("patient/Condition.r", "Condition", "read") == "all"
    assert granted("system/*.cruds", "Observation", "search") == "all"
    assert granted("patient/Observation.rs patient/Patient.rs", "Condition", "search") == "none"
    assert granted("patient/Condition.write", "Condition", "search") == "none"
    assert granted("patient/Condition.rs?category=problem-list-item", "Condition", "search") == "some"
    assert granted("patient/Condition.rs?category=problem-list-item", "Condition", "search",
                   "patient=p1&category=problem-list-item") == "all"
    assert granted("launch openid fhirUser", "Condition", "search") == "unknown"  # no resource scope at all
    assert granted(None, "Condition", "search") == "unknown"
    assert template_type("Condition?patient=p1") == ("Condition", "search")
    assert template_type("Patient/p1") == ("Patient", "read")
    assert template_type("$everything") is None


def test_a_type_the_scope_does_not_grant_is_not_fetched_and_one_granted_in_part_is_cut_short() -> None:
    """CDS Hooks 2.0: fhirAuthorization.scope is "The scopes the access token grants the CDS Service". A server that
    filters results by scope answers 200 with nothing for a type it does not grant."""
    asked: list[str] = []

    def filtering(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=searchset([]))
    out = resolve(None, filtering, scope="launch patient/Patient.rs patient/Observation.rs")
    assert asked == [] and "does not grant searching Condition" in out.failed[KEY]
    out = resolve(None, filtering, scope="patient/Condition.rs?category=encounter-diagnosis")
    assert out.truncated == [KEY] and "grants only some Condition records" in out.truncated_why[KEY]
    out = resolve(None, filtering, scope="patient/Condition.rs")
    assert not out.failed and not out.truncated


def test_a_medication_the_scope_does_not_grant_is_not_read() -> None:
    asked: list[str] = []

    async def go(scope: str) -> Any:
        def server(request: httpx.Request) -> httpx.Response:
            asked.append(request.url.path)
            return httpx.Response(200, json={"resourceType": "Medication", "id": "m1"})
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await fetch_medications(["Medication/m1"], fhir_server=FHIR, access_token="t", client=client,
                                           deadline_seconds=5, scope=scope)
    bundle, failed = asyncio.run(go("patient/Condition.rs patient/MedicationRequest.rs"))
    assert asked == [] and bundle["entry"] == [] and "does not grant reading Medication" in failed["Medication/m1"]
    bundle, failed = asyncio.run(go("patient/*.read"))
    assert asked == ["/fhir/Medication/m1"] and len(bundle["entry"]) == 1 and not failed


# -- the service's answer ---------------------------------------------------------------------------------------------


def templates_of(api: SignedClient) -> dict[str, str]:
    return next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]


def prefetch_of(api: SignedClient, record: list[dict[str, Any]]) -> dict[str, Any]:
    return prefetch_from_resources(templates_of(api), copy.deepcopy(record),
                                   {"userId": "Practitioner/example", "patientId": "p1"})


def card_text(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    return card["summary"] + "\n" + card.get("detail", "")


def test_the_pce_never_says_no_diabetes_from_a_search_that_failed_or_was_cut_short(api: SignedClient) -> None:
    record = F.pce_record(gender="male", race="white")
    complete = prefetch_of(api, record)
    assert "Diabetes: No" in card_text(api.post(SERVICE, json=F.hook_request(complete)))  # the control
    failed = copy.deepcopy(complete)
    failed[KEY] = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome_entry(ERROR)]}
    resp = api.post(SERVICE, json=F.hook_request(failed))
    # every Condition key of the PCE's diabetes input is this one, and the input is required: 412, naming why
    assert resp.status_code == 412 and "the search reported an error (too-costly)" in resp.text, resp.text
    counted = copy.deepcopy(complete)
    counted[KEY] = {"resourceType": "Bundle", "type": "searchset", "total": 3}
    text = card_text(api.post(SERVICE, json=F.hook_request(counted)))
    assert "Diabetes: No" not in text and "%" not in text.split("\n")[0], text
    assert "absence cannot be assumed" in text.replace("\\", ""), text


def test_the_pce_asks_the_server_again_for_a_search_the_ehr_could_not_complete(api: SignedClient) -> None:
    record = F.pce_record(gender="male", race="white") + [DIABETES]
    prefetch = prefetch_of(api, record)
    direct = card_text(api.post(SERVICE, json=F.hook_request(prefetch)))  # the EHR's search as it should have come
    assert "Diabetes: No" not in direct
    full = prefetch[KEY]
    prefetch[KEY] = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome_entry(ERROR)]}
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=f"{FHIR}/Condition").mock(return_value=httpx.Response(200, json=full))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization=AUTH))
    assert route.called and card_text(resp).split("\n")[0] == direct.split("\n")[0]


def test_the_pce_does_not_read_conditions_its_token_may_not_see_as_none(api: SignedClient) -> None:
    """A server filtering by scope answers an empty searchset; the service does not ask, and does not say No."""
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [DIABETES])
    del prefetch[KEY]
    scope = "launch patient/Patient.rs patient/Observation.rs patient/MedicationRequest.rs"
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=f"{FHIR}/Condition").mock(
            return_value=httpx.Response(200, json=searchset([])))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR,
                                                     fhirAuthorization={**AUTH, "scope": scope}))
    assert not route.called
    assert resp.status_code == 412 and "does not grant searching Condition" in resp.text, resp.text


def test_an_order_whose_drug_cannot_be_retrieved_leaves_treatment_unknown(api: SignedClient) -> None:
    """The order is current, and its Medication (not sent, and refused by the server) may be an antihypertensive:
    "On blood pressure treatment: No" would be a guess."""
    order = F.med_request("0")
    order.pop("medicationCodeableConcept")
    order["medicationReference"] = {"reference": "Medication/m-amlo"}
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [order])
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(f"{FHIR}/Medication/m-amlo").mock(return_value=httpx.Response(403))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization=AUTH))
    assert route.called
    text = card_text(resp).replace("\\", "")
    assert "On blood pressure treatment: No" not in text and "%" not in text.split("\n")[0], text
    assert "Medication/m-amlo" in text, text
    # named in the order itself, the drug is known without its Medication: treatment is read as usual
    order["medicationReference"]["display"] = "amlodipine 5 mg oral tablet"
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [order])
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{FHIR}/Medication/m-amlo").mock(return_value=httpx.Response(403))
        text = card_text(api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization=AUTH)))
    assert "On blood pressure treatment: **Yes" in text, text


def test_a_token_for_another_patient_fetches_nothing() -> None:
    """CDS Hooks 2.0: fhirAuthorization.patient identifies the patient a patient-scoped token is restricted to. What it
    may see of another patient is nothing: an empty answer would be read as "No"."""
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=searchset([]))

    async def go(token_patient: str) -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await resolve_prefetch({KEY: "Condition?patient={{context.patientId}}"}, None,
                                          context={"patientId": "p1"}, fhir_server=FHIR, access_token="t",
                                          client=client, scope="patient/*.read", token_patient=token_patient)
    out = asyncio.run(go("p2"))
    assert asked == [] and "for another patient" in out.failed[KEY]
    out = asyncio.run(go("p1"))
    assert asked == ["/fhir/Condition"] and not out.failed


def test_the_service_fetches_nothing_with_a_token_for_another_patient(api: SignedClient) -> None:
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white"))
    del prefetch[KEY]
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=FHIR).mock(return_value=httpx.Response(200, json=searchset([])))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR,
                                                     fhirAuthorization={**AUTH, "patient": "someone-else"}))
    assert not route.called and resp.status_code == 412 and "for another patient" in resp.text, resp.text
    resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization={**AUTH, "patient": 7}))
    assert resp.status_code == 400 and "fhirAuthorization.patient" in resp.text, resp.text


# -- bad input: 400 naming the field, never 500 -----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["tök€n-é", "two words", "line\nbreak", ""])
def test_an_access_token_that_cannot_go_in_a_header_is_a_400(api: SignedClient, token: str) -> None:
    """RFC 6750 §2.1: a bearer token is printable ASCII (b64token)."""
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white"))
    resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR,
                                                 fhirAuthorization={**AUTH, "access_token": token}))
    assert resp.status_code == 400 and "fhirAuthorization.access_token" in resp.text, resp.text


@pytest.mark.parametrize("link", [5, True, 1.5, "next", [1]])
def test_a_bundle_link_that_is_not_a_list_of_objects_is_a_400(api: SignedClient, link: Any) -> None:
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white"))
    prefetch[KEY]["link"] = link
    resp = api.post(SERVICE, json=F.hook_request(prefetch))
    assert resp.status_code == 400 and f"prefetch.{KEY}.link" in resp.text, resp.text


# -- the twenty-fourth audit, on the fixes above ----------------------------------------------------------------------

MRKEY = "medicationRequest-bp-treated-1"
AMLO = {"resourceType": "Medication", "id": "m-amlo",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361",
                             "display": "amlodipine 5 MG Oral Tablet"}], "text": "amlodipine 5 mg oral tablet"}}


def order_by_reference(ref: str) -> dict[str, Any]:
    order = F.med_request("0")
    order.pop("medicationCodeableConcept")
    order["medicationReference"] = {"reference": ref}
    return order


def test_asking_again_never_drops_what_the_ehrs_partial_search_found(api: SignedClient) -> None:
    """The EHR's search holds the diabetes and warns that results were suppressed; the server, asked again, answers
    nothing (it sees less with the token). The diabetes the EHR sent stands."""
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [DIABETES])
    direct = card_text(api.post(SERVICE, json=F.hook_request(prefetch)))
    prefetch[KEY]["entry"].append(outcome_entry(SUPPRESSED))
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=f"{FHIR}/Condition").mock(
            return_value=httpx.Response(200, json=searchset([])))
        text = card_text(api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization=AUTH)))
    assert route.called and text.split("\n")[0] == direct.split("\n")[0], text


@pytest.mark.parametrize(("token_patient", "scope"), [("p2", "patient/*.read"),
                                                      (None, "launch patient/Patient.rs patient/Observation.rs")])
def test_the_rest_of_a_prefetched_search_is_read_under_the_same_checks(token_patient: str | None, scope: str) -> None:
    """A first page the EHR sent: its next link is not followed with a token for another patient or without the
    type in its scope; the page stays, cut short."""
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json=searchset([]))
    first = searchset([DIABETES], link=[{"relation": "next", "url": f"{FHIR}/Condition?patient=p1&page=2"}])
    out = resolve({KEY: first}, server, scope=scope, token_patient=token_patient)
    assert asked == [] and out.truncated == [KEY] and out.resources[KEY] is first


def test_a_dot_dot_segment_with_a_path_parameter_is_not_followed() -> None:
    """'..;' is '..' to servlet containers (Tomcat and Jetty cut ';params' from each segment): /fhir/..;/admin."""
    for link in (f"{FHIR}/..;/internal-admin/export", f"{FHIR}/.;x/../admin", f"{FHIR}/..%2Fadmin",
                 f"{FHIR}/..%5cadmin"):
        asked: list[str] = []

        def server(request: httpx.Request) -> httpx.Response:
            asked.append(request.url.raw_path.decode())
            return httpx.Response(200, json=searchset([]))
        out = resolve({KEY: searchset([], link=[{"relation": "next", "url": link}])}, server)
        assert asked == [] and "refused" in out.truncated_why[KEY] and KEY not in out.failed, (link, asked)


@pytest.mark.parametrize("ref", [f"{FHIR}/Medication/m-amlo", "Medication/m-amlo/_history/2"])
def test_absolute_and_version_specific_medication_references_are_read(api: SignedClient, ref: str) -> None:
    """FHIR R4 Reference.reference may be absolute, or version-specific (`Type/id/_history/vid`)."""
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [order_by_reference(ref)])
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=f"{FHIR}/Medication/m-amlo").mock(
            return_value=httpx.Response(200, json=AMLO))
        text = card_text(api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR, fhirAuthorization=AUTH)))
    assert route.called and "On blood pressure treatment: **Yes" in text, text


def test_why_a_medication_was_not_read_reaches_the_card(api: SignedClient) -> None:
    scope = "launch patient/Patient.read patient/Observation.read patient/Condition.read " \
            "patient/MedicationRequest.read patient/MedicationStatement.read"
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white") + [order_by_reference("Medication/m-amlo")])
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=f"{FHIR}/Medication/").mock(return_value=httpx.Response(200, json=AMLO))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR,
                                                     fhirAuthorization={**AUTH, "scope": scope}))
    assert not route.called
    card = resp.json()["cards"][0]
    details = api.client.get(card["links"][0]["url"].replace("http://testserver", "")).text
    assert "does not grant reading Medication" in re.sub(r"<[^>]+>", " ", details), details
    resp = api.post(SERVICE, json=F.hook_request(prefetch))  # no fhirServer at all
    details = api.client.get(resp.json()["cards"][0]["links"][0]["url"].replace("http://testserver", "")).text
    assert "no fhirServer to read it from" in details, details


def test_an_error_outcome_beside_matches_keeps_the_matches(api: SignedClient) -> None:
    """An error that comes with matches (a server's _include limit, LinuxForHealth FHIR: business-rule): the search
    ran; what it found is read, what it did not is unknown."""
    amlo = F.med_request("197361", display="amlodipine 5 MG Oral Tablet")
    # (a diabetic: the orders search also answers 'on a glucose-lowering drug?', which a partial search cannot deny)
    prefetch = prefetch_of(api, F.pce_record(gender="male", race="white", diabetes=True) + [amlo])
    prefetch[MRKEY]["entry"].append(outcome_entry({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "business-rule",
         "details": {"text": "Number of returned 'include' resources exceeds allowable limit of 1000"}}]}))
    assert "On blood pressure treatment: **Yes" in card_text(api.post(SERVICE, json=F.hook_request(prefetch)))
    assert search_problem(prefetch[MRKEY]).kind == "partial"
