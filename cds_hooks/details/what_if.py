"""What-if, in the manner of the ACC ASCVD Risk Estimator Plus: change some inputs (a named scenario from the
manifest, or values typed in) and recompute the outputs with the same ONNX model version that made the prediction.

The answer is an estimate from the model's equations for changed inputs, never a measured or trial-based treatment
effect, and says so. The model's guards apply as they do to a hook call: an input outside the range the model was
validated for, a patient outside its population, or an input still unknown gives no number (422 naming the input).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cards.fhir_resources import output_text
from cds_hooks.details.view import feature_values, input_value_text, scenario_applies, stand_in_defaults
from fhir_mapping.expressions import ExpressionError, compiled_expression
from fhir_mapping.formatting import outside_range, unmeasured
from fhir_mapping.result import NOTHING_ON_RECORD, searches_lacking
from inference.guards import unmet
from inference.manifest import Manifest
from inference.runtime import ModelRuntime

ESTIMATE_NOTE = ("Estimate: the same model recomputed with the changed inputs. It is not a measured value, and not "
                 "the effect of a treatment shown in trials.")
MAX_CHANGES = 32


class WhatIfError(ValueError):
    """A what-if request the model cannot answer (422), naming the input it is about."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WhatIfError(f"{name}: the value must be a number", name)
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits: no float holds it
        raise WhatIfError(f"{name}: the value must be a finite number", name) from None
    if not math.isfinite(value):
        raise WhatIfError(f"{name}: the value must be a finite number", name)
    return value


def requested_changes(manifest: Manifest, body: Any, values: dict[str, float],
                      flags: dict[str, str] | None = None) -> tuple[str | None, str | None, dict[str, float]]:
    """(scenario label, scenario note, {input: new value}) from a request body: {"scenario": label} or
    {"set": {input: value}}; raises WhatIfError for anything else. `flags`: inputs that follow another
    (`present_of`: 'UACR measured' follows the UACR), which cannot be set."""
    flags = flags or {}
    if not isinstance(body, dict) or not body.keys() & {"scenario", "set"} or body.keys() - {"scenario", "set"}:
        raise WhatIfError('the body must be {"scenario": "<label>"} or {"set": {"<input>": <value>}}', None)
    label, note, changes = None, None, {}
    if "scenario" in body:
        label = body["scenario"]
        scenario = next((w for w in manifest.what_if if w.label == label), None) if isinstance(label, str) else None
        if scenario is None:
            offered = "; ".join(w.label for w in manifest.what_if) or "none"
            raise WhatIfError(f"no what-if scenario named {str(label)[:80]!r} (this model offers: {offered})",
                              "scenario")
        why_not = scenario_applies(scenario, values)
        if why_not is not None:
            raise WhatIfError(f"{scenario.label}: not applicable for this patient ({why_not})", "scenario")
        changes.update(scenario.set)
        note = scenario.note
    if "set" in body:
        given = body["set"]
        if not isinstance(given, dict) or not given or len(given) > MAX_CHANGES:
            raise WhatIfError("set: an object naming at least one input and its new value", "set")
        inputs = {i.name: i for i in manifest.inputs}
        for name, value in given.items():
            spec_in = inputs.get(name) if isinstance(name, str) else None
            if spec_in is None:
                known = ", ".join(inputs)
                raise WhatIfError(f"set: {str(name)[:60]!r} is not an input of {manifest.id} (inputs: {known})",
                                  f"set.{str(name)[:60]}")
            follows = flags.get(name)
            if follows is not None:  # 'UACR measured' is what the record (or a value given here) says, not a choice
                raise WhatIfError(f"{spec_in.label} ({name}) follows {follows}: give {follows} a value instead",
                                  f"set.{name}")
            number = _number(value, name)
            if spec_in.kind == "binary" and number not in (0.0, 1.0):
                raise WhatIfError(f"{spec_in.label} ({name}) is yes/no: 1 or 0, not {value!r}", f"set.{name}")
            changes[name] = number
    return label, note, changes


