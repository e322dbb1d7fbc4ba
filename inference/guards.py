"""Input guards: no number leaves the service for inputs outside a model's validated ranges or population.

The reasons are written for the card, naming the input, the patient's value and the range the model was validated for.
"""

from __future__ import annotations

from fhir_mapping.formatting import first_clause, lower_first, number, outside_range
from fhir_mapping.result import MappingResult, MissingFeature, searches_lacking
from inference.manifest import Condition, Manifest, PopulationRule


def _fmt(value: float) -> str:
    return number(value, 1 if abs(value) >= 10 else 2)


def _value_of(name: str, values: dict[str, float], mapping: MappingResult | None) -> float | None:
    if name in values:
        return values[name]
    if mapping is not None and name in mapping.values:
        return mapping.values[name].value
    return None


def _why_missing(mapping: MappingResult, name: str) -> str:
    """': date of birth is not recorded' — the first clause of the mapper's reason, so the card says why a
    population feature is unknown (a missing birth date is not the same as a truncated search)."""
    missing = mapping.missing.get(name)
    if missing is None or not missing.reason:
        return ""
    clause = lower_first(first_clause(missing.reason, at_parenthesis=True).removeprefix("Unknown: ").strip())
    return f": {clause}" if clause else ""


def failing_rules(manifest: Manifest, values: dict[str, float],
                  mapping: MappingResult | None = None) -> list[tuple[PopulationRule, str]]:
    """Population rules the patient fails (or whose feature could not be read), with the reason to show."""
    return [(rule, reason) for rule, reason, _ in _failures(manifest, values, mapping)]


def refusal_guidance(manifest: Manifest, values: dict[str, float], mapping: MappingResult | None = None,
                     refusals: int | None = None, unknown_inputs: int = 0) -> list[str]:
    """What the guideline says instead, for each failed rule that has guidance; not for a rule whose feature could
    not be read and that says so in its own words (`unconfirmed`): its guidance is for a patient known to be outside;
    nor for a `guidance_alone` rule beside any other refusal: its guidance speaks of what follows once the patient is
    inside the population ("with diabetes recorded the estimate follows"), which another refusal, confirmed or not,
    still bars (`refusals`: every refusal on the card, a validated range included); nor for a
    `guidance_needs_inputs` rule while an input is unknown (`unknown_inputs`), which bars the estimate it promises."""
    failed = _failures(manifest, values, mapping)
    alone = (len(failed) if refusals is None else refusals) == 1
    return [rule.guidance for rule, _, confirmed in failed
            if rule.guidance and (confirmed or rule.unconfirmed is None) and (alone or not rule.guidance_alone)
            and not (rule.guidance_needs_inputs and unknown_inputs)]


def _failures(manifest: Manifest, values: dict[str, float],
              mapping: MappingResult | None) -> list[tuple[PopulationRule, str, bool]]:
    """(rule, reason to show, whether the record showed the failing value) for each rule that does not hold."""
    failed: list[tuple[PopulationRule, str, bool]] = []
    for rule in manifest.population:
        if not rule.applies(lambda name: _value_of(name, values, mapping)):
            continue  # not a patient the rule is for (a pregnancy check for a man)
        value = _value_of(rule.feature, values, mapping)
        span = _count_range(mapping, rule.feature) if value is None else None
        holding = {rule.holds(n) for n in range(span[0], span[1] + 1)} if span is not None else set()
        if holding == {True}:
            continue  # a count whose unread results cannot change the answer (every count it can be passes)
        if holding == {False}:  # every count it can be fails: the record shows it, whatever the unread say
            failed.append((rule, rule.reason, True))
            continue
        if value is None:
            if rule.if_known or (rule.if_recorded and not _recorded(mapping, rule.feature)):
                continue  # nothing on record to test; a record that could not be read is not "nothing"
            if mapping is not None and rule.feature not in values:
                why = _why_missing(mapping, rule.feature)
                said = rule.unconfirmed or rule.reason
                failed.append((rule, f"{said} (could not be confirmed from the record{why})", False))
            continue
        if not rule.holds(value):
            fv = mapping.values.get(rule.feature) if mapping is not None else None
            if fv is not None and fv.unchecked:  # derived from a "No" answered without one of its searches
                failed.append((rule, f"{rule.unconfirmed or rule.reason} ({searches_lacking(fv.unchecked)})", False))
                continue
            failed.append((rule, rule.reason + _patient_value(rule, mapping), True))
    return failed


