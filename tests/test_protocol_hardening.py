"""The HTTP face against CDS Hooks 2.0 and the RFCs it rests on (audit 61): what an EHR sends is never lost or
widened, and every answer an EHR's browser gets can be read by it.

- CDS Hooks 2.0 §Prefetch: data the EHR sent is used; 412 only for required data that "cannot be obtained".
- RFC 6749 §5.1: the token type is case-insensitive.
- RFC 9110 §4.2.4: userinfo in an http(s) URI is deprecated; a link carrying it is not followed with the bearer token.
- The CDS Hooks security guidance and docs/security.md: no URL is derived from Host; a fhirServer is used only when it
  is exactly a configured base URL.
- Fetch standard (CORS): a response without Access-Control-Allow-Origin is an opaque network error to the browser.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.app import create_app
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import TEST_ISSUER, SignedClient, make_settings

SERVICE = "/cds-services/ascvd-pce-10y"
FHIR = "http://127.0.0.1:1/fhir"  # configured for the test client (tests/conftest.py); nothing listens there
ORIGIN = "https://sandbox.cds-hooks.org"


@pytest.fixture
def make_api(tmp_path: Any, local_key: Any) -> Iterator[Callable[..., SignedClient]]:
    opened: list[TestClient] = []

    def make(**overrides: Any) -> SignedClient:
        client = TestClient(create_app(make_settings(tmp_path, **overrides)))
        client.__enter__()
        opened.append(client)
        return SignedClient(client, local_key)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


class FhirServer:
    """A stand-in FHIR server inside the service's HTTP client: records what was asked and with which credentials."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.asked: list[tuple[str, str | None]] = []
        self.answer = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.asked.append((str(request.url), request.headers.get("authorization")))
        if self.answer is not None:
            return self.answer(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})

    def serve(self, api: SignedClient) -> FhirServer:
        api.app.state.cds.caller.http_client = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return self


def authorization(**overrides: Any) -> dict[str, Any]:
    return {"access_token": "tok-abc", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
            "subject": "Practitioner/x", **overrides}


def full_prefetch(api: SignedClient) -> dict[str, Any]:
    service = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")
    return prefetch_from_resources(service["prefetch"], F.pce_record(), {"patientId": "p1", "userId": "Practitioner/x"})


@pytest.mark.parametrize("failure", ["500", "timeout", "relative-link"])
def test_a_first_page_the_ehr_sent_is_kept_when_the_rest_cannot_be_read(make_api: Any, failure: str) -> None:
    """The EHR sends the first page of each search with a `next` link, and a fhirServer. Reading page 2 fails: the
    call had answered 412 (every key 'failed'), though the same body without fhirServer got its card. The pages
    the EHR sent are kept, marked cut short."""
    api = make_api(prefetch={"deadline_seconds": 2.0})
    prefetch = full_prefetch(api)
    link = "Observation?page=2" if failure == "relative-link" else FHIR + "/Observation?page=2"
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and value.get("entry"):
            value["type"], value["link"] = "searchset", [{"relation": "next", "url": link}]

    def broken(request: httpx.Request) -> httpx.Response:
        if failure == "timeout":
            raise httpx.ConnectTimeout("no answer", request=request)
        return httpx.Response(500)

    FhirServer(broken).serve(api)
    without_server = api.post(SERVICE, json=F.hook_request(prefetch))
    assert without_server.status_code == 200, without_server.text
    with_server = api.post(SERVICE, json=F.hook_request(prefetch, fhirServer=FHIR,
                                                        fhirAuthorization=authorization()))
    assert with_server.status_code == 200, with_server.text[:400]
    [card] = with_server.json()["cards"]
    assert card["summary"].startswith("10-year ASCVD risk"), card["summary"]


def test_a_next_link_carrying_userinfo_is_not_followed(make_api: Any) -> None:
    """A server's `next` link 'http://evil:pw@<fhirServer host>/…' would have been fetched with HTTP Basic
    credentials chosen by whoever wrote the link, in place of the bearer token, and read as this patient's data."""
    api = make_api()

    def answer(request: httpx.Request) -> httpx.Response:
        link = [{"relation": "next", "url": "http://evil:pw@127.0.0.1:1/fhir/Observation?page=2"}]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [], "link": link})

    server = FhirServer(answer).serve(api)
    api.post(SERVICE, json=F.hook_request({}, fhirServer=FHIR, fhirAuthorization=authorization()))
    assert server.asked, "the searches themselves were made"
    assert all(auth == "Bearer tok-abc" and "evil" not in url and "page=2" not in url for url, auth in server.asked)


