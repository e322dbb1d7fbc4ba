"""The monitoring report on a simulated deployment: every figure of its JSON equals a plain second computation (pair
counting for AUROC, PSI by hand, rates by counting, a separately maximised likelihood for calibration), outcomes count
only after a prediction's follow-up window has closed, and nothing is shown below the minimum event count."""

from __future__ import annotations

import csv
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.optimize import minimize
from typer.testing import CliRunner

from cds_hooks.cli import app as cli
from monitoring_simulation import ICD10CM, PCE_THROUGH, SECRET, SHIPPED, SNOMED, START, Truth, model_repository, \
    simulate
from store.store import Store

PCE, T2D, NEWS2, EGFR, KFRE = "ascvd-pce-10y", "t2d-onset-5y", "news2", "egfr-ckd-epi-2021", "kfre-4var"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("monitoring")
    sim = simulate(tmp)
    config = tmp / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{sim.store_path}"\nhmac_secret = "{SECRET}"\n'
                      f'[models]\nroot = "{model_repository(tmp)}"\n')
    # outcomes arrive in both formats: the PCE ones as CSV, the others as FHIR NDJSON Conditions
    pce = [o for o in sim.outcomes if o["patient_id"].startswith("pce-")]
    with (tmp / "outcomes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["patient_id", "system", "code", "observed_at", "label"])
        writer.writeheader()
        writer.writerows(pce)
    with (tmp / "outcomes.ndjson").open("w") as fh:
        for o in sim.outcomes:
            if not o["patient_id"].startswith("pce-"):
                fh.write(json.dumps({"resourceType": "Condition",
                                     "subject": {"reference": f"Patient/{o['patient_id']}"},
                                     "code": {"coding": [{"system": o["system"], "code": o["code"]}]},
                                     "onsetDateTime": o["observed_at"]}) + "\n")
    runner = CliRunner()
    for name, count in (("outcomes.csv", len(pce)), ("outcomes.ndjson", len(sim.outcomes) - len(pce))):
        result = runner.invoke(cli, ["monitor", "import-outcomes", str(tmp / name), "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert f"read {count} outcomes, {count} new" in result.output
    out, summary_path = tmp / "report.html", tmp / "summary.json"
    result = runner.invoke(cli, ["monitor", "report", "--since", (START - timedelta(days=1)).date().isoformat(),
                                 "--until", (START + timedelta(days=31)).date().isoformat(),
                                 "--outcomes-through", PCE_THROUGH.isoformat(), "--out", str(out),
                                 "--json", str(summary_path), "-c", str(config)])
    assert result.exit_code == 0, result.output
    return {"sim": sim, "summary": json.loads(summary_path.read_text()), "html": out.read_text(), "tmp": tmp,
            "config": config}


# ---- plain second computations ---------------------------------------------------------------------------------
def pair_count_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of an event > score of a non-event), ties counted one half, by comparing every pair."""
    pos, neg = s[y == 1], s[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def psi_by_hand(base: list[float], current: list[float], bins: int = 10) -> float:
    """Ten bins at the base's deciles, bin i holding edge_i ≤ x < edge_i+1, open at both ends; empty bins 1e-6."""
    edges = sorted(set(np.quantile(base, [i / bins for i in range(bins + 1)]).tolist()))
    inner = edges[1:-1]

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(inner) + 1)
        for v in values:
            k = 0
            while k < len(inner) and v >= inner[k]:
                k += 1
            counts[k] += 1
        return [max(c / len(values), 1e-6) for c in counts]

    b, c = shares(base), shares(current)
    return sum((ci - bi) * math.log(ci / bi) for bi, ci in zip(b, c))


def psi_against(reference: dict[str, list[float]], values: list[float]) -> float:
    inner = reference["edges"][1:-1]
    counts = [0] * (len(inner) + 1)
    for v in values:
        counts[sum(1 for edge in inner if v >= edge)] += 1
    cur = [max(c / len(values), 1e-6) for c in counts]
    ref = [max(p, 1e-6) for p in reference["proportions"]]
    return sum((c - r) * math.log(c / r) for r, c in zip(ref, cur))


def logistic_mle(y: np.ndarray, lp: np.ndarray, offset_only: bool) -> float:
    """The calibration slope (or, offset_only, the intercept with lp as offset) by direct likelihood maximisation."""
    def nll(theta: np.ndarray) -> float:
        eta = theta[0] + (lp if offset_only else theta[1] * lp)
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    fit = minimize(nll, np.zeros(1 if offset_only else 2), method="BFGS", options={"gtol": 1e-10})
    return float(fit.x[0] if offset_only else fit.x[1])


def closed(t: Truth, horizon: timedelta, through: Any, per_patient: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(y, score) of predictions judged, and how many were still open, from the simulation's truth."""
    seen: set[str] = set()
    ys, ss, still_open = [], [], 0
    for created, pid, score, event in sorted(zip(t.created, t.patient, t.score, t.event_time), key=lambda r: r[0]):
        if score is None or (per_patient and pid in seen):
            continue
        seen.add(pid)
        if created + horizon > through:
            still_open += 1
            continue
        ys.append(1.0 if event is not None and created < event <= created + horizon else 0.0)
        ss.append(score)
    return np.array(ys), np.array(ss), still_open


# ---- tests ----------------------------------------------------------------------------------------------------------
def test_probability_model_figures_equal_a_second_computation(deployment: dict[str, Any]) -> None:
    summary, t = deployment["summary"], deployment["sim"].truth[PCE]
    model = summary["models"][PCE]
    y, p, still_open = closed(t, timedelta(days=3652), PCE_THROUGH)
    assert 0 < still_open < len(t.created)  # the window ends while some 10-year windows are still open
    follow_up = model["follow_up"]
    assert (follow_up["judged"], follow_up["events"], follow_up["follow_up_open"]) == (len(y), int(y.sum()),
                                                                                       still_open)
    perf = model["performance"]
    assert perf["auroc"]["estimate"] == pytest.approx(pair_count_auroc(y, p), abs=1e-12)
    assert perf["auroc"]["low"] < perf["auroc"]["estimate"] < perf["auroc"]["high"]
    assert perf["auroc"]["events"] == int(y.sum())
    cal = perf["calibration"]
    assert cal["oe_ratio"]["estimate"] == pytest.approx(y.sum() / p.sum(), rel=1e-12)
    lp = np.log(p / (1 - p))
    assert cal["slope"]["estimate"] == pytest.approx(logistic_mle(y, lp, offset_only=False), abs=1e-4)
    assert cal["intercept"]["estimate"] == pytest.approx(logistic_mle(y, lp, offset_only=True), abs=1e-4)
    # the injected miscalibration (outcomes at twice the predicted risk for two groups of three) is found
    assert cal["oe_ratio"]["low"] > 1.2
    order = np.argsort(p, kind="mergesort")
    first = order[: len(order) // 10 + (1 if len(order) % 10 else 0)]
    assert cal["deciles"][0]["events"] == int(y[first].sum())
    # the group whose outcomes follow the predictions has about half the reference group's observed/expected
    race = model["fairness"]["attributes"]["race"]
    assert race["reference_group"] == "White"
    ratio = race["groups"]["Asian"]["ratios"]["oe_ratio"]
    race_arr = np.array([r for r, s in zip(t.race, t.score) if s is not None])
    created = np.array([c for c, s in zip(t.created, t.score) if s is not None])
    judged = created + timedelta(days=3652) <= PCE_THROUGH
    asian, white = (race_arr[judged] == "Asian"), (race_arr[judged] == "White")
    expected_ratio = (y[asian].sum() / p[asian].sum()) / (y[white].sum() / p[white].sum())
    assert ratio["estimate"] == pytest.approx(expected_ratio, rel=1e-9)
    assert ratio["status"] == "outside" and ratio["high"] < 0.8
    assert any("Asian" in a["detail"] and "observed/expected" in a["detail"] for a in summary["attention"])


def test_counts_rates_and_outcome_ties_equal_counting(deployment: dict[str, Any]) -> None:
    summary, sim = deployment["summary"], deployment["sim"]
    t = sim.truth[PCE]
    model = summary["models"][PCE]
    none = [i for i, s in enumerate(t.score) if s is None]
    assert model["no_number"]["count"] == len(none)
    assert model["no_number"]["share"]["estimate"] == pytest.approx(len(none) / len(t.score))
    # refusals naming each patient's age are one reason, not one per value
    reasons = {r["reason"]: r["count"] for r in model["no_number"]["reasons"]}
    assert reasons == {"Age outside the validated range": sum(1 for i in none if not t.missing[i]),
                       "missing required input(s)": sum(1 for i in none if t.missing[i])}
    assert model["no_number"]["missing_inputs"][0] == {
        "input": "hdl", "label": "HDL cholesterol", "count": sum(1 for m in t.missing if "hdl" in m),
        "share": pytest.approx(sum(1 for m in t.missing if "hdl" in m) / len(t.score)),
        "in_no_number": sum(1 for m in t.missing if "hdl" in m)}
    # feedback per model, by counting
    fb = model["feedback"]
    accepted = sum(1 for f in sim.feedback if f.outcome == "accepted")
    assert (fb["total"], fb["accepted"]) == (len(sim.feedback), accepted)
    assert fb["acceptance_rate"]["estimate"] == pytest.approx(accepted / len(sim.feedback))
    assert fb["top_override_reasons"][0] == {"reason": "Patient declined",
                                             "count": sum(1 for f in sim.feedback
                                                          if f.override_reason_display == "Patient declined")}
    assert summary["models"][NEWS2]["feedback"]["total"] == 0
    # outcomes are tied to each model whose declared codes match (ICD-10 I21.4 matches the declared I21)
    mi = sum(1 for o in sim.outcomes if o["patient_id"].startswith("pce-") and
             ((o["system"], o["code"]) in {(SNOMED, "22298006"), (ICD10CM, "I21.4")}))
    assert summary["outcomes"]["tied_to_models"][PCE] == mi
    assert summary["outcomes"]["tied_to_models"][T2D] == sum(1 for o in sim.outcomes if o["code"] == "E11.9")
    assert summary["outcomes"]["not_tied_to_any_model"] == 1  # the one outcome no manifest declares
    assert summary["outcomes"]["imported"] == len(sim.outcomes)


def test_outcomes_before_the_prediction_or_after_the_window_are_not_events(deployment: dict[str, Any]) -> None:
    sim = deployment["sim"]
    t = sim.truth[PCE]
    model = deployment["summary"]["models"][PCE]
    # the simulation gave some non-event patients an MI before their prediction or after their 10-year window
    prior = {o["patient_id"] for o in sim.outcomes if o["patient_id"].startswith("pce-") and
             o["observed_at"] < t.created[int(o["patient_id"].split("-")[1])].isoformat()}
    judged_prior = [pid for pid in prior
                    if t.created[int(pid.split("-")[1])] + timedelta(days=3652) <= PCE_THROUGH]
    assert judged_prior and model["follow_up"]["prior_outcome"] == len(judged_prior)
    y, _, _ = closed(t, timedelta(days=3652), PCE_THROUGH)
    assert model["follow_up"]["events"] == int(y.sum())  # neither kind was counted as an event


def test_drift_against_the_window_and_against_the_model_card(deployment: dict[str, Any]) -> None:
    summary, sim = deployment["summary"], deployment["sim"]
    drift = summary["models"][PCE]["drift"]
    assert drift["reference"] == "first half of the reporting window"
    assert "the model card has no reference distribution" in drift["note"]
    t = sim.truth[PCE]
    scored = [i for i, s in enumerate(t.score) if s is not None]
    half = len(scored) // 2
    for name in ("sbp", "age"):
        values = [t.features[i][name] for i in scored]
        assert drift["features"][name]["psi"] == pytest.approx(psi_by_hand(values[:half], values[half:]), rel=1e-9)
    assert [f for f in drift["flagged"] if f != "__score__"] == ["sbp"]

    # t2d-onset-5y ships a reference distribution: the report uses it and finds the BMI shift, and only it
    drift = summary["models"][T2D]["drift"]
    assert drift["reference"] == "model card reference distribution" and drift["note"] is None
    reference = yaml.safe_load((SHIPPED / T2D / "1.0.0" / "manifest.yaml").read_text())["model_card"][
        "reference_distribution"]
    t = sim.truth[T2D]
    bmi = [f["bmi"] for f, s in zip(t.features, t.score) if s is not None]
    assert drift["features"]["bmi"]["psi"] == pytest.approx(psi_against(reference["bmi"], bmi), rel=1e-9)
    assert [f for f in drift["flagged"] if f != "__score__"] == ["bmi"]
    assert "Reference: model card reference distribution" in deployment["html"]
    assert "Reference: None" not in deployment["html"]


def test_integer_score_model_gets_ranking_and_event_rate_per_score_not_calibration(deployment: dict[str, Any]) -> None:
    model = deployment["summary"]["models"][NEWS2]
    t = deployment["sim"].truth[NEWS2]
    assert model["score_type"] == "score"
    # NEWS2 declares `per: prediction`: every observation set is judged, 24 hours after it
    y, s, still_open = closed(t, timedelta(days=1), PCE_THROUGH, per_patient=False)
    assert still_open == 0 and model["follow_up"]["judged"] == len(y) == len(t.score)
    perf = model["performance"]
    assert "calibration" not in perf
    assert perf["auroc"]["estimate"] == pytest.approx(pair_count_auroc(y, s), abs=1e-12)
    rates = {r["score"]: r for r in perf["event_rate_by_score"]}
    for value in np.unique(s):
        mask = s == value
        assert rates[value]["n"] == int(mask.sum()) and rates[value]["events"] == int(y[mask].sum())
        assert rates[value]["low"] <= rates[value]["estimate"] <= rates[value]["high"]
    # flagged by the categories' at_least bounds (score ≥ 5), not by clipping the score into [0, 1]
    fairness = model["fairness"]
    assert fairness["flag_region"] == [[5.0, None]]
    assert fairness["flagged"] == sum(1 for v in t.score if v is not None and v >= 5)


def test_value_model_without_outcome_gets_drift_only(deployment: dict[str, Any]) -> None:
    model = deployment["summary"]["models"][EGFR]
    assert model["score_type"] == "value"
    assert model["outcome"] == {"declared": False, "message": "no outcome declared", "matched_outcomes": 0,
                                "min_events": 20}
    assert model["performance"] is None and model["follow_up"] is None
    assert model["drift"]["features"]["creatinine"]["flagged"]
    # flagged below 60 (the KDIGO categories with a warning are `below` bounds), on eGFR as the card shows it: a
    # whole number, so a computed 59.6 reads 60 (G2) and is not flagged
    assert model["fairness"]["flag_region"] == [[None, 60.0]]
    t = deployment["sim"].truth[EGFR]
    assert model["fairness"]["flagged"] == sum(1 for v in t.score if int(f"{v:.0f}") < 60)
    row = next(r for r in deployment["summary"]["summary"] if r["model"] == EGFR)
    assert row["performance_message"] == "no outcome declared"
    assert "no outcome declared" in deployment["html"]


def test_below_the_minimum_no_figure_is_shown_and_the_reason_is(deployment: dict[str, Any]) -> None:
    model = deployment["summary"]["models"][KFRE]
    assert model["follow_up"]["events"] == 4
    perf = model["performance"]
    assert perf["message"] == "not enough events (n=4; need 20)"
    assert perf["auroc"]["estimate"] is None and perf["auroc"]["message"] == "not enough events (n=4; need 20)"
    assert perf["calibration"] is None
    section = deployment["html"].split('id="model-kfre-4var"')[1].split("<section")[0]
    assert "not enough events (n=4; need 20)" in section
    assert "AUROC</th>" not in section and "Calibration slope" not in section
    row = next(r for r in deployment["summary"]["summary"] if r["model"] == KFRE)
    assert row["auroc"]["estimate"] is None


def test_champion_challenger_counts_agreement_only_where_both_gave_a_number(deployment: dict[str, Any]) -> None:
    cc = deployment["summary"]["models"][T2D]["champion_challenger"]
    t = deployment["sim"].truth[T2D]
    both = [i for i, (a, b) in enumerate(zip(t.score, t.challenger)) if a is not None and b is not None]
    assert cc["requests"] == len(t.score)
    assert cc["both_numbers"] == len(both)
    assert cc["neither"] == sum(1 for a, b in zip(t.score, t.challenger) if a is None and b is None) > 0
    assert cc["champion_only"] == sum(1 for a, b in zip(t.score, t.challenger) if a is not None and b is None) > 0
    agree = sum(1 for i in both if t.category[i] == t.challenger_category[i])
    assert cc["category_agreement"]["estimate"] == pytest.approx(agree / len(both))
    ev = cc["evidence"]
    y, _, _ = closed(t, timedelta(days=1826), PCE_THROUGH)
    champ = np.array([t.score[i] for i in both])
    chall = np.array([t.challenger[i] for i in both], dtype=float)
    yb = np.array([1.0 if t.event_time[i] is not None else 0.0 for i in both])
    assert ev["pairs"] == len(both) and ev["events"] == int(yb.sum())
    assert ev["auroc_difference"]["estimate"] == pytest.approx(
        pair_count_auroc(yb, chall) - pair_count_auroc(yb, champ), abs=1e-12)


def test_report_page_is_self_contained_and_leads_with_the_summary(deployment: dict[str, Any]) -> None:
    page = deployment["html"]
    assert page.index("Summary by model") < page.index("Needs a decision") < page.index("<h2>Volume</h2>")
    assert "<script" not in page and "<link" not in page
    assert "http://" not in page and "https://" not in page  # no external assets
    assert page.count("data:image/png;base64,") >= 10


def test_import_errors_name_the_line_and_the_field(deployment: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,system,code,observed_at\np1,http://snomed.info/sct,22298006,yesterday\n")
    result = CliRunner().invoke(cli, ["monitor", "import-outcomes", str(bad), "-c", str(deployment["config"])])
    assert result.exit_code == 1
    assert "bad.csv line 2 observed_at: 'yesterday' is not a date or date-time" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["monitor", "import-outcomes", "-c", str(deployment["config"])])
    assert result.exit_code == 2 and "give either an outcome FILE or --fhir-server URL" in result.output


def test_purge_command(deployment: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["store", "purge", "--older-than-days", "36500", "-c",
                                      str(deployment["config"])])
    assert result.exit_code == 0 and "predictions: 0" in result.output
    store = Store(f"sqlite:///{deployment['sim'].store_path}", SECRET.encode())
    assert len(store.outcomes()) == len(deployment["sim"].outcomes)
    store.dispose()


def test_drift_names_its_reference_even_when_it_cannot_compute_it(deployment: dict[str, Any]) -> None:
    from inference.manifest import load_manifest
    from monitoring.drift import drift

    manifest = load_manifest(SHIPPED / T2D / "1.0.0")
    store = Store(f"sqlite:///{deployment['sim'].store_path}", SECRET.encode())
    rows = [r for r in store.predictions(model_id=T2D) if r["alias"] == "champion" and r["score"] is not None]
    store.dispose()
    few = drift(rows[:50], manifest)  # the old report said "Reference: None" here and dropped the reason
    assert few["reference"] == "model card reference distribution"
    assert few["note"] == "not enough scored predictions for drift (n=50; need 100)" and few["features"] == {}
    card = dict(manifest.model_card)
    card["reference_distribution"] = {"age": {"edges": [0, 50, 100], "proportions": [0.5]}}
    broken = drift(rows, manifest.model_copy(update={"model_card": card}))
    assert broken["reference"] == "first half of the reporting window"
    assert broken["note"].startswith("model_card.reference_distribution.age is not usable (")
    assert broken["features"]  # still measured, against the window's first half
