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

from markupsafe import Markup

from cards.advice import advice_for, advice_text, card_notes
from cards.fhir_resources import format_output, observation, output_text, risk_assessment, service_request
from cards.markdown import environment, md_escape, trusted
from fhir_mapping.draft_orders import DraftOrder
from fhir_mapping.formatting import (clip_words, first_clause, first_sentence, kept_inside, number, unit_label,
                                     unmeasured)
from fhir_mapping.fhirdates import parse_fhir_datetime
from fhir_mapping.result import (BOUND_NOTE, FOR_WANT_OF, NOT_COUNTED, FeatureValue, MappingResult, not_counted_only,
                                 repeat_not_due, searches_lacking)
from fhir_mapping.mapper import display_value
from fhir_mapping.spec import Feature, FeatureSpec
from inference.manifest import Input, Manifest
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
    details_url: str | None = None  # this prediction's details page (opaque, short-lived link)
    smart_launch_url: str | None = None  # the details page as a SMART app (appContext = the details token)
    drafts: tuple[DraftOrder, ...] = ()  # order-select/order-sign: the orders being placed (context.draftOrders)


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
    """A summary under 140 characters that never ends inside a word or a unit."""
    return clip_words(text, SUMMARY_LIMIT)


def _model_card_url(manifest: Manifest, ctx: CardContext) -> str:
    return f"{ctx.base_url}/models/{manifest.id}/card"


def _unchecked(fv: FeatureValue) -> str:
    """' — not fully checked (the MedicationRequest search could not be obtained)' for a "No" answered without one of
    its searches, else nothing."""
    return f" — not fully checked ({searches_lacking(fv.unchecked)})" if fv.unchecked else ""


_UNCONFIRMED = ("provisional", "differential", "unconfirmed")


def _set_aside(fv: FeatureValue) -> str:
    """' — not counted: Type 2 diabetes mellitus (provisional)' for a "No" beside diagnoses of its kind on record that
    are not confirmed (FHIR verification status provisional, differential or unconfirmed): set aside, not absent, so
    the card names them as it names the drugs it does not count; else nothing."""
    named = []
    for ref in fv.sources:
        status = (ref.note or "").removeprefix("verification status is ")
        if ref.resource_type == "Condition" and status in _UNCONFIRMED:
            named.append(f"{ref.display or ref.reference or 'a diagnosis'} ({status})")
    named = list(dict.fromkeys(named))
    if not named:
        return ""
    if len(named) > 2:
        return f" — {len(named)} unconfirmed diagnoses not counted (see full reasoning)"
    return " — not counted: " + clip_words("; ".join(named), 100)


def _common_view(manifest: Manifest, spec: FeatureSpec, mapping: MappingResult, ctx: CardContext) -> dict[str, Any]:
    """What every card kind shares: the short list of assumptions. Everything else lives on the details page."""
    return {"inputs": [], "other_outputs": [], "withheld": [], "missing": [],
            "assumed": _assumed(manifest, spec, mapping), "action": None, "notes": [],
            "in_this_order": _in_this_order(manifest, spec, ctx)}


