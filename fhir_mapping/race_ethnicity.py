"""Reading the US Core race and ethnicity extensions, with detailed CDC codes rolled up to their OMB category.

A `detailed` sub-extension carries one of the ~950 CDC Race & Ethnicity codes (2058-6 African American); each sits
under exactly one OMB category (2054-5 Black or African American) in that code system's hierarchy, shipped as data in
valuesets/cdc-race-ethnicity-omb.json. Feature specs name OMB categories, so a record that sends only detailed codes
must be read through the hierarchy, or an African American patient is taken as "race not recorded".

When the extension has `ombCategory` codings, they decide: a detailed code under a category that is not among them
is not used, and is reported as a conflict (the feature note names it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from fhir_mapping.primitives import as_dict, as_list
from fhir_mapping.valuesets import ValueSet, parse_valueset

ROLLUP_VALUESET = "cdc-race-ethnicity-omb"


@dataclass(frozen=True)
class RecordedCategories:
    """What a patient's US Core race (or ethnicity) extension records, ready to match OMB-category answers."""

    # 'system|code' -> words for the card: the OMB categories that count (recorded, or rolled up from detailed codes
    # when none is recorded) and the detailed codes consistent with them, in record order
    codes: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()  # the OMB categories that count, by their CDC name ("Black or African American")
    said: tuple[str, ...] = ()  # every coded race/ethnicity on record, in words
    text: str | None = None  # the `text` sub-extension (read only to say what was recorded when nothing is coded)
    conflicts: tuple[str, ...] = ()  # detailed codes under an OMB category the recorded ombCategory codes omit

    def described(self) -> str:
        """What was recorded, in words: the coded values, else the free text, else 'not recorded'."""
        if self.said:
            return ", ".join(self.said)
        if self.text:
            return f"as text '{self.text}', no race or ethnicity code"
        return "not recorded"


@lru_cache(maxsize=1)
def omb_rollup() -> ValueSet:
    """The shipped CDC code → OMB category table (entries' `class` is the OMB category code)."""
    path = resources.files("fhir_mapping") / "valuesets" / f"{ROLLUP_VALUESET}.json"
    return parse_valueset(json.loads(path.read_text(encoding="utf-8")), f"valuesets/{ROLLUP_VALUESET}.json")


# HL7's v3 Race and Ethnicity code systems hold the CDC Race & Ethnicity codes (2054-5 is Black or African American
# in both); US Core binds the CDC system by its OID, and a coding sent under the v3 URL (or its OID, or the older
# hl7.org/fhir/v3 URL) is read as the same code
CDC_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"
_SAME_CODES = {"http://terminology.hl7.org/CodeSystem/v3-Race", "http://hl7.org/fhir/v3/Race",
               "urn:oid:2.16.840.1.113883.5.104", "http://terminology.hl7.org/CodeSystem/v3-Ethnicity",
               "http://hl7.org/fhir/v3/Ethnicity", "urn:oid:2.16.840.1.113883.5.50"}


def _coding(sub: dict[str, Any]) -> tuple[str, str, str] | None:
    coding = as_dict(sub.get("valueCoding"))
    system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    if not isinstance(system, str) or not isinstance(code, str) or not system or not code:
        return None
    system = CDC_RACE_ETHNICITY if system in _SAME_CODES else system
    return system, code, display if isinstance(display, str) and display else code


def recorded_categories(patient: dict[str, Any], url: str) -> RecordedCategories:
    """Read every extension of `url` (us-core-race or us-core-ethnicity) on the patient."""
    omb_codings: list[tuple[str, str, str]] = []
    detailed: list[tuple[str, str, str]] = []
    texts: list[str] = []
    for ext in as_list(patient.get("extension")):
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        for sub in as_list(ext.get("extension")):
            if not isinstance(sub, dict):
                continue
            kind = sub.get("url")
            if kind == "text" and isinstance(sub.get("valueString"), str) and sub["valueString"].strip():
                texts.append(sub["valueString"].strip())
            elif kind in ("ombCategory", "detailed") and (coding := _coding(sub)) is not None:
                (omb_codings if kind == "ombCategory" else detailed).append(coding)
    table = omb_rollup()
    omb: dict[str, str] = {}
    categories: list[str] = []
    for system, code, display in omb_codings:  # a detailed code sent as ombCategory still names its category
        entry = table.lookup(system, code)
        omb.setdefault(f"{system}|{entry['class'] if entry else code}", display)
        categories.append(str(entry["class_display"]) if entry else display)
    codes = dict(omb)
    said = list(omb.values())
    conflicts: list[str] = []
    for system, code, display in detailed:
        token = f"{system}|{code}"
        entry = table.lookup(system, code)
        if entry is None:  # not a CDC code under an OMB category: reported as recorded, never taken for a category
            said.append(display)
            codes.setdefault(token, display)
            continue
        parent, category = f"{system}|{entry['class']}", str(entry["class_display"])
        said.append(display if entry["class"] == code else f"{display} ({category})")
        if omb and parent not in omb:
            conflicts.append(f"{display} ({code}) is under {category}, which the recorded OMB "
                             f"categor{'ies' if len(omb) > 1 else 'y'} ({', '.join(omb.values())}) "
                             f"{'do' if len(omb) > 1 else 'does'} not include")
            continue
        codes.setdefault(token, display)
        if not omb:  # no OMB category recorded: the detailed code stands for its own
            codes.setdefault(parent, f"{display} (under {category})")
            categories.append(category)
    return RecordedCategories(codes=codes, categories=tuple(dict.fromkeys(categories)),
                              said=tuple(dict.fromkeys(said)), text=texts[0] if texts else None,
                              conflicts=tuple(conflicts))
