"""Feedback round trip: a card is shown, the clinician accepts or overrides it, the store joins it to the prediction."""

from __future__ import annotations

from typing import Any

import fhirfactory as F
from test_pce_endpoint import call

FEEDBACK = "/cds-services/ascvd-pce-10y/feedback"


def show_card(api: Any) -> dict[str, Any]:
    resp = call(api, F.pce_record(gender="male", race="white", sbp=150, smoker=True))
    assert resp.status_code == 200
    return resp.json()["cards"][0]


def flush(api: Any) -> Any:
    state = api.app.state.cds
    assert state.recorder.flush(10.0)
    return state.store


def test_accepted_and_overridden_are_stored_and_joined(api: Any) -> None:
    shown = show_card(api)
    overridden = show_card(api)
    accepted_item = {"card": shown["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:05:00Z",
                     "acceptedSuggestions": [{"id": shown["suggestions"][0]["uuid"]}]}
    reason = overridden["overrideReasons"][0]
    overridden_item = {"card": overridden["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:06:00Z",
                       "overrideReason": {"reason": reason, "userComment": "values from an outside lab"}}
    resp = api.post(FEEDBACK, json={"feedback": [accepted_item, overridden_item]})
    assert resp.status_code == 200 and resp.json() == {}
    rows = {r["card_uuid"]: r for r in flush(api).feedback_joined()}
    assert rows[shown["uuid"]]["outcome"] == "accepted"
    assert rows[shown["uuid"]]["accepted_suggestions"] == [shown["suggestions"][0]["uuid"]]
    assert rows[shown["uuid"]]["model_id"] == "ascvd-pce-10y"
    assert rows[shown["uuid"]]["model_version"] == "1.0.0"
    assert rows[overridden["uuid"]]["override_reason_code"] == reason["code"]
    assert rows[overridden["uuid"]]["category"] == "intermediate"


def test_duplicate_feedback_is_stored_once(api: Any) -> None:
    shown = show_card(api)
    item = {"card": shown["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:05:00Z",
            "acceptedSuggestions": [{"id": shown["suggestions"][0]["uuid"]}]}
    for _ in range(2):
        assert api.post(FEEDBACK, json={"feedback": [item]}).status_code == 200
    rows = [r for r in flush(api).feedback_joined() if r["card_uuid"] == shown["uuid"]]
    assert len(rows) == 1


def test_bad_feedback_names_the_field(api: Any) -> None:
    resp = api.post(FEEDBACK, json={"feedback": [{"card": "not-a-uuid", "outcome": "accepted",
                                                  "outcomeTimestamp": "2026-11-24T12:05:00Z"}]})
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["feedback[0].card"]
    resp = api.post(FEEDBACK, json={"feedback": [{"card": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                                                  "outcome": "maybe", "outcomeTimestamp": "2026-11-24T12:05:00Z"}]})
    assert resp.json()["issue"][0]["expression"] == ["feedback[0].outcome"]
    assert api.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404


def test_prediction_is_recorded_without_patient_identifiers(api: Any) -> None:
    shown = show_card(api)
    store = flush(api)
    rows = store.predictions_for_card(shown["uuid"])
    assert rows and rows[0]["model_id"] == "ascvd-pce-10y"
    assert rows[0]["patient_key"] != "p1" and len(rows[0]["patient_key"]) >= 32


def test_shutdown_flushes_recorded_predictions(settings_factory: Any, local_key: Any, tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import SignedClient
    from store.store import Store

    settings = settings_factory()
    with TestClient(create_app(settings)) as client:
        card = show_card(SignedClient(client, local_key))
    # the app has shut down: whatever was queued is in the database now
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    assert store.predictions_for_card(card["uuid"])
    store.dispose()


def test_feedback_on_another_services_card_is_refused_naming_the_issuer(api: Any) -> None:
    """CDS Hooks posts feedback to the endpoint of the service that issued the card. Feedback for a PCE card posted
    to PREVENT's endpoint would be filed under PREVENT (its monitoring counts it) while joined to the PCE's
    prediction: it is refused with a 400 naming the card and its service, and nothing is stored; the same item
    posted to the PCE's endpoint is stored."""
    shown = show_card(api)
    flush(api)  # the card is in the store, so the service that issued it is known
    item = {"card": shown["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:07:00Z"}
    resp = api.post("/cds-services/prevent-full/feedback", json={"feedback": [item]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == ["feedback[0].card"]
    assert "was issued by service 'ascvd-pce-10y', not 'prevent-full'" in resp.text, resp.text
    assert not [r for r in flush(api).feedback_joined() if r["card_uuid"] == shown["uuid"]]
    assert api.post(FEEDBACK, json={"feedback": [item]}).status_code == 200
    rows = [r for r in flush(api).feedback_joined() if r["card_uuid"] == shown["uuid"]]
    assert [r["service_id"] for r in rows] == ["ascvd-pce-10y"], rows


def test_feedback_on_another_services_card_still_in_the_journal_is_refused(api: Any) -> None:
    """Feedback can follow its card within milliseconds, while the prediction is durable in the journal but not yet
    in the database. Posted to another service's endpoint then, it is refused as it is once the card is stored:
    the service lets its recorder write what it holds and asks the store again. Here the recorder's database write
    is held until that moment (and released by it), so the card is certainly not in the store when the feedback
    arrives."""
    import threading

    state = api.app.state.cds
    flush(api)
    release = threading.Event()
    write = state.store.write_predictions

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(10.0)
        return write(*args, **kwargs)

    settle = state.recorder.flush

    def flush_releases(timeout: float = 10.0) -> bool:
        release.set()
        return settle(timeout)

    state.store.write_predictions = held
    state.recorder.flush = flush_releases
    try:
        shown = show_card(api)
        assert shown["uuid"] not in state.store.services_of_cards([shown["uuid"]])  # still on its way
        item = {"card": shown["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:07:00Z"}
        resp = api.post("/cds-services/prevent-full/feedback", json={"feedback": [item]})
    finally:
        release.set()
        del state.store.write_predictions
        del state.recorder.flush
    assert resp.status_code == 400, resp.text
    assert "was issued by service 'ascvd-pce-10y', not 'prevent-full'" in resp.text, resp.text
    assert not [r for r in flush(api).feedback_joined() if r["card_uuid"] == shown["uuid"]]
