"""The details view opened as a SMART app (issue #13): the card's `type: smart` link, the launch against an EHR's
authorization server (simulated in-process with respx; loopback names only), PKCE, and the appContext round trip."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import SignedClient

EHR = "http://127.0.0.1:7/fhir"  # the EHR's FHIR base (iss); never contacted outside respx
AUTHORIZE = "http://127.0.0.1:7/oauth2/authorize"
TOKEN = "http://127.0.0.1:7/oauth2/token"


@pytest.fixture
def smart_api(settings_factory: Any, local_key: Any) -> Any:
    from cds_hooks.app import create_app

    settings = settings_factory(smart={"clients": [{"iss": EHR, "client_id": "cds-onnx-details"}]})
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield SignedClient(client, local_key)


def pce_card(api: SignedClient) -> dict[str, Any]:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    body = {"hook": "patient-view", "hookInstance": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], F.pce_record(gender="male"), context)}
    return api.post("/cds-services/ascvd-pce-10y", json=body).json()["cards"][0]


def test_smart_launch_opens_the_cards_details(smart_api: SignedClient) -> None:
    card = pce_card(smart_api)
    smart = next(link for link in card["links"] if link["type"] == "smart")
    absolute = next(link for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    assert smart["url"] == "http://testserver/smart/launch"
    assert absolute["url"].endswith("/" + smart["appContext"])  # the same details page either way

    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{EHR}/.well-known/smart-configuration").mock(return_value=httpx.Response(
            200, json={"authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN}))
        token_route = mock.post(TOKEN).mock(return_value=httpx.Response(
            200, json={"access_token": "at", "token_type": "Bearer", "appContext": smart["appContext"]}))
        mock.route(host="testserver").pass_through()
        started = smart_api.client.get("/smart/launch", params={"iss": EHR, "launch": "xyz123"})
        assert started.status_code == 302
        target = urlsplit(started.headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == AUTHORIZE
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert query["launch"] == "xyz123" and query["aud"] == EHR and query["client_id"] == "cds-onnx-details"
        assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
        back = smart_api.client.get("/smart/callback", params={"code": "c0de", "state": query["state"]})
        assert back.status_code == 302 and back.headers["location"] == absolute["url"]
        form = parse_qs(token_route.calls[0].request.content.decode())
        verifier = form["code_verifier"][0]
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        assert digest == query["code_challenge"]  # PKCE holds end to end
    page = smart_api.client.get(back.headers["location"])
    assert page.status_code == 200


def test_smart_launch_refuses_unknown_issuers_forged_state_and_missing_context(smart_api: SignedClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        other = mock.get(url__startswith="http://127.0.0.1:9").mock(return_value=httpx.Response(200, json={}))
        mock.route(host="testserver").pass_through()
        refused = smart_api.client.get("/smart/launch", params={"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
        assert refused.status_code == 400 and "smart.clients" in refused.text
        assert not other.called  # an issuer configuration does not name is never contacted
        forged = smart_api.client.get("/smart/callback", params={"code": "c", "state": "e30.AAAA"})
        assert forged.status_code == 400
        mock.get(f"{EHR}/.well-known/smart-configuration").mock(return_value=httpx.Response(
            200, json={"authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN}))
        mock.post(TOKEN).mock(return_value=httpx.Response(200, json={"access_token": "at", "appContext": "bogus"}))
        started = smart_api.client.get("/smart/launch", params={"iss": EHR, "launch": "l"})
        state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
        no_context = smart_api.client.get("/smart/callback", params={"code": "c", "state": state})
        assert no_context.status_code == 404 and "appContext" in no_context.text


def test_token_endpoint_on_an_unconfigured_origin_is_refused(smart_api: SignedClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{EHR}/.well-known/smart-configuration").mock(return_value=httpx.Response(
            200, json={"authorization_endpoint": AUTHORIZE, "token_endpoint": "http://127.0.0.2:7/token"}))
        mock.route(host="testserver").pass_through()
        resp = smart_api.client.get("/smart/launch", params={"iss": EHR, "launch": "l"})
        assert resp.status_code == 502 and "token_endpoint" in resp.text


def test_no_smart_link_without_smart_clients(api: SignedClient) -> None:
    card = pce_card(api)
    assert all(link["type"] != "smart" or link["label"] == "Open in risk app" for link in card["links"])
