"""Point statistics in plain numpy, so their definitions are visible and tested: the binning and PSI the drift section
uses, and the point AUROC/calibration the training script reports for its held-out data (the monitoring report's
figures with intervals are in monitoring/intervals.py and monitoring/metrics.py).

Population stability index (PSI) against reference bins, AUROC (rank-based, ties averaged), calibration
(observed vs. predicted by decile, logistic recalibration intercept and slope, observed/expected, Brier), and
group metrics for fairness audits with ratio bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6


def quantile_edges(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin edges at the reference's quantiles; outer edges open so every later value falls in a bin."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    inner = np.asarray(edges, dtype=float)[1:-1]
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(edges) - 1)
    return counts / max(len(values), 1)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI = Σ (cur − ref) · ln(cur / ref) over bins (proportions; empty bins floored at 1e-6)."""
    ref = np.clip(np.asarray(reference, dtype=float), EPS, None)
    cur = np.clip(np.asarray(current, dtype=float), EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann–Whitney U with average ranks); None without both classes."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


@dataclass(frozen=True)
class Calibration:
    intercept: float  # calibration-in-the-large: logistic intercept with logit(p) as offset
    slope: float  # logistic slope on logit(p)
    oe_ratio: float  # observed events / expected events
    brier: float
    deciles: list[dict[str, float]]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, iters: int = 50) -> np.ndarray:
    """Newton–Raphson for logistic regression on design x (with intercept column), optional offset."""
    beta = np.zeros(x.shape[1])
    off = np.zeros(len(y)) if offset is None else offset
    for _ in range(iters):
        eta = x @ beta + off
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1 - mu) + 1e-12
        grad = x.T @ (y - mu)
        hess = x.T @ (x * w[:, None])
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(beta)), grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration(y: np.ndarray, p: np.ndarray, groups: int = 10) -> Calibration | None:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) < 20 or y.sum() == 0 or y.sum() == len(y):
        return None
    lp = _logit(p)
    ones = np.ones((len(y), 1))
    intercept = float(_logistic_fit(ones, y, offset=lp)[0])
    slope = float(_logistic_fit(np.column_stack([ones, lp]), y)[1])
    order = np.argsort(p, kind="mergesort")
    deciles = []
    for chunk in np.array_split(order, groups):
        if len(chunk):
            deciles.append({"n": float(len(chunk)), "predicted": float(p[chunk].mean()),
                            "observed": float(y[chunk].mean())})
    return Calibration(intercept, slope, float(y.sum() / p.sum()), float(np.mean((p - y) ** 2)), deciles)


def group_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Per-group performance used in fairness audits (seismometer-style)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    flagged = p >= threshold
    tp = float(np.sum(flagged & (y == 1)))
    return {
        "n": float(len(y)),
        "prevalence": float(y.mean()) if len(y) else None,
        "mean_predicted": float(p.mean()) if len(p) else None,
        "oe_ratio": float(y.sum() / p.sum()) if p.sum() > 0 else None,
        "flag_rate": float(flagged.mean()) if len(p) else None,
        "sensitivity": tp / float(y.sum()) if y.sum() else None,
        "ppv": tp / float(flagged.sum()) if flagged.sum() else None,
        "auroc": auroc(y, p),
    }


FAIRNESS_BOUNDS = (0.8, 1.25)


def fairness_ratios(metrics: dict[str, dict[str, float | None]], reference: str,
                    keys: tuple[str, ...] = ("flag_rate", "sensitivity", "ppv", "oe_ratio", "auroc"),
                    bounds: tuple[float, float] = FAIRNESS_BOUNDS) -> dict[str, dict[str, dict[str, float | bool]]]:
    """Each group's metric divided by the reference group's, flagged when outside the bounds."""
    base = metrics[reference]
    out: dict[str, dict[str, dict[str, float | bool]]] = {}
    for group, values in metrics.items():
        if group == reference:
            continue
        out[group] = {}
        for key in keys:
            num, den = values.get(key), base.get(key)
            if num is None or den is None or den == 0:
                continue
            ratio = float(num) / float(den)
            out[group][key] = {"ratio": ratio, "within_bounds": bounds[0] <= ratio <= bounds[1]}
    return out