def _rederived(values: dict[str, float], changed: set[str], runtime: ModelRuntime) -> dict[str, float]:
    """Features computed only from others (no source of their own: PREVENT's HbA1c-without-diabetes), computed again
    when an input they rest on changed, so a population rule on them tests the changed patient; a `present_of` flag
    ('UACR measured') is 1 once its input is given a value."""
    spec = runtime.spec
    for name, feature in spec.features.items():  # 'UACR measured' once a UACR is given
        if feature.present_of in changed and name not in changed:
            values[name] = 1.0
            changed.add(name)
    for name in spec.derivation_order():
        feature = spec.features[name]
        needs = spec.derived_inputs(name)
        if feature.derived is None or feature.sources or name in changed or not needs & changed:
            continue
        changed.add(name)
        try:
            values[name] = compiled_expression(feature.derived).evaluate({n: values[n] for n in needs})
        except (KeyError, ExpressionError):
            values.pop(name, None)
    return values


def _unread(name: str, asked: set[str], rederived: set[str], stored: dict[str, Any],
            runtime: ModelRuntime) -> list[str]:
    """The prefetch keys a value rests on that were not obtained: none for a value the user gave; a value computed
    again from changed inputs rests on its inputs' (a "Diabetes: No" answered without the orders, beside an HbA1c
    set here); a value kept from the record on what was stored with it."""
    if name in asked:
        return []
    if name in rederived:
        return [k for i in sorted(runtime.spec.derived_inputs(name))
                for k in _unread(i, asked, rederived, stored, runtime)]
    return [str(k) for k in (stored.get(name) or {}).get("unchecked") or ()]


