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
    resource holding one is rare and invalid anyway."""
    key = json_key(used_projection(resource))
    if key is None:  # a NaN and a null would share a key; both are rare, so neither is remembered
        return validate_resource(resource)
    return remembered(_verdicts, key, lambda: validate_resource(resource), VERDICT_MEMO_SIZE)


# Elements the mapper reads, per resource type ("value" covers value[x], "effective" effective[x] …). Elements R4
# requires are among them, so a projection is still a complete resource to validate.
USED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Patient": ("id", "birthDate", "gender", "extension"),
    "Observation": ("id", "status", "code", "subject", "effective", "issued", "value", "component",
                    "dataAbsentReason"),
    "Condition": ("id", "clinicalStatus", "verificationStatus", "code", "subject", "onset", "abatement",
                  "recordedDate"),
    "MedicationRequest": ("id", "status", "intent", "medication", "subject", "authoredOn", "contained"),
    "MedicationStatement": ("id", "status", "medication", "subject", "effective", "dateAsserted", "contained"),
    "Procedure": ("id", "status", "code", "subject", "performed"),
    "Encounter": ("id", "status", "class", "subject", "period"),
}


def used_projection(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource cut down to the elements the mapper reads (all of it for types it does not know)."""
    used = USED_ELEMENTS.get(str(resource.get("resourceType")))
    if used is None:
        return resource
    return {k: v for k, v in resource.items() if k == "resourceType" or k.startswith(used)}


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
