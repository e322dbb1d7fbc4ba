"""Strict R4 validation of the resources cards suggest, paid once per shape instead of once per call.

A suggested RiskAssessment, Observation or ServiceRequest differs from one call to the next only in a few leaves: the
references (patient, encounter, the records it was computed from), the time it was made, and the numbers. Everything
else comes from the model's manifest. Full pydantic validation of such a resource costs 0.1–0.35 ms, a noticeable
share of a whole call, for an answer that is the same every time.

So a resource is validated as its *shape*: a copy in which each of those leaves is replaced by a stand-in that is
valid exactly where the leaf is, and the shape's verdict is remembered. The stand-ins keep soundness one way — a
valid shape means a valid resource:

* a `reference` string that R4's string pattern accepts (something besides vertical tabs, no-break spaces and the
  like) becomes "Type/id"; any other is kept as it is, and fails;
* a finite float under a decimal key (`value`, `probabilityDecimal`, `relativeRisk`) becomes 0.5: a finite float is a
  valid FHIR decimal wherever 0.5 is. Floats elsewhere (a number under a dateTime key reads as a timestamp) and NaN
  or infinities are kept as they are;
* a `…DateTime` string that matches R4's dateTime pattern and names a real instant (no 30 February) has its digits
  replaced by 1, keeping its format ("1111-11-11T11:11:11Z"); one that does not is kept as it is.

A value that is not plain JSON (a UUID, a datetime, an Enum …) could share a serialisation with a valid string, so a
resource holding one is validated in full every time, as is one serialised with a `null` in it (orjson writes NaN
and infinities as null).

A shape found invalid is never remembered as such: the resource itself is then validated, so the error raised is
the real one (and a resource valid only with its real leaves still passes).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from fhir_mapping.memo import json_key, remembered

#: Distinct shapes remembered before the memory starts afresh (a shape per model, output set and basis length).
SHAPE_MEMO_SIZE = 4096
_valid_shapes: dict[bytes, bool] = {}
_DIGIT = re.compile(r"\d")


class _NotJson(Exception):
    """A leaf that is not plain JSON: the resource is validated in full."""


#: R4's dateTime pattern (datatypes.html#dateTime), with a time and a zone or without.
_FHIR_DATE_TIME = re.compile(
    r"(?:[0-9](?:[0-9](?:[0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(?:-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?")
#: R4's string pattern: what it asks of a reference.
_FHIR_STRING = re.compile(r"[ \r\n\t\S]")
_DECIMAL_KEYS = frozenset({"value", "probabilityDecimal", "relativeRisk"})
_SCALARS = (str, int, float, bool)


def stand_in(value: Any, key: str = "") -> Any:
    """The shape of a JSON value: the per-call leaves replaced as the module docstring says (_NotJson for a value
    that is not plain JSON)."""
    kind = type(value)
    if kind is dict:
        if any(type(k) is not str for k in value):
            raise _NotJson
        return {k: stand_in(v, k) for k, v in value.items()}
    if kind is list:
        return [stand_in(v, key) for v in value]
    if value is not None and kind not in _SCALARS:
        raise _NotJson
    if kind is float:
        return 0.5 if key in _DECIMAL_KEYS and math.isfinite(value) else value
    if kind is str:
        if key == "reference" and _FHIR_STRING.search(value):
            return "Type/id"
        if key.endswith("DateTime") and _FHIR_DATE_TIME.fullmatch(value) and _real_date_time(value):
            return _DIGIT.sub("1", value)
    return value


def _real_date_time(value: str) -> bool:
    """The digits name a real instant (no 30 February): then only the format, which the stand-in keeps, can fail."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def validate_shape(model: type[BaseModel], resource: dict[str, Any]) -> None:
    """Raise pydantic's ValidationError if `resource` is not a valid `model`; a shape seen valid before is not
    validated again."""
    try:
        shape = stand_in(resource)
    except _NotJson:  # not plain JSON: no shape to remember
        model.model_validate(resource)
        return
    key = json_key([f"{model.__module__}.{model.__qualname__}", shape])
    if key is None:  # NaN (written as null) or what orjson cannot write: validated every time
        model.model_validate(resource)
        return
    if not remembered(_valid_shapes, key, lambda: _is_valid(model, shape), SHAPE_MEMO_SIZE):
        _valid_shapes.pop(key, None)  # only valid shapes are remembered
        model.model_validate(resource)


def _is_valid(model: type[BaseModel], shape: dict[str, Any]) -> bool:
    try:
        model.model_validate(shape)
    except ValidationError:
        return False
    return True