def run_what_if(runtime: ModelRuntime, pred: dict[str, Any], body: Any) -> dict[str, Any]:
    """Recompute the prediction's outputs with the changes the body asks for (same model version)."""
    manifest = runtime.manifest
    if manifest.sequence is not None:
        raise WhatIfError(f"{manifest.id} reads the patient's whole timeline, not a row of inputs: it offers no "
                          "what-if", None)
    current = feature_values(pred)
    flags = runtime.spec.presence_flags()
    unrecorded = stand_in_defaults(runtime, pred)
    stored_features = pred.get("features") or {}
    label, note, changes = requested_changes(manifest, body, current, flags)
    changed = set(changes)
    values = _rederived({**current, **changes}, changed, runtime)
    rederived = changed - set(changes)
    # the guards in the card's order (inference/runtime.py `stopped_by_guards`): the population before unknown inputs
    stored_refusals = [str(r) for r in pred.get("guard_reasons") or ()]
    refused_by = pred.get("refused_by")  # None: recorded before migration 0007, told by the reasons' words
    for rule in manifest.population:
        if not rule.applies(values.get):
            continue  # not a patient the rule is for (a pregnancy check for a man)
        value = values.get(rule.feature)
        said = rule.unconfirmed or rule.reason
        if value is None and rule.if_recorded:
            # refused on the card only for a record that could not be read (inference/guards.py `_recorded`); a
            # search that failed or nothing on record has nothing to test
            if (f"population:{rule.feature}" in refused_by if refused_by is not None
                    else any(r.startswith(said) for r in stored_refusals)):
                raise WhatIfError(f"no estimate: {said}", rule.feature)
            continue
        if value is None and refused_by is not None:
            # unknown, as on the card: the card's guard decided it (a count whose unread results could not change the
            # answer passes; one they could is unconfirmed; one confirmed either way fails), and what-if keeps that
            stored = next((r for r, by in zip(stored_refusals, refused_by) if by == f"population:{rule.feature}"), None)
            if stored is None:
                continue
            raise WhatIfError(f"no estimate: {rule.reason if stored.startswith(rule.reason) else said}", rule.feature)
        if value is None:
            raise WhatIfError(f"no estimate: {said}", rule.feature)  # could not be confirmed, not "the record shows"
        if not rule.holds(value):
            # a value kept from the record that rests on a "No" answered without its searches is not confirmed
            unread = _unread(rule.feature, set(changes), rederived, stored_features, runtime)
            if unread:
                raise WhatIfError(f"no estimate: {said} ({searches_lacking(unread)})", rule.feature)
            raise WhatIfError(f"no estimate: {rule.reason}", rule.feature)
    for spec_in in manifest.inputs:  # the ranges of the known inputs, as the card checks them before missing ones
        value = values.get(spec_in.name)
        if value is not None and spec_in.range is not None and not spec_in.range[0] <= value <= spec_in.range[1]:
            low, high = spec_in.range
            shown, validated = outside_range(value, low, high, spec_in.unit, 2 if abs(value) < 10 else 1)
            raise WhatIfError(f"{spec_in.label} ({spec_in.name}) {shown} is outside the range the model was validated "
                              f"for ({validated})", f"set.{spec_in.name}")
    unknown = [i for i in manifest.inputs if i.name not in values]
    if unknown:
        if refused_by is not None:
            ranges = {f"range:{i.name}" for i in unknown}
            outside = next((r for r, by in zip(stored_refusals, refused_by) if by in ranges), None)
        else:
            outside = next((r for r in stored_refusals for i in unknown
                            if r.startswith(f"{i.label} ") and "is outside the range" in r), None)
        if outside is not None:  # known to lie outside the range (a result written as a bound, '>60'), as the card said
            raise WhatIfError(f"no estimate: {outside}; give a value to see one", f"set.{unknown[0].name}")
        names = ", ".join(f"{i.label} ({i.name})" for i in unknown)
        raise WhatIfError(f"not known for this patient, so give a value: {names}", f"set.{unknown[0].name}")
    row = np.array([[values[i.name] for i in manifest.inputs]], dtype=np.float64)
    got = runtime.run_matrix(row)
    outputs = {name: float(arr[0]) for name, arr in got.items()}
    bad = [name for name, v in outputs.items() if not math.isfinite(v)]
    if bad:
        raise WhatIfError(f"the model produced no finite {', '.join(bad)} for these inputs", None)
    withheld = {}
    for out in manifest.outputs:
        if out.applies_when:
            reason = unmet(out.applies_when, values, None)
            if reason is not None:
                withheld[out.name] = reason
    shown = {k: v for k, v in outputs.items() if k not in withheld}
    category = manifest.category_for(shown)
    primary = manifest.primary
    stored = pred.get("outputs") or {}
    by_name = {i.name: i for i in manifest.inputs}
    features = runtime.spec.features
    return {
        "estimate": True,
        "note": ESTIMATE_NOTE,
        "scenario": label,
        "scenario_note": note,
        "model": {"id": manifest.id, "version": manifest.version},
        "changed": [
            {"name": name, "label": features[name].label if name in features else by_name[name].label,
             "from": None if name in unrecorded else current.get(name), "to": value,
             "from_text": (unmeasured(bool((stored_features.get(name) or {}).get("sources")))
                           if name in unrecorded else
                           input_value_text(by_name[name], features.get(name), current[name])
                           if name in current else "not known"),
             "to_text": input_value_text(by_name[name], features.get(name), value)}
            for name, value in changes.items()
        ],
        "inputs": {i.name: values[i.name] for i in manifest.inputs},
        "outputs": [
            {"name": o.name, "label": o.label, "primary": o.primary, "value": outputs[o.name],
             "text": output_text(o, outputs[o.name]),
             "current_text": output_text(o, float(stored[o.name])) if o.name in stored else None,
             "withheld": withheld.get(o.name)}
            for o in manifest.outputs
        ],
        "primary": {"label": primary.label, "value": outputs[primary.name],
                    "text": output_text(primary, outputs[primary.name]), "category": category.label},
        "current": ({"text": output_text(primary, float(stored[primary.name])), "category": pred.get("category")}
                    if primary.name in stored else None),
    }
