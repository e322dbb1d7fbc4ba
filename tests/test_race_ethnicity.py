"""US Core race and ethnicity extensions: detailed CDC Race & Ethnicity codes count as their OMB category."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.cohort import cohort_of
from fhir_mapping.race_ethnicity import omb_rollup, recorded_categories

CDC = "urn:oid:2.16.840.1.113883.6.238"
ETHNICITY_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
TABLE = Path(__file__).resolve().parent.parent / "fhir_mapping" / "valuesets" / "cdc-race-ethnicity-omb.json"
OMB_RACE = {"1002-5", "2028-9", "2054-5", "2076-8", "2106-3"}
OMB_ETHNICITY = {"2135-2", "2186-5"}


def patient_with(url: str, *subs: tuple[str, str, str], text: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": kind, "valueCoding": {"system": CDC, "code": code, "display": display}}
                                   for kind, code, display in subs]
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-06-01",
            "extension": [{"url": url, "extension": [*parts, {"url": "text", "valueString": text}]}]}


# Placements printed in the CDC Race & Ethnicity Code Set 1.0 hierarchy (PHIN VADS 2.16.840.1.113883.6.238)
@pytest.mark.parametrize(("code", "category"), [
    ("2058-6", "2054-5"),  # African American → Black or African American
    ("2060-2", "2054-5"),  # African
    ("2034-7", "2028-9"),  # Chinese → Asian
    ("2039-6", "2028-9"),  # Japanese
    ("1004-1", "1002-5"),  # American Indian → American Indian or Alaska Native
    ("1735-0", "1002-5"),  # Alaska Native
    ("2500-7", "2076-8"),  # Other Pacific Islander → Native Hawaiian or Other Pacific Islander
    ("2108-9", "2106-3"),  # European → White
    ("2118-8", "2106-3"),  # Middle Eastern or North African
    ("2148-5", "2135-2"),  # Mexican → Hispanic or Latino
])
def test_rollup_places_detailed_codes_under_their_omb_category(code: str, category: str) -> None:
    entry = omb_rollup().lookup(CDC, code)
    assert entry is not None and entry["class"] == category


def test_rollup_file_is_data_with_its_source() -> None:
    doc = json.loads(TABLE.read_text(encoding="utf-8"))
    assert doc["source"] and doc["retrieved"] and doc["license_note"]
    classes = {c["class"] for c in doc["codes"]}
    assert classes == OMB_RACE | OMB_ETHNICITY  # every entry sits under one OMB category, and nothing else
    assert all(c["system"] == CDC for c in doc["codes"])
    for abstract in ("1000-9", "2133-7", "2131-1"):  # Race, Ethnicity roots; Other Race is under no OMB category
        assert omb_rollup().lookup(CDC, abstract) is None


def test_detailed_ethnicity_reads_as_hispanic_or_latino() -> None:
    found = recorded_categories(patient_with(ETHNICITY_URL, ("detailed", "2148-5", "Mexican"), text="Mexican"),
                                ETHNICITY_URL)
    assert f"{CDC}|2135-2" in found.codes and found.categories == ("Hispanic or Latino",)


@pytest.mark.parametrize(("subs", "label"), [
    ((("detailed", "2058-6", "African American"),), "Black or African American"),
    ((("detailed", "2034-7", "Chinese"), ("detailed", "2039-6", "Japanese")), "Asian"),
    ((("detailed", "2058-6", "African American"), ("detailed", "2108-9", "European")), "multiple"),
    ((("ombCategory", "2106-3", "White"),), "White"),
])
def test_fairness_cohort_counts_detailed_codes_under_their_category(subs: Any, label: str) -> None:
    cohort = cohort_of(patient_with(F.RACE_URL, *subs, text="as recorded"), datetime(2024, 1, 1, tzinfo=UTC))
    assert cohort["race"] == label
