"""Turn a prediction into CDS Hooks cards: a result card, a missing-data card, or a card saying why there is no number.

Cards follow CDS Hooks 2.0: summary under 140 characters, GitHub-flavored Markdown detail, `selectionBehavior` whenever
there are suggestions, optional fields omitted rather than empty. Every card lists the inputs it used with value,
date and source, so a clinician can check the basis of the estimate (FDA non-device CDS criterion 4).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cards.fhir_resources import format_output, observation, risk_assessment, service_request
from cards.markdown import environment, trusted
from fhir_mapping.result import FeatureValue, MappingResult
from fhir_mapping.mapper import display_value
from fhir_mapping.spec import Feature, FeatureSpec
from inference.manifest import Manifest
from inference.runtime import Prediction

SUMMARY_LIMIT = 139  # the spec: summary < 140 characters
OVERRIDE_SYSTEM = "urn:cds-onnx:override-reason"
OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("data-out-of-date", "Data on the card is out of date"),
    ("not-clinically-relevant", "Not clinically relevant for this patient"),
    ("patient-declined", "Patient declined"),
    ("already-addressed", "Already addressed"),
    ("disagree-with-estimate", "Disagree with the estimate"),
)


@dataclass(frozen=True)
class CardContext:
    """What a card needs besides the prediction: who, when, and where the service is reachable."""

    service_id: str
    patient_id: str
    encounter_id: str | None
    at: datetime
    base_url: str  # public base URL of this service, no trailing slash
    smart_app_url: str | None = None


def build_cards(manifest: Manifest, spec: FeatureSpec, prediction: Prediction, mapping: MappingResult,
                ctx: CardContext) -> list[dict]:
    """The cards for one prediction of a champion model (none for a patient recorded as deceased)."""
    if prediction.suppressed:
        return []
    view = _common_view(manifest, spec, mapping, ctx)
    if prediction.missing_required:
        return [_missing_card(manifest, spec, prediction, mapping, ctx, view)]
    if prediction.refusals or prediction.outputs is None:
        return [_refused_card(manifest, prediction, ctx, view)]
    return [_result_card(manifest, prediction, mapping, ctx, view, spec)]


def clip_summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1].rstrip() + "…"


def _model_card_url(manifest: Manifest, ctx: CardContext) -> str:
    return f"{ctx.base_url}/models/{manifest.id}/card"


def _common_view(manifest: Manifest, spec: FeatureSpec, mapping: MappingResult, ctx: CardContext) -> dict[str, Any]:
    inputs = []
    assumed = []
    for spec_in in manifest.inputs:
        fv = mapping.values.get(spec_in.name)
        if fv is None:
            continue
        feature = spec.features.get(spec_in.name)
        inputs.append(_input_row(fv, feature, ctx.at))
        if fv.defaulted and fv.note:
            assumed.append({"label": fv.label or fv.name, "text": trusted(fv.note) if _from_spec(fv) else fv.note})
    inputs_and_population = {i.name for i in manifest.inputs} | {r.feature for r in manifest.population}
    missing_optional = [
        {"label": m.label or m.name, "reason": m.reason}
        for m in mapping.missing.values() if not m.required and m.name in inputs_and_population
    ]
    return {
        "inputs": inputs,
        "other_outputs": [],
        "missing": [],
        "assumed": assumed,
        "missing_optional": missing_optional,
        "guidance": None,
        "limitations": [trusted(x) for x in manifest.limitations],
        "intended_population": trusted(manifest.intended_population),
        "model_title": trusted(manifest.title),
        "model_version": trusted(manifest.version),
        "model_card_url": trusted(_model_card_url(manifest, ctx)),
        "contributions": [],
    }


def _from_spec(fv: FeatureValue) -> bool:
    """Defaulted notes are written by the spec author, except the demographic prefix the mapper adds."""
    return not fv.sources or all(s.resource_type != "Patient" for s in fv.sources)


def _input_row(fv: FeatureValue, feature: Feature | None, at: datetime) -> dict[str, Any]:
    source = fv.sources[0] if fv.sources and not fv.defaulted else None
    flags = ["assumed"] if fv.defaulted else []
    stale = None if fv.defaulted else _stale(fv, feature.lookback_days if feature else None, at)
    if stale:
        flags.append(stale)
    if source and source.note and source.note.startswith("converted"):
        flags.append(source.note)
    value = fv.display or (display_value(feature, fv.value) if feature else None) or f"{fv.value:g}"
    if fv.defaulted and fv.unit is not None:
        value = "not recorded"  # a placeholder quantity (e.g. an add-on input not measured) is never shown as data
    date = fv.date or (source.date[:10] if source and source.date and source.resource_type != "Patient" else None)
    ref = source.reference if source else None
    return {"label": fv.label or fv.name, "value": value, "date": date, "source": ref,
            "flag": "; ".join(flags) if flags else None}


def _stale(fv: FeatureValue, lookback_days: int | None, at: datetime) -> str | None:
    """Flag a value older than half its look-back window (at least a day): still used, but worth re-measuring."""
    if not fv.date or not lookback_days:
        return None
    try:
        when = datetime.fromisoformat(fv.date).replace(tzinfo=at.tzinfo) if len(fv.date) == 10 else \
            datetime.fromisoformat(fv.date.replace("Z", "+00:00"))
    except ValueError:
        return None
    age_days = (at - when).days
    if age_days < max(lookback_days / 2, 1):
        return None
    months = age_days // 30
    return f"stale: {months} months old" if months >= 2 else f"stale: {age_days} days old"


def _source(manifest: Manifest, ctx: CardContext) -> dict[str, Any]:
    src: dict[str, Any] = {
        "label": f"cds-onnx · {manifest.card.short_title} v{manifest.version}",
        "url": _model_card_url(manifest, ctx),
        "icon": f"{ctx.base_url}/static/icon.png",
    }
    if manifest.card.topic:
        src["topic"] = dict(manifest.card.topic)
    return src


def _links(manifest: Manifest, ctx: CardContext) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = [
        {"label": "Model card and validation", "url": _model_card_url(manifest, ctx), "type": "absolute"}
    ]
    links.extend({"label": link.label, "url": link.url, "type": "absolute"} for link in manifest.card.links)
    if ctx.smart_app_url:
        links.append({"label": "Open in risk app", "url": ctx.smart_app_url, "type": "smart",
                      "appContext": f"model={manifest.id}"})
    return links


def _card(summary: str, indicator: str, detail: str, manifest: Manifest, ctx: CardContext,
          suggestions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": clip_summary(summary),
        "indicator": indicator,
        "detail": detail.strip() + "\n",
        "source": _source(manifest, ctx),
        "overrideReasons": [{"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS],
        "links": _links(manifest, ctx),
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any" if len(suggestions) > 1 else "at-most-one"
    return card


def _render(template: str, view: dict[str, Any]) -> str:
    text = environment().get_template(template).render(**view)
    return re.sub(r"\n{3,}", "\n\n", text)


def _result_card(manifest: Manifest, prediction: Prediction, mapping: MappingResult, ctx: CardContext,
                 view: dict[str, Any], spec: FeatureSpec | None = None) -> dict[str, Any]:
    assert prediction.outputs is not None and prediction.category is not None
    primary = manifest.primary
    value_text = format_output(primary.kind, prediction.outputs[primary.name], primary.decimals)
    category = prediction.category
    view = dict(view)
    view["headline"] = trusted(f"{manifest.card.short_title}: {value_text} ({category.label})")
    view["category_description"] = trusted(category.description)
    view["guidance"] = trusted(category.guidance)
    view["other_outputs"] = [
        trusted(f"{o.label} {format_output(o.kind, prediction.outputs[o.name], o.decimals)}")
        for o in manifest.outputs if not o.primary and o.name in prediction.outputs
    ]
    view["withheld"] = sorted(set(prediction.withheld.values()))
    if prediction.contributions and manifest.explain:
        kind = primary.kind
        view["contributions"] = [
            {"label": _contribution_label(c.feature, c.label, mapping, spec), "delta": trusted(_delta(kind, c.delta,
                                                                                                 primary.decimals))}
            for c in prediction.contributions
            if abs(c.delta) >= (0.0005 if kind == "probability" else 0.005)
        ]
        view["reference_label"] = trusted(manifest.explain.baseline_label)
        view["reference_value"] = trusted(format_output(kind, prediction.reference_output or 0.0, primary.decimals))
    detail = _render(manifest.card.template, view)
    if manifest.card.observation_code:
        resource = observation(manifest, prediction, mapping, patient_id=ctx.patient_id,
                               encounter_id=ctx.encounter_id, at=ctx.at, model_card_url=_model_card_url(manifest, ctx))
        what = f"Record an Observation: {value_text}"
    else:
        resource = risk_assessment(manifest, prediction, mapping, patient_id=ctx.patient_id,
                                   encounter_id=ctx.encounter_id, at=ctx.at,
                                   model_card_url=_model_card_url(manifest, ctx))
        what = f"Record a RiskAssessment: {value_text} ({category.label})"
    suggestions = [{
        "label": f"Save {manifest.card.short_title} to the chart",
        "uuid": str(uuid.uuid4()),
        "isRecommended": False,
        "actions": [{"type": "create", "description": what, "resource": resource}],
    }]
    for follow in category.follow_ups:
        order = service_request(follow.code, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                                reason=f"{manifest.card.short_title} {value_text} ({category.label}); "
                                       f"{follow.guideline}", text=follow.text)
        suggestions.append({
            "label": follow.label,
            "uuid": str(uuid.uuid4()),
            "isRecommended": follow.recommended,
            "actions": [{"type": "create", "description": f"Draft order: {follow.text}", "resource": order}],
        })
    summary = manifest.card.summary.format(value=value_text, category=category.label)
    return _card(summary, category.indicator, detail, manifest, ctx, suggestions)


def _contribution_label(name: str, fallback: str, mapping: MappingResult, spec: FeatureSpec | None) -> str:
    """Name the patient's actual value ("Sex: Male", "Smoking status: Current smoker", "Total cholesterol: 213
    mg/dL"), never a raw indicator such as "Sex female" for a man."""
    fv = mapping.values.get(name)
    if fv is None:
        return trusted(fallback)
    feature = spec.features.get(name) if spec else None
    shown = "not recorded" if fv.defaulted and fv.unit is not None else (
        fv.display or (display_value(feature, fv.value) if feature else None) or f"{fv.value:g}")
    shown = shown.split(" — ")[0]  # the medication detail stays on the inputs list
    return f"{fv.label or fallback}: {shown}"


