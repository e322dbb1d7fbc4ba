"""FHIR date/dateTime/instant parsing that tolerates real data (year-only, year-month, with or without zone).

Partial dates are placed at the start of the period they name; a time without a zone is read as UTC. Unparseable
values give None so the caller can report the source as unusable rather than crash.
"""

from __future__ import annotations

from datetime import date, datetime

from fhir_mapping.primitives import parse_date, parse_datetime


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
