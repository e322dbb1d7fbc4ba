"""Move a patient record in time: every date in a FHIR Bundle shifted by the same whole number of days.

Saved records (Synthea, a de-identified extract) are dated when they were made, so a model's look-back windows soon
exclude all their data. `shift_to_today` moves every date, dateTime and instant by one whole number of days so that
the record's newest clinical entry is dated today (yesterday when its time of day is still to come) — the preview
page and `cds-onnx invoke --shift-to-today` use it.

- The same number of days for every value, `birthDate` and `deceasedDateTime` included, so every interval — and the
  patient's age at every entry, and today relative to the newest entry — stays as it was.
- Only the calendar date moves: a time of day and its time zone offset are kept exactly as written
  ("2024-07-13T13:09:47.463761+00:00" -> "2025-...T13:09:47.463761+00:00"), even across a daylight-saving change.
- Partial dates keep their precision and move to the year (or month) their middle day lands in: "2019" shifted by
  +100 days stays "2019", by +200 days becomes "2020"; "2019-04" by +20 days becomes "2019-05" (15 April + 20 days).
  Only elements that are dates by name (`birthDate`, `...Date`, `...DateTime`, `start`, `issued`, ...) are read as
  partial dates: a bare "2019" elsewhere may be a code or an identifier and is left alone. A full date
  (YYYY-MM-DD[Thh:mm...]) is shifted wherever it appears, except in ids, references, codes, URLs and text.
- The newest clinical entry is the latest date an entry is about (an observation's effective time, a condition's
  onset or recorded date, an order's authoredOn, an encounter's period, a procedure's performed time, ...); plans
  (a care plan's end, a goal's due date), billing resources and the Patient itself do not count. A partial date counts
  as the last day it covers, so nothing moves past today.
- Nothing moves past the moment of the call either: when the newest timed entry (an observation at 23:50, say) would
  land later today than now, the record moves one day less, so that entry is dated yesterday. A result dated in the
  future is passed over by every model, so a record moved just after midnight would otherwise lose its newest vitals.

The input is never modified; the shift is computed on the date as written, so "today" is a calendar date (UTC
unless given) and the time-of-day check needs the moment of the call (`now`).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["newest_clinical_date", "newest_clinical_instant", "shift_date", "shift_days", "shift_to_today"]

_FULL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?$")
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")

# elements whose strings are never dates even when they look like one
_NOT_DATES = {"id", "reference", "fullUrl", "code", "system", "url", "version", "display", "text", "div",
              "valueString", "valueCode", "valueId", "valueUri", "valueUrl", "valueCanonical", "valueMarkdown"}
# elements that are dates by name (besides names ending in Date, DateTime or Instant): partial dates are read here
_DATE_NAMES = {"start", "end", "issued", "authoredOn", "recorded", "created", "lastUpdated", "timestamp", "date",
               "event", "when", "sent", "received", "started", "dateAsserted", "dateWritten", "whenHandedOver",
               "whenPrepared", "lastOccurrence", "onset", "asserted", "occurrence", "expirationDate"}
_DATE_SUFFIXES = ("Date", "DateTime", "Instant")

# when an entry happened: a resource's own (top-level) elements, and periods whose start/end count
_ANCHORS = {"effectiveDateTime", "effectiveInstant", "issued", "authoredOn", "onsetDateTime", "abatementDateTime",
            "recordedDate", "performedDateTime", "occurrenceDateTime", "started", "dateAsserted", "whenHandedOver",
            "whenPrepared"}
_ANCHOR_PERIODS = {"effectivePeriod", "performedPeriod", "occurrencePeriod"}
_NOT_CLINICAL = {"Patient", "Claim", "ExplanationOfBenefit", "Coverage", "Provenance", "AuditEvent", "Practitioner",
                 "PractitionerRole", "Organization", "Location", "Device", "Account", "Invoice", "Goal", "CarePlan"}


def _is_date_name(key: str | None) -> bool:
    return key is not None and (key in _DATE_NAMES or key.endswith(_DATE_SUFFIXES))


def shift_date(value: str, days: int, *, partial: bool = True) -> str:
    """One FHIR date/dateTime/instant moved by `days` days; anything else (or an impossible date) unchanged.

    `partial=False` leaves "YYYY" and "YYYY-MM" alone (for elements that are not known to be dates).
    """
    try:
        m = _FULL.match(value)
        if m:
            moved = date(int(m[1]), int(m[2]), int(m[3])) + timedelta(days=days)
            return moved.isoformat() + (m[4] or "")
        m = _PARTIAL.match(value) if partial else None
        if m:
            year = int(m[1])
            if m[2] is None:  # the middle day of the year (2 July), rounded to the year it lands in
                return f"{(date(year, 7, 2) + timedelta(days=days)).year:04d}"
            moved = date(year, int(m[2]), 15) + timedelta(days=days)
            return f"{moved.year:04d}-{moved.month:02d}"
    except (ValueError, OverflowError):
        pass  # 2019-02-30, month 13, or beyond year 1..9999: not a date this can move
    return value


def _last_day(value: str) -> date | None:
    """The last calendar day a date value covers, as written (the time and offset do not change the day)."""
    try:
        m = _FULL.match(value)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
        m = _PARTIAL.match(value)
        if m:
            year = int(m[1])
            month = int(m[2]) if m[2] else 12
            return date(year, month, calendar.monthrange(year, month)[1])
    except ValueError:
        pass
    return None


def _resources(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict):
        return []
    if bundle.get("resourceType") != "Bundle":
        return [bundle]
    out = []
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            out.extend(_resources(res) if res.get("resourceType") == "Bundle" else [res])
    return out


def _anchor_values(bundle: Any) -> list[str]:
    """The date strings that say when each clinical entry happened (see the module doc)."""
    found: list[str] = []
    for res in _resources(bundle):
        kind = res.get("resourceType")
        if kind in _NOT_CLINICAL:
            continue
        for key, value in res.items():
            if key in _ANCHORS:
                found.append(value)
            elif (key in _ANCHOR_PERIODS or (key == "period" and kind == "Encounter")) and isinstance(value, dict):
                found += [value.get("start"), value.get("end")]
    return [v for v in found if isinstance(v, str)]


def newest_clinical_date(bundle: Any) -> date | None:
    """The date of the newest clinical entry in a Bundle (or one resource), or None when it has none."""
    return max((day for v in _anchor_values(bundle) if (day := _last_day(v)) is not None), default=None)


def _instant(value: str) -> datetime | None:
    """A dateTime with a time of day as an aware moment (no offset read as UTC); None for a date without a time."""
    m = _FULL.match(value)
    if not m or not m[4]:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def newest_clinical_instant(bundle: Any) -> datetime | None:
    """The latest moment a timed clinical entry gives (entries dated without a time of day are not moments)."""
    return max((t for v in _anchor_values(bundle) if (t := _instant(v)) is not None), default=None)


def shift_days(bundle: Any, days: int) -> Any:
    """A copy of `bundle` with every date, dateTime and instant moved by `days` whole days (see the module doc)."""

    def walk(node: Any, key: str | None, in_identifier: bool) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k, in_identifier or k == "identifier") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key, in_identifier) for v in node]
        if isinstance(node, str) and key not in _NOT_DATES and not (in_identifier and key == "value"):
            return shift_date(node, days, partial=_is_date_name(key))
        return node

    return walk(bundle, None, False)


def shift_to_today(bundle: Any, today: date | None = None, *, now: datetime | None = None) -> tuple[Any, int]:
    """A copy of `bundle` moved so that its newest clinical entry is dated `today`, and the number of days it moved
    (0, and an unchanged copy, when the record has no dated clinical entry).

    With neither argument, `now` is the moment of the call and `today` its date in UTC. Given `now` (aware), no timed
    entry lands after it: the record moves one day less when one would. Given only `today`, times are not checked.
    """
    if today is None and now is None:
        now = datetime.now(UTC)
    if today is None and now is not None:
        today = now.astimezone(UTC).date()
    assert today is not None
    newest = newest_clinical_date(bundle)
    if newest is None:
        return shift_days(bundle, 0), 0
    days = (today - newest).days
    latest = newest_clinical_instant(bundle) if now is not None else None
    if latest is not None and now is not None and latest + timedelta(days=days) > now:
        days -= 1  # the newest timed entry would be later today than now: it lands yesterday instead
    return shift_days(bundle, days), days