def _delta(kind: str, delta: float, decimals: int) -> str:
    sign = "+" if delta >= 0 else "−"
    if kind == "probability":
        return f"{sign}{abs(delta) * 100:.{decimals}f} percentage points"
    return f"{sign}{abs(delta):.{max(decimals, 1)}f}"


def _missing_card(manifest: Manifest, spec: FeatureSpec, prediction: Prediction, mapping: MappingResult,
                  ctx: CardContext, view: dict[str, Any]) -> dict[str, Any]:
    missing = [mapping.missing[n] for n in prediction.missing_required if n in mapping.missing]
    labels = [m.label or m.name for m in missing]
    view = dict(view)
    view["headline"] = trusted(f"{manifest.card.short_title} not calculated: required data missing")
    view["missing"] = [{"label": m.label or m.name, "reason": m.reason} for m in missing]
    detail = _render("missing.md.j2", view)
    suggestions = []
    seen: set[str] = set()
    for name in prediction.missing_required:
        feature = spec.features.get(name)
        order = feature.order if feature else None
        if order is None or order.code in seen:
            continue
        seen.add(order.code)
        sr = service_request(order.model_dump(), patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                             reason=f"Needed for {manifest.card.short_title}")
        suggestions.append({
            "label": f"Order {order.display}",
            "uuid": str(uuid.uuid4()),
            "isRecommended": False,
            "actions": [{"type": "create", "description": f"Draft order: {order.display}", "resource": sr}],
        })
    summary = f"{manifest.card.short_title} not calculated: missing {', '.join(labels)}"
    return _card(summary, "info", detail, manifest, ctx, suggestions)


def _refused_card(manifest: Manifest, prediction: Prediction, ctx: CardContext, view: dict[str, Any]) -> dict:
    view = dict(view)
    view["headline"] = trusted(f"No {manifest.card.short_title} estimate for this patient")
    view["refusals"] = [trusted(r) for r in prediction.refusals]
    view["guidance_instead"] = [trusted(g) for g in prediction.guidance]
    detail = _render("refused.md.j2", view)
    first = prediction.refusals[0] if prediction.refusals else "inputs outside the validated range"
    summary = f"No {manifest.card.short_title} estimate: {first}"
    return _card(summary, "info", detail, manifest, ctx, [])

