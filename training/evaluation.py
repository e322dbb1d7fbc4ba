"""Held-out evaluation written into a demonstration model's card: one function for every training script, so the
figures of the tabular and the timeline T2D demos mean the same thing."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitoring.stats import auroc, calibration


def evaluate(y: np.ndarray, p: np.ndarray, sexes: list[str], ages: np.ndarray) -> dict[str, Any]:
    cal = calibration(y, p)
    out: dict[str, Any] = {"n": int(len(y)), "events": int(y.sum()), "auroc": auroc(y, p),
                           "brier": float(np.mean((p - y) ** 2)),
                           "calibration": None if cal is None else {"intercept": cal.intercept, "slope": cal.slope,
                                                                    "oe_ratio": cal.oe_ratio, "deciles": cal.deciles}}
    groups: dict[str, Any] = {}
    for name, mask in [("female", np.array(sexes) == "female"), ("male", np.array(sexes) == "male"),
                       ("age 30-49", ages < 50), ("age 50-64", (ages >= 50) & (ages < 65)), ("age 65-79", ages >= 65)]:
        if mask.sum():
            groups[name] = {"n": int(mask.sum()), "events": int(y[mask].sum()), "auroc": auroc(y[mask], p[mask]),
                            "observed": float(y[mask].mean()), "predicted": float(p[mask].mean())}
    out["groups"] = groups
    return out


def auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
