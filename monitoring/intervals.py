"""Statistics with 95% confidence intervals, so that no monitoring figure is read without its uncertainty.

Plain numpy, definitions visible: Wilson intervals for proportions; DeLong's variance for an AUROC (on the logit
scale, which keeps the interval inside (0, 1) and covers better with few events) and for the difference of two
AUROCs on the same patients (paired DeLong); Wald intervals from the logistic fit for the calibration slope and
calibration-in-the-large; a Poisson interval for observed/expected; and log-scale (delta method) intervals for the
ratios a fairness audit compares against its bounds.

References: DeLong, DeLong & Clarke-Pearson, Biometrics 1988; Sun & Xu, IEEE Signal Process Lett 2014 (fast
midrank algorithm); Wilson, JASA 1927; Van Calster et al., J Clin Epidemiol 2016 (calibration hierarchy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # standard normal 97.5th percentile


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% confidence interval."""

    estimate: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"estimate": float(self.estimate), "low": float(self.low), "high": float(self.high)}

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def interval_json(value: Interval | None) -> dict[str, Any] | None:
    return None if value is None else value.to_json()


# ---- proportions ----------------------------------------------------------------------------------------------------
def wilson(successes: int, n: int) -> Interval | None:
    """Wilson score interval for successes/n (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Interval(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))  # exact at p = 0 or 1


# ---- AUROC (DeLong) -------------------------------------------------------------------------------------------------
def _midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    n = len(x)
    ranks_sorted = np.empty(n)
    i = 0
    while i < n:
        j = i
        while j < n and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks_sorted[i:j] = 0.5 * (i + j - 1) + 1.0
        i = j
    ranks = np.empty(n)
    ranks[order] = ranks_sorted
    return ranks


def delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of k score rows on the same patients and their k×k DeLong covariance (Sun & Xu's algorithm).

    y: 0/1 events (length n); scores: array (k, n). Needs at least one event and one non-event."""
    y = np.asarray(y, dtype=float)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("an AUROC needs at least one event and one non-event")
    k = scores.shape[0]
    tx = np.vstack([_midrank(pos[r]) for r in range(k)])
    ty = np.vstack([_midrank(neg[r]) for r in range(k)])
    tz = np.vstack([_midrank(np.concatenate([pos[r], neg[r]])) for r in range(k)])
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v01 = (tz[:, :m] - tx) / n  # per event: share of non-events scored below it
    v10 = 1.0 - (tz[:, m:] - ty) / m  # per non-event: share of events scored above it
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, sx / m + sy / n


def auroc_interval(y: np.ndarray, score: np.ndarray) -> Interval:
    """AUROC with a DeLong 95% interval computed on the logit scale."""
    auc, var = auroc_variance(y, score)
    return _auc_from(auc, var)


