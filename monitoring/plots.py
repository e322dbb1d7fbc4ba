"""The report's figures, drawn with matplotlib and embedded as PNG data URIs so the page needs nothing from outside.

Every figure has a fixed size in inches and is shown at most at its container's width; legends list at most
TOP_SERIES series (the rest summed as "other") and sit below the axes, so nothing spills out of its box.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TOP_SERIES = 6
BLUE, RED, GREY, GREEN = "#1f5fa8", "#b3261e", "#6b7280", "#2e7d32"
plt.rcParams.update({"font.size": 8.5, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.titlesize": 9, "axes.titleweight": "bold", "figure.dpi": 110})


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _date_ticks(ax: Any, days: list[str], most: int = 8) -> None:
    step = max(1, -(-len(days) // most))
    ax.set_xticks(range(0, len(days), step))
    ax.set_xticklabels([d[5:] for d in days[::step]])  # MM-DD: the year is in the report header


def volume_series(by_day: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    """Per-day prediction counts of the TOP_SERIES busiest services, and of all the others summed as one series."""
    days = list(by_day)
    totals: dict[str, int] = {}
    for counts in by_day.values():
        for service, n in counts.items():
            totals[service] = totals.get(service, 0) + n
    ranked = sorted(totals, key=lambda s: (-totals[s], s))
    top, rest = ranked[:TOP_SERIES], ranked[TOP_SERIES:]
    series = {service: [by_day[d].get(service, 0) for d in days] for service in top}
    if rest:
        series[f"other ({len(rest)} services)"] = [sum(by_day[d].get(s, 0) for s in rest) for d in days]
    return series


def volume(by_day: dict[str, dict[str, int]], cards_by_day: dict[str, int]) -> str:
    """Predictions per day for the busiest services (the rest as "other") and the cards shown."""
    days = list(by_day)
    fig, ax = plt.subplots(figsize=(9.5, 2.9))
    x = range(len(days))
    for label, counts in volume_series(by_day).items():
        other = label.startswith("other (")
        ax.plot(x, counts, marker=None if other else "o", markersize=2.5, linewidth=1.2, label=label,
                color=GREY if other else None)
    ax.plot(x, [cards_by_day.get(d, 0) for d in days], color="black", linestyle="--", linewidth=1,
            label="cards shown (all services)")
    ax.set_ylabel("per day")
    _date_ticks(ax, days)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False, fontsize=8)
    return png(fig)


def psi_bars(features: dict[str, dict[str, Any]], threshold: float, top: int = 12) -> str:
    names = sorted(features, key=lambda n: -features[n]["psi"])[:top][::-1]
    fig, ax = plt.subplots(figsize=(4.2, 0.28 * len(names) + 0.8))
    ax.barh([("model output" if n == "__score__" else n) for n in names], [features[n]["psi"] for n in names],
            color=[RED if features[n]["flagged"] else BLUE for n in names])
    ax.axvline(threshold, color=GREY, linestyle="--", linewidth=1)
    ax.set_xlabel(f"PSI (dashed: {threshold})")
    ax.set_title("Drift by input (largest first)")
    return png(fig)


def scores_over_time(by_day: dict[str, dict[str, float]], label: str) -> str:
    days = list(by_day)
    x = range(len(days))
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    ax.fill_between(x, [by_day[d]["p10"] for d in days], [by_day[d]["p90"] for d in days], alpha=0.2, color=BLUE,
                    linewidth=0)
    ax.plot(x, [by_day[d]["median"] for d in days], color=BLUE, marker="o", markersize=2.5, linewidth=1.2)
    ax.set_ylabel(label)
    ax.set_title("median and 10th–90th centile per day", fontweight="normal")
    _date_ticks(ax, days, most=5)
    return png(fig)


def calibration(deciles: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    xs = [d["predicted"] for d in deciles]
    ys = [d["observed"] for d in deciles]
    err = [[max(0.0, y - d["low"]) for y, d in zip(ys, deciles)],
           [max(0.0, d["high"] - y) for y, d in zip(ys, deciles)]]
    ax.errorbar(xs, ys, yerr=err, fmt="o", color=BLUE, markersize=3.5, capsize=2, linewidth=1)
    top = max(xs + [d["high"] for d in deciles] + [0.01]) * 1.05
    ax.plot([0, top], [0, top], color=GREY, linestyle="--", linewidth=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted risk (decile mean)")
    ax.set_ylabel("observed rate (95% CI)")
    ax.set_title("Calibration by decile")
    return png(fig)


def event_rate_by_score(rows: list[dict[str, Any]], label: str) -> str:
    fig, ax = plt.subplots(figsize=(3.8, 3.0))
    xs = [r["score"] for r in rows]
    ys = [r["estimate"] for r in rows]
    err = [[max(0.0, y - r["low"]) for y, r in zip(ys, rows)], [max(0.0, r["high"] - y) for y, r in zip(ys, rows)]]
    ax.errorbar(xs, ys, yerr=err, fmt="o", color=BLUE, markersize=3.5, capsize=2, linewidth=1)
    ax.set_xlabel(label)
    ax.set_ylabel("event rate (95% CI)")
    ax.set_title("Event rate by score")
    return png(fig)


def champion_vs_challenger(points: list[list[float]], champion: str, challenger: str) -> str:
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.scatter(xs, ys, s=5, alpha=0.5, color=BLUE, linewidths=0)
    low, high = min(xs + ys), max(xs + ys)
    ax.plot([low, high], [low, high], color=GREY, linestyle="--", linewidth=1)
    ax.set_xlabel(f"champion {champion}")
    ax.set_ylabel(f"challenger {challenger}")
    ax.set_title("Same requests, both numbers")
    return png(fig)
