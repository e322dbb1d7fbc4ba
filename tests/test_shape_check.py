"""Card suggestions are validated once per shape: the verdict must always equal full R4B validation of the resource.

The reading to compare against is the plain one: `Model.model_validate(resource)` on the resource itself. The
resources are the ones the shipped models' card snapshots suggest, plus broken copies of each.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ValidationError

from cards import shape_check
from cards.shape_check import validate_shape

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
MODELS: dict[str, type[BaseModel]] = {"RiskAssessment": RiskAssessment, "Observation": Observation,
                                      "ServiceRequest": ServiceRequest}


def suggested_resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("resourceType") in MODELS:
                found.append(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in sorted(SNAPSHOTS.glob("*.json")):
        walk(json.loads(path.read_text()))
    return found


RESOURCES = suggested_resources()


def broken_copies(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each copy breaks one thing that validation must catch (or, for the last ones, changes a leaf validly)."""
    def changed(how: str, change: Any) -> tuple[str, dict[str, Any]]:
        doc = copy.deepcopy(resource)
        change(doc)
        return how, doc

    yield changed("empty subject reference", lambda d: d["subject"].update(reference=""))
    yield changed("status not in the code format", lambda d: d.update(status=" final"))
    yield changed("unknown element", lambda d: d.update(colour="blue"))
    yield changed("subject is a string", lambda d: d.update(subject="Patient/1"))
    for key in ("occurrenceDateTime", "effectiveDateTime"):
        if key in resource:
            yield changed(f"{key} without a zone", lambda d, k=key: d.update({k: "2026-11-24T12:00:00"}))
            yield changed(f"{key} month 13", lambda d, k=key: d.update({k: "2026-13-24T12:00:00Z"}))
            yield changed(f"{key} space separator", lambda d, k=key: d.update({k: "2026-11-24 12:00:00Z"}))
            yield changed(f"{key} with fractions and an offset",
                          lambda d, k=key: d.update({k: "2026-11-24T12:00:00.250+05:30"}))
            for offset in ("+14:00", "+15:00", "+14:30", "-23:59"):  # R4 allows -13:59 to +14:00; Python, ±23:59
                yield changed(f"{key} offset {offset}",
                              lambda d, k=key, o=offset: d.update({k: f"2026-11-24T12:00:00{o}"}))
            yield changed(f"{key} on 30 February", lambda d, k=key: d.update({k: "2026-02-30T12:00:00Z"}))
            yield changed(f"{key} as a number", lambda d, k=key: d.update({k: 1e20}))
    for number in ("nan", "inf", "-inf"):
        if resource["resourceType"] == "RiskAssessment":
            yield changed(f"probability {number}",
                          lambda d, n=number: d["prediction"][0].update(probabilityDecimal=float(n)))
        if resource["resourceType"] == "Observation":
            yield changed(f"value {number}", lambda d, n=number: d["valueQuantity"].update(value=float(n)))
    if resource["resourceType"] == "RiskAssessment":
        yield changed("probability as text", lambda d: d["prediction"][0].update(probabilityDecimal="high"))
        yield changed("probability null", lambda d: d["prediction"][0].update(probabilityDecimal=None))
        yield changed("horizon end not a date",
                      lambda d: d["prediction"][0].setdefault("whenPeriod", {}).update(end="in ten years"))
        yield changed("empty basis reference", lambda d: d.setdefault("basis", []).append({"reference": ""}))
        for blank in ("\x0b", "\u00a0", " "):  # R4's string pattern refuses the first two, not a space
            yield changed(f"basis reference {blank!r}",
                          lambda d, b=blank: d.setdefault("basis", []).append({"reference": b}))
        yield changed("a number under note text", lambda d: d.update(note=[{"text": 0.25}]))
        yield changed("another patient", lambda d: d["subject"].update(reference="Patient/someone-else"))


def full_verdict(model: type[BaseModel], resource: dict[str, Any]) -> bool:
    try:
        model.model_validate(resource)
    except ValidationError:
        return False
    return True


def shape_verdict(model: type[BaseModel], resource: dict[str, Any]) -> bool:
    try:
        validate_shape(model, resource)
    except ValidationError:
        return False
    return True


def test_the_snapshots_suggest_every_kind_of_resource() -> None:
    assert {r["resourceType"] for r in RESOURCES} == set(MODELS)


