"""FHIR date/dateTime/instant parsing that tolerates real data (year-only, year-month, with or without zone).

Partial dates are placed at the start of the period they name; a time without a zone is read as UTC. Unparseable
values give None so the caller can report the source as unusable rather than crash.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TypeVar

from fhir_mapping.primitives import parse_date, parse_datetime

_D = TypeVar("_D", bound=date)


def parse_fhir_datetime(value: object) -> datetime | None:
    """Parse a FHIR date, dateTime or instant into an aware UTC datetime; None if it is not one or is unusable
    (see fhir_mapping.primitives: out-of-range dates, impossible offsets and non-strings never raise)."""
    return parse_datetime(value)


def parse_fhir_date(value: object) -> date | None:
    """Parse a FHIR date (possibly partial) into a date; None if it is not one."""
    return parse_date(value)


def age_in_years(birth: date, at: date) -> int:
    """Completed years between birth and at."""
    years = at.year - birth.year
    if (at.month, at.day) < (birth.month, birth.day):
        years -= 1
    return years


def period_after(first: _D, written: str) -> _D:
    """The first moment after the year, month or day a FHIR date names (`first` is its start; years stop at 9998)."""
    if len(written) == 4:
        return first.replace(year=first.year + 1)
    if len(written) == 7:
        return first.replace(year=first.year + 1, month=1) if first.month == 12 else \
            first.replace(month=first.month + 1)
    return first + timedelta(days=1)


def last_day_of(written: str, first: date) -> date:
    """The last day a partial FHIR date (a year, or a year and month) can mean; `first` is its first day."""
    return period_after(first, written) - timedelta(days=1)


def ages_from_birth_date(written: str, at: date) -> tuple[int, int] | None:
    """(youngest, oldest) completed years on `at` for a birth date as written: the same number twice for a full date,
    two when a year or a month alone leaves the day open and the age depends on it; None if it is not a date."""
    birth = parse_date(written)
    if birth is None:
        return None
    oldest = age_in_years(birth, at)
    return age_in_years(min(last_day_of(written, birth), at), at), oldest
