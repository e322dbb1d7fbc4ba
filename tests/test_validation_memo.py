"""Strict R4 verdicts remembered across requests by content: the same answer as validating afresh, never a stale one.

The reference is `validate_resource` itself run on every resource (the validation the memo saves), over every
resource of the committed Synthea records and hand-broken copies of them.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

import fhir_mapping.validation as validation
from fhir_mapping.validation import ValidationCache, remembered_problem, validate_resource

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea"
TYPES = ("Patient", "Observation", "Condition", "MedicationRequest", "Procedure", "Encounter")


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_verdicts", {})


def resources(per_type: int = 12) -> list[dict[str, Any]]:
    """Up to `per_type` resources of each type from each record (a sample keeps the test short)."""
    out: list[dict[str, Any]] = []
    for path in sorted(SYNTHEA.glob("patient-*.json")):
        bundle = json.loads(path.read_text())
        for rtype in TYPES:
            out.extend([e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype][:per_type])
    return out


def broken(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of a resource made invalid in the elements the mapper reads."""
    bad_status = copy.deepcopy(resource)
    bad_status["status"] = "not-a-status"
    bad_date = copy.deepcopy(resource)
    for key in ("effectiveDateTime", "onsetDateTime", "authoredOn", "birthDate", "performedDateTime"):
        if key in bad_date:
            bad_date[key] = "2019-13-45"
    no_subject = {k: v for k, v in resource.items() if k != "subject"}
    return [bad_status, bad_date, no_subject]


def test_remembered_verdicts_equal_fresh_ones() -> None:
    sample = resources()
    assert len(sample) > 200
    cases = [r for resource in sample for r in [resource, *broken(resource)]]
    fresh = [validate_resource(r) for r in cases]
    assert any(v is None for v in fresh) and any(v is not None for v in fresh)
    assert [remembered_problem(r) for r in cases] == fresh  # first sight: validated
    assert [remembered_problem(copy.deepcopy(r)) for r in cases] == fresh  # again, from memory, on new objects


def test_the_same_content_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = validation.validate_resource
    monkeypatch.setattr(validation, "validate_resource", lambda r: (calls.append(r["id"]), real(r))[1])
    resource = next(r for r in resources() if r["resourceType"] == "Observation")
    for _ in range(3):  # three requests, each its own parse of the same resource
        assert ValidationCache().problem(copy.deepcopy(resource)) is None
    assert calls == [resource["id"]]


def test_changed_content_gets_its_own_verdict() -> None:
    resource = next(r for r in resources() if r["resourceType"] == "Condition")
    assert remembered_problem(resource) is None
    changed = copy.deepcopy(resource)
    changed["clinicalStatus"]["coding"][0]["code"] = 17  # same id, same shape, not a code any more
    assert remembered_problem(changed) == validate_resource(changed) is not None
    reordered = dict(reversed(list(resource.items())))  # key order is not content
    assert remembered_problem(reordered) is None


def test_values_the_key_could_blur_are_validated_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = validation.validate_resource

    def counting(r: dict[str, Any]) -> str | None:
        nonlocal calls
        calls += 1
        return real(r)

    monkeypatch.setattr(validation, "validate_resource", counting)
    observation = next(r for r in resources() if r["resourceType"] == "Observation" and "valueQuantity" in r)
    nan = copy.deepcopy(observation)
    nan["valueQuantity"]["value"] = math.nan
    null = copy.deepcopy(observation)
    null["valueQuantity"]["value"] = None
    huge = copy.deepcopy(observation)
    huge["valueQuantity"]["value"] = 2 ** 70
    for resource in (nan, null, huge, nan, null, huge):
        assert remembered_problem(resource) == real(resource)
    assert calls == 6 and validation._verdicts == {}


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "VERDICT_MEMO_SIZE", 10)
    for resource in resources()[:40]:
        remembered_problem(resource)
        assert len(validation._verdicts) <= 10
