"""Acceptance criteria judged on hand-built evidence: each criterion passes and fails where its bound says, a missing
statistic fails, a score model has no calibration criteria, and the manifest refuses bounds a perfect model fails."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference.acceptance import evaluate, failures
from inference.manifest import Acceptance, Manifest
from monitoring.evidence import Interval, PairedEvidence

ROOT = Path(__file__).resolve().parent.parent


def evidence(**changes: Any) -> PairedEvidence:
    base: dict[str, Any] = dict(
        model_id="m", champion_version="1.0.0", challenger_version="1.1.0",
        window_start=datetime(2019, 1, 1, tzinfo=UTC), window_end=datetime(2025, 1, 1, tzinfo=UTC),
        score_type="probability", pairs=500, events=60,
        champion_auroc=Interval(0.74, 0.68, 0.80), challenger_auroc=Interval(0.76, 0.70, 0.82),
        auroc_difference=Interval(0.02, -0.01, 0.05), calibration_slope=Interval(1.05, 0.85, 1.25),
        calibration_intercept=Interval(-0.05, -0.30, 0.20),
        fairness={"sex": {"female": Interval(0.95, 0.70, 1.29)}})
    base.update(changes)
    return PairedEvidence(**base)


def failed_names(ev: PairedEvidence, acceptance: Acceptance | None = None) -> list[str]:
    return [r.criterion for r in failures(evaluate(ev, acceptance or Acceptance()))]


def test_good_evidence_meets_every_default_criterion() -> None:
    results = evaluate(evidence(), Acceptance())
    assert [r.criterion for r in results] == ["events", "non-inferior discrimination", "calibration slope",
                                              "calibration intercept", "fairness sex=female"]
    assert all(r.passed for r in results)


def test_events_below_the_minimum_fail_and_name_the_count() -> None:
    [result] = failures(evaluate(evidence(events=19), Acceptance()))
    assert result.line() == "events: observed 19 events in 500 paired predictions; required at least 20"
    assert failed_names(evidence(events=20)) == []  # the minimum itself is enough


def test_non_inferiority_is_judged_on_the_lower_bound_of_the_difference() -> None:
    # lower bound −0.020 is exactly the margin: non-inferior; −0.021 is not, whatever the point estimate says
    assert failed_names(evidence(auroc_difference=Interval(0.01, -0.020, 0.04))) == []
    ev = evidence(auroc_difference=Interval(0.01, -0.021, 0.04))
    [result] = failures(evaluate(ev, Acceptance()))
    assert result.criterion == "non-inferior discrimination"
    assert "0.010 (95% CI -0.021 to 0.040)" in result.observed and "≥ -0.02" in result.required
    assert failed_names(ev, Acceptance(non_inferiority_margin=0.05)) == []


def test_calibration_point_estimates_must_lie_within_bounds() -> None:
    assert failed_names(evidence(calibration_slope=Interval(0.79, 0.6, 0.98))) == ["calibration slope"]
    assert failed_names(evidence(calibration_slope=Interval(1.21, 1.0, 1.4))) == ["calibration slope"]
    assert failed_names(evidence(calibration_intercept=Interval(0.25, 0.1, 0.4))) == ["calibration intercept"]
    assert failed_names(evidence(calibration_intercept=Interval(-0.2, -0.4, 0.0))) == []  # the bound is inclusive
    wide = Acceptance(calibration_slope=(0.5, 1.5), calibration_intercept=(-0.5, 0.5))
    assert failed_names(evidence(calibration_slope=Interval(0.6, 0.4, 0.8),
                                 calibration_intercept=Interval(0.4, 0.2, 0.6)), wide) == []


def test_a_statistic_that_could_not_be_computed_fails_its_criterion() -> None:
    ev = evidence(events=3, auroc_difference=None, champion_auroc=None, challenger_auroc=None,
                  calibration_slope=None, calibration_intercept=None, fairness={})
    results = failures(evaluate(ev, Acceptance()))
    assert [r.criterion for r in results] == ["events", "non-inferior discrimination", "calibration slope",
                                              "calibration intercept"]
    assert all("not computable" in r.observed for r in results[1:])


def test_a_score_model_has_no_calibration_criteria() -> None:
    ev = evidence(score_type="score", calibration_slope=None, calibration_intercept=None)
    assert [r.criterion for r in evaluate(ev, Acceptance())] == ["events", "non-inferior discrimination",
                                                                 "fairness sex=female"]
    assert failed_names(ev) == []


def test_every_fairness_group_outside_the_ratio_bounds_is_named() -> None:
    ev = evidence(fairness={"sex": {"female": Interval(0.79, 0.6, 1.0)},
                            "age_band": {"30-39": Interval(1.26, 1.0, 1.5), "40-49": Interval(1.25, 1.0, 1.5)}})
    assert failed_names(ev) == ["fairness age_band=30-39", "fairness sex=female"]
    assert failed_names(ev, Acceptance(fairness_ratio=(0.7, 1.3))) == []


def _t2d_manifest() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "models" / "t2d-onset-5y" / "1.0.0" / "manifest.yaml").read_text())


@pytest.mark.parametrize("block, needle", [
    ({"calibration_slope": [1.1, 1.3]}, "calibration_slope [1.1, 1.3] must be increasing and contain 1"),
    ({"calibration_intercept": [0.2, -0.2]}, "calibration_intercept [0.2, -0.2] must be increasing and contain 0"),
    ({"fairness_ratio": [0.9, 0.95]}, "fairness_ratio [0.9, 0.95]"),
    ({"min_events": 0}, "min_events"),
    ({"force": True}, "force"),
])
def test_the_manifest_refuses_an_acceptance_block_a_perfect_model_would_fail(block: dict[str, Any],
                                                                          needle: str) -> None:
    doc = _t2d_manifest()
    doc["acceptance"] = block
    with pytest.raises(ValueError, match="acceptance") as exc:
        Manifest.model_validate(doc)
    assert needle in str(exc.value)


def test_calibration_bounds_on_a_score_model_are_refused() -> None:
    doc = yaml.safe_load((ROOT / "models" / "cha2ds2-vasc" / "1.0.0" / "manifest.yaml").read_text())
    assert Manifest.model_validate(doc).primary.kind == "score"
    doc["acceptance"] = {"calibration_slope": [0.8, 1.2]}
    with pytest.raises(ValueError, match="calibration criteria apply to a probability output"):
        Manifest.model_validate(doc)


def test_the_t2d_demo_states_its_acceptance_criteria_in_both_versions() -> None:
    for version in ("1.0.0", "1.1.0"):
        doc = yaml.safe_load((ROOT / "models" / "t2d-onset-5y" / version / "manifest.yaml").read_text())
        acceptance = Manifest.model_validate(doc).acceptance
        assert doc["acceptance"]["min_events"] == 20
        assert (acceptance.non_inferiority_margin, acceptance.calibration_slope, acceptance.calibration_intercept,
                acceptance.fairness_ratio) == (0.02, (0.8, 1.2), (-0.2, 0.2), (0.8, 1.25))