def _count_range(mapping: MappingResult | None, name: str) -> tuple[int, int] | None:
    missing = mapping.missing.get(name) if mapping is not None else None
    return missing.count_range if missing is not None else None


def _recorded(mapping: MappingResult | None, name: str) -> bool:
    """Whether the record holds something for a feature that still has no value: a result it could not read (a
    bound such as '>400', no unit), which the mapper names among the records it passed over."""
    missing = mapping.missing.get(name) if mapping is not None else None
    return missing is not None and (missing.newest_unusable is not None or missing.count_range is not None)


def _patient_value(rule: PopulationRule, mapping: MappingResult | None) -> str:
    """' (age: 15 years)' for a rule on a range (min/max), so the card shows the value that fell outside it; a rule
    on a flag (`equals`) already says what the record shows."""
    if (rule.min is None and rule.max is None) or mapping is None:
        return ""
    fv = mapping.values.get(rule.feature)
    if fv is None or not fv.display:
        return ""
    return f" ({lower_first(fv.label or rule.feature)}: {fv.display})"


def unmet(conditions: tuple[Condition, ...], values: dict[str, float], mapping: MappingResult | None) -> str | None:
    """The reason of the first condition that does not hold (or cannot be checked), else None."""
    for cond in conditions:
        value = _value_of(cond.feature, values, mapping)
        if value is None or not cond.holds(value):
            return cond.reason
    return None


def attributed_refusals(manifest: Manifest, values: dict[str, float],
                        mapping: MappingResult | None = None) -> list[tuple[str, str]]:
    """(reason, what refused) for each guard that stops the number: "population:<feature>" for a population rule,
    "range:<input>" for a validated range. What refused is stored with the prediction, so the details page and
    what-if tell which guard spoke without reading its words (which a model folder may reword).

    Population rules may test any feature of the spec (e.g. "atrial fibrillation recorded"), not only graph inputs;
    a population feature that could not be read refuses too, since membership cannot be confirmed. Ranges are
    checked for the inputs that are known, so an out-of-range age refuses even when other inputs are missing.
    """
    reasons = [(reason, f"population:{rule.feature}") for rule, reason in failing_rules(manifest, values, mapping)]
    for spec in manifest.inputs:
        value = values.get(spec.name)
        if value is None and spec.range is not None:
            beyond = _bound_outside(spec.range, mapping.missing.get(spec.name) if mapping is not None else None)
            if beyond is not None:
                low, high = spec.range
                decimals = 1 if max(abs(low), abs(high), abs(beyond[1])) >= 10 else 2
                shown, validated = outside_range(beyond[1], low, high, spec.unit, decimals, bound=True)
                reasons.append((f"{spec.label} {beyond[0]}{shown} is outside the range the model was validated "
                                f"for ({validated})", f"range:{spec.name}"))
            continue
        if value is None or spec.range is None:
            continue
        # a derived value reported to fewer decimals (a computed eGFR as a whole number, as the eGFR card gives it)
        # is tested as reported: 59.7 is 60, outside KFRE's 10-59.999, as the eGFR card's "60 (G2)" says
        fv = mapping.values.get(spec.name) if mapping is not None else None
        if fv is not None and fv.reported is not None and fv.value == value:
            value = fv.reported
        low, high = spec.range
        if not low <= value <= high:
            decimals = 1 if max(abs(low), abs(high), abs(value)) >= 10 else 2
            shown, validated = outside_range(value, low, high, spec.unit, decimals)
            reasons.append((f"{spec.label} {shown} is outside the range the model was validated for ({validated})",
                            f"range:{spec.name}"))
    return reasons


def _bound_outside(validated: tuple[float, float], missing: MissingFeature | None) -> tuple[str, float] | None:
    """The newest result of a missing input, written as a bound that lies wholly outside the validated range (an
    eGFR '>60' for KFRE, validated to 59.999): the patient is outside the range, not merely without a value."""
    ref = missing.newest_unusable if missing is not None else None
    if ref is None or ref.limit is None:
        return None
    comparator, number = ref.limit
    low, high = validated
    outside = (comparator == ">" and number >= high) or (comparator == ">=" and number > high) or \
        (comparator == "<" and number <= low) or (comparator == "<=" and number < low)
    return (comparator, number) if outside else None
