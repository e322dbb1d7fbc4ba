"""Strict FHIR R4 validation of just what a feature uses, cached per request and remembered by content.

Validating a whole patient record costs ~0.3 ms a resource (a Synthea Patient with its extensions, identifiers and
addresses over 1 ms); the mapper validates only the resources whose values it is about to use, and of those only the
elements it reads (plus what R4 requires of the resource), with fhir.resources' R4B models (R4-compatible; the
package's default models are R5).

A verdict is a pure function of those elements, and an EHR sends the same resources again and again (every chart
opening fires patient-view; order-select fires as an order is edited), so verdicts are also remembered across
requests, keyed by a digest of the elements validated (`remembered_problem`): a resource seen before costs a
serialisation and a hash (a few microseconds) instead of a validation.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_mapping.memo import json_key, remembered

#: Distinct resources (by the content validated) whose verdict is remembered before the memory starts afresh.
VERDICT_MEMO_SIZE = 50_000
_verdicts: dict[bytes, str | None] = {}


class ValidationCache:
    """Validates resources once each (by identity) and remembers the verdict for the request."""

    def __init__(self) -> None:
        self._verdicts: dict[int, str | None] = {}

    def problem(self, resource: dict[str, Any]) -> str | None:
        """None if the resource is valid FHIR R4; otherwise a short, readable reason."""
        key = id(resource)
        if key in self._verdicts:
            return self._verdicts[key]
        verdict = remembered_problem(resource)
        self._verdicts[key] = verdict
        return verdict


def remembered_problem(resource: dict[str, Any]) -> str | None:
    """`validate_resource`, answered from memory for content validated before.

    The key is a BLAKE2b digest of the validated elements serialised with sorted keys. Content the serialisation
    could blur is validated every time: what orjson cannot write (integers past 64 bits, keys that are not strings),
    and anything written as `null` — orjson writes NaN and infinities as null, and FHIR JSON has no nulls, so a
    resource holding one is rare and invalid anyway. The key holds the elements as written, before `_forgiven`
    mends them (the verdict is a function of them all the same), so a remembered verdict costs no mending."""
    elements = _read_elements(resource)
    key = json_key([resource.get("resourceType"), resource if elements is None else elements])
    if key is None:  # a NaN and a null would share a key; both are rare, so neither is remembered
        return validate_resource(resource)
    return remembered(_verdicts, key, lambda: validate_resource(resource), VERDICT_MEMO_SIZE)


# Elements the mapper reads, per resource type ("value" covers value[x], "effective" effective[x] …). Elements R4
# requires are among them, so a projection is still a complete resource to validate. The resource's own `id` and
# `identifier` are not: a malformed id (an underscore, 70 characters) changes nothing the card says.
USED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Patient": ("birthDate", "gender", "extension"),
    "Observation": ("status", "code", "subject", "effective", "issued", "value", "component", "dataAbsentReason"),
    "Condition": ("clinicalStatus", "verificationStatus", "code", "subject", "onset", "abatement", "recordedDate"),
    "MedicationRequest": ("status", "intent", "medication", "subject", "authoredOn", "contained"),
    "MedicationStatement": ("status", "medication", "subject", "effective", "dateAsserted", "contained"),
    "Procedure": ("status", "code", "subject", "performed"),
    "Encounter": ("status", "class", "subject", "period"),
    "Device": ("status", "type", "patient"),
}

# A time with no zone, or a zone without its colon (+0000), as many EHRs write them; the mapper reads both (a time
# without a zone as UTC), so they are not reasons to set a record aside.
_ZONELESS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_COLONLESS_ZONE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?[+-]\d{2})(\d{2})$")


_GONE = object()  # what `_forgiven` gives for an element that is left empty


def _forgiven(value: Any) -> Any:
    """The value with the cosmetic faults of real records mended: empty strings (and the objects and lists left empty
    by dropping them) are absent, a time without a zone is UTC, a zone without its colon gets one. `_GONE`: nothing
    left. What a card reads (codes, values, statuses, dates that are dates) is never changed, and a `null` stays."""
    if isinstance(value, str):
        if value == "":
            return _GONE
        if _ZONELESS.match(value):
            return value + "Z"
        m = _COLONLESS_ZONE.match(value)
        return f"{m.group(1)}:{m.group(2)}" if m else value
    if isinstance(value, dict):
        kept = {k: v for k, v in ((k, _forgiven(v)) for k, v in value.items()) if v is not _GONE}
        return kept or _GONE
    if isinstance(value, list):
        items = [v for v in (_forgiven(v) for v in value) if v is not _GONE]
        return items or _GONE
    return value


def _read_elements(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The elements the mapper reads, as written, without resourceType (None: a type it does not know)."""
    used = USED_ELEMENTS.get(str(resource.get("resourceType")))
    if used is None:
        return None
    return {k: v for k, v in resource.items() if k != "resourceType" and k.startswith(used)}


def used_projection(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource cut down to the elements the mapper reads (all of it for types it does not know), with cosmetic
    faults forgiven (`_forgiven`)."""
    elements = _read_elements(resource)
    if elements is None:
        return resource
    projected = _forgiven(elements)
    return {"resourceType": resource.get("resourceType"), **({} if projected is _GONE else projected)}


def _message(err: Any) -> str:
    """pydantic's words, except for text given where R4 needs an element with parts (a DSTU2-style
    verificationStatus 'confirmed', a medicationReference 'Medication/1'), which pydantic reports as invalid JSON."""
    given = err.get("input")
    if err.get("type") == "json_invalid" and isinstance(given, str):
        shown = given if len(given) <= 40 else given[:39] + "…"
        return f"the text '{shown}' where R4 needs a structured element"
    return str(err["msg"])


def validate_resource(resource: dict[str, Any]) -> str | None:
    """None when the elements the mapper reads are valid FHIR R4, else a short reason."""
    rtype = resource.get("resourceType")
    try:
        cls = get_fhir_model_class(str(rtype))
    except (KeyError, ValueError, AttributeError):
        return f"unknown resourceType {rtype!r}"
    try:
        cls.model_validate(used_projection(resource))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p != "__root__")
        return f"not valid FHIR R4 {rtype} ({where}: {_message(err)})"
    except (TypeError, ValueError) as exc:
        return f"not valid FHIR R4 {rtype} ({exc})"
    return None