def auroc_variance(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    aucs, cov = delong(y, np.asarray(score, dtype=float)[None, :])
    return float(aucs[0]), float(cov[0, 0])


def paired_auroc_difference(y: np.ndarray, first: np.ndarray,
                            second: np.ndarray) -> tuple[Interval, Interval, Interval]:
    """AUROCs of two scores on the same patients and second − first with the paired DeLong 95% interval."""
    aucs, cov = delong(y, np.vstack([np.asarray(first, dtype=float), np.asarray(second, dtype=float)]))
    diff = float(aucs[1] - aucs[0])
    se = math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    one = [_auc_from(float(aucs[i]), float(cov[i, i])) for i in (0, 1)]
    return one[0], one[1], Interval(diff, max(-1.0, diff - Z95 * se), min(1.0, diff + Z95 * se))


def _auc_from(auc: float, var: float) -> Interval:
    """The interval logit(AUROC) ± 1.96·SE, SE by the delta method; on the raw scale at 0 or 1."""
    if auc <= 0.0 or auc >= 1.0 or var <= 0.0:
        half = Z95 * math.sqrt(max(var, 0.0))
        return Interval(auc, max(0.0, auc - half), min(1.0, auc + half))
    se = math.sqrt(var) / (auc * (1 - auc))
    logit = math.log(auc / (1 - auc))
    return Interval(auc, 1 / (1 + math.exp(-(logit - Z95 * se))), 1 / (1 + math.exp(-(logit + Z95 * se))))


# ---- calibration ----------------------------------------------------------------------------------------------------
def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None,
                 iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression (Newton–Raphson): coefficients and their covariance (inverse
    observed information)."""
    beta = np.zeros(x.shape[1])
    off = np.zeros(len(y)) if offset is None else offset
    for _ in range(iters):
        mu = 1.0 / (1.0 + np.exp(-(x @ beta + off)))
        hess = x.T @ (x * (mu * (1 - mu))[:, None])
        step = np.linalg.solve(hess + 1e-12 * np.eye(len(beta)), x.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    mu = 1.0 / (1.0 + np.exp(-(x @ beta + off)))
    cov = np.linalg.inv(x.T @ (x * (mu * (1 - mu))[:, None]) + 1e-12 * np.eye(len(beta)))
    return beta, cov


def calibration_slope(y: np.ndarray, p: np.ndarray) -> Interval:
    """Slope of logit(P(event)) on logit(p): 1 when predictions spread as much as outcomes do (Wald interval)."""
    y = np.asarray(y, dtype=float)
    lp = logit(p)
    beta, cov = logistic_fit(np.column_stack([np.ones(len(y)), lp]), y)
    se = math.sqrt(cov[1, 1])
    return Interval(float(beta[1]), float(beta[1] - Z95 * se), float(beta[1] + Z95 * se))


def calibration_in_the_large(y: np.ndarray, p: np.ndarray) -> Interval:
    """Logistic intercept with logit(p) as offset: 0 when the average risk is right, > 0 when under-predicted."""
    y = np.asarray(y, dtype=float)
    beta, cov = logistic_fit(np.ones((len(y), 1)), y, offset=logit(p))
    se = math.sqrt(cov[0, 0])
    return Interval(float(beta[0]), float(beta[0] - Z95 * se), float(beta[0] + Z95 * se))


def observed_expected(y: np.ndarray, p: np.ndarray) -> Interval | None:
    """Observed events / expected events (sum of predicted risks), Poisson interval on the log scale."""
    observed, expected = float(np.sum(y)), float(np.sum(p))
    if observed <= 0 or expected <= 0:
        return None
    ratio = observed / expected
    se = 1 / math.sqrt(observed)
    return Interval(ratio, ratio * math.exp(-Z95 * se), ratio * math.exp(Z95 * se))


# ---- ratios between groups (fairness) -------------------------------------------------------------------------------
def _log_ratio(estimate: float, var_log: float) -> Interval:
    se = math.sqrt(max(var_log, 0.0))
    return Interval(estimate, estimate * math.exp(-Z95 * se), estimate * math.exp(Z95 * se))


def proportion_ratio(x1: int, n1: int, x0: int, n0: int) -> Interval | None:
    """(x1/n1) / (x0/n0) with the Katz log interval (0.5 added to every cell when a count is zero)."""
    if n1 <= 0 or n0 <= 0 or x0 <= 0:
        return None
    estimate = (x1 / n1) / (x0 / n0)
    a, b = (x1, x0) if x1 > 0 else (x1 + 0.5, x0 + 0.5)
    m1, m0 = (n1, n0) if x1 > 0 else (n1 + 0.5, n0 + 0.5)
    var = 1 / a - 1 / m1 + 1 / b - 1 / m0
    return _log_ratio(estimate, var)


def oe_ratio_ratio(o1: float, e1: float, o0: float, e0: float) -> Interval | None:
    """(O1/E1) / (O0/E0): each O Poisson, E fixed, so var(log ratio) = 1/O1 + 1/O0."""
    if min(o1, e1, o0, e0) <= 0:
        return None
    return _log_ratio((o1 / e1) / (o0 / e0), 1 / o1 + 1 / o0)


def auroc_ratio(a1: float, v1: float, a0: float, v0: float) -> Interval | None:
    """AUROC of one group over another's (independent groups; delta method on the log scale)."""
    if a1 <= 0 or a0 <= 0:
        return None
    return _log_ratio(a1 / a0, v1 / a1**2 + v0 / a0**2)
