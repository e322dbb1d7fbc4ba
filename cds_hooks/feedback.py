"""Parse CDS Hooks feedback (`{"feedback": [...]}`) into store records, with 400s naming the item and field.

Clients send batches and repeat themselves; the store makes duplicates idempotent. A bare single item (the 1.0 shape)
is accepted too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cds_hooks.errors import bad_request
from cds_hooks.request import parse_json_object
from fhir_mapping.primitives import MAX_YEAR, MIN_YEAR, parse_instant
from store.records import FeedbackRecord
from store.store import Store

OUTCOMES = ("accepted", "overridden")


def parse_feedback(body: bytes, service_id: str, client_id: str | None) -> list[FeedbackRecord]:
    doc = parse_json_object(body)
    items = doc.get("feedback") if "feedback" in doc else [doc]
    if not isinstance(items, list) or not items:
        raise bad_request("feedback must be a non-empty list of feedback items", "feedback")
    return [_item(item, f"feedback[{i}]", service_id, client_id) for i, item in enumerate(items)]


def store_feedback(store: Store, items: list[FeedbackRecord], settle: Callable[[], object] | None = None) -> int:
    """Check that each card is this service's (as far as the store knows it), then write the items. A card the
    store does not know yet may still be on its way from this process's journal (feedback can follow its card within
    milliseconds): `settle` lets the recorder write what it holds, and the store is asked again."""
    cards = [item.card_uuid for item in items]
    issued_by = store.services_of_cards(cards)
    if settle is not None and len(issued_by) < len(set(cards)):
        settle()
        issued_by = store.services_of_cards(cards)
    check_issuers(items, issued_by)
    return store.write_feedback(items)


def check_issuers(items: list[FeedbackRecord], issued_by: dict[str, str]) -> None:
    """400 for feedback on a card another service issued (`issued_by`: card uuid -> its service, as stored): filed
    under this service it would count in this service's monitoring while joined to the other's prediction."""
    for i, item in enumerate(items):
        issuer = issued_by.get(item.card_uuid)
        if issuer is not None and issuer != item.service_id:
            raise bad_request(f"feedback[{i}].card {item.card_uuid} was issued by service '{issuer}', not "
                              f"'{item.service_id}': post its feedback to /cds-services/{issuer}/feedback",
                              f"feedback[{i}].card")


def _item(item: Any, where: str, service_id: str, client_id: str | None) -> FeedbackRecord:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be a JSON object", where)
    card = item.get("card")
    card = _canonical_uuid(card)
    if card is None:
        raise bad_request(f"{where}.card must be the uuid of a card", f"{where}.card")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise bad_request(f"{where}.outcome must be 'accepted' or 'overridden'", f"{where}.outcome")
    stamp = item.get("outcomeTimestamp")
    when = _timestamp(stamp)
    if when is None:
        raise bad_request(f"{where}.outcomeTimestamp must be an RFC 3339 date-time with a time zone, "
                          f"in years {MIN_YEAR}-{MAX_YEAR}", f"{where}.outcomeTimestamp")
    accepted: list[str] = []
    raw = item.get("acceptedSuggestions", [])
    if not isinstance(raw, list):
        raise bad_request(f"{where}.acceptedSuggestions must be a list", f"{where}.acceptedSuggestions")
    for j, sug in enumerate(raw):
        if not isinstance(sug, dict) or not isinstance(sug.get("id"), str) or not sug["id"]:
            raise bad_request(f"{where}.acceptedSuggestions[{j}].id is required",
                              f"{where}.acceptedSuggestions[{j}].id")
        accepted.append(_text(sug["id"], f"{where}.acceptedSuggestions[{j}].id", 200))
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
            record.override_reason_system = _text(reason["system"], f"{where}.overrideReason.reason.system", 200)
            record.override_reason_code = _text(reason["code"], f"{where}.overrideReason.reason.code", 80)
            display = reason.get("display")
            if display is not None and not isinstance(display, str):
                raise bad_request(f"{where}.overrideReason.reason.display must be a string",
                                  f"{where}.overrideReason.reason.display")
            record.override_reason_display = _clean(display)[:300] if display else None
        comment = override.get("userComment")
        if comment is not None:
            if not isinstance(comment, str):
                raise bad_request(f"{where}.overrideReason.userComment must be a string",
                                  f"{where}.overrideReason.userComment")
            record.override_comment = _clean(comment)[:2000]
    return record


def _canonical_uuid(value: Any) -> str | None:
    """The card uuid in the form cards are issued in (lowercase, hyphenated); None when it is not a uuid."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _text(value: Any, field: str, max_length: int) -> str:
    """A string field that is stored as sent: a string of at most max_length characters, without NUL."""
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{field} must be a non-empty string", field)
    if len(value) > max_length:
        raise bad_request(f"{field} is longer than {max_length} characters", field)
    if "\x00" in value:
        raise bad_request(f"{field} must not contain NUL characters", field)
    return value


def _clean(value: str) -> str:
    """Free text kept for people to read: NUL characters (which databases refuse) removed."""
    return value.replace("\x00", "")


def _timestamp(value: Any) -> datetime | None:
    """The outcome time as an aware UTC datetime; None for anything else, including instants out of calendar range
    once their offset is applied (e.g. 9999-12-31T23:59:59-14:00), so the client gets a 400, never a 503."""
    return parse_instant(value)
