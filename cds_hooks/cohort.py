"""Cohort labels recorded with each prediction so monitoring can audit fairness by sex, age band and race.

They are coarse group labels (e.g. "female", "50-59", "Black or African American"), never identifiers. Race and
ethnicity are OMB categories: a record that sends only detailed CDC codes is labelled with their categories.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.fhirdates import ages_from_birth_date
from fhir_mapping.primitives import as_dict, as_list, parse_code
from fhir_mapping.race_ethnicity import recorded_categories

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


def cohort_of(patient: dict[str, Any] | None, at: datetime) -> dict[str, str]:
    if not patient or not isinstance(patient, dict):
        return {}
    cohort: dict[str, str] = {}
    gender = patient.get("gender")
    cohort["sex"] = gender if gender in ("female", "male", "other") else "unknown"
    written = patient.get("birthDate")
    ages = ages_from_birth_date(written, at.date()) if isinstance(written, str) else None
    # a birth date written as a year or month alone may give two ages: a band only when both fall in it
    bands = {_band(age) for age in ages} if ages is not None else {"unknown"}
    cohort["age_band"] = bands.pop() if len(bands) == 1 else "unknown"
    cohort["race"] = _omb(patient, US_CORE_RACE)
    cohort["ethnicity"] = _omb(patient, US_CORE_ETHNICITY)
    return cohort


def _band(age: int) -> str:
    low = max(0, (age // 10) * 10)
    return f"{low}-{low + 9}" if age < 80 else "80+"


def _omb(patient: dict[str, Any], url: str) -> str:
    labels = []
    for ext in as_list(patient.get("extension")):  # an extension that is not a list is unusable, not an error
        if isinstance(ext, dict) and ext.get("url") == url:
            for sub in as_list(ext.get("extension")):
                if isinstance(sub, dict) and sub.get("url") == "ombCategory":
                    display = parse_code(as_dict(sub.get("valueCoding")).get("display"))
                    if display is not None:
                        labels.append(display)
    if not labels:  # only detailed codes (2058-6 African American): each counts under its OMB category
        labels = list(recorded_categories(patient, url).categories)
    if not labels:
        return "not recorded"
    return labels[0] if len(labels) == 1 else "multiple"
