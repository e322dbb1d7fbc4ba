"""The standard CDS Hooks and what their context must hold, checked before any work is done.

Each hook's required fields, the `Type/id` form of references, `selections` and `draftOrders` (a Bundle) are
validated with 400 errors that name the field (context.patientId, context.draftOrders.entry[2].resource …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cds_hooks.errors import bad_request
from fhir_mapping.index import referenced_patient, subject_reference

_ID = r"[A-Za-z0-9\-.]{1,64}"
_TYPE_ID = re.compile(rf"^[A-Z][A-Za-z]+/{_ID}$")
_PLAIN_ID = re.compile(rf"^{_ID}$")


@dataclass(frozen=True)
class HookDefinition:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    prefetch_tokens: tuple[str, ...] = ("userId", "patientId", "encounterId")


# hooks whose context.encounterId names the encounter they act on (being started or discharged); on the others it
# is the chart's context only
ENCOUNTER_HOOKS = frozenset({"encounter-start", "encounter-discharge"})
# hooks whose context carries the orders being placed (context.draftOrders), which a card takes into account
ORDER_HOOKS = frozenset({"order-select", "order-sign"})

HOOKS: dict[str, HookDefinition] = {
    "patient-view": HookDefinition("patient-view", ("userId", "patientId"), ("encounterId",)),
    "order-select": HookDefinition("order-select", ("userId", "patientId", "selections", "draftOrders"),
                                   ("encounterId",)),
    "order-sign": HookDefinition("order-sign", ("userId", "patientId", "draftOrders"), ("encounterId",)),
    "encounter-start": HookDefinition("encounter-start", ("userId", "patientId", "encounterId")),
    "encounter-discharge": HookDefinition("encounter-discharge", ("userId", "patientId", "encounterId")),
}

_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")


def validate_context(hook: str, context: Any) -> dict[str, Any]:
    """Check a hook's context; return it unchanged or raise a 400 naming the field."""
    definition = HOOKS.get(hook)
    if definition is None:
        raise bad_request(f"unknown hook '{hook}'", "hook")
    if not isinstance(context, dict):
        raise bad_request("context must be a JSON object", "context")
    for name in definition.required:
        if context.get(name) in (None, "", [], {}):
            raise bad_request(f"context.{name} is required for the {hook} hook", f"context.{name}")
    user = context.get("userId")
    if not isinstance(user, str) or not _TYPE_ID.match(user) or user.split("/")[0] not in _USER_TYPES:
        raise bad_request("context.userId must be a reference like 'Practitioner/123'", "context.userId")
    _plain_id(context, "patientId")
    if "encounterId" in context and context["encounterId"] is not None:
        _plain_id(context, "encounterId")
    if "selections" in definition.required:
        selections = context["selections"]
        if not isinstance(selections, list) or not all(isinstance(s, str) and _TYPE_ID.match(s) for s in selections):
            raise bad_request("context.selections must be a list of references like 'MedicationRequest/123'",
                              "context.selections")
    if "draftOrders" in definition.required:
        _draft_orders(context["draftOrders"], context.get("selections"), context["patientId"])
    return context


def _plain_id(context: dict[str, Any], name: str) -> None:
    value = context.get(name)
    if not isinstance(value, str) or not _PLAIN_ID.match(value):
        raise bad_request(f"context.{name} must be a FHIR id (letters, digits, '-' and '.', at most 64)",
                          f"context.{name}")


def _draft_orders(bundle: Any, selections: Any, patient_id: str) -> None:
    field = "context.draftOrders"
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("context.draftOrders must be a FHIR Bundle", field)
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise bad_request("context.draftOrders.entry must be a list", f"{field}.entry")
    refs = set()
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise bad_request(f"context.draftOrders.entry[{i}].resource must be a FHIR resource",
                              f"{field}.entry[{i}].resource")
        if isinstance(res.get("id"), str):
            refs.add(f"{res['resourceType']}/{res['id']}")
        about = subject_reference(res)  # `subject`, or `patient` (a NutritionOrder, a VisionPrescription)
        if about is not None and referenced_patient(about) not in (None, patient_id):
            # the orders being placed are for the patient in context: one for another contradicts the request
            element = "subject" if res.get("subject") is not None else "patient"
            raise bad_request(f"context.draftOrders.entry[{i}].resource.{element} names {about}, not "
                              f"context.patientId ({patient_id})", f"{field}.entry[{i}].resource.{element}")
    if isinstance(selections, list):
        for i, sel in enumerate(selections):
            if not isinstance(sel, str):
                raise bad_request(f"context.selections[{i}] must be a reference like 'MedicationRequest/123'",
                                  f"context.selections[{i}]")
            if sel not in refs:
                raise bad_request(f"context.selections[{i}] ({sel}) is not in context.draftOrders",
                                  f"context.selections[{i}]")
