"""Parse CDS Hooks feedback (`{"feedback": [...]}`) into store records, with 400s naming the item and field.

Clients send batches and repeat themselves; the store makes duplicates idempotent. A bare single item (the 1.0 shape)
is accepted too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cds_hooks.errors import bad_request
from cds_hooks.request import parse_json_object
from store.records import FeedbackRecord

OUTCOMES = ("accepted", "overridden")


def parse_feedback(body: bytes, service_id: str, client_id: str | None) -> list[FeedbackRecord]:
    doc = parse_json_object(body)
    items = doc.get("feedback") if "feedback" in doc else [doc]
    if not isinstance(items, list) or not items:
        raise bad_request("feedback must be a non-empty list of feedback items", "feedback")
    return [_item(item, f"feedback[{i}]", service_id, client_id) for i, item in enumerate(items)]


def _item(item: Any, where: str, service_id: str, client_id: str | None) -> FeedbackRecord:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be a JSON object", where)
    card = item.get("card")
    if not isinstance(card, str) or not _is_uuid(card):
        raise bad_request(f"{where}.card must be the uuid of a card", f"{where}.card")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise bad_request(f"{where}.outcome must be 'accepted' or 'overridden'", f"{where}.outcome")
    stamp = item.get("outcomeTimestamp")
    when = _timestamp(stamp)
    if when is None:
        raise bad_request(f"{where}.outcomeTimestamp must be an RFC 3339 date-time with a time zone",
                          f"{where}.outcomeTimestamp")
    accepted: list[str] = []
    raw = item.get("acceptedSuggestions", [])
    if not isinstance(raw, list):
        raise bad_request(f"{where}.acceptedSuggestions must be a list", f"{where}.acceptedSuggestions")
    for j, sug in enumerate(raw):
        if not isinstance(sug, dict) or not isinstance(sug.get("id"), str) or not sug["id"]:
            raise bad_request(f"{where}.acceptedSuggestions[{j}].id is required",
                              f"{where}.acceptedSuggestions[{j}].id")
        accepted.append(sug["id"])
    if outcome == "overridden" and accepted:
        raise bad_request(f"{where}: an overridden card has no accepted suggestions", f"{where}.acceptedSuggestions")
    record = FeedbackRecord(service_id=service_id, card_uuid=card, outcome=outcome, outcome_timestamp=when,
                            accepted_suggestions=accepted, client_id=client_id)
    override = item.get("overrideReason")
    if override is not None:
        if outcome != "overridden":
            raise bad_request(f"{where}.overrideReason is only for overridden cards", f"{where}.overrideReason")
        if not isinstance(override, dict):
            raise bad_request(f"{where}.overrideReason must be an object", f"{where}.overrideReason")
        reason = override.get("reason")
        if reason is not None:
            if not isinstance(reason, dict) or not reason.get("code") or not reason.get("system"):
                raise bad_request(f"{where}.overrideReason.reason must be a Coding with system and code",
                                  f"{where}.overrideReason.reason")
            record.override_reason_system = str(reason["system"])
            record.override_reason_code = str(reason["code"])
            record.override_reason_display = str(reason["display"]) if reason.get("display") else None
        comment = override.get("userComment")
        if comment is not None:
            if not isinstance(comment, str):
                raise bad_request(f"{where}.overrideReason.userComment must be a string",
                                  f"{where}.overrideReason.userComment")
            record.override_comment = comment[:2000]
    return record


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
