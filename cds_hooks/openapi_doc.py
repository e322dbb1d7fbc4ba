"""The OpenAPI document (/openapi.json) with the request bodies the JSON routes read.

The routes read their bodies themselves (fast orjson parsing, 400s naming the field), so FastAPI cannot infer the
bodies; this adds them, with the CDS Hooks 2.0 shapes and the 400/401/413/415 answers every JSON route may give. The
property-based HTTP fuzzer (tests/test_fuzz_openapi.py) generates requests from this document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

_OUTCOME = {"description": "OperationOutcome naming the field",
            "content": {"application/json": {"schema": {"type": "object"}}}}
_COMMON = {"400": {**_OUTCOME, "description": "Malformed request (OperationOutcome naming the field)"},
           "413": {**_OUTCOME, "description": "Body larger than server.max_body_bytes"},
           "415": {**_OUTCOME, "description": "Content-Type is not application/json or application/fhir+json"}}
_RESOURCE = {"type": "object", "required": ["resourceType"],
             "properties": {"resourceType": {"type": "string"}}, "additionalProperties": True}

HOOK_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"type": "string", "enum": ["patient-view", "order-select", "order-sign", "encounter-start",
                                            "encounter-discharge"]},
        "hookInstance": {"type": "string", "format": "uuid"},
        "fhirServer": {"type": "string", "format": "uri"},
        "fhirAuthorization": {"type": "object", "properties": {
            "access_token": {"type": "string"}, "token_type": {"type": "string"},
            "expires_in": {"type": "integer", "minimum": 0},
            "scope": {"type": "string"}, "subject": {"type": "string"}}},
        "context": {"type": "object", "required": ["userId", "patientId"], "properties": {
            "userId": {"type": "string"}, "patientId": {"type": "string"}, "encounterId": {"type": "string"}}},
        "prefetch": {"type": "object", "additionalProperties": {"anyOf": [_RESOURCE, {"type": "null"}]}},
    },
}
FEEDBACK: dict[str, Any] = {
    "type": "object", "required": ["feedback"],
    "properties": {"feedback": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["card", "outcome", "outcomeTimestamp"],
        "properties": {
            "card": {"type": "string", "format": "uuid"},
            "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
            "outcomeTimestamp": {"type": "string", "format": "date-time"},
            "acceptedSuggestions": {"type": "array", "items": {"type": "object", "required": ["id"],
                                                               "properties": {"id": {"type": "string"}}}},
            "overrideReason": {"type": "object", "properties": {
                "reason": {"type": "object", "properties": {"system": {"type": "string"},
                                                            "code": {"type": "string"},
                                                            "display": {"type": "string"}}},
                "userComment": {"type": "string"}}},
        }}}},
}
PREVIEW_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["service", "bundle"],
    "properties": {"service": {"type": "string"}, "bundle": _RESOURCE, "patientId": {"type": "string"},
                   "encounterId": {"type": "string"}},
}
PREVIEW_TOKEN: dict[str, Any] = {
    "type": "object", "required": ["service"],
    "properties": {"service": {"type": "string"}, "purpose": {"type": "string", "enum": ["call", "feedback"]}},
}
BODIES = {
    "/cds-services/{service_id}": HOOK_REQUEST,
    "/cds-services/{service_id}/feedback": FEEDBACK,
    "/preview/request": PREVIEW_REQUEST,
    "/preview/token": PREVIEW_TOKEN,
}


def install_openapi(app: FastAPI, *, service_ids: Sequence[str] = (), model_ids: Sequence[str] = ()) -> None:
    """Make app.openapi() describe the JSON request bodies and name the services and models this deployment has
    (computed once, on the first request of /openapi.json)."""
    plain = app.openapi
    known = {"service_id": sorted(service_ids), "model_id": sorted(model_ids)}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = plain()
        for path, schema in BODIES.items():
            op = doc.get("paths", {}).get(path, {}).get("post")
            if op is None:
                continue
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema},
                                                               "application/fhir+json": {"schema": schema}}}
            for status, response in _COMMON.items():
                op.setdefault("responses", {}).setdefault(status, response)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                for param in op.get("parameters", []) if isinstance(op, dict) else []:
                    values = known.get(param.get("name"))
                    if param.get("in") == "path" and values:
                        param["schema"] = {**param.get("schema", {}), "enum": values}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
