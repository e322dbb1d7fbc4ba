"""Every standard hook's context is validated with a 400 that names the field."""

from __future__ import annotations

from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.errors import ApiError
from cds_hooks.hooks import validate_context

USER = "Practitioner/123"
ORDER = {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order"}
DRAFTS = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ORDER}]}
VALID = {
    "patient-view": {"userId": USER, "patientId": "p1"},
    "order-select": {"userId": USER, "patientId": "p1", "selections": ["MedicationRequest/mr1"], "draftOrders": DRAFTS},
    "order-sign": {"userId": USER, "patientId": "p1", "draftOrders": DRAFTS},
    "encounter-start": {"userId": USER, "patientId": "p1", "encounterId": "e1"},
    "encounter-discharge": {"userId": USER, "patientId": "p1", "encounterId": "e1"},
}


def field(hook: str, context: Any) -> str | None:
    with pytest.raises(ApiError) as err:
        validate_context(hook, context)
    assert err.value.status == 400
    return err.value.field


@pytest.mark.parametrize("hook", list(VALID))
def test_valid_contexts_pass(hook: str) -> None:
    assert validate_context(hook, dict(VALID[hook])) == VALID[hook]


@pytest.mark.parametrize("hook", list(VALID))
def test_each_required_field_is_named(hook: str) -> None:
    for name in VALID[hook]:
        context = {k: v for k, v in VALID[hook].items() if k != name}
        assert field(hook, context) == f"context.{name}"


@pytest.mark.parametrize("hook", list(VALID))
def test_reference_forms(hook: str) -> None:
    assert field(hook, {**VALID[hook], "userId": "123"}) == "context.userId"
    assert field(hook, {**VALID[hook], "userId": "Organization/1"}) == "context.userId"
    assert field(hook, {**VALID[hook], "patientId": "Patient/p1"}) == "context.patientId"
    if "encounterId" in VALID[hook]:
        assert field(hook, {**VALID[hook], "encounterId": "bad id!"}) == "context.encounterId"


def test_order_hooks_check_draft_orders_and_selections() -> None:
    assert field("order-sign", {**VALID["order-sign"], "draftOrders": [ORDER]}) == "context.draftOrders"
    broken = {"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}
    assert field("order-sign", {**VALID["order-sign"], "draftOrders": broken}) == "context.draftOrders.entry[0].resource"
    assert field("order-select", {**VALID["order-select"], "selections": ["mr1"]}) == "context.selections"
    assert field("order-select", {**VALID["order-select"], "selections": ["MedicationRequest/other"]}) == \
        "context.selections[0]"


def test_unknown_hook_and_non_object_context() -> None:
    assert field("appointment-teleport", {}) == "hook"
    assert field("patient-view", ["not", "an", "object"]) == "context"


def test_encounter_start_context_through_http(api: Any) -> None:
    body = F.hook_request({}, hook="encounter-start")  # no encounterId
    resp = api.post("/cds-services/news2-encounter-start", json=body)
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["context.encounterId"]
