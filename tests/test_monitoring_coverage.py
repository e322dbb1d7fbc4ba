"""The report's 95% intervals cover the truth about 95% of the time: over 200 simulated deployments (numpy seeds) the
AUROC interval covers the true AUROC, the calibration-slope interval the true slope, and the paired AUROC-difference
interval a true difference of zero, each within a binomial tolerance around 95%.

The truth is computed independently of the code under test: outcomes follow logit P(event) = a + b·logit(p), so the
true calibration slope is b, and the true AUROC is a double integral over the normal distribution of logit(p),
evaluated here on a fine grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.intervals import paired_auroc_difference
from monitoring.metrics import performance

SEEDS = 200
N = 600
MU, SD = -1.6, 1.0  # logit of the predicted risk ~ Normal(MU, SD)
A, B = 0.35, 0.8  # outcomes: logit P(event) = A + B · logit(p): under-predicted and too extreme


def true_auroc() -> float:
    """P(lp of an event > lp of a non-event) = ∫∫_{x1 > x0} f(x1) π(x1) f(x0) (1 − π(x0)) / (P1 · P0)."""
    x = np.linspace(MU - 9 * SD, MU + 9 * SD, 200001)
    dx = x[1] - x[0]
    f = np.exp(-0.5 * ((x - MU) / SD) ** 2) / (SD * math.sqrt(2 * math.pi))
    pi = 1 / (1 + np.exp(-(A + B * x)))
    events, non_events = f * pi, f * (1 - pi)
    below = np.cumsum(non_events) * dx - 0.5 * non_events * dx  # mass of non-events strictly below each x
    return float(np.sum(events * below) * dx / (np.sum(events) * dx * np.sum(non_events) * dx))


def band(hits: int) -> tuple[float, float]:
    """Coverage accepted: 95% ± 3 binomial standard errors for SEEDS draws."""
    se = math.sqrt(0.95 * 0.05 / SEEDS)
    return 0.95 - 3 * se, min(1.0, 0.95 + 3 * se)


def test_intervals_cover_the_truth_at_the_nominal_rate() -> None:
    truth = true_auroc()
    auroc_hits = slope_hits = diff_hits = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        lp = rng.normal(MU, SD, N)
        p = 1 / (1 + np.exp(-lp))
        y = (rng.uniform(size=N) < 1 / (1 + np.exp(-(A + B * lp)))).astype(float)
        perf = performance(y, p, "probability", min_events=20)
        assert perf["message"] is None, perf["message"]
        auc, slope = perf["auroc"], perf["calibration"]["slope"]
        auroc_hits += auc["low"] <= truth <= auc["high"]
        slope_hits += slope["low"] <= B <= slope["high"]
        # two equally good scores (the same signal, independent noise): the true AUROC difference is 0
        first, second = lp + rng.normal(0, 0.7, N), lp + rng.normal(0, 0.7, N)
        _, _, diff = paired_auroc_difference(y, first, second)
        diff_hits += diff.low <= 0.0 <= diff.high
    low, high = band(0)
    for name, hits in (("AUROC", auroc_hits), ("calibration slope", slope_hits), ("AUROC difference", diff_hits)):
        assert low <= hits / SEEDS <= high, f"{name}: {hits}/{SEEDS} intervals covered the truth"


def test_true_auroc_by_integration_matches_a_large_sample() -> None:
    """The integral the coverage test relies on, checked against a million simulated patients by pair ranks."""
    rng = np.random.default_rng(12345)
    lp = rng.normal(MU, SD, 1_000_000)
    y = rng.uniform(size=lp.size) < 1 / (1 + np.exp(-(A + B * lp)))
    ranks = np.empty(lp.size)
    ranks[np.argsort(lp)] = np.arange(1, lp.size + 1)
    n1, n0 = int(y.sum()), int((~y).sum())
    sample = (ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    assert true_auroc() == pytest.approx(sample, abs=0.003)
