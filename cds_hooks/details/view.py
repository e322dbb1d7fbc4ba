"""What the details page shows for one stored prediction: the number as on the card, every input with its value,
readable unit, date and FHIR source, what was assumed or missing (and how to fix it), the explanation as a chart,
secondary outputs, limitations, population, citation and the what-if controls.

Everything here is computed from the stored prediction (no patient identifiers: the store has only HMAC keys, and
source references to the Patient or Encounter have lost their id) and the model version that made it. The
explanation is recomputed with that version: exact Shapley values against the manifest's reference patient, as on the
card.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from cards.advice import stored_advice, stored_notes
from cards.builder import missing_headline
from cards.fhir_resources import format_output, output_text
from fhir_mapping.formatting import (kept_inside, number, quantity, quantity_inside, system_name, unit_label,
                                     unmeasured, value_range)
from fhir_mapping.mapper import display_value
from fhir_mapping.result import (CHECK_AND_CODE, CUT_SHORT, FOR_WANT_OF, NOTHING_ON_RECORD, UNRETRIEVED,
                                 bound_result_day, repeat_not_due)
from fhir_mapping.spec import Feature
from inference.explain import coalition_matrix, shapley_values
from inference.guards import unmet
from inference.manifest import Category, Input, Manifest, Output, WhatIf
from inference.runtime import ModelRuntime

FIXED_DEMOGRAPHICS = ("gender", "race", "ethnicity")  # not offered as what-if inputs (they are not modifiable)


def feature_values(pred: dict[str, Any]) -> dict[str, float]:
    """The stored feature values by name (features without a usable value are left out)."""
    out: dict[str, float] = {}
    for name, fv in (pred.get("features") or {}).items():
        value = fv.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def input_value_text(spec_in: Input, feature: Feature | None, value: float) -> str:
    """'150 mmHg', '55 years', 'Current smoker', 'Yes (active antihypertensive)'."""
    if feature is not None:
        shown = display_value(feature, value)
        if shown:  # never a value inside the range shown on its edge ('60' for a scored 59.99)
            return kept_inside(shown, value, spec_in.unit, *spec_in.range) if spec_in.range and \
                spec_in.kind != "binary" else shown
    if spec_in.kind == "binary":
        return "Yes" if value == 1 else "No"
    decimals = 2 if abs(value) < 10 else 1
    if spec_in.range is None:
        return quantity(value, spec_in.unit, decimals)
    return quantity_inside(value, spec_in.unit, decimals, spec_in.range[0], spec_in.range[1])


def _as_reported(text: str, spec_in: Input, feature: Feature | None, fv: dict[str, Any], value: float) -> str:
    """A derived value reported at fewer decimals (`reported_decimals`) as the card showed it and its advice tested
    it, with the number the model read: '30 mL/min/1.73 m² (computed: 29.8)'."""
    reported = fv.get("reported")
    if feature is None or feature.reported_decimals is None or isinstance(reported, bool) or \
            not isinstance(reported, (int, float)):
        return text
    shown = quantity(float(reported), feature.unit, feature.reported_decimals)
    if spec_in.range is not None:
        shown = kept_inside(shown, value, feature.unit, *spec_in.range)  # as the card: never on a validated edge
    computed = number(value, 1)
    return shown if shown.split(" ")[0] == computed else f"{shown} (computed: {computed})"


def range_text(spec_in: Input) -> str | None:
    if spec_in.range is None:
        return None
    return value_range(spec_in.range[0], spec_in.range[1], spec_in.unit, 3)  # 59.999, not '60


def _source_row(fv: dict[str, Any]) -> tuple[str | None, str | None]:
    """The first source reference and its date, unless it is the Patient (whose id the store never keeps)."""
    for src in fv.get("sources") or []:
        ref = str(src.get("reference") or "")
        if ref in ("", "Patient", "Encounter", "RelatedPerson", "urn"):
            return ("Patient record" if ref == "Patient" else None), None
        date = src.get("date")
        return ref, (str(date)[:10] if date else None)
    return None, None


def _shown_as_read(feature: Feature | None, fv: dict[str, Any] | None) -> bool:
    """An age is shown as the mapper wrote it, not from its number: on the day of a result ('60 years on
    2026-05-20'), or both ages a birth year alone leaves open ('59 or 60 years'; the number kept is one of them); so
    is a value read from a chart's bands ('<35 °C', scored as 35.0)."""
    return feature is not None and bool((fv or {}).get("display")) and \
        (feature.on_date_of is not None or feature.demographic == "age" or bool(feature.chart_bands))


def _row(name: str, label: str, fv: dict[str, Any] | None, spec_in: Input | None, feature: Feature | None,
         missing_reason: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "label": label, "value": None, "date": None, "source": None, "flags": [],
                           "note": None, "range": range_text(spec_in) if spec_in else None}
    if fv is None or fv.get("value") is None:
        row["value"] = "missing"
        row["flags"].append("missing")
        row["note"] = missing_reason
        return row
    value = float(fv["value"])
    if fv.get("defaulted"):
        row["flags"].append("assumed")
        # the note as the mapper wrote it (it names active medications that were not recognised), else the spec's
        row["note"] = fv.get("note") or (feature.default_note if feature else None)
        if fv.get("unit") is not None:  # a placeholder quantity (an add-on input not measured) is never shown as data
            row["value"] = unmeasured(bool(fv.get("sources")))
            return row
    if fv.get("display") and " — " in str(fv["display"]):  # a recognised drug: its name and how it was recognised
        row["value"] = str(fv["display"])
    elif _shown_as_read(feature, fv):
        row["value"] = str(fv["display"])  # an age as read: '60 years on 2026-05-20', '59 or 60 years'
    elif spec_in is not None:
        row["value"] = _as_reported(input_value_text(spec_in, feature, value), spec_in, feature, fv, value)
    else:
        row["value"] = (display_value(feature, value) if feature else None) or fv.get("display") or number(value, 2)
    if not fv.get("defaulted"):
        row["source"], row["date"] = _source_row(fv)
        # how a value was computed, and which recorded value a newer computation replaced (e.g. an older eGFR); else
        # how the recorded value was read ('converted from 1.2 mmol/L', 'written without a unit; read as 130 /min')
        sources = fv.get("sources") or [{}]
        row["note"] = fv.get("note") or sources[0].get("note")
    return row


def input_rows(manifest: Manifest, features: dict[str, Feature], pred: dict[str, Any]) -> dict[str, list]:
    """Every model input, then every other feature read (population checks), each with value, date and source."""
    stored = pred.get("features") or {}
    missing = pred.get("missing") or {}
    inputs = [_row(i.name, features[i.name].label if i.name in features else i.label, stored.get(i.name), i,
                   features.get(i.name), missing.get(i.name)) for i in manifest.inputs]
    input_names = {i.name for i in manifest.inputs}
    checked = []
    for rule in manifest.population:
        if rule.feature in input_names or any(r["name"] == rule.feature for r in checked):
            continue
        if not rule.applies(lambda name: _stored_value(stored, name)):
            continue  # not a patient the rule is for (a pregnancy check for a man): not checked, not listed
        feature = features.get(rule.feature)
        row = _row(rule.feature, feature.label if feature else rule.feature, stored.get(rule.feature), None, feature,
                   missing.get(rule.feature))
        row["rule"] = rule.reason
        if rule.if_recorded and "missing" in row["flags"] and \
                str(missing.get(rule.feature) or "").startswith(NOTHING_ON_RECORD):  # nothing to test
            row.update(value="not on record", flags=[], note="checked only when recorded")
        elif "missing" in row["flags"] and not rule.if_recorded and _estimated(pred):
            row.update(value="passes whatever the unread results say", flags=["assumed"],
                       note=f"{missing.get(rule.feature)}; the check holds for every count they can make")
        checked.append(row)
    return {"inputs": inputs, "checked": checked}


def _stored_value(stored: dict[str, Any], name: str) -> float | None:
    """A stored feature's value, when it has a number."""
    fv = stored.get(name)
    value = fv.get("value") if isinstance(fv, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _estimated(pred: dict[str, Any]) -> bool:
    """Whether the prediction gave a number: every population check not `if_recorded` then held, including one whose
    feature has no value (a count some results of which could not be read, decided because every count they can
    make passes). An `if_recorded` check with nothing it could read was not made, and is not said to pass."""
    return bool(pred.get("outputs"))


def missing_rows(manifest: Manifest, features: dict[str, Feature], pred: dict[str, Any]) -> list[dict[str, Any]]:
    """What could not be read, why, and how to fix it (the test to order, the spec's note)."""
    # a rule read only when recorded (the PCE's LDL-C) needs nothing: its absence is not something to fix
    stored = pred.get("features") or {}
    relevant = {i.name for i in manifest.inputs} | {
        r.feature for r in manifest.population
        if not r.if_recorded and r.applies(lambda name: _stored_value(stored, name))}
    inputs = {i.name for i in manifest.inputs}
    rows = []
    for name, reason in (pred.get("missing") or {}).items():
        if name not in relevant or (name not in inputs and _estimated(pred)):
            continue  # a check the estimate passed (a count whose unread results cannot change it) is not missing
        feature = features.get(name)
        fix = []
        if feature is not None and feature.missing_note:
            fix.append(feature.missing_note)
        # a patient the guards refused (outside the population or a validated range) is offered no order, as on the
        # card: a new test would not give a number; nor is a test just resulted as a bound ('<3 mg/g')
        created = pred.get("created_at")
        just_resulted = isinstance(created, datetime) and repeat_not_due(
            bound_result_day(reason), feature.lookback_days if feature is not None else None, created)
        if CUT_SHORT in reason:  # results on record were not sent: a new test is not shown to be needed, as on the card
            fix = ["no test to order: results on record were not read (the EHR's search was cut short)"]
        elif UNRETRIEVED in reason:
            fix = ["no test to order before the record is read: the EHR's search could not be obtained"]
        elif reason.startswith(FOR_WANT_OF):  # its results are on record; an age or sex is not, and no test gives it
            fix = [f"no test to order: the results are on record, and its {reason[len(FOR_WANT_OF):].split(' (')[0]} "
                   "is not known"]
        elif feature is not None and feature.order is not None and not pred.get("guard_reasons") and \
                not just_resulted:
            fix.append(f"order: {feature.order.display} ({system_name(feature.order.system)} {feature.order.code})")
        if CHECK_AND_CODE in reason:  # a record names the condition in words its code does not say: code it
            fix = ["check whether it is " + reason.rsplit(CHECK_AND_CODE, 1)[1]]
        rows.append({"label": feature.label if feature else name, "reason": reason, "fix": "; ".join(fix) or None})
    return rows


def contribution_rows(runtime: ModelRuntime, values: dict[str, float], features: dict[str, Feature],
                      stored: dict[str, Any] | None = None
                      ) -> dict[str, Any] | None:
    """Exact Shapley contributions of the explained inputs (same model version, same reference patient as the card),
    as rows for a bar chart; None when the model has no explanation or an input is not known."""
    manifest = runtime.manifest
    explain = manifest.explain
    if explain is None or any(i.name not in values for i in manifest.inputs):
        return None
    names = [i.name for i in manifest.inputs]
    patient = np.array([values[n] for n in names], dtype=np.float64)
    baseline = patient.copy()
    for name, value in explain.baseline.items():
        baseline[names.index(name)] = value
    columns = [names.index(f) for f in explain.features]
    out = runtime.run_matrix(coalition_matrix(patient, baseline, columns))
    target_name = explain.output or manifest.primary.name
    target = next(o for o in manifest.outputs if o.name == target_name)
    series = out[target_name]
    if not np.all(np.isfinite(series)):
        return None
    phi = shapley_values(series, len(columns))
    by_name = {i.name: i for i in manifest.inputs}
    rows = []
    scale = max((abs(float(d)) for d in phi), default=0.0) or 1.0
    for name, delta in sorted(zip(explain.features, phi), key=lambda t: -abs(float(t[1]))):
        delta = float(delta)
        spec_in = by_name[name]
        feature = features.get(name)
        label = (feature.label if feature else spec_in.label)
        fv = (stored or {}).get(name)
        shown = str(fv["display"]) if _shown_as_read(feature, fv) else \
            input_value_text(spec_in, feature, values[name]).split(" — ")[0]
        half = 100.0 * abs(delta) / scale  # the chart is 200 units wide, zero in the middle
        negligible = abs(delta) < (0.0005 if target.kind == "probability" else 0.005)
        rows.append({
            "label": f"{label}: {shown}",
            "delta": delta,
            "text": "none (as the reference)" if negligible else _delta_text(target, delta),
            "x": round(100.0 - half if delta < 0 else 100.0, 3),
            "width": round(max(half, 0.0), 3),
            "direction": "none" if negligible else "raises" if delta > 0 else "lowers",
        })
    return {
        "rows": rows,
        "reference_label": explain.baseline_label,
        "reference_value": output_text(target, float(series[0])),
        "patient_value": output_text(target, float(series[-1])),
        "output_label": target.label,
        "kind": target.kind,
    }


def _delta_text(out: Output, delta: float) -> str:
    sign = "+" if delta >= 0 else "−"
    if out.kind == "probability":
        return f"{sign}{abs(delta) * 100:.{out.decimals}f} percentage points"
    return f"{sign}{number(abs(delta), max(out.decimals, 1))}"


def scenario_applies(scenario: WhatIf, values: dict[str, float]) -> str | None:
    """Why the scenario is not offered for these values (None when it is): a condition that does not hold, or a
    scenario that would change nothing."""
    unknown = [c.feature for c in scenario.applies_when if c.feature not in values]
    if unknown:  # a condition on a value the record does not give: not "not a smoker", but not known
        return f"{', '.join(unknown)} is not known for this patient"
    reason = unmet(scenario.applies_when, values, None)
    if reason is not None:
        return reason
    if all(values.get(name) == value for name, value in scenario.set.items()):
        return "it would change nothing"
    return None


def stand_in_defaults(runtime: ModelRuntime, pred: dict[str, Any]) -> set[str]:
    """Stored defaults that stand for no value (an add-on's stand-in, e.g. HbA1c 5.3 % when none is recorded, which
    a 'measured' flag switches off): never shown as the patient's value."""
    stored = pred.get("features") or {}
    return {n for n in runtime.spec.presence_flags().values()
            if isinstance(stored.get(n), dict) and stored[n].get("defaulted")}


def what_if_inputs(runtime: ModelRuntime, values: dict[str, float]) -> list[dict[str, Any]]:
    """The inputs offered as editable what-if fields: every input except fixed demographics (sex, race) and flags
    computed from another input (e.g. "UACR measured")."""
    features = runtime.spec.features
    fields = []
    for spec_in in runtime.manifest.inputs:
        feature = features.get(spec_in.name)
        if feature is not None and (feature.demographic in FIXED_DEMOGRAPHICS or feature.present_of is not None):
            continue
        current = values.get(spec_in.name)
        field: dict[str, Any] = {"name": spec_in.name, "label": feature.label if feature else spec_in.label,
                                 "kind": spec_in.kind, "unit": unit_label(spec_in.unit) if spec_in.unit != "1" else "",
                                 "current": None if current is None else number(current, 3)}
        if spec_in.kind == "binary":
            field["options"] = [(v, (display_value(feature, float(v)) if feature else None) or ("Yes" if v else "No"))
                                for v in (1, 0)]
        else:
            field["min"] = number(spec_in.range[0], 3) if spec_in.range else None
            field["max"] = number(spec_in.range[1], 3) if spec_in.range else None
        fields.append(field)
    return fields


def details_view(pred: dict[str, Any], runtime: ModelRuntime | None, manifest: Manifest | None = None
                 ) -> dict[str, Any]:
    """The page's view model for a stored prediction (runtime: the model version that made it, when loaded)."""
    manifest = runtime.manifest if runtime is not None else manifest
    if manifest is None:
        raise ValueError("no manifest for the prediction's model version")
    features: dict[str, Feature] = dict(runtime.spec.features) if runtime is not None else {}
    values = feature_values(pred)
    outputs = pred.get("outputs") or None
    primary = manifest.primary
    view: dict[str, Any] = {
        "m": manifest,
        "title": manifest.card.short_title,
        "model_id": manifest.id,
        "model_version": pred.get("model_version") or manifest.version,
        "created_at": pred["created_at"].strftime("%Y-%m-%d %H:%M UTC") if pred.get("created_at") else None,
        "card_summaries": [c["summary"] for c in pred.get("cards") or []],
        "refusals": list(pred.get("guard_reasons") or []),
        "missing": missing_rows(manifest, features, pred),
        "other_outputs": [],
        "withheld": [],
        "notes": [],
        "contributions": None,
        "scenarios": [],
        "unavailable_scenarios": [],
        "what_if_fields": [],
        "what_if_ready": runtime is not None and manifest.sequence is None,  # a sequence model has no input row
        **input_rows(manifest, features, pred),
    }
    if outputs and primary.name in outputs:
        category = _stored_category(manifest, outputs, pred.get("category"))
        view["status"] = "result"
        view["value_text"] = output_text(primary, float(outputs[primary.name]))
        view["category"] = pred.get("category")
        view["category_description"] = category.description if category else None
        view["guidance"] = (stored_advice(manifest, category.label, pred.get("features") or {},
                                           {n: f.label for n, f in features.items()}, category.guidance)
                            or category.guidance) \
            if category else None
        view["indicator"] = category.indicator if category else "info"
        view["notes"] = stored_notes(manifest, pred.get("features") or {}, pred.get("bounds") or {})
        view["other_outputs"] = [{"label": o.label, "text": output_text(o, float(outputs[o.name]))}
                                 for o in manifest.outputs if not o.primary and o.name in outputs]
        for o in manifest.outputs:
            if not o.primary and o.name not in outputs and o.applies_when:
                reason = unmet(o.applies_when, values, None)
                view["withheld"].append({"label": o.label, "reason": reason or "not given"})
        if runtime is not None:
            view["contributions"] = contribution_rows(runtime, values, features, pred.get("features") or {})
    else:
        view["status"] = "refused" if view["refusals"] else "missing"
        view["indicator"] = "info"
        if runtime is not None:  # the card's own words (cards/builder.py), from the inputs the prediction lacked
            inputs = {i.name for i in manifest.inputs}
            view["missing_headline"] = missing_headline(
                manifest.card.short_title, runtime.spec, [n for n in (pred.get("missing") or {}) if n in inputs])
    if runtime is not None:
        for scenario in manifest.what_if:
            why_not = scenario_applies(scenario, values)
            entry = {"label": scenario.label, "note": scenario.note, "reason": why_not}
            (view["unavailable_scenarios"] if why_not else view["scenarios"]).append(entry)
        stand_ins = stand_in_defaults(runtime, pred)
        view["what_if_fields"] = what_if_inputs(runtime, {n: v for n, v in values.items() if n not in stand_ins})
    return view


def _stored_category(manifest: Manifest, outputs: dict[str, Any], label: Any) -> Category | None:
    """The category the card showed: decided again from the stored outputs (two categories may share a label, as
    NEWS2's 'low' at 0 and at 1-4, with their own guidance), else the first with the stored label."""
    try:
        found = manifest.category_for({k: float(v) for k, v in outputs.items()})
    except (KeyError, TypeError, ValueError):
        found = None
    if found is not None and found.label == label:
        return found
    return next((c for c in manifest.categories if c.label == label), None)
