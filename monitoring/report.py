"""The monitoring report: for each deployed model, what needs a decision — is it still seeing the population it was
built for, is it still right, is it fair, do clinicians act on it, and is its challenger better?

`build_summary` reads predictions, cards, feedback and imported outcomes from the store and returns every number of
the report as plain JSON (`--json`); `monitoring.report_html.render_html` draws the self-contained page from it.
Each statistic carries its counts and 95% interval and is withheld, with the reason, below the model's minimum
event count. Outcomes count only for predictions whose follow-up window had closed by `outcomes_through`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inference.manifest import Manifest
from monitoring.drift import PSI_THRESHOLD, drift
from monitoring.evaluation import (
    flag_region,
    flag_rule,
    is_flagged,
    judge,
    pair_by_request,
    risk_oriented,
    score_type,
    selected,
    version_manifest,
)
from monitoring.evidence import FAIRNESS_ATTRIBUTES, EvidenceError, paired_evidence
from monitoring.followup import OutcomeSpec, matched_outcomes
from monitoring.intervals import wilson
from monitoring.metrics import FAIRNESS_BOUNDS, fairness_audit, not_enough, performance, shown, withheld

TOP_REASONS = 5
ATTRIBUTE_WORDS = {"sex": "sex", "age_band": "age band", "race": "race", "ethnicity": "ethnicity"}
METRIC_WORDS = {"flag_rate": "flag rate", "sensitivity": "sensitivity", "ppv": "PPV", "oe_ratio": "observed/expected",
                "auroc": "AUROC"}
NO_NUMBER_ATTENTION = 0.2  # a model giving no number to more than this share of requests is listed for attention
OVERRIDE_ATTENTION = 0.5  # ... and one whose override rate is surely above this


@dataclass
class ReportOptions:
    since: datetime
    until: datetime | None = None  # end of the window (default: now)
    outcomes_through: datetime | None = None  # outcomes are complete up to here (default: the end of the window)
    threshold: float | None = None  # override the flag rule: primary output at or above this is "flagged"
    psi_threshold: float = PSI_THRESHOLD


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_summary(store: Any, repository: Any, options: ReportOptions) -> dict[str, Any]:
    until = _utc(options.until) if options.until else datetime.now(UTC)
    through = _utc(options.outcomes_through) if options.outcomes_through else until
    since = _utc(options.since)
    preds = [p for p in store.predictions(since=since) if p["created_at"] <= until]
    # feedback on the cards of the window's predictions; feedback naming an unknown card, by when it arrived
    feedback = [f for f in store.feedback_joined()
                if since <= _utc(f["created_at"] if f["created_at"] is not None else f["received_at"]) <= until]
    outcomes = store.outcomes()
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in preds:
        by_model[p["model_id"]].append(p)
    feedback_by_model: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for f in feedback:
        feedback_by_model[f["model_id"]].append(f)
    models: dict[str, Any] = {}
    for model_id, rows in sorted(by_model.items()):
        models[model_id] = _model_section(store, repository, model_id, rows, feedback_by_model.get(model_id, []),
                                          outcomes, options, since, through)
    tied = {m: s["outcome"]["matched_outcomes"] for m, s in models.items()}
    specs = [OutcomeSpec.of(mf) for m in models if (mf := _manifest_of(repository, m, by_model[m])) is not None]
    untied = sum(1 for o in outcomes if not any(s is not None and s.matcher.matches(o["system"], o["code"])
                                                 for s in specs))
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "outcomes_through": through.isoformat(),
        "volume": _volume(preds),
        "feedback": _feedback(feedback),
        "outcomes": {"imported": len(outcomes), "tied_to_models": tied, "not_tied_to_any_model": untied},
        "summary": [_summary_row(m, s) for m, s in models.items()],
        "attention": [item for m, s in models.items() for item in _attention(m, s)],
        "models": models,
    }


def _manifest_of(repository: Any, model_id: str, rows: list[dict[str, Any]]) -> Manifest | None:
    """The manifest of the version that made most of this model's shown predictions in the window."""
    versions = Counter(r["model_version"] for r in rows if r["alias"] == "champion")
    if not versions:
        return version_manifest(repository, model_id, None)
    return version_manifest(repository, model_id, versions.most_common(1)[0][0]) or version_manifest(
        repository, model_id, None)