def _assumed(manifest: Manifest, spec: FeatureSpec, mapping: MappingResult,
             said: frozenset[str] = frozenset()) -> list[str]:
    """The card's "Assumed:" line: the defaults the estimate rests on. `said`: "No"s not fully checked that the
    advice on the card already names ("Not fully checked: diabetes, … (taken as No)"), left out here so the card
    says it once; the details page keeps the searches that could not be obtained."""
    # each entry: [labels, value, why]; "No"s not fully checked for the same missing searches share one entry ("On
    # blood pressure treatment, Diabetes: No — not fully checked (<keys> could not be obtained)"), and so do
    # measurements assumed the same way ("Urine albumin/creatinine ratio, HbA1c: not recorded")
    entries: list[list[Any]] = []
    suffixes: list[tuple[int, str]] = []  # (entry, unrecognised medications named after it)

    def add(label: str, value: str, why: str, alike: bool) -> int:
        """The entry of a label; with `alike`, one already shown with the same value and reason takes it."""
        for i, (labels, shown, reason) in enumerate(entries):
            if alike and reason == why and shown == value:
                labels.append(label)
                return i
        entries.append([[label], value, why])
        return len(entries) - 1

    for name in [i.name for i in manifest.inputs]:
        fv = mapping.values.get(name)
        feature = spec.features.get(name)
        if fv is None or not fv.defaulted or (feature is not None and feature.present_of):
            continue  # population checks and "measured?" flags are spelled out on the details page
        aside = _set_aside(fv)
        if name in said and fv.unchecked and not fv.unrecognised and not aside:
            continue
        value = unmeasured(bool(fv.sources)) if fv.unit is not None else (
            fv.display or (display_value(feature, fv.value) if feature else None) or number(fv.value))
        src = fv.sources[0] if fv.sources else None
        if src is not None and src.resource_type == "Patient" and src.original_value:
            value += f" (recorded: {src.original_value})"  # e.g. race not recorded, or a race the equations lack
        why = _unchecked(fv)
        at = add(fv.label or name, value, why, (bool(why) or fv.unit is not None) and not aside)
        if aside:  # "Diabetes: No — not counted: Type 2 diabetes mellitus (provisional)"
            suffixes.append((at, aside))
        if fv.unrecognised:
            count = len(fv.unrecognised)
            what = "not counted" if not_counted_only(fv.unrecognised) else "not recognised"
            named = [n.replace(NOT_COUNTED, " (") if what == "not counted" else n for n in fv.unrecognised]
            if count <= 2:
                suffixes.append((at, " — " + clip_words(
                    f"{count} active medication{'s' if count > 1 else ''} {what}: {', '.join(named)}", 120)))
            else:  # the list is on the details page; the card says that there is one to check
                suffixes.append((at, f" — {count} active medications {what} (see full reasoning)"))
    # a population check answered "No" without one of its searches (an EHR that did not send the Device key): the
    # card says so, since the exclusion it guards (a mechanical valve) may be on record where nobody looked
    # and a check answered "No" beside an unconfirmed diagnosis of its kind (a provisional myocardial infarction beside
    # a primary-prevention estimate): the card names what it set aside
    def known(name: str) -> float | None:
        fv = mapping.values.get(name)
        return fv.value if fv is not None else None

    applicable = [rule for rule in manifest.population if rule.applies(known)]  # not a man's pregnancy check
    for rule in applicable:
        fv = mapping.values.get(rule.feature)
        if fv is None or not fv.defaulted or rule.feature in said:
            continue
        aside = _set_aside(fv)
        if fv.unchecked or aside:
            feature = spec.features.get(rule.feature)
            add(fv.label or rule.feature,
                fv.display or (display_value(feature, fv.value) if feature else None) or number(fv.value),
                _unchecked(fv) + aside, bool(fv.unchecked))
    # a check read only when recorded, whose search the EHR did not answer in full, was not made: the estimate
    # stands (an LDL-C, a pregnancy on the problem list), and the card says what went unchecked
    for rule in applicable:
        unread = mapping.missing.get(rule.feature)
        if rule.if_recorded and unread is not None and unread.unread and rule.feature not in mapping.values \
                and not any(unread.label in labels for labels, _, _ in entries):
            # "LDL cholesterol, HbA1c …: not checked (the Observation search …)"
            add(unread.label or rule.feature, "not checked", f" ({unread.unread})", True)
    assumed = [f"{', '.join(labels)}: {value}{why}" for labels, value, why in entries]
    # the same unrecognised medications under two features are named once, after the last of them
    for i, suffix in dict.fromkeys(suffixes):
        if not any(j > i and other == suffix for j, other in suffixes):
            assumed[i] += suffix
    return assumed


def _key_inputs(manifest: Manifest, spec: FeatureSpec, mapping: MappingResult, prediction: Prediction,
                at: datetime, count: int = 3) -> list[dict[str, Any]]:
    """The inputs that matter most for this patient: the largest contributions first, else the model's order;
    recorded values only (assumptions have their own line), without FHIR ids (those are on the details page)."""
    inputs = {i.name: i for i in manifest.inputs}
    names = [c.feature for c in prediction.contributions]
    names += [name for name in inputs if name not in names]
    rows = []
    for name in names:
        fv = mapping.values.get(name)
        if fv is None or fv.defaulted:
            continue
        if not prediction.contributions and any(src.resource_type == "Patient" for src in fv.sources):
            continue  # age and sex are in the EHR's banner
        row = _input_row(fv, spec.features.get(name), at, _computed_from(name, fv, spec, mapping))
        rows.append(_inside_as_shown(row, fv, inputs.get(name)))
        if len(rows) == count:
            break
    return rows


