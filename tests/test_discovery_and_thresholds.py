"""One card per clinical question, and per-deployment thresholds for when a card is shown at all (issue #13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.settings import ConfigError
from conftest import SignedClient


def _client(settings_factory: Any, local_key: Any, **overrides: Any) -> tuple[TestClient, SignedClient]:
    from cds_hooks.app import create_app

    tc = TestClient(create_app(settings_factory(**overrides)))
    tc.__enter__()
    return tc, SignedClient(tc, local_key)


def test_discovery_lists_one_service_per_question_and_hook(settings_factory: Any, local_key: Any) -> None:
    tc, api = _client(settings_factory, local_key, services={"one_per_question": True})
    try:
        _one_per_question(api)
    finally:
        tc.__exit__(None, None, None)


def _one_per_question(api: SignedClient) -> None:
    services = api.get("/cds-services").json()["services"]
    ids = [s["id"] for s in services]
    assert "prevent-full" in ids and "prevent-base" not in ids  # same question: the add-on model is listed
    per_hook: dict[tuple[str, str], int] = {}
    for s in services:
        per_hook[(s["hook"], s["title"])] = per_hook.get((s["hook"], s["title"]), 0) + 1
    assert all(n == 1 for n in per_hook.values())
    # a service not listed is still there for an EHR that was configured with it
    resp = api.post("/cds-services/prevent-base", json=F.hook_request({}, pid="p1"))
    assert resp.status_code in (200, 412)


def test_a_deployment_can_list_more(settings_factory: Any, local_key: Any) -> None:
    tc, api = _client(settings_factory, local_key, services={"one_per_question": True, "listed": ["prevent-base"]})
    try:
        ids = [s["id"] for s in api.get("/cds-services").json()["services"]]
        assert {"prevent-base", "prevent-full"} <= set(ids)
    finally:
        tc.__exit__(None, None, None)


def _pce_cards(api: SignedClient, record: list[dict[str, Any]], instance: str) -> list[dict[str, Any]]:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    body = {"hook": "patient-view", "hookInstance": instance, "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], record, context)}
    resp = api.post("/cds-services/ascvd-pce-10y", json=body)
    assert resp.status_code == 200
    return resp.json()["cards"]


def test_below_the_threshold_no_card_but_the_prediction_is_recorded(settings_factory: Any, local_key: Any) -> None:
    tc, api = _client(settings_factory, local_key, cards={"min_category": {"ascvd-pce-10y": "intermediate"}})
    try:
        low = _pce_cards(api, F.pce_record(gender="female", race="white"), "6b1e5c3a-8d0f-4a55-9b2e-0c7d1f2a3b01")
        high = _pce_cards(api, F.pce_record(gender="male", race="white", sbp=170, smoker=True),
                          "6b1e5c3a-8d0f-4a55-9b2e-0c7d1f2a3b02")
        assert low == []  # 2.1 % (low): not shown
        assert len(high) == 1 and high[0]["indicator"] == "warning"
        state = api.app.state.cds
        assert state.recorder.flush(10)
        recorded = state.store.predictions(hook_instance="6b1e5c3a-8d0f-4a55-9b2e-0c7d1f2a3b01")
        assert len(recorded) == 1 and recorded[0]["category"] == "low"
        missing = _pce_cards(api, [F.patient("p1", 55, "male")], "6b1e5c3a-8d0f-4a55-9b2e-0c7d1f2a3b03")
        assert len(missing) == 1 and "not calculated" in missing[0]["summary"]  # never hidden by a threshold
    finally:
        tc.__exit__(None, None, None)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cards": {"min_category": {"ascvd-pce-10y": "medium"}}}, "'medium' is not a category"),
    ({"cards": {"min_category": {"no-such-service": "low"}}}, "no service 'no-such-service'"),
    ({"services": {"listed": ["nope"]}}, "no service 'nope'"),
])
def test_threshold_settings_naming_nothing_stop_start_up(settings_factory: Any, tmp_path: Path,
                                                         overrides: dict[str, Any], message: str) -> None:
    from cds_hooks.app import create_app

    with pytest.raises(ConfigError, match=message):
        create_app(settings_factory(**overrides))
