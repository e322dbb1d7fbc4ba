"""Acceptance criteria: does a challenger's real-world shadow evidence allow it to replace the champion?

A manifest's `acceptance` block (inference/manifest.py) sets the bar; `monitoring.evidence.paired_evidence` measures the
challenger beside the champion on the same predictions, joined to outcomes. `evaluate` checks every criterion and
returns one result per criterion, so a refusal can name each failing one with its observed value, its 95% confidence
interval and what was required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.manifest import Acceptance

if TYPE_CHECKING:
    from monitoring.evidence import Interval, PairedEvidence

DEFAULT_CALIBRATION_SLOPE = (0.8, 1.2)
DEFAULT_CALIBRATION_INTERCEPT = (-0.2, 0.2)


@dataclass(frozen=True)
class CriterionResult:
    """One criterion checked against the evidence."""

    criterion: str  # "events", "non-inferior discrimination", ...
    passed: bool
    observed: str  # the value with its 95% CI, in words
    required: str

    def line(self) -> str:
        return f"{self.criterion}: observed {self.observed}; required {self.required}"

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "passed": self.passed, "observed": self.observed,
                "required": self.required}


def _num(value: float) -> str:
    return f"{value:.3f}"


def _with_ci(value: Interval) -> str:
    return f"{_num(value.estimate)} (95% CI {_num(value.low)} to {_num(value.high)})"


def _bounds(bounds: tuple[float, float]) -> str:
    return f"within [{bounds[0]:g}, {bounds[1]:g}]"


def calibration_bounds(acceptance: Acceptance) -> tuple[tuple[float, float], tuple[float, float]]:
    """(slope bounds, intercept bounds) for a probability output, the manifest's or the defaults."""
    return (acceptance.calibration_slope or DEFAULT_CALIBRATION_SLOPE,
            acceptance.calibration_intercept or DEFAULT_CALIBRATION_INTERCEPT)


def evaluate(evidence: PairedEvidence, acceptance: Acceptance) -> list[CriterionResult]:
    """Every criterion, in a fixed order: events, non-inferior discrimination, calibration slope and intercept (for a
    probability output only), then each fairness ratio. A statistic the evidence could not compute fails its
    criterion: promotion needs evidence, not its absence."""
    results = [CriterionResult("events", evidence.events >= acceptance.min_events,
                               f"{evidence.events} events in {evidence.pairs} paired predictions",
                               f"at least {acceptance.min_events}")]
    margin = acceptance.non_inferiority_margin
    diff = evidence.auroc_difference
    required = f"lower 95% bound of the AUROC difference (challenger − champion) ≥ {-margin:g}"
    if diff is None:
        results.append(CriterionResult("non-inferior discrimination", False,
                                       "not computable (needs events and non-events in the paired predictions)",
                                       required))
    else:
        detail = _with_ci(diff)
        if evidence.champion_auroc is not None and evidence.challenger_auroc is not None:
            detail += (f" [champion {_num(evidence.champion_auroc.estimate)}, "
                       f"challenger {_num(evidence.challenger_auroc.estimate)}]")
        results.append(CriterionResult("non-inferior discrimination", diff.low >= -margin, detail, required))
    if evidence.score_type == "probability":
        slope_bounds, intercept_bounds = calibration_bounds(acceptance)
        for name, value, bounds in (("calibration slope", evidence.calibration_slope, slope_bounds),
                                    ("calibration intercept", evidence.calibration_intercept, intercept_bounds)):
            if value is None:
                results.append(CriterionResult(name, False, "not computable (too few paired predictions or events)",
                                               _bounds(bounds)))
            else:
                results.append(CriterionResult(name, bounds[0] <= value.estimate <= bounds[1], _with_ci(value),
                                               _bounds(bounds)))
    low, high = acceptance.fairness_ratio
    for attribute, groups in sorted(evidence.fairness.items()):
        for group, ratio in sorted(groups.items()):
            results.append(CriterionResult(f"fairness {attribute}={group}", low <= ratio.estimate <= high,
                                           f"ratio to the reference group {_with_ci(ratio)}",
                                           _bounds(acceptance.fairness_ratio)))
    return results


def failures(results: list[CriterionResult]) -> list[CriterionResult]:
    return [r for r in results if not r.passed]