def _inside_as_shown(row: dict[str, Any], fv: FeatureValue, spec_in: Input | None) -> dict[str, Any]:
    """A value inside the validated range is not shown rounded onto or past its edge: KFRE scores an eGFR of 59.99
    (validated below 60) and had shown it as '60'; it is shown with the decimals that keep it inside."""
    rng = spec_in.range if spec_in is not None else None
    if rng is None or fv.defaulted:
        return row
    return {**row, "value": kept_inside(str(row["value"]), fv.value, fv.unit, rng[0], rng[1])}


def _computed_from(name: str, fv: FeatureValue, spec: FeatureSpec, mapping: MappingResult) -> str | None:
    """For a derived value (an eGFR by CKD-EPI 2021) whose input was converted: 'computed from serum creatinine
    150 µmol/L', naming the input its first record gave, as written, where the input's own conversion flag would say
    the eGFR itself was converted; None otherwise."""
    if not (fv.note or "").startswith("computed from ") or name not in spec.features:
        return None
    if not any((s.note or "").startswith("converted") for s in fv.sources):
        return None  # nothing to correct, and the card's length budget is tight (the details page says it all)
    source = next((s for s in fv.sources if s.resource_type != "Patient"), None)
    for n in sorted(spec.derived_inputs(name)):
        used = mapping.values.get(n)
        if source is not None and used is not None and source in used.sources:
            written = f" {number(source.original_value, 2)} {unit_label(source.original_unit or '')}".rstrip() \
                if isinstance(source.original_value, (int, float)) and source.original_unit else ""
            return f"computed from {spec.features[n].label.lower()}{written}"
    return "computed"


def _input_row(fv: FeatureValue, feature: Feature | None, at: datetime,
               computed_from: str | None = None) -> dict[str, Any]:
    source = fv.sources[0] if fv.sources and not fv.defaulted else None
    flags = []
    stale = _stale(fv, feature.lookback_days if feature else None, at)
    if stale:
        flags.append(stale)
    if computed_from:  # computed by an equation, not a unit conversion of its first input
        flags.append(computed_from)
    elif source and source.note and source.note.startswith("converted") and source.original_unit:
        # a unit that reads as nothing (UCUM 1, {ratio}) is a dimensionless fraction: say so, not a bare "0.4"
        flags.append(f"converted from {number(source.original_value, 2)} "
                     f"{unit_label(source.original_unit) or '(a fraction)'}"
                     if isinstance(source.original_value, (int, float)) else "converted")
    if source and source.note and source.note.startswith("written without a unit"):
        flags.append("no unit written")  # read in the one unit its code has; the details page says which
    value = fv.display or (display_value(feature, fv.value) if feature else None) or number(fv.value)
    value = value.split(", recognised by ")[0]  # the drug stays; how it was recognised is on the details page
    date = fv.date or (source.date[:10] if source and source.date and source.resource_type != "Patient" else None)
    return {"label": fv.label or fv.name, "value": value, "date": date, "flag": "; ".join(flags) if flags else None}


