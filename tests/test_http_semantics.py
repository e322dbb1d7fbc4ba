"""HTTP semantics of the service's face (audit 54): a 401 carries its Bearer challenge, a 405 its Allow header, a
body in a content coding the service does not decode gets a 415, a hookInstance is a UUID in its string form, and
a what-if value no float holds is a client error, never a 500."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources

SERVICE = "/cds-services/ascvd-pce-10y"
CANONICAL = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def _body(api: Any, **kw: Any) -> dict[str, Any]:
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    prefetch = prefetch_from_resources(templates, F.pce_record(), {"userId": "Practitioner/example", "patientId": "p1"})
    return F.hook_request(prefetch, **kw)


def test_a_401_carries_a_bearer_challenge(api: Any) -> None:
    """RFC 9110 §11.6.1 and RFC 6750 §3: a 401 must carry WWW-Authenticate with a challenge; the CDS Hooks endpoints
    take Bearer tokens. The reason a token was refused stays undisclosed."""
    for method, path in (("GET", "/cds-services"), ("POST", SERVICE), ("POST", SERVICE + "/feedback")):
        resp = api.client.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.status_code)
        assert resp.headers.get("www-authenticate") == "Bearer", (method, path, dict(resp.headers))


def test_a_405_says_which_methods_are_allowed(api: Any) -> None:
    """RFC 9110 §15.5.6: a 405 must list the resource's methods in Allow; the app's error handler had dropped the
    header when it rewrote the answer as an OperationOutcome."""
    resp = api.client.put("/cds-services")
    assert resp.status_code == 405 and "GET" in resp.headers.get("allow", ""), dict(resp.headers)
    resp = api.client.delete(SERVICE)
    assert resp.status_code == 405 and "POST" in resp.headers.get("allow", ""), dict(resp.headers)


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate"])
def test_a_body_in_a_content_coding_is_refused_415(api: Any, coding: str) -> None:
    """RFC 9110 §8.4 and §15.5.16: the service decodes no content coding, so a body sent in one gets 415 (with
    Accept-Encoding: identity), whether it really is coded (gzip: had been a 400 "not valid JSON", blaming the
    client's JSON) or plain JSON labelled as coded (br: had been read as JSON, so a proxy honouring the header and
    the service disagreed about what the request said)."""
    raw = json.dumps(_body(api)).encode()
    if coding == "gzip":
        raw = gzip.compress(raw)
    resp = api.post(SERVICE, content=raw, headers={"Content-Type": "application/json", "Content-Encoding": coding})
    assert resp.status_code == 415, (resp.status_code, resp.text[:200])
    assert resp.headers.get("accept-encoding") == "identity"
    plain = api.post(SERVICE, content=json.dumps(_body(api)).encode(),
                     headers={"Content-Type": "application/json", "Content-Encoding": "identity"})
    assert plain.status_code == 200, plain.text[:200]


@pytest.mark.parametrize("instance", ["{" + CANONICAL + "}", CANONICAL.replace("-", ""), "urn:uuid:" + CANONICAL,
                                      "{" + CANONICAL.replace("-", "") + "}"])
def test_a_hook_instance_not_in_the_uuid_string_form_is_refused(api: Any, instance: str) -> None:
    """CDS Hooks 2.0: hookInstance is a UUID, typed `uuid` in HL7's logical model of the request (the 8-4-4-4-12
    string form). Python's UUID() also takes braces, bare hex and 'urn:uuid:', which had been stored verbatim, so
    one hook call could be recorded under several spellings: 400 naming hookInstance. The string form passes in
    either case."""
    resp = api.post(SERVICE, json=_body(api, instance=instance))
    assert resp.status_code == 400 and "hookInstance" in resp.text, (instance, resp.status_code)
    assert api.post(SERVICE, json=_body(api, instance=CANONICAL.upper())).status_code == 200


def test_a_what_if_value_no_float_holds_is_a_client_error(api: Any) -> None:
    """A what-if age written as a 401-digit integer (valid JSON) overflowed float() and answered 500: a value the
    page cannot use is a 422, like NaN."""
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    prefetch = prefetch_from_resources(templates, F.pce_record(gender="male", race="white", sbp=150, smoker=True),
                                       {"userId": "Practitioner/example", "patientId": "p1"})
    card = api.post(SERVICE, json=F.hook_request(prefetch)).json()["cards"][0]
    path = next(link["url"] for link in card["links"] if "/details/" in link["url"]).removeprefix("http://testserver")
    client = TestClient(api.app, raise_server_exceptions=False)
    resp = client.post(path + "/what-if", content=b'{"set": {"age": 1' + b"0" * 400 + b"}}",
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, (resp.status_code, resp.text[:200])


def test_head_is_answered_as_the_get_without_its_body(api: Any) -> None:
    """RFC 9110 §9.1 and §9.3.2: every general-purpose server supports HEAD, answered with the status and header
    fields the GET would have had, and no body. Load balancers and uptime monitors probe with it; GET routes had
    answered 405."""
    for path in ("/cds-services", "/healthz", "/readyz", "/metrics"):
        got, head = api.get(path), api.client.head(path, headers=api.headers(path))
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", (path, head.content[:80])
        for field in ("content-type", "content-length", "cache-control", "x-content-type-options"):
            assert head.headers.get(field) == got.headers.get(field), (path, field, dict(head.headers))


def test_head_on_a_path_with_no_get_is_405_with_allow(api: Any) -> None:
    """HEAD mirrors GET: where there is no GET (a service is called with POST), HEAD gets the GET's 405 and Allow."""
    resp = api.client.head(SERVICE, headers=api.headers(SERVICE))
    assert resp.status_code == 405 and "POST" in resp.headers.get("allow", ""), dict(resp.headers)
    assert resp.content == b""


def test_an_unauthenticated_head_is_refused_as_the_get_is(api: Any) -> None:
    """HEAD is no way around authentication: without a token it gets the GET's 401 and challenge."""
    resp = api.client.head("/cds-services")
    assert resp.status_code == 401 and resp.headers.get("www-authenticate") == "Bearer", dict(resp.headers)
