"""Parse CDS Hooks feedback (`{"feedback": [...]}`) into store records, with 400s naming the item and field.

Clients send batches and repeat themselves; the store makes duplicates idempotent. A bare single item (the 1.0 shape)
is accepted too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cards.builder import OVERRIDE_REASONS, OVERRIDE_SYSTEM
from cds_hooks.errors import ApiError, bad_request
from cds_hooks.request import parse_json_object
from fhir_mapping.primitives import MAX_YEAR, MIN_YEAR, parse_instant
from store.records import FeedbackRecord
from store.store import CardIssued, Store

OUTCOMES = ("accepted", "overridden")
OFFERED_REASONS = frozenset((OVERRIDE_SYSTEM, code) for code, _ in OVERRIDE_REASONS)  # what every card offers


def parse_feedback(body: bytes, service_id: str, client_id: str | None) -> list[FeedbackRecord]:
    doc = parse_json_object(body)
    items = doc.get("feedback") if "feedback" in doc else [doc]
    if not isinstance(items, list) or not items:
        raise bad_request("feedback must be a non-empty list of feedback items", "feedback")
    return [_item(item, f"feedback[{i}]", service_id, client_id) for i, item in enumerate(items)]


def store_feedback(store: Store, items: list[FeedbackRecord], settle: Callable[[], object] | None = None) -> int:
    """Check each item against its card as far as the store knows it (`check_issued`), then write the items. A card
    the store does not know yet may still be on its way from this process's journal (feedback can follow its card
    within milliseconds): `settle` lets the recorder write what it holds, and the store is asked again."""
    cards = [item.card_uuid for item in items]
    issued = store.cards_issued(cards)
    if settle is not None and len(issued) < len(set(cards)):
        settle()
        issued = store.cards_issued(cards)
    check_issued(items, issued)
    return store.write_feedback(items)


def check_issued(items: list[FeedbackRecord], issued: dict[str, CardIssued]) -> None:
    """Feedback must be about a card this service returned to this client (CDS Hooks 2.0 §Feedback: the client
    reports its users' interaction with cards it received), and an accepted suggestion must be one of that card's.

    - A card another service issued: 400. Filed under this service it would count in this service's monitoring
      while joined to the other's prediction.
    - A card issued to another client (the JWT issuer of the call that got it): 403. That client's users never saw
      it, and its own feedback on the card would then be dropped as a duplicate.
    - An accepted suggestion id that is none of the card's suggestions: 400 (AcceptedSuggestion.id is "the
      card.suggestion.uuid from the CDS Hooks response").
    """
    for i, item in enumerate(items):
        card = issued.get(item.card_uuid)
        if card is None:
            continue
        if card.service_id != item.service_id:
            raise bad_request(f"feedback[{i}].card {item.card_uuid} was issued by service '{card.service_id}', not "
                              f"'{item.service_id}': post its feedback to /cds-services/{card.service_id}/feedback",
                              f"feedback[{i}].card")
        if card.client_id is not None and item.client_id is not None and card.client_id != item.client_id:
            raise ApiError(403, f"feedback[{i}].card {item.card_uuid} was not returned to this client",
                           f"feedback[{i}].card", code="forbidden")
        for j, sug in enumerate(item.accepted_suggestions):
            if sug not in card.suggestions:
                raise bad_request(f"feedback[{i}].acceptedSuggestions[{j}].id {sug[:80]} is not a suggestion of "
                                  f"card {item.card_uuid}", f"feedback[{i}].acceptedSuggestions[{j}].id")


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
    if outcome == "accepted" and not accepted:
        # CDS Hooks 2.0 §Feedback: "Required for accepted outcomes"; a card as a whole is overridden or ignored
        raise bad_request(f"{where}.acceptedSuggestions is required for an accepted outcome: the suggestions the "
                          "user accepted", f"{where}.acceptedSuggestions")
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
            if (reason["system"], reason["code"]) not in OFFERED_REASONS:
                # §OverrideReason: the reason "selected by the end user ... from the list of reasons provided in
                # the Card": every card offers the same list
                raise bad_request(f"{where}.overrideReason.reason {str(reason['code'])[:80]} is not one of the "
                                  f"reasons the card offered ({', '.join(c for _, c in sorted(OFFERED_REASONS))})",
                                  f"{where}.overrideReason.reason")
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
    once their offset is applied (e.g. 9999-12-31T23:59:59-14:00), so the client gets a 400, never a 503. RFC 3339
    §5.6 allows a lower-case 't' and 'z' (FHIR's instant does not): they are read as 'T' and 'Z'."""
    if isinstance(value, str) and len(value) > 10 and value[10] == "t":
        value = f"{value[:10]}T{value[11:]}"
    if isinstance(value, str) and value.endswith("z"):
        value = value[:-1] + "Z"
    return parse_instant(value)
