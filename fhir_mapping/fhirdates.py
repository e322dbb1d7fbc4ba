"""FHIR date/dateTime/instant parsing that tolerates real data (year-only, year-month, with or without zone).

Partial dates are placed at the start of the period they name; a time without a zone is read as UTC. Unparseable
values give None so the caller can report the source as unusable rather than crash.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_fhir_datetime(value: object) -> datetime | None:
    """Parse a FHIR date, dateTime or instant into an aware UTC datetime; None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    m = _PARTIAL.match(value)
    try:
        if m:
            year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
            return datetime(year, month, day, tzinfo=UTC)
        text = value.replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_fhir_date(value: object) -> date | None:
    """Parse a FHIR date (possibly partial) into a date; None if it is not one."""
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed else None


def age_in_years(birth: date, at: date) -> int:
    """Completed years between birth and at."""
    years = at.year - birth.year
    if (at.month, at.day) < (birth.month, birth.day):
        years -= 1
    return years
