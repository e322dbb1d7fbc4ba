"""Performance, fairness and champion/challenger figures for one model, each with its event count and 95% interval,
and withheld (with the reason) below the model's minimum event count.

What is computed depends on what the model outputs: a probability gets discrimination (AUROC) and calibration
(slope, calibration-in-the-large, observed/expected overall and by decile); an integer score gets discrimination and
the event rate at each score value (a score is not a probability, so it is never "calibrated"); a continuous value
(e.g. eGFR) gets drift only, and discrimination only when its manifest declares an outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from monitoring.intervals import (
    Interval,
    auroc_interval,
    auroc_ratio,
    auroc_variance,
    calibration_in_the_large,
    calibration_slope,
    observed_expected,
    oe_ratio_ratio,
    proportion_ratio,
    wilson,
)

FAIRNESS_BOUNDS = (0.8, 1.25)
UNKNOWN_GROUPS = {"unknown", "not recorded"}


def not_enough(what: str, have: int, need: int) -> str:
    return f"not enough {what} (n={have}; need {need})"


def shown(interval: Interval | None, **counts: Any) -> dict[str, Any]:
    """A statistic as JSON: estimate, 95% bounds and the counts it rests on."""
    if interval is None:
        return {"estimate": None, "low": None, "high": None, **counts, "message": "cannot be estimated from these data"}
    return {**interval.to_json(), **counts}


def withheld(message: str, **counts: Any) -> dict[str, Any]:
    return {"estimate": None, "low": None, "high": None, **counts, "message": message}


def outcome_gate(events: int, non_events: int, min_events: int) -> str | None:
    """Why outcome statistics cannot be shown (None when they can)."""
    if events < min_events:
        return not_enough("events", events, min_events)
    if non_events < min_events:
        return not_enough("non-events", non_events, min_events)
    return None


def performance(y: np.ndarray, s: np.ndarray, score_type: str, min_events: int) -> dict[str, Any]:
    """Discrimination and calibration (probabilities) or event rate per score value (scores) of s against y.

    s is oriented so that higher means more risk (a value model whose risk rises as it falls is passed negated)."""
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    n, events = int(len(y)), int(y.sum())
    out: dict[str, Any] = {"n": n, "events": events, "non_events": n - events}
    message = outcome_gate(events, n - events, min_events)
    out["message"] = message
    if message is not None:
        out["auroc"] = withheld(message, n=n, events=events)
        if score_type == "probability":
            out["calibration"] = None
        return out
    out["auroc"] = shown(auroc_interval(y, s), n=n, events=events)
    if score_type == "probability":
        out["calibration"] = calibration(y, s)
    elif score_type == "score":
        out["event_rate_by_score"] = event_rate_by_value(y, s)
    return out


def calibration(y: np.ndarray, p: np.ndarray, groups: int = 10) -> dict[str, Any]:
    n, events = int(len(y)), int(y.sum())
    order = np.argsort(p, kind="mergesort")
    deciles = []
    for chunk in np.array_split(order, groups):
        if len(chunk):
            rate = wilson(int(y[chunk].sum()), len(chunk))
            assert rate is not None
            deciles.append({"n": int(len(chunk)), "events": int(y[chunk].sum()), "predicted": float(p[chunk].mean()),
                            "observed": rate.estimate, "low": rate.low, "high": rate.high})
    return {
        "slope": shown(calibration_slope(y, p), n=n, events=events),
        "intercept": shown(calibration_in_the_large(y, p), n=n, events=events),
        "oe_ratio": shown(observed_expected(y, p), n=n, events=events),
        "mean_predicted": float(np.mean(p)),
        "observed_rate": shown(wilson(events, n), n=n, events=events),
        "deciles": deciles,
    }


def event_rate_by_value(y: np.ndarray, s: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for value in np.unique(s):
        mask = s == value
        rate = wilson(int(y[mask].sum()), int(mask.sum()))
        assert rate is not None
        rows.append({"score": float(value), "n": int(mask.sum()), "events": int(y[mask].sum()), **rate.to_json()})
    return rows


# ---- fairness -------------------------------------------------------------------------------------------------------
def _status(interval: Interval, bounds: tuple[float, float]) -> str:
    if bounds[0] <= interval.low and interval.high <= bounds[1]:
        return "within"
    if interval.high < bounds[0] or interval.low > bounds[1]:
        return "outside"
    return "inconclusive"


def _ratio(interval: Interval | None, bounds: tuple[float, float], **counts: Any) -> dict[str, Any]:
    if interval is None:
        return withheld("no ratio: the reference group's figure is 0", **counts) | {"status": "not estimable"}
    return shown(interval, **counts) | {"status": _status(interval, bounds)}


def fairness_audit(labels_all: Sequence[str], flagged_all: np.ndarray, labels_eval: Sequence[str],
                   flagged_eval: np.ndarray, y: np.ndarray | None, p: np.ndarray | None, probability: bool,
                   min_events: int, bounds: tuple[float, float] = FAIRNESS_BOUNDS) -> dict[str, Any]:
    """One attribute's groups against its largest recorded group: flag rate over every prediction; sensitivity, PPV,
    observed/expected (probabilities) and AUROC over predictions whose follow-up has closed. Each ratio has a 95%
    interval and a status: within the bounds, outside them, or inconclusive (the interval crosses a bound)."""
    sizes = Counter(labels_all)
    known = [g for g in sizes if g not in UNKNOWN_GROUPS] or list(sizes)
    if len(sizes) < 2:
        return {"reference_group": None, "groups": {}, "message": "fewer than two groups recorded"}
    reference = max(known, key=lambda g: (sizes[g], g))
    labels_all_arr, labels_eval_arr = np.asarray(labels_all, dtype=object), np.asarray(labels_eval, dtype=object)
    stats: dict[str, dict[str, Any]] = {}
    for group in sorted(sizes):
        mask = labels_all_arr == group
        n, flagged = int(mask.sum()), int(flagged_all[mask].sum())
        g: dict[str, Any] = {"n": n, "flagged": flagged}
        g["flag_rate"] = shown(wilson(flagged, n), n=n) if n >= min_events else withheld(
            not_enough("predictions", n, min_events), n=n)
        if y is not None and p is not None:
            em = labels_eval_arr == group
            yy, pp, ff = y[em], p[em], flagged_eval[em]
            events, n_eval, tp, flagged_n = int(yy.sum()), int(em.sum()), int((ff & (yy == 1)).sum()), int(ff.sum())
            g.update({"n_closed": n_eval, "events": events, "true_positives": tp, "flagged_closed": flagged_n,
                      "expected": float(pp.sum()) if probability else None})
            g["sensitivity"] = shown(wilson(tp, events), events=events) if events >= min_events else withheld(
                not_enough("events", events, min_events), events=events)
            g["ppv"] = shown(wilson(tp, flagged_n), flagged=flagged_n) if flagged_n >= min_events else withheld(
                not_enough("flagged predictions", flagged_n, min_events), flagged=flagged_n)
            gate = outcome_gate(events, n_eval - events, min_events)
            g["auroc_var"] = auroc_variance(yy, pp) if gate is None else None
            g["auroc"] = shown(auroc_interval(yy, pp), events=events) if gate is None else withheld(
                gate, events=events)
            if probability:
                g["oe_ratio"] = shown(observed_expected(yy, pp), events=events) if events >= min_events else withheld(
                    not_enough("events", events, min_events), events=events)
        stats[group] = g
    base = stats[reference]
    for group, g in stats.items():
        if group == reference:
            continue
        ratios: dict[str, Any] = {}
        ratios["flag_rate"] = _gated_ratio(
            min(g["n"], base["n"]), min_events, "predictions", bounds,
            lambda: proportion_ratio(g["flagged"], g["n"], base["flagged"], base["n"]))
        if "events" in g:
            ratios["sensitivity"] = _gated_ratio(
                min(g["events"], base["events"]), min_events, "events", bounds,
                lambda: proportion_ratio(g["true_positives"], g["events"], base["true_positives"], base["events"]))
            ratios["ppv"] = _gated_ratio(
                min(g["flagged_closed"], base["flagged_closed"]), min_events, "flagged predictions", bounds,
                lambda: proportion_ratio(g["true_positives"], g["flagged_closed"], base["true_positives"],
                                         base["flagged_closed"]))
            if probability:
                ratios["oe_ratio"] = _gated_ratio(
                    min(g["events"], base["events"]), min_events, "events", bounds,
                    lambda: oe_ratio_ratio(g["events"], g["expected"], base["events"], base["expected"]))
            if g["auroc_var"] is not None and base["auroc_var"] is not None:
                a1, v1 = g["auroc_var"]
                a0, v0 = base["auroc_var"]
                ratios["auroc"] = _ratio(auroc_ratio(a1, v1, a0, v0), bounds)
            else:
                ratios["auroc"] = withheld(g["auroc"].get("message") or base["auroc"].get("message") or "")
        g["ratios"] = ratios
    for g in stats.values():
        g.pop("auroc_var", None)
    outside = sorted(f"{grp}: {key}" for grp, g in stats.items() for key, r in g.get("ratios", {}).items()
                     if r.get("status") == "outside")
    inconclusive = sorted(f"{grp}: {key}" for grp, g in stats.items() for key, r in g.get("ratios", {}).items()
                          if r.get("status") == "inconclusive")
    return {"reference_group": reference, "groups": stats, "outside_bounds": outside, "inconclusive": inconclusive}


def _gated_ratio(have: int, need: int, what: str, bounds: tuple[float, float], compute: Any) -> dict[str, Any]:
    if have < need:
        return withheld(not_enough(what, have, need))
    return _ratio(compute(), bounds)
