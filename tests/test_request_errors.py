"""Bad input gets a clear 4xx naming the field — never a 500."""

from __future__ import annotations

from typing import Any

import pytest

import fhirfactory as F

SERVICE = "/cds-services/ascvd-pce-10y"


def field_of(resp: Any) -> str | None:
    issue = resp.json()["issue"][0]
    return (issue.get("expression") or [None])[0]


def test_malformed_json(api: Any) -> None:
    resp = api.post(SERVICE, content=b'{"hook": "patient-view",', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("missing", ["hook", "hookInstance", "context"])
def test_missing_required_fields(api: Any, missing: str) -> None:
    body = F.hook_request({})
    del body[missing]
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400
    assert field_of(resp) == missing


def test_hook_instance_must_be_uuid(api: Any) -> None:
    resp = api.post(SERVICE, json=F.hook_request({}, instance="not-a-uuid"))
    assert resp.status_code == 400 and field_of(resp) == "hookInstance"


def test_unknown_service_is_404(api: Any) -> None:
    resp = api.post("/cds-services/no-such-service", json=F.hook_request({}))
    assert resp.status_code == 404
    assert "no-such-service" in resp.json()["issue"][0]["diagnostics"]


def test_hook_the_service_does_not_serve_is_400(api: Any) -> None:
    body = F.hook_request({}, hook="order-sign")
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400 and field_of(resp) == "hook"


@pytest.mark.parametrize(
    ("prefetch", "field"),
    [
        ({"patient": "Patient/p1"}, "prefetch.patient"),
        ({"patient": {"id": "p1"}}, "prefetch.patient"),
        ({"observation-hdl": {"resourceType": "Bundle", "entry": [{"resource": {"value": 1}}]}},
         "prefetch.observation-hdl.entry[0].resource"),
        ([1, 2], "prefetch"),
    ],
)
def test_prefetch_that_is_not_fhir(api: Any, prefetch: Any, field: str) -> None:
    resp = api.post(SERVICE, json=F.hook_request(prefetch))
    assert resp.status_code == 400
    assert field_of(resp) == field


def test_context_fields_are_checked(api: Any) -> None:
    body = F.hook_request({})
    body["context"]["patientId"] = "../../etc/passwd"
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400 and field_of(resp) == "context.patientId"
    body = F.hook_request({})
    del body["context"]["userId"]
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400 and field_of(resp) == "context.userId"


def test_fhir_authorization_needs_fhir_server(api: Any) -> None:
    body = F.hook_request({}, fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                                 "scope": "patient/*.read", "subject": "cds"})
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400 and field_of(resp) == "fhirServer"


@pytest.mark.parametrize("expires_in", [-1, -300])
def test_a_negative_token_lifetime_is_400_naming_the_field(api: Any, expires_in: int) -> None:
    """RFC 6749 §5.1: expires_in is the token's lifetime in seconds; a negative one is no lifetime, and a client that
    sends one is broken, so the call is refused naming the field (it had been accepted)."""
    body = F.hook_request({}, fhirServer="http://127.0.0.1:1/fhir", fhirAuthorization={
        "access_token": "t", "token_type": "Bearer", "expires_in": expires_in, "scope": "patient/*.read",
        "subject": "cds"})
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 400 and field_of(resp) == "fhirAuthorization.expires_in", resp.text
    assert str(expires_in) in resp.text


def test_body_too_large_is_413(settings_factory: Any, local_key: Any) -> None:
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import SignedClient

    app = create_app(settings_factory(server={"max_body_bytes": 2048}))
    with TestClient(app) as client:
        api = SignedClient(client, local_key)
        resp = api.post(SERVICE, json=F.hook_request({"patient": F.patient("p1", name="x" * 4000)}))
        assert resp.status_code == 413


def test_required_data_that_cannot_be_obtained_is_412(api: Any) -> None:
    # no prefetch at all and no fhirServer to fetch from: the model's required data cannot be obtained
    resp = api.post(SERVICE, json=F.hook_request(None))
    assert resp.status_code == 412
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "patient" in body["issue"][0]["diagnostics"]


def test_arbitrary_request_bodies_never_give_a_500(settings_factory: Any, local_key: Any) -> None:
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cds_hooks.app import create_app
    from conftest import SignedClient

    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=8))  # JSON has no NaN or Infinity: the client cannot send them
    value = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=10)
    keys = st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization",
                            "extension", "feedback"])
    base = F.hook_request({"patient": F.patient("p1")})

    with TestClient(create_app(settings_factory()), raise_server_exceptions=False) as client:
        api = SignedClient(client, local_key)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.dictionaries(keys, value, max_size=5), st.booleans())
        def check(mutation: dict[str, Any], keep_base: bool) -> None:
            body = {**base, **mutation} if keep_base else mutation
            for path in (SERVICE, SERVICE + "/feedback"):
                resp = api.post(path, json=body)
                assert resp.status_code < 500, (path, body, resp.text)

        check()
