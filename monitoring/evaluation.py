"""From stored predictions to what the statistics are computed on: which predictions are judged (one per patient or
every one, as the manifest says), whether each was followed by the declared outcome, whether it was flagged, and
which challenger prediction answers the same request as a champion prediction.

Shared by the monitoring report and the promotion evidence so that both count the same things the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from inference.manifest import Manifest
from monitoring.followup import FollowUp, OutcomeSpec, event_times, first_per_patient, follow_up


def score_type(manifest: Manifest | None) -> str:
    """The kind of the primary output: probability, score or value ("probability" when the manifest is unknown)."""
    return manifest.primary.kind if manifest is not None else "probability"


def risk_oriented(values: np.ndarray, manifest: Manifest | None) -> np.ndarray:
    """Scores oriented so that higher means more risk (negated when the manifest says risk rises as it falls)."""
    values = np.asarray(values, dtype=float)
    if manifest is not None and manifest.monitoring.risk_direction == "lower":
        return -values
    return values


def _on_primary(manifest: Manifest, value: float) -> str:
    """The category a primary-output value falls in when only the categories testing the primary output count."""
    primary = manifest.primary.name
    for cat in manifest.categories:
        if (cat.output or primary) != primary:
            continue
        if (cat.below is None or value < cat.below) and (cat.at_least is None or value >= cat.at_least):
            return cat.label
    return manifest.categories[-1].label


def flagged_labels(manifest: Manifest) -> set[str]:
    """The categories that count as "flagged": those whose card indicator is warning or critical; for a model whose
    categories are all informational, every category but the one holding the lowest-risk values."""
    labels = {c.label for c in manifest.categories if c.indicator != "info"}
    if labels:
        return labels
    lowest = _on_primary(manifest, -1e300 if manifest.monitoring.risk_direction == "higher" else 1e300)
    return {c.label for c in manifest.categories} - {lowest}


def flag_region(manifest: Manifest) -> list[tuple[float | None, float | None]]:
    """The intervals [low, high) of the primary output that fall in a flagged category (None: unbounded), from the
    categories' `below` and `at_least` bounds exactly as the service applies them."""
    primary = manifest.primary.name
    bounds = sorted({b for c in manifest.categories if (c.output or primary) == primary
                     for b in (c.below, c.at_least) if b is not None})
    if not bounds:
        return []
    flagged = flagged_labels(manifest)
    starts: list[float | None] = [None, *bounds]
    probes = [bounds[0] - 1.0, *bounds]  # a value below every bound, then each bound (it opens the interval above)
    region: list[tuple[float | None, float | None]] = []
    for i, probe in enumerate(probes):
        if _on_primary(manifest, probe) not in flagged:
            continue
        high = bounds[i] if i < len(bounds) else None
        if region and region[-1][1] == starts[i]:
            region[-1] = (region[-1][0], high)
        else:
            region.append((starts[i], high))
    return region


def is_flagged(row: dict[str, Any], manifest: Manifest | None, threshold: float | None = None) -> bool:
    """Whether the prediction was flagged: its category is a flagged one (`flagged_labels`; categories honour `below`,
    `at_least` and the output they test, exactly as the service chose them). With an explicit threshold: the
    primary output at or above it (at or below it when lower values mean more risk)."""
    score = row["score"]
    if threshold is not None or manifest is None:
        if threshold is None:
            return False
        lower = manifest is not None and manifest.monitoring.risk_direction == "lower"
        return bool(score <= threshold if lower else score >= threshold)
    flagged = flagged_labels(manifest)
    outputs = row.get("outputs") or {}
    needed = {c.output or manifest.primary.name for c in manifest.categories}
    if needed <= set(outputs):
        return manifest.category_for({k: float(v) for k, v in outputs.items()}).label in flagged
    return (row.get("category") or "") in flagged