# ---- volume and feedback --------------------------------------------------------------------------------------------
def _volume(preds: list[dict[str, Any]]) -> dict[str, Any]:
    champion = [p for p in preds if p["alias"] == "champion"]
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    cards_by_day: Counter[str] = Counter()
    for p in champion:
        day = p["created_at"].date().isoformat()
        by_day[day][p["service_id"]] += 1
        cards_by_day[day] += len(p["card_uuids"])
    return {
        "predictions": len(champion),
        "shadow_predictions": len(preds) - len(champion),
        "cards": sum(len(p["card_uuids"]) for p in champion),
        "by_service": dict(Counter(p["service_id"] for p in champion).most_common()),
        "by_day": {day: dict(c) for day, c in sorted(by_day.items())},
        "cards_by_day": dict(sorted(cards_by_day.items())),
    }


def _reason(row: dict[str, Any]) -> str:
    return row["override_reason_display"] or row["override_reason_code"] or "(no reason given)"


def _feedback(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = len(rows)
    accepted = sum(1 for r in rows if r["outcome"] == "accepted")
    overridden = sum(1 for r in rows if r["outcome"] == "overridden")
    reasons = Counter(_reason(r) for r in rows if r["outcome"] == "overridden")
    return {
        "total": total, "accepted": accepted, "overridden": overridden,
        "acceptance_rate": shown(wilson(accepted, total), n=total) if total else withheld("no feedback", n=0),
        "override_rate": shown(wilson(overridden, total), n=total) if total else withheld("no feedback", n=0),
        "top_override_reasons": [{"reason": k, "count": v} for k, v in reasons.most_common(TOP_REASONS)],
        "not_tied_to_a_prediction": sum(1 for r in rows if r["model_id"] is None),
    }


# ---- one model ------------------------------------------------------------------------------------------------------
_RANGE = re.compile(r"^(?P<label>.+?) -?[\d.,]+\S* .*is outside the range the model was validated for.*$")


def _no_number_reason(row: dict[str, Any]) -> list[str]:
    """Why a prediction has no number, grouped so that patients' values do not split one reason into many."""
    if row["guard_reasons"]:
        out = []
        for reason in row["guard_reasons"]:
            m = _RANGE.match(reason)
            out.append(f"{m.group('label')} outside the validated range" if m else reason)
        return out
    if row["missing"]:
        return ["missing required input(s)"]
    return ["no number (reason not recorded)"]


def _no_number(champion: list[dict[str, Any]], manifest: Manifest | None) -> dict[str, Any]:
    none = [r for r in champion if r["score"] is None]
    reasons = Counter(reason for r in none for reason in _no_number_reason(r))
    labels = {i.name: i.label for i in manifest.inputs} if manifest else {}
    # the model's inputs only: a feature read for a rule or advice (a pregnancy status never charted, an LDL-C) is
    # not missing data, and the inputs an eGFR is computed from are not the model's
    counted = (lambda name: name in labels) if manifest else (lambda name: True)
    missing_all = Counter(name for r in champion for name in (r["missing"] or {}) if counted(name))
    missing_none = Counter(name for r in none for name in (r["missing"] or {}) if counted(name))
    n = len(champion)
    return {
        "count": len(none),
        "share": shown(wilson(len(none), n), n=n) if n else withheld("no predictions", n=0),
        "reasons": [{"reason": k, "count": v} for k, v in reasons.most_common(TOP_REASONS)],
        "missing_inputs": [{"input": k, "label": labels.get(k, k), "count": v, "share": v / n,
                            "in_no_number": missing_none.get(k, 0)}
                           for k, v in missing_all.most_common(TOP_REASONS)],
    }


def _model_feedback(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = _feedback(rows)
    out.pop("not_tied_to_a_prediction")
    return out


def _scores_by_day(scored: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    days: dict[str, list[float]] = defaultdict(list)
    for r in scored:
        days[r["created_at"].date().isoformat()].append(r["score"])
    return {d: {"n": float(len(v)), "median": float(np.median(v)), "p10": float(np.quantile(v, 0.1)),
                "p90": float(np.quantile(v, 0.9))} for d, v in sorted(days.items())}


def _model_section(store: Any, repository: Any, model_id: str, rows: list[dict[str, Any]],
                   feedback: list[dict[str, Any]], outcomes: list[dict[str, Any]], options: ReportOptions,
                   since: datetime, through: datetime) -> dict[str, Any]:
    manifest = _manifest_of(repository, model_id, rows)
    champion = [r for r in rows if r["alias"] == "champion"]
    scored = [r for r in champion if r["score"] is not None]
    kind = score_type(manifest)
    spec = OutcomeSpec.of(manifest) if manifest else None
    min_events = manifest.monitoring.min_events if manifest else 20
    section: dict[str, Any] = {
        "title": manifest.title if manifest else model_id,
        "score_type": kind,
        "versions": dict(Counter(r["model_version"] for r in champion).most_common()),
        "manifest_version": manifest.version if manifest else None,
        "predictions": len(champion),
        "scored": len(scored),
        "no_number": _no_number(champion, manifest),
        "categories": dict(Counter(r["category"] or "no number" for r in champion).most_common()),
        "feedback": _model_feedback(feedback),
        "drift": drift(scored, manifest, options.psi_threshold),
        "scores_by_day": _scores_by_day(scored),
        "outcome": _outcome_declaration(manifest, spec, outcomes, min_events),
    }
    chosen = selected(champion, manifest)
    flagged_all = np.array([is_flagged(r, manifest, options.threshold) for r in chosen], dtype=bool)
    section["follow_up"] = None
    section["performance"] = None
    y = p = None
    judged_rows: list[dict[str, Any]] = []
    if spec is not None:
        judged = judge(chosen, spec, outcomes, through)
        judged_rows, y = judged.rows, judged.y
        p = np.array([r["score"] for r in judged_rows], dtype=float)
        section["follow_up"] = {"unit": "prediction" if manifest and manifest.monitoring.per == "prediction"
                                else "patient (first prediction)", "selected": len(chosen),
                                "judged": len(judged_rows), "follow_up_open": judged.follow_up_open,
                                "events": judged.events, "prior_outcome": judged.prior_outcome}
        section["performance"] = performance(y, risk_oriented(p, manifest), kind, min_events)
    flagged_eval = np.array([is_flagged(r, manifest, options.threshold) for r in judged_rows], dtype=bool)
    # O/E needs the probabilities as they are; AUROC needs them oriented so that higher means more risk
    p_fair = None if p is None else (p if kind == "probability" else risk_oriented(p, manifest))
    attributes = {}
    for attribute in FAIRNESS_ATTRIBUTES:
        labels_all = [str((r.get("cohort") or {}).get(attribute) or "unknown") for r in chosen]
        labels_eval = [str((r.get("cohort") or {}).get(attribute) or "unknown") for r in judged_rows]
        audit = fairness_audit(labels_all, flagged_all, labels_eval, flagged_eval, y, p_fair, kind == "probability",
                               min_events)
        if audit["reference_group"] is not None:
            attributes[attribute] = audit
    section["fairness"] = {"flag_rule": flag_rule(manifest, options.threshold),
                           "flag_region": [list(r) for r in flag_region(manifest)] if manifest and
                           options.threshold is None else None, "bounds": list(FAIRNESS_BOUNDS),
                           "flagged": int(flagged_all.sum()), "n": len(chosen), "attributes": attributes}
    section["champion_challenger"] = _champion_challenger(store, repository, model_id, rows, since, through)
    return section


def _outcome_declaration(manifest: Manifest | None, spec: OutcomeSpec | None, outcomes: list[dict[str, Any]],
                         min_events: int) -> dict[str, Any]:
    if manifest is None:
        return {"declared": False, "message": "model version not in the repository: no outcome declared",
                "matched_outcomes": 0, "min_events": min_events}
    if spec is None or manifest.monitoring.outcome is None:
        return {"declared": False, "message": "no outcome declared", "matched_outcomes": 0, "min_events": min_events}
    return {"declared": True, "label": spec.label, "codes": list(manifest.monitoring.outcome.codes),
            "horizon_days": manifest.outcome_horizon_days, "min_events": min_events,
            "matched_outcomes": matched_outcomes(outcomes, spec), "message": None}


def _champion_challenger(store: Any, repository: Any, model_id: str, rows: list[dict[str, Any]], since: datetime,
                         through: datetime) -> dict[str, Any] | None:
    pairs = pair_by_request(rows)
    if not pairs:
        return None
    both = [(a, b) for a, b in pairs if a["score"] is not None and b["score"] is not None]
    champ_version = Counter(a["model_version"] for a, _ in pairs).most_common(1)[0][0]
    chall_version = Counter(b["model_version"] for _, b in pairs).most_common(1)[0][0]
    diffs = np.array([abs(a["score"] - b["score"]) for a, b in both]) if both else np.array([])
    agree = sum(a["category"] == b["category"] for a, b in both)
    out: dict[str, Any] = {
        "champion_version": champ_version, "challenger_version": chall_version,
        "requests": len(pairs), "both_numbers": len(both),
        "champion_only": sum(1 for a, b in pairs if a["score"] is not None and b["score"] is None),
        "challenger_only": sum(1 for a, b in pairs if a["score"] is None and b["score"] is not None),
        "neither": sum(1 for a, b in pairs if a["score"] is None and b["score"] is None),
        "category_agreement": shown(wilson(agree, len(both)), n=len(both)) if both else withheld(
            not_enough("pairs where both gave a number", 0, 1), n=0),
        "mean_abs_difference": float(diffs.mean()) if len(diffs) else None,
        "max_abs_difference": float(diffs.max()) if len(diffs) else None,
        "points": [[a["score"], b["score"]] for a, b in both[:2000]],
    }
    try:
        evidence = paired_evidence(store, repository, model_id, champ_version, chall_version, since=since,
                                   now=through)
        out["evidence"] = evidence.to_json()
    except EvidenceError as exc:
        out["evidence"] = None
        out["evidence_message"] = str(exc)
    return out


# ---- the summary table and what needs a decision --------------------------------------------------------------
def _summary_row(model_id: str, s: dict[str, Any]) -> dict[str, Any]:
    perf = s["performance"] or {}
    cal = perf.get("calibration") or {}
    cc = s["champion_challenger"] or {}
    ev = cc.get("evidence") or {}
    psis = [f["psi"] for f in s["drift"]["features"].values()]
    return {
        "model": model_id, "title": s["title"], "score_type": s["score_type"], "predictions": s["predictions"],
        "no_number_share": s["no_number"]["share"],
        "top_no_number_reason": (s["no_number"]["reasons"] or [{"reason": None}])[0]["reason"],
        "top_missing_input": (s["no_number"]["missing_inputs"] or [{"label": None}])[0]["label"],
        "feedback": s["feedback"]["total"], "acceptance_rate": s["feedback"]["acceptance_rate"],
        "override_rate": s["feedback"]["override_rate"],
        "drift_reference": s["drift"]["reference"], "max_psi": max(psis) if psis else None,
        "drift_flagged": s["drift"]["flagged"], "drift_note": s["drift"]["note"],
        "outcome_declared": s["outcome"]["declared"],
        "judged": (s["follow_up"] or {}).get("judged"), "events": (s["follow_up"] or {}).get("events"),
        "follow_up_open": (s["follow_up"] or {}).get("follow_up_open"),
        "auroc": perf.get("auroc"), "performance_message": perf.get("message") if perf else s["outcome"]["message"],
        "calibration_slope": cal.get("slope"), "oe_ratio": cal.get("oe_ratio"),
        "fairness_outside": [f"{a}: {x}" for a, v in s["fairness"]["attributes"].items() for x in v["outside_bounds"]],
        "challenger_version": cc.get("challenger_version"), "category_agreement": cc.get("category_agreement"),
        "auroc_difference": ev.get("auroc_difference"), "challenger_message": ev.get("message") if cc else None,
    }


def _excludes(stat: dict[str, Any] | None, value: float) -> bool:
    return bool(stat) and stat.get("estimate") is not None and not stat["low"] <= value <= stat["high"]


def _attention(model_id: str, s: dict[str, Any]) -> list[dict[str, str]]:
    """What a reviewer should decide about, most consequential first; each item names the evidence."""
    items: list[tuple[str, str]] = []
    perf = s["performance"] or {}
    cal = perf.get("calibration") or {}
    for key, name in (("oe_ratio", "observed/expected"), ("slope", "calibration slope")):
        if _excludes(cal.get(key), 1.0):
            st = cal[key]
            items.append(("calibration", f"{name} {st['estimate']:.2f} (95% CI {st['low']:.2f}–{st['high']:.2f}) "
                                         "excludes 1: recalibrate or review"))
    for a, v in s["fairness"]["attributes"].items():
        for entry in v["outside_bounds"]:
            group, metric = entry.split(": ", 1)
            st = v["groups"][group]["ratios"][metric]
            items.append(("fairness", f"{ATTRIBUTE_WORDS.get(a, a)} {group} vs {v['reference_group']}: "
                                      f"{METRIC_WORDS.get(metric, metric)} ratio {st['estimate']:.2f} "
                                      f"(95% CI {st['low']:.2f}–{st['high']:.2f}) outside "
                                      f"{FAIRNESS_BOUNDS[0]}–{FAIRNESS_BOUNDS[1]}"))
    if s["drift"]["flagged"]:
        worst = ", ".join(f"{'model output' if n == '__score__' else n} (PSI {s['drift']['features'][n]['psi']:.2f})"
                          for n in s["drift"]["flagged"])
        items.append(("drift", f"population drift against the {s['drift']['reference']}: {worst}"))
    share = s["no_number"]["share"]
    if share.get("estimate") is not None and share["low"] > NO_NUMBER_ATTENTION:
        top = (s["no_number"]["reasons"] or [{"reason": "?"}])[0]["reason"]
        items.append(("no number", f"{share['estimate']:.0%} of requests got no number (top reason: {top})"))
    rate = s["feedback"]["override_rate"]
    if rate.get("estimate") is not None and rate["low"] > OVERRIDE_ATTENTION:
        items.append(("overrides", f"{rate['estimate']:.0%} of responses overrode the card "
                                   f"(95% CI {rate['low']:.0%}–{rate['high']:.0%})"))
    ev = (s["champion_challenger"] or {}).get("evidence") or {}
    diff = ev.get("auroc_difference")
    if _excludes(diff, 0.0):
        better = "better" if diff["estimate"] > 0 else "worse"
        items.append(("challenger", f"challenger {ev['challenger_version']} discriminates {better}: ΔAUROC "
                                    f"{diff['estimate']:+.3f} (95% CI {diff['low']:+.3f} to {diff['high']:+.3f})"))
    return [{"model": model_id, "topic": t, "detail": d} for t, d in items]
