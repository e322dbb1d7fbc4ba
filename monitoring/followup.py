"""Tying imported outcomes to a model's predictions: which outcomes a model declares, and whether each prediction was
followed by one within its follow-up window.

A prediction at time t with horizon H has the window (t, t + H]. It is judged only once the window has closed
(t + H ≤ the time outcomes are known up to); until then it is "follow-up open" and counts neither as an event nor
as a non-event, because its event may not have happened yet. An outcome on or before t is not an event of that
prediction (the patient already had it); such predictions are counted as `prior_outcome` so the report can say so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from inference.manifest import ICD10_SYSTEMS, Manifest, MonitoredOutcome

Status = Literal["event", "no_event", "open"]


def _icd(code: str) -> str:
    return code.replace(".", "").upper()


@dataclass(frozen=True)
class CodeMatcher:
    """Matches "system|code" outcomes against a declared code list (ICD-10 codes match their subcodes)."""

    exact: frozenset[tuple[str, str]]
    icd_prefixes: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, outcome: MonitoredOutcome) -> CodeMatcher:
        exact, prefixes = set(), []
        for entry in outcome.codes:
            system, _, code = entry.partition("|")
            if system in ICD10_SYSTEMS:
                prefixes.append((system, _icd(code)))
            else:
                exact.add((system, code))
        return cls(frozenset(exact), tuple(prefixes))

    def matches(self, system: str, code: str) -> bool:
        if (system, code) in self.exact:
            return True
        if system in ICD10_SYSTEMS:
            flat = _icd(code)
            return any(system == s and flat.startswith(p) for s, p in self.icd_prefixes)
        return False


@dataclass(frozen=True)
class OutcomeSpec:
    """What counts as an event for a model: the declared codes and the follow-up window."""

    label: str
    matcher: CodeMatcher
    horizon: timedelta

    @classmethod
    def of(cls, manifest: Manifest) -> OutcomeSpec | None:
        outcome = manifest.monitoring.outcome
        days = manifest.outcome_horizon_days
        if outcome is None or days is None:
            return None
        return cls(outcome.label, CodeMatcher.of(outcome), timedelta(days=days))


@dataclass(frozen=True)
class FollowUp:
    status: Status
    prior_outcome: bool  # the patient had the outcome on or before the prediction


def event_times(outcomes: list[dict[str, Any]], spec: OutcomeSpec) -> dict[str, list[datetime]]:
    """Per patient key, the times of the positive outcomes matching the declared codes (sorted)."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for o in outcomes:
        if o["label"] >= 0.5 and spec.matcher.matches(o["system"], o["code"]):
            times[o["patient_key"]].append(o["observed_at"])
    return {k: sorted(v) for k, v in times.items()}


def follow_up(created_at: datetime, patient_key: str, events: dict[str, list[datetime]], spec: OutcomeSpec,
              now: datetime) -> FollowUp:
    times = events.get(patient_key, ())
    prior = any(t <= created_at for t in times)
    end = created_at + spec.horizon
    if end > now:
        return FollowUp("open", prior)
    hit = any(created_at < t <= end for t in times)
    return FollowUp("event" if hit else "no_event", prior)


def first_per_patient(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earliest row of each patient (rows in any order)."""
    first: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["created_at"]):
        first.setdefault(r["patient_key"], r)
    return sorted(first.values(), key=lambda r: r["created_at"])


def matched_outcomes(outcomes: list[dict[str, Any]], spec: OutcomeSpec | None) -> int:
    """How many imported outcome rows carry one of the model's declared codes."""
    if spec is None:
        return 0
    return sum(1 for o in outcomes if spec.matcher.matches(o["system"], o["code"]))
