"""Evidence for promoting a challenger: champion and challenger judged on the same requests (the challenger runs in
shadow on the champion's features, so each hook call recorded both), against the outcome the model declares, once
each prediction's follow-up window has closed.

Every figure carries a 95% interval; none is given from fewer events (or non-events) than the manifest's
`monitoring.min_events`, and `message` then says why. `digest()` fingerprints the evidence so a promotion record can
name exactly what it was decided on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitoring.evaluation import (
    is_flagged,
    judge,
    pair_by_request,
    risk_oriented,
    score_type,
    version_manifest,
)
from monitoring.followup import OutcomeSpec, first_per_patient
from monitoring.intervals import (
    Interval,
    calibration_in_the_large,
    calibration_slope,
    paired_auroc_difference,
    wilson,
)
from monitoring.metrics import fairness_audit, outcome_gate

__all__ = ["EvidenceError", "Interval", "PairedEvidence", "paired_evidence", "FAIRNESS_ATTRIBUTES"]

FAIRNESS_ATTRIBUTES = ("sex", "age_band", "race", "ethnicity")


class EvidenceError(ValueError):
    """The evidence cannot be gathered (unknown model or version); the message says which and what to check."""


@dataclass(frozen=True)
class PairedEvidence:
    model_id: str
    champion_version: str
    challenger_version: str
    window_start: datetime
    window_end: datetime
    score_type: str  # "probability" | "score" | "value"
    pairs: int  # predictions where champion and challenger both gave a number AND the follow-up window closed
    events: int  # of those, with the declared outcome
    champion_auroc: Interval | None
    challenger_auroc: Interval | None
    auroc_difference: Interval | None  # challenger − champion, paired DeLong 95% CI
    calibration_slope: Interval | None  # challenger (probability models only)
    calibration_intercept: Interval | None  # challenger, calibration-in-the-large
    fairness: dict[str, dict[str, Interval]]  # attribute -> group -> challenger sensitivity ratio vs reference group
    # additions (beyond the interface the promotion flow codes against)
    outcome: str | None = None  # the declared outcome's label (None: the challenger declares none)
    min_events: int = 20
    message: str | None = None  # why figures are None (no outcome declared, not enough events, …)
    numeric_pairs: int = 0  # requests where both gave a number, follow-up closed or not
    follow_up_open: int = 0  # of those, still inside their follow-up window (not judged)
    category_agreement: Interval | None = None  # over numeric pairs
    fairness_metric: str = "sensitivity"  # what `fairness` ratios compare
    fairness_reference: dict[str, str] = field(default_factory=dict)  # attribute -> reference group

    def to_json(self) -> dict[str, Any]:
        def iv(value: Interval | None) -> dict[str, float] | None:
            return None if value is None else value.to_json()

        return {
            "model_id": self.model_id, "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
            "score_type": self.score_type, "pairs": self.pairs, "events": self.events,
            "champion_auroc": iv(self.champion_auroc), "challenger_auroc": iv(self.challenger_auroc),
            "auroc_difference": iv(self.auroc_difference), "calibration_slope": iv(self.calibration_slope),
            "calibration_intercept": iv(self.calibration_intercept),
            "fairness": {a: {g: i.to_json() for g, i in groups.items()} for a, groups in self.fairness.items()},
            "outcome": self.outcome, "min_events": self.min_events, "message": self.message,
            "numeric_pairs": self.numeric_pairs, "follow_up_open": self.follow_up_open,
            "category_agreement": iv(self.category_agreement), "fairness_metric": self.fairness_metric,
            "fairness_reference": dict(self.fairness_reference),
        }

    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def paired_evidence(store: Any, repository: Any, model_id: str, champion_version: str, challenger_version: str, *,
                    since: datetime | None = None, now: datetime | None = None) -> PairedEvidence:
    """Champion vs challenger on the same requests between `since` and `now` (outcomes known up to `now`)."""
    now = _utc(now) if now is not None else datetime.now(UTC)
    since = _utc(since) if since is not None else None
    champ_manifest = version_manifest(repository, model_id, champion_version)
    manifest = version_manifest(repository, model_id, challenger_version)
    for version, found in ((champion_version, champ_manifest), (challenger_version, manifest)):
        if found is None:
            raise EvidenceError(f"model {model_id} version {version} is not in the model repository "
                                f"(models/{model_id}/{version}/ must exist)")
    assert manifest is not None
    rows = [r for r in store.predictions(model_id=model_id, since=since) if r["created_at"] <= now]
    start = since or (min((r["created_at"] for r in rows), default=now))
    pairs = pair_by_request(rows, champion_version, challenger_version)
    numeric = [(a, b) for a, b in pairs if a["score"] is not None and b["score"] is not None]
    agreement = wilson(sum(a["category"] == b["category"] for a, b in numeric), len(numeric))
    kind = score_type(manifest)
    spec = OutcomeSpec.of(manifest)
    base = dict(model_id=model_id, champion_version=champion_version, challenger_version=challenger_version,
                window_start=start, window_end=now, score_type=kind, champion_auroc=None, challenger_auroc=None,
                auroc_difference=None, calibration_slope=None, calibration_intercept=None, fairness={},
                min_events=manifest.monitoring.min_events, numeric_pairs=len(numeric), category_agreement=agreement)
    if spec is None:
        return PairedEvidence(**base, pairs=0, events=0, outcome=None,
                              message=f"no outcome declared in the manifest of {model_id} {challenger_version}")
    # one pair per patient (the first) unless the manifest judges every prediction
    by_champion = {id(a): (a, b) for a, b in numeric}
    champions = [a for a, _ in numeric]
    if manifest.monitoring.per == "patient":
        champions = first_per_patient(champions)
    judged = judge(champions, spec, store.outcomes(), now)
    chosen = [by_champion[id(a)] for a in judged.rows]
    y = judged.y
    events = judged.events
    min_events = manifest.monitoring.min_events
    message = outcome_gate(events, len(y) - events, min_events)
    common = dict(base, pairs=len(chosen), events=events, outcome=spec.label, follow_up_open=judged.follow_up_open)
    if message is not None:
        return PairedEvidence(**common, message=message)
    champ_scores = risk_oriented(np.array([a["score"] for a, _ in chosen], dtype=float), champ_manifest)
    chall_raw = np.array([b["score"] for _, b in chosen], dtype=float)
    chall_scores = risk_oriented(chall_raw, manifest)
    champ_auc, chall_auc, diff = paired_auroc_difference(y, champ_scores, chall_scores)
    slope = intercept = None
    if kind == "probability":
        slope, intercept = calibration_slope(y, chall_raw), calibration_in_the_large(y, chall_raw)
    flagged = np.array([is_flagged(b, manifest) for _, b in chosen], dtype=bool)
    fairness: dict[str, dict[str, Interval]] = {}
    references: dict[str, str] = {}
    for attribute in FAIRNESS_ATTRIBUTES:
        labels = [str((b.get("cohort") or {}).get(attribute) or "unknown") for _, b in chosen]
        audit = fairness_audit(labels, flagged, labels, flagged, y, chall_raw, kind == "probability", min_events)
        groups = {g: Interval(r["sensitivity"]["estimate"], r["sensitivity"]["low"], r["sensitivity"]["high"])
                  for g, stats in audit["groups"].items()
                  if (r := stats.get("ratios", {})) and r.get("sensitivity", {}).get("estimate") is not None}
        if groups:
            fairness[attribute] = groups
            references[attribute] = audit["reference_group"]
    return PairedEvidence(**{**common, "champion_auroc": champ_auc, "challenger_auroc": chall_auc,
                             "auroc_difference": diff, "calibration_slope": slope, "calibration_intercept": intercept,
                             "fairness": fairness, "fairness_reference": references})
