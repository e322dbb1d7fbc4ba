"""HTTP hardening: body-size limit on every route, 415 for non-JSON bodies, security headers, preview same-origin
check, Private Network Access preflights, byte caps on FHIR server answers, and the hardened primitive parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
from conftest import KEYS, SignedClient

SERVICE = "/cds-services/ascvd-pce-10y"


@pytest.fixture
def make_api(settings_factory: Any, local_key: Any) -> Any:
    from cds_hooks.app import create_app

    clients: list[TestClient] = []

    def make(**overrides: Any) -> SignedClient:
        client = TestClient(create_app(settings_factory(**overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return SignedClient(client, local_key)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


PREVIEW = {"preview": {"enabled": True, "key_dir": str(KEYS / "local")}}


# ---- body size ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [SERVICE, SERVICE + "/feedback", "/preview/request", "/preview/token"])
def test_every_json_route_refuses_a_body_over_the_limit(make_api: Any, path: str) -> None:
    api = make_api(server={"max_body_bytes": 4096}, **PREVIEW)
    resp = api.post(path, content=b'{"x": "' + b"a" * 10_000 + b'"}', headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert "larger than 4096 bytes" in resp.json()["issue"][0]["diagnostics"]


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(make_api: Any) -> None:
    api = make_api(server={"max_body_bytes": 4096}, **PREVIEW)

    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1000

    resp = api.client.post("/preview/request", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_bodies_within_the_limit_still_work(api: SignedClient) -> None:
    resp = api.post(SERVICE, json=F.hook_request({"patient": F.patient("p1")}))
    assert resp.status_code < 500 and resp.status_code != 413


# ---- content type ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                   "application/xml", "application/jsonx", None])
def test_non_json_content_type_is_415(api: SignedClient, ctype: str | None) -> None:
    import json

    headers = {"Content-Type": ctype} if ctype else {}
    for path in (SERVICE, SERVICE + "/feedback"):
        req = api.client.build_request("POST", path, content=json.dumps(F.hook_request({})),
                                       headers={**api.headers(path), **headers})
        if ctype is None:
            req.headers.pop("content-type", None)
        resp = api.client.send(req)
        assert resp.status_code == 415, (path, ctype, resp.text)
        assert "application/json" in resp.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                   "application/fhir+json", "application/fhir+json;charset=UTF-8"])
def test_json_content_types_are_accepted(api: SignedClient, ctype: str) -> None:
    import json

    resp = api.post(SERVICE, content=json.dumps(F.hook_request({"patient": F.patient("p1")})),
                    headers={"Content-Type": ctype})
    assert resp.status_code not in (413, 415) and resp.status_code < 500


# ---- security headers ------------------------------------------------------------------------------------------
def test_model_card_page_has_csp_and_no_framing(api: SignedClient) -> None:
    resp = api.client.get("/models/ascvd-pce-10y/card")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert "style-src 'self' 'sha256-" in csp  # the page's own <style> block, by hash
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["x-frame-options"] == "DENY"


def test_preview_page_headers(make_api: Any) -> None:
    api = make_api(**PREVIEW)
    resp = api.client.get("/preview")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_frame_ancestors_comes_from_configuration(make_api: Any) -> None:
    api = make_api(server={"frame_ancestors": ["https://ehr.example.org"]})
    resp = api.client.get("/models/ascvd-pce-10y/card")
    assert "frame-ancestors https://ehr.example.org" in resp.headers["content-security-policy"]
    assert "x-frame-options" not in resp.headers


@pytest.mark.parametrize("path", ["/healthz", "/models", "/metrics", "/static/icon.png", "/cds-services",
                                  "/no-such-page"])
def test_nosniff_on_every_response(api: SignedClient, path: str) -> None:
    resp = api.client.get(path)
    assert resp.headers["x-content-type-options"] == "nosniff", path
    assert resp.headers["referrer-policy"] == "no-referrer"


# ---- preview token: same origin -------------------------------------------------------------------------------
def test_preview_token_refuses_another_origin(make_api: Any) -> None:
    api = make_api(**PREVIEW)
    body = {"service": "ascvd-pce-10y"}
    assert api.client.post("/preview/token", json=body).status_code == 200  # no Origin: a tool, not a browser
    ok = api.client.post("/preview/token", json=body, headers={"Origin": "http://testserver"})
    assert ok.status_code == 200
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Referer": "http://127.0.0.1.evil.example:8080/preview"},
                    {"Origin": "http://testserver", "Referer": "https://evil.example/x"}):
        resp = api.client.post("/preview/token", json=body, headers=headers)
        assert resp.status_code == 403, headers
        assert "Origin" in resp.json()["issue"][0]["diagnostics"]


def test_preview_token_accepts_the_listen_address_without_a_public_base(make_api: Any) -> None:
    api = make_api(server={"public_base_url": None, "host": "127.0.0.1", "port": 8123}, **PREVIEW)
    body = {"service": "ascvd-pce-10y"}
    for origin in ("http://127.0.0.1:8123", "http://localhost:8123"):
        assert api.client.post("/preview/token", json=body, headers={"Origin": origin}).status_code == 200
    resp = api.client.post("/preview/token", json=body, headers={"Origin": "http://rebound.example:8123"})
    assert resp.status_code == 403


# ---- CORS Private Network Access ------------------------------------------------------------------------------
def _preflight(api: SignedClient, origin: str) -> httpx.Response:
    return api.client.options(SERVICE, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Private-Network": "true"})


def test_private_network_preflight_only_when_configured(make_api: Any) -> None:
    cors = {"allow_origins": ["https://sandbox.example.org"]}
    off = _preflight(make_api(cors=cors), "https://sandbox.example.org")
    assert off.status_code == 400 and "access-control-allow-private-network" not in off.headers
    api = make_api(cors={**cors, "allow_private_network": True})
    on = _preflight(api, "https://sandbox.example.org")
    assert on.status_code == 200 and on.headers["access-control-allow-private-network"] == "true"
    other = _preflight(api, "https://evil.example")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers  # refused


# ---- FHIR server answers are capped ---------------------------------------------------------------------------
async def test_fhir_answer_over_the_byte_cap_fails_the_key_with_a_reason() -> None:
    from cds_hooks.prefetch import resolve_prefetch

    big = b'{"resourceType": "Patient", "id": "p1", "note": "' + b"x" * 50_000 + b'"}'

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chunked"):
            async def stream() -> Any:
                yield big[:20_000]
                yield big[20_000:]
            return httpx.Response(200, content=stream())
        return httpx.Response(200, content=big, headers={"Content-Type": "application/fhir+json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        out = await resolve_prefetch({"patient": "Patient/{{context.patientId}}", "other": "chunked"}, None,
                                     context={"patientId": "p1"}, fhir_server="http://fhir.test/r4",
                                     access_token=None, client=client, max_response_bytes=10_000)
        assert "larger than 10000 bytes" in out.failed["patient"]
        assert "larger than 10000 bytes" in out.failed["other"]
        ok = await resolve_prefetch({"patient": "Patient/{{context.patientId}}"}, None, context={"patientId": "p1"},
                                    fhir_server="http://fhir.test/r4", access_token=None, client=client)
        assert ok.resources["patient"]["id"] == "p1"


# ---- hardened primitives --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2020-02-30",
                                   "2020-01-01T10:00:00+15:00", "0000", 20200101, None, ["2020"], {"a": 1}, True,
                                   "２０２０-01-01", "x" * 1000])
def test_unusable_dates_are_none(value: Any) -> None:
    from fhir_mapping.fhirdates import parse_fhir_date, parse_fhir_datetime
    from fhir_mapping.primitives import parse_instant

    assert parse_fhir_datetime(value) is None and parse_fhir_date(value) is None and parse_instant(value) is None


def test_usable_dates() -> None:
    from fhir_mapping.primitives import parse_datetime, parse_instant

    assert parse_datetime("2021") == datetime(2021, 1, 1, tzinfo=UTC)
    assert parse_datetime("2021-03-04T05:06:07+05:30") == datetime(2021, 3, 3, 23, 36, 7, tzinfo=UTC)
    assert parse_datetime("2021-03-04T05:06:07.123456789Z") == datetime(2021, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert parse_datetime("2021-03-04T05:06:07-14:00") == datetime(2021, 3, 4, 19, 6, 7, tzinfo=UTC)
    assert parse_instant("2021-03-04") is None and parse_instant("2021-03-04T05:06:07") is None


@pytest.mark.parametrize("value", [True, False, "1", float("nan"), float("inf"), -float("inf"), 10**400, None, [1]])
def test_unusable_decimals_are_none(value: Any) -> None:
    from fhir_mapping.primitives import parse_decimal

    assert parse_decimal(value) is None


@pytest.mark.parametrize("unit", [{"code": "mg/dL"}, ["mg/dL"], 42, True, "m" * 500])
def test_quantity_unit_that_is_not_a_string_is_a_unit_error(unit: Any) -> None:
    from fhir_mapping.units import UnitError, default_registry

    reg = default_registry()
    assert reg.lookup(unit) is None
    with pytest.raises(UnitError):
        reg.convert(1.0, unit, "mg/dL", "cholesterol")


def test_cohort_tolerates_extension_that_is_not_a_list() -> None:
    from cds_hooks.cohort import cohort_of

    at = datetime(2024, 1, 1, tzinfo=UTC)
    for ext in (5, "x", {"url": "u"}, [5, {"url": F.RACE_URL, "extension": 7}], None):
        cohort = cohort_of({"resourceType": "Patient", "gender": "female", "birthDate": "9999-12-31",
                            "extension": ext}, at)
        assert cohort["race"] == "not recorded"


def test_hostile_values_from_the_issue_give_no_5xx(api: SignedClient) -> None:
    pat = F.patient("p1")
    pat["extension"] = {"url": F.RACE_URL}
    sbp = F.bp_panel(130)
    sbp["effectiveDateTime"] = "9999-12-31T23:59:59-14:00"
    tc = F.quantity_obs("2093-3", 200, "mg/dL")
    tc["valueQuantity"]["code"] = {"not": "a string"}
    hdl = F.quantity_obs("2085-9", 50, "mg/dL")
    hdl["effectiveDateTime"] = "0001-01-01T00:00:00+14:00"
    body = F.hook_request({"patient": pat, "observation-total-cholesterol": F.bundle([tc]),
                           "observation-hdl": F.bundle([hdl]), "observation-sbp-1": F.bundle([sbp])})
    resp = api.post(SERVICE, json=body)
    assert resp.status_code < 500, resp.text


def test_configured_byte_cap_reaches_the_service_and_referenced_medications(make_api: Any) -> None:
    """prefetch.max_response_bytes caps what a service call reads from fhirServer (prefetch and Medication reads)."""
    import respx

    from cds_hooks.bundle_prefetch import prefetch_from_resources

    base = "http://127.0.0.1:1/fhir"  # allowed for the test client in conftest
    api = make_api(prefetch={"max_response_bytes": 4096})
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    order = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/big"}}
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates, F.pce_record(gender="male", race="white") + [order], context)
    big_medication = {"resourceType": "Medication", "id": "big", "code": {"text": "amlodipine " + "x" * 8000}}
    auth = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "x"}
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(f"{base}/Medication/big").mock(return_value=httpx.Response(200, json=big_medication))
        resp = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=base, fhirAuthorization=auth))
    assert resp.status_code == 200 and route.called
    card = resp.json()["cards"][0]
    # the oversized answer was not used: the drug stays unidentified, so treatment is unknown, and the card says why
    detail = card["detail"].replace("\\", "")
    assert "not calculated" in card["summary"] and "On blood pressure treatment: No" not in detail, detail
    assert "Medication/big" in detail, detail


def test_an_order_whose_status_is_not_a_string_is_not_a_500(make_api: Any) -> None:
    """A MedicationRequest with `status` written as a list and its drug by reference: the check for orders whose
    Medication must be fetched had hashed the status (TypeError, 500)."""
    order = F.med_request("197361", display="amlodipine 5 MG Oral Tablet") | {"status": ["active"]}
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/m1"}
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from hook_calls import templates

    api = make_api()
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates(api, "ascvd-pce-10y"), [F.patient("p1", 55, "male"), order], context)
    # a server's status filter would not match a list; an EHR that sends it anyway puts it under the orders' key
    key = next(k for k, t in templates(api, "ascvd-pce-10y").items() if t.startswith("MedicationRequest?"))
    prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": order}]}
    resp = api.post(SERVICE, json=F.hook_request(prefetch))
    assert resp.status_code == 200, resp.text