def _interval_words(name: str, low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return f"any {name}"
    if low is None:
        return f"{name} < {high:g}"
    if high is None:
        return f"{name} ≥ {low:g}"
    return f"{low:g} ≤ {name} < {high:g}"


def flag_rule(manifest: Manifest | None, threshold: float | None) -> str:
    """The flag rule in words, for the report."""
    if threshold is not None:
        lower = manifest is not None and manifest.monitoring.risk_direction == "lower"
        return f"primary output {'≤' if lower else '≥'} {threshold:g} (set with --threshold)"
    if manifest is None:
        return "no manifest: nothing is flagged"
    primary = manifest.primary.name
    flagged = flagged_labels(manifest)
    parts = [_interval_words(primary, low, high) for low, high in flag_region(manifest)]
    for cat in manifest.categories:
        if cat.label in flagged and (cat.output or primary) != primary:
            conds = [f"{cat.output} ≥ {cat.at_least:g}"] if cat.at_least is not None else []
            conds += [f"{cat.output} < {cat.below:g}"] if cat.below is not None else []
            parts.append(" and ".join(conds))
    *earlier, last = manifest.categories
    others = {c.output for c in earlier}
    if last.label in flagged and earlier and len(others) == 1 and None not in others and \
            all(c.below is not None and c.at_least is None for c in earlier):
        # the rest after bands on another output (CHA2DS2-VASc's elevated: CHA2DS2-VA >= 2), which the primary's
        # intervals cannot say
        parts.append(f"{earlier[0].output} ≥ {max(c.below for c in earlier if c.below is not None):g}")
    warned = any(c.indicator != "info" for c in manifest.categories)
    how = ("categories with a warning or critical card" if warned else
           "every category above the lowest (no category of this model raises a warning)")
    return f"{' or '.join(parts) or 'nothing'} ({how}: {', '.join(sorted(flagged))})"


@dataclass
class Judged:
    """Predictions whose follow-up has closed, with their outcome, and the counts of those not judged."""

    rows: list[dict[str, Any]]
    y: np.ndarray
    follow_up_open: int
    prior_outcome: int  # judged predictions whose patient already had the outcome before the prediction

    @property
    def events(self) -> int:
        return int(self.y.sum())


def selected(rows: list[dict[str, Any]], manifest: Manifest | None) -> list[dict[str, Any]]:
    """Scored rows that count: the first per patient, or every one when the manifest says `per: prediction`."""
    scored = [r for r in rows if r["score"] is not None]
    if manifest is not None and manifest.monitoring.per == "prediction":
        return sorted(scored, key=lambda r: r["created_at"])
    return first_per_patient(scored)


def judge(rows: list[dict[str, Any]], spec: OutcomeSpec, outcomes: list[dict[str, Any]], now: datetime) -> Judged:
    events = event_times(outcomes, spec)
    closed, y, still_open, prior = [], [], 0, 0
    for r in rows:
        state: FollowUp = follow_up(r["created_at"], r["patient_key"], events, spec, now)
        if state.status == "open":
            still_open += 1
            continue
        closed.append(r)
        y.append(1.0 if state.status == "event" else 0.0)
        prior += state.prior_outcome
    return Judged(closed, np.asarray(y, dtype=float), still_open, prior)


def request_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """One hook call to one service for one patient: the champion and its shadow challenger share it."""
    return row["hook_instance"], row["service_id"], row["patient_key"]


def pair_by_request(rows: list[dict[str, Any]], first_version: str | None = None,
                    second_version: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(champion, challenger) predictions of the same request: by version when given, else by alias."""
    def is_first(r: dict[str, Any]) -> bool:
        return r["model_version"] == first_version if first_version else r["alias"] == "champion"

    def is_second(r: dict[str, Any]) -> bool:
        return r["model_version"] == second_version if second_version else r["alias"] == "challenger"

    firsts = {request_key(r): r for r in rows if is_first(r)}
    return [(firsts[request_key(r)], r) for r in rows if is_second(r) and request_key(r) in firsts
            and firsts[request_key(r)] is not r]


def version_manifest(repository: Any, model_id: str, version: str | None) -> Manifest | None:
    """The manifest of a model version (the champion's when version is None); None when the repository does not
    hold it."""
    entry = repository.entries.get(model_id) if repository is not None else None
    if entry is None:
        return None
    if version is None:
        return entry.champion.manifest
    runtime = entry.versions.get(version)
    return runtime.manifest if runtime is not None else None
