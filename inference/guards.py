"""Input guards: no number leaves the service for inputs outside a model's validated ranges or population.

The reasons are written for the card, naming the input, the patient's value and the range the model was validated for.
"""

from __future__ import annotations

from fhir_mapping.result import MappingResult
from inference.manifest import Manifest


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def refusal_reasons(manifest: Manifest, values: dict[str, float], mapping: MappingResult | None = None) -> list[str]:
    """Why the model must not give a number for these inputs (empty when it may).

    Population rules may test any feature of the spec (e.g. "atrial fibrillation recorded"), not only graph inputs;
    a population feature that could not be read refuses too, since membership cannot be confirmed.
    """
    reasons: list[str] = []
    for rule in manifest.population:
        value = values.get(rule.feature)
        if value is None and mapping is not None:
            fv = mapping.values.get(rule.feature)
            value = fv.value if fv is not None else None
            if fv is None:
                reasons.append(f"{rule.reason} (could not be confirmed from the record)")
                continue
        if value is None:
            continue
        if (
            (rule.equals is not None and value != rule.equals)
            or (rule.min is not None and value < rule.min)
            or (rule.max is not None and value > rule.max)
        ):
            reasons.append(rule.reason)
    for spec in manifest.inputs:
        value = values.get(spec.name)
        if value is None or spec.range is None:
            continue
        low, high = spec.range
        if not low <= value <= high:
            unit = f" {spec.unit}" if spec.unit and spec.unit not in ("1", "a") else ""
            years = " years" if spec.unit == "a" else ""
            reasons.append(
                f"{spec.label} {_fmt(value)}{unit}{years} is outside the range the model was validated for "
                f"({_fmt(low)}–{_fmt(high)}{unit}{years})"
            )
    return reasons
