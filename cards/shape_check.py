"""Strict R4 validation of the resources cards suggest, paid once per shape instead of once per call.

A suggested RiskAssessment, Observation or ServiceRequest differs from one call to the next only in a few leaves: the
references (patient, encounter, the records it was computed from), the time it was made, and the numbers. Everything
else comes from the model's manifest. Full pydantic validation of such a resource costs 0.1–0.35 ms, a noticeable
share of a whole call, for an answer that is the same every time.

So a resource is validated as its *shape*: a copy in which each of those leaves is replaced by a stand-in that is
valid exactly where the leaf is, and the shape's verdict is remembered. The stand-ins keep soundness one way — a
valid shape means a valid resource:

* a non-empty `reference` string becomes "Type/id" (R4 asks of a reference string only that it is not empty; an
  empty one is kept as it is, and fails);
* a finite float becomes 0.5 (a finite float is a valid FHIR decimal wherever 0.5 is; NaN and infinities are kept,
  and fail);
* a `…DateTime` string that names a real instant (Python reads it as one: no month 13) has its digits replaced by
  1, keeping its format ("1111-11-11T11:11:11Z"), so what R4 checks of it, the format, is checked on the stand-in;
  one that does not is kept as it is.

A shape found invalid is never remembered as such: the resource itself is then validated, so the error raised is
the real one (and a resource valid only with its real leaves still passes).
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from fhir_mapping.memo import remembered

#: Distinct shapes remembered before the memory starts afresh (a shape per model, output set and basis length).
SHAPE_MEMO_SIZE = 4096
_valid_shapes: dict[bytes, bool] = {}
_DIGIT = re.compile(r"\d")


def stand_in(value: Any, key: str = "") -> Any:
    """The shape of a JSON value: the per-call leaves replaced as the module docstring says."""
    if isinstance(value, dict):
        return {k: stand_in(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [stand_in(v, key) for v in value]
    if isinstance(value, float):
        return 0.5 if math.isfinite(value) else value
    if isinstance(value, str) and value:
        if key == "reference":
            return "Type/id"
        if key.endswith("DateTime") and _real_date_time(value):
            return _DIGIT.sub("1", value)
    return value


def _real_date_time(value: str) -> bool:
    """The digits name a real instant (no month 13): then only the format, which the stand-in keeps, can fail."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def validate_shape(model: type[BaseModel], resource: dict[str, Any]) -> None:
    """Raise pydantic's ValidationError if `resource` is not a valid `model`; a shape seen valid before is not
    validated again."""
    shape = stand_in(resource)
    try:
        text = orjson.dumps([model.__name__, shape], option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # not JSON at all: no shape to remember
        model.model_validate(resource)
        return
    if b"null" in text:  # orjson writes NaN and infinities as null: such a shape is validated every time
        model.model_validate(resource)
        return
    key = hashlib.blake2b(text, digest_size=16).digest()
    if not remembered(_valid_shapes, key, lambda: _is_valid(model, shape), SHAPE_MEMO_SIZE):
        _valid_shapes.pop(key, None)  # only valid shapes are remembered
        model.model_validate(resource)


def _is_valid(model: type[BaseModel], shape: dict[str, Any]) -> bool:
    try:
        model.model_validate(shape)
    except ValidationError:
        return False
    return True
