"""The learned demonstration model: loads and validates, says it is synthetic, shadows a challenger, refuses diabetics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fhirfactory as F
from inference.model_card import PREDICTIVE_ATTRIBUTES
from inference.repository import ModelRepository
from test_models_http import fire, recorded_outputs

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "t2d-onset-5y"


def record(**extra: Any) -> list[dict[str, Any]]:
    res = [F.patient("p1", 58, "male"), F.quantity_obs("39156-5", 33.5, "kg/m2"), F.bp_panel(142),
           F.quantity_obs("2085-9", 38, "mg/dL"), F.condition("714628002", display="Prediabetes"),
           F.condition("59621000", display="Essential hypertension")]
    if extra.get("diabetes"):
        res.append(F.condition("44054006"))
    return res


def test_both_versions_load_with_complete_model_cards() -> None:
    entry = ModelRepository(ROOT / "models").load().entries["t2d-onset-5y"]
    assert entry.champion.version == "1.0.0" and entry.challenger is not None and entry.challenger.version == "1.1.0"
    for runtime in entry.versions.values():
        manifest = runtime.manifest
        assert manifest.kind == "predictive"
        assert set(PREDICTIVE_ATTRIBUTES) <= set(manifest.model_card["attributes"])
        assert "AUROC" in manifest.model_card["attributes"]["internal_validity"]
        reference = manifest.model_card["reference_distribution"]
        assert {"age", "bmi", "sbp", "hdl", "__score__"} <= set(reference)
        assert abs(sum(reference["bmi"]["proportions"]) - 1) < 1e-9
        evaluation = json.loads((FOLDER / runtime.version / "evaluation.json").read_text())
        assert evaluation["test"]["events"] > 0 and 0.5 < evaluation["test"]["auroc"] <= 1.0


def test_graph_matches_its_golden_examples_and_is_a_probability() -> None:
    runtime = ModelRepository(ROOT / "models").load().entries["t2d-onset-5y"].champion
    rows = np.random.default_rng(3).uniform([30, 0, 15, 80, 15, 0, 0], [79, 1, 60, 220, 120, 1, 1], size=(200, 7))
    rows[:, [1, 5, 6]] = np.round(rows[:, [1, 5, 6]])
    p = runtime.run_matrix(rows)["risk_5y"]
    assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))


def test_card_is_labelled_not_for_clinical_use_and_challenger_is_shadowed(api: Any) -> None:
    card = fire(api, "t2d-onset-5y", record())
    assert card["summary"].startswith("NOT FOR CLINICAL USE")
    assert "synthetic" in card["detail"].lower()
    assert 0 < recorded_outputs(api, card)["risk_5y"] < 1
    state = api.app.state.cds
    rows = state.store.predictions(model_id="t2d-onset-5y")
    assert {r["alias"] for r in rows} == {"champion", "challenger"}
    assert [r["card_uuids"] for r in rows if r["alias"] == "challenger"] == [[]]


def test_patients_with_diabetes_get_no_number(api: Any) -> None:
    card = fire(api, "t2d-onset-5y", record(diabetes=True))
    assert "%" not in card["summary"] and "the record shows diabetes (a diagnosis" in card["detail"]


@pytest.mark.parametrize(("hba1c", "refused"), [(8.4, True), (6.5, True), (6.4, False), (6.0, False)])
def test_an_hba1c_in_the_diabetes_range_is_not_a_patient_for_a_diabetes_onset_estimate(api: Any, hba1c: float,
                                                                                        refused: bool) -> None:
    """ADA 2025 (section 2): an HbA1c of 6.5 % or more is in the diabetes range. A man with 8.4 % last month and no
    diabetes on the problem list had been given a 5-year risk of developing it."""
    card = fire(api, "t2d-onset-5y", record() + [F.quantity_obs("4548-4", hba1c, "%")])
    ifcc = round((hba1c - 2.152) / 0.09148, 1)  # the same result in IFCC mmol/mol (NGSP-IFCC master equation)
    assert fire(api, "t2d-onset-5y", record() + [F.quantity_obs("59261-8", ifcc, "mmol/mol")])["summary"].startswith(
        "No ") is refused
    if refused:
        assert card["summary"].startswith("No "), card["summary"]
        assert "an HbA1c of 6.5 % or more" in card["summary"] + card["detail"], card["summary"]
        assert not any(a["resource"]["resourceType"] == "RiskAssessment"
                       for sug in card.get("suggestions", []) for a in sug["actions"])
    else:
        assert recorded_outputs(api, card)["risk_5y"] > 0, card["summary"]


def test_prediabetes_is_read_however_the_problem_list_codes_it(api: Any) -> None:
    """ADA: prediabetes is impaired fasting glucose, impaired glucose tolerance, or named so. Coded as R73.03 (ICD-10-CM,
    also under the WHO URL), SNOMED 15777000, IFG 390951007, R73.01 or WHO ICD-10 R73.0 (abnormal glucose tolerance
    test, whose inclusion terms are IGT and prediabetes), it is prediabetes; the card had said 'No'."""
    base = [r for r in record() if r.get("code", {}).get("coding", [{}])[0].get("code") != "714628002"]
    absent = fire(api, "t2d-onset-5y", base)
    assert "Prediabetes: No" in absent["detail"]
    for code, system in [("R73.03", "http://hl7.org/fhir/sid/icd-10-cm"), ("R7303", "http://hl7.org/fhir/sid/icd-10"), ("15777000", F.SNOMED),
                         ("390951007", F.SNOMED), ("R73.01", "http://hl7.org/fhir/sid/icd-10-cm"), ("714628002", F.SNOMED),
                         ("R73.0", "http://hl7.org/fhir/sid/icd-10"), ("R730", "http://hl7.org/fhir/sid/icd-10")]:
        card = fire(api, "t2d-onset-5y", base + [F.condition(code, system, display="Prediabetes")])
        assert "Prediabetes: No" not in card["detail"], (code, card["detail"])
        assert recorded_outputs(api, card)["risk_5y"] > recorded_outputs(api, absent)["risk_5y"], code
    # other abnormal glucose, hyperglycaemia: not prediabetes; nor the ICD-10-CM heading R73.0 (over R73.01-R73.09),
    # nor R73.09 under the WHO URL (WHO R73.0 is impaired glucose tolerance, and includes prediabetes)
    for code, system in [("R73.09", "http://hl7.org/fhir/sid/icd-10-cm"), ("R73.9", "http://hl7.org/fhir/sid/icd-10-cm"),
                         ("R73.0", "http://hl7.org/fhir/sid/icd-10-cm"), ("R73.09", "http://hl7.org/fhir/sid/icd-10")]:
        card = fire(api, "t2d-onset-5y", base + [F.condition(code, system, display="Abnormal glucose")])
        assert recorded_outputs(api, card)["risk_5y"] == recorded_outputs(api, absent)["risk_5y"], code


def test_a_birth_year_alone_is_not_used_when_the_challenger_would_differ(api: Any) -> None:
    """Born in a year that makes him 60 or 61: the champion's card reads the same at both ages, but the challenger's
    shadow risk (recorded for the comparison) does not, so the age is missing rather than one of them recorded."""
    patient = F.patient("p1", 61, "male")
    patient["birthDate"] = str(F.NOW.year - 61)
    card = fire(api, "t2d-onset-5y", [patient, *record()[1:]])
    assert "missing Age" in card["summary"], card["summary"]
    assert "60 or 61" in card["detail"]