def _stale(fv: FeatureValue, lookback_days: int | None, at: datetime) -> str | None:
    """Flag a value older than half its look-back window (at least a day; for a window of a day or two, half of it
    in hours, as NEWS2's vital signs of the last 24 hours: the RCP's least frequent observations are 12-hourly):
    still used, but worth re-measuring."""
    if not fv.date or not lookback_days:
        return None
    written = fv.sources[0].date if fv.sources and not fv.defaulted else None
    moment = parse_fhir_datetime(written) if lookback_days <= 2 and written and "T" in written else None
    if moment is not None and moment.tzinfo is not None:  # shown with its local time: counted in hours
        hours = int((at - moment).total_seconds() // 3600)
        if hours < 48:
            return f"stale: {hours} hours old" if hours >= lookback_days * 12 else None
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
    links: list[dict[str, Any]] = []
    if ctx.details_url:
        links.append({"label": "Full reasoning, sources and what-if", "url": ctx.details_url, "type": "absolute"})
        if ctx.smart_launch_url:
            links.append({"label": "Full reasoning (SMART app)", "url": ctx.smart_launch_url, "type": "smart",
                          "appContext": ctx.details_url.rsplit("/", 1)[1]})
    links.append({"label": "Model card and validation", "url": _model_card_url(manifest, ctx), "type": "absolute"})
    links.extend({"label": link.label, "url": link.url, "type": "absolute"} for link in manifest.card.links)
    if ctx.smart_app_url:
        links.append({"label": "Open in risk app", "url": ctx.smart_app_url, "type": "smart",
                      "appContext": f"model={manifest.id}"})
    return links


def _card(summary: str, indicator: str, detail: str, manifest: Manifest, ctx: CardContext,
          suggestions: list[dict[str, Any]]) -> dict[str, Any]:
    suggestions = [s for s in suggestions if not _already_drafted(s, ctx)]
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


def _already_drafted(suggestion: dict[str, Any], ctx: CardContext) -> bool:
    """A suggested order whose code is already among the orders being placed (a urine ACR in the order set)."""
    if not ctx.drafts:
        return False
    drafted = {code for d in ctx.drafts if d.resource_type == "ServiceRequest" for code in d.codes | d.reads_as}
    orders = [a["resource"] for a in suggestion["actions"] if a["resource"].get("resourceType") == "ServiceRequest"]
    return bool(orders) and all(any(f"{c.get('system')}|{c.get('code')}" in drafted
                                    for c in r.get("code", {}).get("coding", ())) for r in orders)


def _in_this_order(manifest: Manifest, spec: FeatureSpec, ctx: CardContext) -> list[Markup]:
    """The orders being placed that bear on this model: a drug of one of its drug classes ('apixaban 5 MG Oral
    Tablet (anticoagulant)'), a test it reads or orders; names as the order gives them, escaped (none on hooks that
    place no orders, without reading the spec)."""
    if not ctx.drafts:
        return []
    tests = {f"{f.order.system}|{f.order.code}" for f in spec.features.values() if f.order is not None}
    tests |= {c for f in spec.features.values() for s in f.sources if s.resource == "Observation" for c in s.codes}
    tests |= {f"{u.code.get('system')}|{u.code.get('code')}" for c in manifest.categories for u in c.follow_ups
              if u.code}
    named = [f"{md_escape(d.name)} ({md_escape(d.recognised_as)})" if d.recognised_as else md_escape(d.name)
             for d in ctx.drafts if d.recognised_as or (d.resource_type == "ServiceRequest"
                                                        and (d.codes & tests or d.reads_as))]
    return [trusted(n) for n in dict.fromkeys(named)]


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
    # a measured value carries its unit wherever it stands alone (the summary's own words name it)
    with_unit = output_text(primary, prediction.outputs[primary.name])
    view["headline"] = trusted(f"{manifest.card.short_title}: {with_unit} ({category.label})")
    view["category_description"] = trusted(category.description)
    advice = advice_for(manifest, category.label, mapping)
    # advice is written to fit the card whole; the drug names it quotes are escaped, and a full stop inside one
    # ("Eliquis 5 mg tab. Take …") is not the end of a sentence
    view["action"] = trusted(advice_text(advice, mapping, md_escape, category.guidance) if advice
                             else _action(category.guidance))
    if advice is not None and advice.unchecked and spec is not None:
        view["assumed"] = _assumed(manifest, spec, mapping, frozenset(advice.unchecked))
    view["other_outputs"] = _other_outputs(manifest, prediction)
    view["withheld"] = [trusted(w) for w in sorted(set(prediction.withheld.values()))]
    view["notes"] = [trusted(n) for n in prediction.notes]  # worded by the runtime from the model folder
    view["notes"] += [trusted(n) for n in card_notes(manifest, mapping, md_escape)]  # record text escaped
    view["inputs"] = _key_inputs(manifest, spec, mapping, prediction, ctx.at, manifest.card.inputs_shown) \
        if spec else []
    detail = _render(manifest.card.template, view)
    resource = chart_resource(manifest, prediction, mapping, ctx)
    if manifest.card.observation_code:
        what = f"Record an Observation: {with_unit}"
    else:
        what = f"Record a RiskAssessment: {value_text} ({category.label})"
    suggestions = [{
        "label": f"Save {manifest.card.short_title} to the chart",
        "uuid": str(uuid.uuid4()),
        "isRecommended": False,
        "actions": [{"type": "create", "description": what, "resource": resource}],
    }]
    for follow in category.follow_ups if advice is None or advice.follow_ups == "keep" else ():
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


def chart_resource(manifest: Manifest, prediction: Prediction, mapping: MappingResult,
                   ctx: CardContext) -> dict[str, Any]:
    """The FHIR resource a result card offers to save to the chart (a RiskAssessment, or an Observation for a
    computed value such as eGFR); population scoring writes the same resource for every patient it scores."""
    if manifest.card.observation_code:
        return observation(manifest, prediction, mapping, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                           at=ctx.at, model_card_url=_model_card_url(manifest, ctx))
    return risk_assessment(manifest, prediction, mapping, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                           at=ctx.at, model_card_url=_model_card_url(manifest, ctx))


def _other_outputs(manifest: Manifest, prediction: Prediction) -> list[str]:
    """Secondary outputs on one line, grouped by horizon: '10-year: ASCVD 9.2%, heart failure 8.1%'."""
    assert prediction.outputs is not None
    groups: dict[str, list[str]] = {}
    for o in manifest.outputs:
        if o.primary or o.name not in prediction.outputs:
            continue
        value = format_output(o.kind, prediction.outputs[o.name], o.decimals)
        prefix = f"{number(o.horizon_years, 0)}-year " if o.horizon_years else ""
        if prefix and o.label.startswith(prefix):
            groups.setdefault(prefix.strip(), []).append(f"{o.label[len(prefix):]} {value}")
        else:
            groups.setdefault("", []).append(f"{o.label} {value}")
    return [trusted(f"{key}: {', '.join(items)}" if key else ", ".join(items)) for key, items in groups.items()]


def _short_reason(reason: str) -> str:
    """The first clause of why a feature is missing ('Nothing usable on record in the last 2 years: a lipid panel
    is needed'); the rest (what was passed over and why) is on the details page. Up to two sidebar lines: at 80
    characters 'Newest result (…) not usable: has valueInteger instead of a valueQuantity' lost its last words."""
    head = first_clause(reason)  # a record's words quoted in the reason may hold '; '
    return clip_words(head, 140)


def _action(guidance: str | None) -> str | None:
    """The one recommended action for the category: the guideline's words, shortened to a sentence if long."""
    if not guidance:
        return None
    text = " ".join(guidance.split())
    return text if len(text) <= 140 else first_sentence(text)


def contribution_label(name: str, fallback: str, mapping: MappingResult, spec: FeatureSpec | None) -> str:
    """Name the patient's actual value ("Sex: Male", "Smoking status: Current smoker", "Total cholesterol: 213
    mg/dL"), never a raw indicator such as "Sex female" for a man."""
    fv = mapping.values.get(name)
    if fv is None:
        return trusted(fallback)
    feature = spec.features.get(name) if spec else None
    shown = unmeasured(bool(fv.sources)) if fv.defaulted and fv.unit is not None else (
        fv.display or (display_value(feature, fv.value) if feature else None) or f"{fv.value:g}")
    shown = shown.split(" — ")[0]  # the medication detail stays on the inputs list
    return f"{fv.label or fallback}: {shown}"


def format_delta(kind: str, delta: float, decimals: int) -> str:
    sign = "+" if delta >= 0 else "−"
    if kind == "probability":
        return f"{sign}{abs(delta) * 100:.{decimals}f} percentage points"
    return f"{sign}{abs(delta):.{max(decimals, 1)}f}"


def missing_headline(title: str, spec: FeatureSpec, names: list[str]) -> str:
    """'<title> not calculated: required data missing', unless every input missing is an optional add-on (PREVENT's
    urine ACR) that is unknown: a result on record that cannot be used ('<30 mg/g', no unit), or a search cut short.
    An add-on never recorded is left out of the equations, so only an unknown one stops the estimate, and it is not
    required data."""
    add_ons = set(spec.presence_flags().values())
    if names and all(n in add_ons for n in names):
        return f"{title} not calculated: an optional input is unknown"
    return f"{title} not calculated: required data missing"


def _missing_card(manifest: Manifest, spec: FeatureSpec, prediction: Prediction, mapping: MappingResult,
                  ctx: CardContext, view: dict[str, Any]) -> dict[str, Any]:
    missing = [mapping.missing[n] for n in prediction.missing_required if n in mapping.missing]
    # an age on the day of a result that is itself missing ('Age at the creatinine') follows from that result: the
    # card names the result once (the details page lists both)
    named = [m for m in missing if not _follows_missing(spec, m.name, mapping)]
    missing = named or missing
    labels = [m.label or m.name for m in missing]
    view = dict(view)
    view["headline"] = trusted(missing_headline(manifest.card.short_title, spec, [m.name for m in missing]))
    shown = missing if len(missing) <= 5 else missing[:4]
    view["missing"] = [{"label": m.label or m.name, "reason": _short_reason(m.reason)} for m in shown]
    if len(shown) < len(missing):
        view["missing"].append({"label": f"and {len(missing) - len(shown)} more",
                                "reason": "see the full reasoning link"})
    detail = _render("missing.md.j2", view)
    suggestions = []
    # each test to order, with the inputs it is for; one whose every input is among the tests being ordered (total
    # cholesterol and HDL drafted, where the card would order a lipid panel) is not offered again
    needed: dict[str, list[Feature]] = {}
    orders: dict[str, Any] = {}
    for name in prediction.missing_required:
        feature = spec.features.get(name)
        order = feature.order if feature else None
        if order is None or feature is None or _resulted_as_a_bound(mapping, name, feature, ctx.at) \
                or _for_want_of_another(mapping, name) or _not_read(mapping, name):
            continue
        needed.setdefault(order.code, []).append(feature)
        orders.setdefault(order.code, order)
    drafted = {code for d in ctx.drafts if d.resource_type == "ServiceRequest" for code in d.codes | d.reads_as}
    for code, features in needed.items():
        if drafted and all(_being_ordered(f, drafted) for f in features):
            continue
        order = orders[code]
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


def _being_ordered(feature: Feature, drafted: set[str]) -> bool:
    """Whether a test the feature reads is among the tests being ordered: one of a source's preferred codes where it
    prefers some (a whole-blood creatinine is not the serum one CKD-EPI needs), else any of its codes."""
    return any(drafted & set(s.prefer_codes or s.codes) for s in feature.sources if s.resource == "Observation")


def _not_read(mapping: MappingResult, name: str) -> bool:
    """Whether the input's search was not answered in full (cut short): its results exist and were not read, so a
    new test is not shown to be needed."""
    missing = mapping.missing.get(name)
    return missing is not None and missing.unread is not None


def _resulted_as_a_bound(mapping: MappingResult, name: str, feature: Feature | None, at: datetime) -> bool:
    """The newest result is a bound ('<3 mg/g' as a Quantity or as text, below the lab's detection limit) of the
    first half of the look-back: the test was done and a repeat would be written the same way, so the card offers no
    order for it (it says why there is no number); an older one is due again."""
    missing = mapping.missing.get(name)
    ref = missing.newest_unusable if missing is not None else None
    if ref is None or not (ref.note or "").startswith(BOUND_NOTE):
        return False
    moment = parse_fhir_datetime(ref.date) if ref.date else None
    return repeat_not_due(moment.date() if moment is not None else None,
                          feature.lookback_days if feature is not None else None, at)


def _for_want_of_another(mapping: MappingResult, name: str) -> bool:
    """Its results are on record and an age or sex is not (an eGFR for gender 'other'): a new test gives nothing."""
    missing = mapping.missing.get(name)
    return missing is not None and missing.reason.startswith(FOR_WANT_OF)


def _follows_missing(spec: FeatureSpec, name: str, mapping: MappingResult) -> bool:
    """A feature dated by another (`on_date_of`) that is missing because that one is."""
    feature = spec.features.get(name)
    return feature is not None and feature.on_date_of is not None and feature.on_date_of in mapping.missing


def _refused_card(manifest: Manifest, prediction: Prediction, ctx: CardContext, view: dict[str, Any]) -> dict:
    view = dict(view)
    view["headline"] = trusted(f"No {manifest.card.short_title} estimate for this patient")
    view["refusals"] = [trusted(clip_words(r, 200)) for r in prediction.refusals]
    view["guidance_instead"] = [trusted(g) for g in prediction.guidance]
    detail = _render("refused.md.j2", view)
    first = prediction.refusals[0] if prediction.refusals else "inputs outside the validated range"
    summary = f"No {manifest.card.short_title} estimate: {first}"
    return _card(summary, "info", detail, manifest, ctx, [])