@pytest.mark.parametrize("order", ["valid first", "broken first"])
def test_the_shape_verdict_equals_full_validation_for_every_suggested_resource_and_broken_copy(order: str) -> None:
    shape_check._valid_shapes.clear()
    cases = [("as suggested", r) for r in RESOURCES] + [c for r in RESOURCES for c in broken_copies(r)]
    if order == "broken first":
        cases.reverse()
    for how, resource in cases * 2:  # the second round answers from memory
        model = MODELS[resource["resourceType"]]
        assert shape_verdict(model, resource) == full_verdict(model, resource), (resource["resourceType"], how)
    assert any(not full_verdict(MODELS[r["resourceType"]], r) for _, r in cases)  # the copies do break things


def test_nan_is_refused_even_after_the_same_shape_with_null_was_valid() -> None:
    shape_check._valid_shapes.clear()
    resource = next(r for r in RESOURCES if r["resourceType"] == "RiskAssessment")
    with_null = copy.deepcopy(resource)
    with_null["prediction"][0]["probabilityDecimal"] = None
    validate_shape(RiskAssessment, with_null)  # absent-as-null is valid to pydantic
    with_nan = copy.deepcopy(resource)
    with_nan["prediction"][0]["probabilityDecimal"] = math.nan
    with pytest.raises(ValidationError):
        validate_shape(RiskAssessment, with_nan)


def test_a_shape_is_validated_once_and_per_call_leaves_do_not_make_a_new_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    shape_check._valid_shapes.clear()
    calls: list[str] = []
    real = RiskAssessment.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: type[BaseModel], obj: Any, *args: Any, **kwargs: Any) -> BaseModel:
        calls.append(cls.__name__)
        return real(cls, obj, *args, **kwargs)

    monkeypatch.setattr(RiskAssessment, "model_validate", classmethod(counting))
    resource = next(r for r in RESOURCES if r["resourceType"] == "RiskAssessment" and r.get("basis"))
    validate_shape(RiskAssessment, resource)
    assert calls == ["RiskAssessment"]

    other_call = copy.deepcopy(resource)  # another patient, another time, another risk, other source records
    other_call["subject"]["reference"] = "Patient/another"
    other_call["occurrenceDateTime"] = "2027-02-03T04:05:06Z"
    other_call["prediction"][0]["probabilityDecimal"] = 0.031415
    for i, entry in enumerate(other_call["basis"]):
        entry["reference"] = f"Observation/other-{i}"
    validate_shape(RiskAssessment, other_call)
    assert calls == ["RiskAssessment"]

    new_shape = copy.deepcopy(resource)
    new_shape["prediction"][0]["outcome"]["text"] = "another outcome"
    validate_shape(RiskAssessment, new_shape)
    assert calls == ["RiskAssessment"] * 2


def test_an_invalid_shape_is_not_remembered() -> None:
    shape_check._valid_shapes.clear()
    resource = copy.deepcopy(next(r for r in RESOURCES if r["resourceType"] == "ServiceRequest"))
    resource["intent"] = "not  a code"  # two spaces: not the R4 code format
    for _ in range(2):
        with pytest.raises(ValidationError, match="intent"):
            validate_shape(ServiceRequest, resource)
    assert not shape_check._valid_shapes


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    shape_check._valid_shapes.clear()
    monkeypatch.setattr(shape_check, "SHAPE_MEMO_SIZE", 3)
    resource = next(r for r in RESOURCES if r["resourceType"] == "ServiceRequest")
    for i in range(10):
        doc = copy.deepcopy(resource)
        doc["reasonCode"] = [{"text": f"reason {i}"}]
        validate_shape(ServiceRequest, doc)
        assert len(shape_check._valid_shapes) <= 3


def test_a_value_that_is_not_plain_json_is_validated_in_full_even_after_its_string_form_was_valid() -> None:
    import uuid

    shape_check._valid_shapes.clear()
    resource = next(r for r in RESOURCES if r["resourceType"] == "ServiceRequest")
    ident = uuid.uuid4()
    as_text = copy.deepcopy(resource)
    as_text["id"] = str(ident)
    validate_shape(ServiceRequest, as_text)  # remembered valid
    as_object = copy.deepcopy(resource)
    as_object["id"] = ident  # orjson would write it as the same text
    with pytest.raises(ValidationError):
        validate_shape(ServiceRequest, as_object)
