"""Feedback checked against CDS Hooks 2.0 §Feedback (audit 54): an accepted outcome names the suggestions accepted,
each one of the card's; an override reason is one the card offered; a card returned to one client takes no feedback
from another; and outcomeTimestamp is read as RFC 3339 §5.6 writes it (a lower-case 't' and 'z' too)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import KEYS, TEST_ISSUER, make_settings

SERVICE = "/cds-services/ascvd-pce-10y"
FEEDBACK = SERVICE + "/feedback"


def _card(api: Any) -> dict[str, Any]:
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    prefetch = prefetch_from_resources(templates, F.pce_record(gender="male", race="white", sbp=150, smoker=True),
                                       {"userId": "Practitioner/example", "patientId": "p1"})
    resp = api.post(SERVICE, json=F.hook_request(prefetch))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    assert card.get("suggestions") and card.get("overrideReasons"), card  # a card with both, as the PCE card has
    assert api.app.state.cds.recorder.flush(10.0)  # the card is in the store: the service knows what it issued
    return card


def _stored(api: Any, card_uuid: str) -> list[dict[str, Any]]:
    state = api.app.state.cds
    assert state.recorder.flush(10.0)
    return [r for r in state.store.feedback_joined() if r["card_uuid"] == card_uuid]


def test_accepted_outcome_without_accepted_suggestions_is_refused(api: Any) -> None:
    """`acceptedSuggestions` is required for an accepted outcome (§Feedback): a card as a whole is overridden or
    ignored, and what is accepted is a suggestion. Without it the item had been stored as an acceptance of nothing,
    counted as an accepted card in monitoring: 400 naming the field, nothing stored."""
    card = _card(api)
    item = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:05:00Z"}
    resp = api.post(FEEDBACK, json={"feedback": [item]})
    assert resp.status_code == 400, resp.text
    assert not _stored(api, card["uuid"])


def test_accepted_outcome_with_empty_accepted_suggestions_is_refused(api: Any) -> None:
    """An empty list is no list of accepted suggestions either (§Use of JSON: empty elements are not sent): 400."""
    card = _card(api)
    item = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:05:00Z",
            "acceptedSuggestions": []}
    resp = api.post(FEEDBACK, json={"feedback": [item]})
    assert resp.status_code == 400, resp.text
    assert not _stored(api, card["uuid"])


def test_accepted_suggestion_that_is_not_on_the_card_is_refused(api: Any) -> None:
    """AcceptedSuggestion.id is the uuid of one of the card's suggestions. One the card never had was stored as an
    acceptance of something never suggested, joined to the card's prediction: 400 naming the id, nothing stored."""
    card = _card(api)
    foreign = str(uuid.uuid4())
    assert foreign not in {s["uuid"] for s in card["suggestions"]}
    item = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:05:00Z",
            "acceptedSuggestions": [{"id": foreign}]}
    resp = api.post(FEEDBACK, json={"feedback": [item]})
    assert resp.status_code == 400, resp.text
    assert not _stored(api, card["uuid"])


def test_override_reason_the_card_did_not_offer_is_refused(api: Any) -> None:
    """The override reason is the one the user selected from the card's `overrideReasons` (§OverrideReason). A Coding
    the card never offered could not be selected, and had gone into the override analytics: 400 naming it."""
    card = _card(api)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:05:00Z",
            "overrideReason": {"reason": {"system": "https://attacker.example/reasons", "code": "made-up"}}}
    resp = api.post(FEEDBACK, json={"feedback": [item]})
    assert resp.status_code == 400, resp.text
    assert not _stored(api, card["uuid"])


def test_outcome_timestamp_with_lowercase_t_and_z_is_accepted(api: Any) -> None:
    """outcomeTimestamp is an RFC 3339 §5.6 date-time, whose 'T' and 'Z' may be written in lower case: accepted."""
    card = _card(api)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24t12:05:00z"}
    resp = api.post(FEEDBACK, json={"feedback": [item]})
    assert resp.status_code == 200, resp.text
    rows = _stored(api, card["uuid"])
    assert len(rows) == 1


SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def _token(iss: str, key: Any, kid: str, path: str, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": f"http://testserver{path}", "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()),
              **extra}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


def test_feedback_from_another_client_on_a_card_is_refused(tmp_path: Path, local_key: Any) -> None:
    """A card returned to client A (tenant A) was never shown to client B's users, so B has no feedback on it: 403,
    nothing stored. B's item had been stored, and A's own identical feedback then dropped as its duplicate."""
    local_jwks = json.loads((KEYS / "local" / "jwks.json").read_text())
    sandbox_jwks = json.loads((KEYS / "sandbox" / "jwks.json").read_text())
    sandbox_key = serialization.load_pem_private_key((KEYS / "sandbox" / "ecprivkey.pem").read_bytes(), password=None)
    settings = make_settings(tmp_path, auth={"clients": [
        {"iss": TEST_ISSUER, "jwks": local_jwks, "tenants": ["tenant-a"]},
        {"iss": SANDBOX_ISS, "jwks": sandbox_jwks, "tenants": ["tenant-b"]}]})
    from cds_hooks.app import create_app

    with TestClient(create_app(settings)) as client:
        def as_a(path: str) -> dict[str, str]:
            return {"Authorization": "Bearer " + _token(TEST_ISSUER, local_key.private_key, local_key.kid, path,
                                                        tenant="tenant-a")}

        def as_b(path: str) -> dict[str, str]:
            return {"Authorization": "Bearer " + _token(SANDBOX_ISS, sandbox_key, SANDBOX_KID, path,
                                                        tenant="tenant-b")}

        services = client.get("/cds-services", headers=as_a("/cds-services")).json()["services"]
        templates = next(s for s in services if s["id"] == "ascvd-pce-10y")["prefetch"]
        prefetch = prefetch_from_resources(templates, F.pce_record(gender="male", race="white", sbp=150, smoker=True),
                                           {"userId": "Practitioner/example", "patientId": "p1"})
        resp = client.post(SERVICE, json=F.hook_request(prefetch), headers=as_a(SERVICE))
        assert resp.status_code == 200, resp.text
        card = resp.json()["cards"][0]
        state = client.app.state.cds
        assert state.recorder.flush(10.0)
        item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:05:00Z"}

        forged = client.post(FEEDBACK, json={"feedback": [item]}, headers=as_b(FEEDBACK))
        own = client.post(FEEDBACK, json={"feedback": [item]}, headers=as_a(FEEDBACK))
        assert own.status_code == 200, own.text
        rows = [r for r in state.store.feedback_joined() if r["card_uuid"] == card["uuid"]]
        assert [r["client_id"] for r in rows] == [TEST_ISSUER], rows  # A's feedback, and only A's
        assert forged.status_code in (400, 403), forged.text


def test_an_offered_reason_and_a_suggestion_of_the_card_are_stored(api: Any) -> None:
    """The control: a reason the card offered, and an accepted suggestion the card carried, are stored as sent."""
    card = _card(api)
    reason = card["overrideReasons"][1]
    overridden = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:05:00Z",
                  "overrideReason": {"reason": reason}}
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:06:00Z",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    resp = api.post(FEEDBACK, json={"feedback": [overridden, accepted]})
    assert resp.status_code == 200, resp.text
    rows = _stored(api, card["uuid"])
    assert sorted(r["outcome"] for r in rows) == ["accepted", "overridden"], rows
    assert any(r["override_reason_code"] == reason["code"] for r in rows), rows
