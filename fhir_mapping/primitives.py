"""The one parsing layer for FHIR primitive values read from records and requests.

Records come from many systems and requests from anyone: a date may be out of any calendar's range once its offset
is applied (`9999-12-31T23:59:59-14:00`), a decimal may be a boolean, a string, NaN or 10**400, a code may be an
object, an `extension` may be a dict. Every function here takes any JSON value and returns either the parsed value or
None, meaning "this value is unusable". They never raise, so callers report the value as unusable (the feature is
missing, the field gets a 400) instead of failing the request.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

# Years a usable date may fall in (UTC). One year of margin at each end of Python's calendar keeps every later step
# (conversion to any local zone, look-back arithmetic, comparisons) inside datetime's range.
MIN_YEAR, MAX_YEAR = 2, 9998
_MAX_TEXT = 64  # no FHIR date/dateTime/instant is longer (a 9-digit fraction and an offset make 35 characters)

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$", re.ASCII)
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$", re.ASCII)
_ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt].*(?:[Zz]|[+-]\d{2}:?\d{2})$", re.ASCII)


def _in_range(value: datetime) -> datetime | None:
    return value if MIN_YEAR <= value.year <= MAX_YEAR else None


def parse_datetime(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware UTC datetime; None when it is not one or cannot be placed.

    Partial dates (YYYY, YYYY-MM) are placed at the start of the period they name; a time without a zone is read as
    UTC; fractional seconds beyond microseconds are dropped. Dates outside years 2..9998 (UTC) are unusable.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        return None
    try:
        m = _PARTIAL.match(value)
        if m:
            year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
            return _in_range(datetime(year, month, day, tzinfo=UTC))
        m = _DATETIME.match(value)
        if not m:
            return _lenient(value)
        year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
        second = int(m.group(6) or 0)
        micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
        zone = m.group(8)
        if second == 60:  # a leap second: the last representable instant of that minute
            second, micro = 59, 999_999
        parsed = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        if zone and zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 14 or minutes > 59 or (hours == 14 and minutes):
                return None  # FHIR offsets run from -14:00 to +14:00
            offset = timedelta(hours=hours, minutes=minutes)
            parsed = parsed - offset if zone[0] == "+" else parsed + offset
        return _in_range(parsed)
    except (ValueError, OverflowError, TypeError):
        return None


def _lenient(value: str) -> datetime | None:
    """Shapes real systems send that are not strict FHIR (a space for T, +0000): as ISO 8601 allows, else None."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        offset = parsed.utcoffset()
        if offset is not None and abs(offset) > timedelta(hours=14):
            return None
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            return None
        return _in_range(parsed.astimezone(UTC))
    except (ValueError, OverflowError, TypeError):
        return None


def parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 / FHIR instant (a full date, a time and a zone) as an aware UTC datetime, else None."""
    if not isinstance(value, str) or len(value) > _MAX_TEXT or not _ZONED.match(value):
        return None
    return parse_datetime(value)


def parse_date(value: Any) -> date | None:
    """A FHIR date (possibly partial) or the date part of a dateTime, in UTC; None when unusable."""
    parsed = parse_datetime(value)
    return parsed.date() if parsed is not None else None


def parse_decimal(value: Any) -> float | None:
    """A JSON number as a finite float; None for booleans, strings, NaN, infinities and numbers too large."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_code(value: Any, max_length: int = 256) -> str | None:
    """A FHIR code/string token: a non-blank string of sensible length, else None."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        return None
    return value


def as_list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (absent, an object where a list belongs) as an empty list."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object as a dict; anything else as an empty dict."""
    return value if isinstance(value, dict) else {}