@pytest.mark.parametrize("tail", ["\xa0", "\u3000", "\u2028", "\x0b", " "])
def test_a_fhir_server_with_trailing_whitespace_is_not_the_configured_one(make_api: Any, tail: str) -> None:
    """The allowlist compared the value trimmed and the fetch used it as sent: the bearer token went to
    'http://127.0.0.1:1/fhir%C2%A0/Patient/p1', outside the configured base. Such a value is no configured server."""
    api = make_api()
    server = FhirServer().serve(api)
    response = api.post(SERVICE, json=F.hook_request({}, fhirServer=FHIR + tail, fhirAuthorization=authorization()))
    assert response.status_code < 500, response.text
    assert server.asked == [], server.asked
    exact = FhirServer().serve(api)
    api.post(SERVICE, json=F.hook_request({}, fhirServer=FHIR, fhirAuthorization=authorization()))
    assert exact.asked and all(url.startswith(FHIR + "/") for url, _ in exact.asked)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer"])
def test_the_token_type_is_read_case_insensitively(make_api: Any, token_type: str) -> None:
    api = make_api()
    body = F.hook_request(full_prefetch(api), fhirServer=FHIR, fhirAuthorization=authorization(token_type=token_type))
    assert api.post(SERVICE, json=body).status_code == 200
    wrong = F.hook_request(full_prefetch(api), fhirServer=FHIR, fhirAuthorization=authorization(token_type="MAC"))
    response = api.post(SERVICE, json=wrong)
    assert response.status_code == 400 and "fhirAuthorization.token_type" in response.text


@pytest.mark.parametrize(("method", "path"), [("GET", "/cds-services/"), ("POST", SERVICE + "/")])
def test_a_trailing_slash_is_not_redirected_to_a_host_taken_from_the_request(make_api: Any, method: str,
                                                                             path: str) -> None:
    """Starlette answered '/cds-services/' with a 307 to 'http://<Host header>/cds-services', before any
    authentication: a URL derived from Host. The other spelling is a 404, with no Location."""
    api = make_api()
    response = api.client.request(method, path, json=F.hook_request({}) if method == "POST" else None,
                                  headers={**api.headers(path), "Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404, (response.status_code, response.headers.get("location"))
    assert "location" not in response.headers


@pytest.mark.parametrize("case", ["415", "413", "401", "preflight"])
def test_every_answer_to_an_allowed_origin_carries_cors_and_security_headers(make_api: Any, case: str) -> None:
    """A 413 or 415 had no Access-Control-Allow-Origin, so the sandbox's browser saw a network error instead of the
    reason; the security headers stay on every answer, a CORS preflight's included."""
    api = make_api(cors={"allow_origins": [ORIGIN]}, server={"max_body_bytes": 2048})
    if case == "415":
        response = api.client.post(SERVICE, content=b"{}", headers={"Origin": ORIGIN, "Content-Type": "text/plain"})
    elif case == "413":
        response = api.client.post(SERVICE, content=b"{" + b" " * 5000 + b"}",
                                   headers={"Origin": ORIGIN, "Content-Type": "application/json"})
    elif case == "401":
        response = api.client.post(SERVICE, json={}, headers={"Origin": ORIGIN})
    else:
        response = api.client.options(SERVICE, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "authorization"})
    expected = {"415": 415, "413": 413, "401": 401, "preflight": 200}[case]
    assert response.status_code == expected, response.text
    assert response.headers.get("access-control-allow-origin") == ORIGIN, dict(response.headers)
    assert response.headers.get("x-content-type-options") == "nosniff", dict(response.headers)


def _token_with_tenant(local_key: Any, tenant: str) -> str:
    from cds_hooks.signing import mint_token

    audience = f"http://testserver{SERVICE}"
    header = jwt.get_unverified_header(mint_token(local_key, TEST_ISSUER, audience))
    now = int(time.time())
    claims = {"iss": TEST_ISSUER, "aud": audience, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()),
              "tenant": tenant}
    return jwt.encode(claims, local_key.private_key, algorithm=header["alg"], headers={"kid": header["kid"]})


@pytest.mark.parametrize(("length", "status"), [(120, 200), (121, 401), (200, 401)])
def test_a_tenant_claim_longer_than_the_store_keeps_is_refused(make_api: Any, local_key: Any, length: int,
                                                               status: int) -> None:
    """A 200-character tenant had been answered 200 with a card while the store (predictions.tenant, 120
    characters in PostgreSQL) refused its prediction: a card without its record. Such a token is refused, naming
    the claim."""
    api = make_api()
    token = _token_with_tenant(local_key, "t" * length)
    response = api.client.post(SERVICE, json=F.hook_request(full_prefetch(api)),
                               headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
