"""The monitoring report: is the deployed model still seeing the population it was built for, and still right?

Reads predictions, cards, feedback and imported outcomes from the store; writes a JSON summary (every number in the
report) and a self-contained HTML page with inline plots. Drift is measured against the model card's reference
distribution when it has one, otherwise against the first half of the reporting window (and the report says so).
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from inference.repository import ModelRepository
from monitoring.stats import (
    FAIRNESS_BOUNDS,
    auroc,
    calibration,
    fairness_ratios,
    group_metrics,
    proportions,
    psi,
    quantile_edges,
)
from store.store import Store

PSI_THRESHOLD = 0.2
FAIRNESS_ATTRIBUTES = ("sex", "age_band", "race")


@dataclass
class ReportOptions:
    since: datetime
    until: datetime | None = None
    outcome_code: str | None = None  # "system|code" an outcome must have to count as an event (None: any)
    horizon_days: int | None = None  # event window after each prediction (default: the model's horizon)
    threshold: float | None = None  # score at or above which a patient is "flagged" for fairness metrics
    psi_threshold: float = PSI_THRESHOLD


def build_summary(store: Store, repository: ModelRepository | None, options: ReportOptions) -> dict[str, Any]:
    until = options.until or datetime.now(UTC)
    preds = [p for p in store.predictions(since=options.since) if p["created_at"] <= until]
    feedback = [f for f in store.feedback_joined() if f["received_at"] is None or
                options.since <= _utc(f["received_at"]) <= until]
    summary: dict[str, Any] = {
        "window": {"since": options.since.isoformat(), "until": until.isoformat()},
        "volume": _volume(preds),
        "feedback": _feedback(feedback),
        "models": {},
    }
    outcomes = store.outcomes()
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in preds:
        by_model[p["model_id"]].append(p)
    for model_id, rows in sorted(by_model.items()):
        entry = repository.entries.get(model_id) if repository else None
        summary["models"][model_id] = _model_section(model_id, rows, entry, outcomes, options)
    return summary


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _volume(preds: list[dict[str, Any]]) -> dict[str, Any]:
    champion = [p for p in preds if p["alias"] == "champion"]
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    cards_by_day: dict[str, Counter[str]] = defaultdict(Counter)
    for p in champion:
        day = p["created_at"].date().isoformat()
        by_day[day][p["service_id"]] += 1
        cards_by_day[day][p["service_id"]] += len(p["card_uuids"])
    return {
        "predictions": len(champion),
        "shadow_predictions": len(preds) - len(champion),
        "cards": sum(len(p["card_uuids"]) for p in champion),
        "by_service": dict(Counter(p["service_id"] for p in champion)),
        "by_day": {day: dict(c) for day, c in sorted(by_day.items())},
        "cards_by_day": {day: dict(c) for day, c in sorted(cards_by_day.items())},
    }


def _feedback(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = len(rows)
    accepted = sum(1 for r in rows if r["outcome"] == "accepted")
    overridden = total - accepted
    reasons = Counter(r["override_reason_display"] or r["override_reason_code"] or "(no reason given)"
                      for r in rows if r["outcome"] == "overridden")
    by_service: dict[str, dict[str, int]] = defaultdict(lambda: {"accepted": 0, "overridden": 0})
    for r in rows:
        by_service[r["service_id"]][r["outcome"]] += 1
    return {
        "total": total, "accepted": accepted, "overridden": overridden,
        "acceptance_rate": accepted / total if total else None,
        "override_rate": overridden / total if total else None,
        "top_override_reasons": [{"reason": k, "count": v} for k, v in reasons.most_common(5)],
        "by_service": dict(by_service),
    }


def _model_section(model_id: str, rows: list[dict[str, Any]], entry: Any, outcomes: list[dict[str, Any]],
                   options: ReportOptions) -> dict[str, Any]:
    champion = [r for r in rows if r["alias"] == "champion"]
    scored = [r for r in champion if r["score"] is not None]
    section: dict[str, Any] = {
        "predictions": len(champion),
        "scored": len(scored),
        "no_number": len(champion) - len(scored),
        "categories": dict(Counter(r["category"] or "no number" for r in champion)),
        "drift": _drift(scored, entry, options.psi_threshold),
        "scores_by_day": _scores_by_day(scored),
        "champion_challenger": _champion_challenger(rows),
    }
    section["performance"], section["fairness"] = _performance(scored, entry, outcomes, options)
    return section


def _reference(entry: Any) -> dict[str, Any] | None:
    if entry is None:
        return None
    ref = entry.champion.manifest.model_card.get("reference_distribution")
    return ref if isinstance(ref, dict) and ref else None


def _drift(scored: list[dict[str, Any]], entry: Any, threshold: float) -> dict[str, Any]:
    if len(scored) < 20:
        return {"reference": None, "note": "fewer than 20 scored predictions", "features": {}}
    ref = _reference(entry)
    features: dict[str, Any] = {}
    names = sorted({k for r in scored for k in r["features"]})
    if ref is not None:
        source = "model card reference distribution"
        current = scored
        for name in [*names, "__score__"]:
            spec = ref.get(name)
            if not spec:
                continue
            values = _column(current, name)
            if not len(values):
                continue
            edges = np.asarray(spec["edges"], dtype=float)
            value = psi(np.asarray(spec["proportions"], dtype=float), proportions(values, edges))
            features[name] = {"psi": value, "flagged": value > threshold, "n": int(len(values))}
    else:
        source = "first half of the reporting window (the model card has no reference distribution)"
        half = len(scored) // 2
        base, current = scored[:half], scored[half:]
        for name in [*names, "__score__"]:
            b, c = _column(base, name), _column(current, name)
            if len(np.unique(b)) < 2 or not len(c):
                continue
            edges = quantile_edges(b)
            value = psi(proportions(b, edges), proportions(c, edges))
            features[name] = {"psi": value, "flagged": value > threshold, "n": int(len(c))}
    return {"reference": source, "threshold": threshold, "features": features,
            "flagged": sorted(n for n, f in features.items() if f["flagged"])}


def _column(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    if name == "__score__":
        return np.array([r["score"] for r in rows], dtype=float)
    return np.array([r["features"][name] for r in rows if r["features"].get(name) is not None], dtype=float)


def _scores_by_day(scored: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    days: dict[str, list[float]] = defaultdict(list)
    for r in scored:
        days[r["created_at"].date().isoformat()].append(r["score"])
    return {d: {"n": float(len(v)), "median": float(np.median(v)), "p10": float(np.quantile(v, 0.1)),
                "p90": float(np.quantile(v, 0.9))} for d, v in sorted(days.items())}


def _champion_challenger(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    champ = {r["hook_instance"]: r for r in rows if r["alias"] == "champion"}
    pairs = [(champ[r["hook_instance"]], r) for r in rows if r["alias"] == "challenger" and r["hook_instance"] in champ]
    if not pairs:
        return None
    scored = [(a, b) for a, b in pairs if a["score"] is not None and b["score"] is not None]
    diffs = np.array([abs(a["score"] - b["score"]) for a, b in scored]) if scored else np.array([])
    return {
        "pairs": len(pairs),
        "challenger_version": pairs[0][1]["model_version"],
        "mean_abs_difference": float(diffs.mean()) if len(diffs) else None,
        "max_abs_difference": float(diffs.max()) if len(diffs) else None,
        "category_agreement": sum(a["category"] == b["category"] for a, b in pairs) / len(pairs),
        "points": [[a["score"], b["score"]] for a, b in scored[:2000]],
    }


def _performance(scored: list[dict[str, Any]], entry: Any, outcomes: list[dict[str, Any]],
                 options: ReportOptions) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if not outcomes or not scored:
        return None, None
    horizon = options.horizon_days
    if horizon is None:
        years = entry.champion.manifest.primary.horizon_years if entry else None
        horizon = int(round((years or 1) * 365.25))
    wanted = options.outcome_code.split("|", 1) if options.outcome_code else None
    events: dict[str, list[datetime]] = defaultdict(list)
    for o in outcomes:
        if o["label"] >= 0.5 and (wanted is None or [o["system"], o["code"]] == wanted):
            events[o["patient_key"]].append(o["observed_at"])
    y = np.array([
        1.0 if any(r["created_at"] < when <= r["created_at"] + timedelta(days=horizon) for when in
                   events.get(r["patient_key"], ())) else 0.0
        for r in scored
    ])
    p = np.clip(np.array([r["score"] for r in scored], dtype=float), 0.0, 1.0)
    cal = calibration(y, p)
    perf = {
        "n": int(len(y)), "events": int(y.sum()), "horizon_days": horizon, "auroc": auroc(y, p),
        "calibration": None if cal is None else {
            "intercept": cal.intercept, "slope": cal.slope, "oe_ratio": cal.oe_ratio, "brier": cal.brier,
            "deciles": cal.deciles},
    }
    threshold = options.threshold if options.threshold is not None else _flag_threshold(entry, p)
    fairness: dict[str, Any] = {"threshold": threshold, "bounds": list(FAIRNESS_BOUNDS), "attributes": {}}
    for attribute in FAIRNESS_ATTRIBUTES:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(scored):
            groups[(r.get("cohort") or {}).get(attribute, "unknown")].append(i)
        groups = {g: idx for g, idx in groups.items() if len(idx) >= 10}
        if len(groups) < 2:
            continue
        metrics = {g: group_metrics(y[idx], p[idx], threshold) for g, idx in groups.items()}
        reference = max(groups, key=lambda g: len(groups[g]))
        ratios = fairness_ratios(metrics, reference)
        fairness["attributes"][attribute] = {
            "reference_group": reference, "groups": metrics, "ratios": ratios,
            "outside_bounds": sorted(f"{g}: {k}" for g, ks in ratios.items() for k, v in ks.items()
                                     if not v["within_bounds"]),
        }
    return perf, fairness


def _flag_threshold(entry: Any, p: np.ndarray) -> float:
    """The lowest score that gives a non-informational card; the median when every category is informational."""
    if entry is not None:
        bound = 0.0
        for cat in entry.champion.manifest.categories:
            if cat.indicator != "info":
                return bound
            bound = cat.below if cat.below is not None else bound
    return float(np.median(p))


# ---- HTML -----------------------------------------------------------------------------------------------------------
def _name(feature: str) -> str:
    return "model output" if feature == "__score__" else feature


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def render_html(summary: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = html.escape
    parts = [f"<h1>cds-onnx monitoring report</h1><p class=muted>{e(summary['window']['since'])} to "
             f"{e(summary['window']['until'])}</p>"]
    vol = summary["volume"]
    parts.append(f"<h2>Volume</h2><p>{vol['predictions']} predictions shown, {vol['cards']} cards, "
                 f"{vol['shadow_predictions']} shadow (challenger) predictions.</p>")
    if vol["by_day"]:
        fig, ax = plt.subplots(figsize=(7, 2.6))
        days = list(vol["by_day"])
        for service in sorted({s for d in vol["by_day"].values() for s in d}):
            ax.plot(days, [vol["by_day"][d].get(service, 0) for d in days], marker="o", label=f"{service} predictions")
            ax.plot(days, [vol["cards_by_day"][d].get(service, 0) for d in days], linestyle="--",
                    label=f"{service} cards")
        ax.set_ylabel("per day")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.legend(fontsize=7)
        parts.append(f'<img alt="volume per service over time" src="{_png(fig)}">')
    fb = summary["feedback"]
    parts.append("<h2>Clinician feedback</h2>")
    if fb["total"]:
        parts.append(f"<p>{fb['total']} responses: {fb['acceptance_rate']:.0%} accepted, "
                     f"{fb['override_rate']:.0%} overridden.</p><ul>" + "".join(
                         f"<li>{e(r['reason'])}: {r['count']}</li>" for r in fb["top_override_reasons"]) + "</ul>")
        fig, ax = plt.subplots(figsize=(5, 2.2))
        ax.barh(["accepted", "overridden"], [fb["accepted"], fb["overridden"]], color=["#2e7d32", "#c62828"])
        parts.append(f'<img alt="acceptance and override" src="{_png(fig)}">')
    else:
        parts.append("<p>No feedback in this window.</p>")
    for model_id, m in summary["models"].items():
        parts.append(_model_html(model_id, m, plt))
    style = ("body{font:14px/1.45 system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:left}"
             ".flag{color:#b71c1c;font-weight:600}.muted{color:#666}img{max-width:100%}")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>cds-onnx monitoring report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def _model_html(model_id: str, m: dict[str, Any], plt: Any) -> str:
    e = html.escape
    out = [f"<h2>Model {e(model_id)}</h2><p>{m['predictions']} predictions, {m['scored']} with a number, "
           f"{m['no_number']} without (missing data or outside the validated range). Categories: "
           + ", ".join(f"{e(k)} {v}" for k, v in m["categories"].items()) + "</p>"]
    drift = m["drift"]
    out.append(f"<h3>Input drift</h3><p class=muted>Reference: {e(str(drift.get('reference')))}; "
               f"PSI above {drift.get('threshold', PSI_THRESHOLD)} is flagged.</p>")
    if drift["features"]:
        rows = "".join(f"<tr><td>{e(_name(n))}</td><td>{f['psi']:.3f}</td><td>{'<span class=flag>drift</span>' if f['flagged'] else 'stable'}</td></tr>"
                       for n, f in drift["features"].items())
        out.append(f"<table><tr><th>input</th><th>PSI</th><th></th></tr>{rows}</table>")
        fig, ax = plt.subplots(figsize=(6, 2.4))
        names = list(drift["features"])
        ax.bar([_name(n) for n in names], [drift["features"][n]["psi"] for n in names],
               color=["#c62828" if drift["features"][n]["flagged"] else "#1565c0" for n in names])
        ax.axhline(drift.get("threshold", PSI_THRESHOLD), color="#555", linestyle="--")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.set_ylabel("PSI")
        out.append(f'<img alt="population stability index per input" src="{_png(fig)}">')
    if m["scores_by_day"]:
        fig, ax = plt.subplots(figsize=(7, 2.4))
        days = list(m["scores_by_day"])
        med = [m["scores_by_day"][d]["median"] for d in days]
        ax.fill_between(days, [m["scores_by_day"][d]["p10"] for d in days],
                        [m["scores_by_day"][d]["p90"] for d in days], alpha=0.25)
        ax.plot(days, med, marker="o")
        ax.set_ylabel("prediction (median, 10th–90th)")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        out.append(f'<h3>Predictions over time</h3><img alt="prediction distribution over time" src="{_png(fig)}">')
    cc = m["champion_challenger"]
    if cc:
        out.append(f"<h3>Champion vs challenger</h3><p>{cc['pairs']} paired predictions with challenger "
                   f"{e(cc['challenger_version'])}: category agreement {cc['category_agreement']:.1%}, mean absolute "
                   f"difference {cc['mean_abs_difference'] if cc['mean_abs_difference'] is not None else 'n/a'}.</p>")
        if cc["points"]:
            pts = np.array(cc["points"])
            fig, ax = plt.subplots(figsize=(3.2, 3.2))
            ax.scatter(pts[:, 0], pts[:, 1], s=6)
            ax.plot([0, pts.max()], [0, pts.max()], color="#555", linestyle="--")
            ax.set_xlabel("champion")
            ax.set_ylabel("challenger")
            out.append(f'<img alt="champion vs challenger" src="{_png(fig)}">')
    perf = m["performance"]
    if perf:
        out.append(f"<h3>Performance against imported outcomes</h3><p>{perf['n']} predictions, {perf['events']} "
                   f"events within {perf['horizon_days']} days. AUROC "
                   f"{perf['auroc']:.3f}</p>" if perf["auroc"] is not None else "<p>AUROC needs events and non-events.</p>")
        cal = perf["calibration"]
        if cal:
            out.append(f"<p>Calibration: observed/expected {cal['oe_ratio']:.2f}, intercept {cal['intercept']:.2f}, "
                       f"slope {cal['slope']:.2f}, Brier {cal['brier']:.4f}.</p>")
            fig, ax = plt.subplots(figsize=(3.4, 3.4))
            xs = [d["predicted"] for d in cal["deciles"]]
            ys = [d["observed"] for d in cal["deciles"]]
            ax.plot(xs, ys, marker="o")
            top = max(xs + ys + [0.01])
            ax.plot([0, top], [0, top], color="#555", linestyle="--")
            ax.set_xlabel("predicted (decile mean)")
            ax.set_ylabel("observed")
            out.append(f'<img alt="calibration by decile" src="{_png(fig)}">')
    fair = m["fairness"]
    if fair and fair["attributes"]:
        out.append(f"<h3>Fairness audit</h3><p class=muted>Flag threshold {fair['threshold']:.3f}; ratio bounds "
                   f"{fair['bounds'][0]}–{fair['bounds'][1]} against the largest group.</p>")
        for attribute, a in fair["attributes"].items():
            flagged = ", ".join(a["outside_bounds"]) or "none"
            out.append(f"<p><b>{e(attribute)}</b> (reference {e(a['reference_group'])}): outside bounds: "
                       f"<span class={'flag' if a['outside_bounds'] else 'muted'}>{e(flagged)}</span></p>")
    return "".join(out)
