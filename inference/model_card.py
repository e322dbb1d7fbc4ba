"""Model cards: the ONC HTI-1 source attributes every served model must carry (45 CFR 170.315(b)(11)).

A predictive model carries the 31 predictive DSI attributes; a guideline score carries the 13 evidence-based ones.
Each attribute holds a value, or `{not_available: "<reason>"}` — never a silent gap.
"""

from __future__ import annotations

from typing import Any

from inference.manifest import Manifest

PREDICTIVE_ATTRIBUTES: dict[str, str] = {
    "developer": "Developer name and contact",
    "funding_source": "Funding source of the technical implementation",
    "output_description": "Description of the output value",
    "output_type": "Output type (prediction, classification, recommendation, evaluation, analysis, other)",
    "intended_use": "Intended use",
    "intended_population": "Intended patient population(s)",
    "intended_users": "Intended user(s)",
    "decision_role": "Intended decision-making role (informs, augments, replaces clinical management)",
    "out_of_scope_use": "Tasks, situations or populations where users are cautioned against applying it",
    "known_risks_limitations": "Known risks, inappropriate settings or uses, known limitations",
    "training_inclusion_exclusion": "Inclusion and exclusion criteria that shaped the training data",
    "demographic_inputs_used": "Use of race, ethnicity, language, sexual orientation, gender identity, sex, date of "
    "birth, social determinants of health and health status assessments as input features",
    "training_representativeness": "Demographic representativeness of those variables in the training data",
    "training_relevance": "Relevance of the training data to the intended deployed setting",
    "fairness_approach": "Approach to ensure fair output",
    "bias_management": "Approaches to manage, reduce or eliminate bias",
    "external_validation_data": "Data source, setting or environment of external validation",
    "external_validation_party": "Party that conducted external validation",
    "external_validation_representativeness": "Demographic representativeness of the external data",
    "external_validation_process": "Description of the external validation process",
    "internal_validity": "Validity in test data from the training source",
    "internal_fairness": "Fairness in test data from the training source",
    "external_validity": "Validity in external data",
    "external_fairness": "Fairness in external data",
    "outcome_evaluations": "References to evaluations of effect on outcomes",
    "validity_monitoring": "Process and frequency for monitoring validity",
    "local_validity": "Validity in local data",
    "fairness_monitoring": "Process and frequency for monitoring fairness",
    "local_fairness": "Fairness in local data",
    "update_process": "Process and frequency of updates",
    "correction_frequency": "Frequency with which performance is corrected when validity or fairness risks are found",
}

EVIDENCE_ATTRIBUTES: dict[str, str] = {
    "citation": "Bibliographic citation of the clinical research or guideline",
    "developer": "Developer",
    "funding_source": "Funding source",
    "release_and_revision_dates": "Release and revision dates",
    "uses_race": "Race used as an input",
    "uses_ethnicity": "Ethnicity used as an input",
    "uses_language": "Language used as an input",
    "uses_sexual_orientation": "Sexual orientation used as an input",
    "uses_gender_identity": "Gender identity used as an input",
    "uses_sex": "Sex used as an input",
    "uses_date_of_birth": "Date of birth used as an input",
    "uses_social_determinants": "Social determinants of health used as an input",
    "uses_health_status_assessments": "Health status assessments used as an input",
}


def required_attributes(kind: str) -> dict[str, str]:
    return PREDICTIVE_ATTRIBUTES if kind == "predictive" else EVIDENCE_ATTRIBUTES


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0)


def model_card_problems(manifest: Manifest) -> list[str]:
    """Which HTI-1 attributes are missing or empty (an explicit not_available needs a reason)."""
    attrs = manifest.model_card.get("attributes")
    if not isinstance(attrs, dict):
        return ["model_card.attributes is missing"]
    problems: list[str] = []
    for key in required_attributes(manifest.kind):
        value = attrs.get(key)
        if key not in attrs or _empty(value):
            problems.append(f"attribute '{key}' is missing")
        elif isinstance(value, dict) and "not_available" in value and _empty(value["not_available"]):
            problems.append(f"attribute '{key}' is not_available without a reason")
    return problems


def attribute_rows(manifest: Manifest) -> list[tuple[str, str, Any]]:
    """(key, title, value) for display, in the regulation's order."""
    attrs = manifest.model_card.get("attributes", {})
    return [(key, title, attrs.get(key)) for key, title in required_attributes(manifest.kind).items()]


def _interval_text(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(value.get(k), (int, float)) for k in ("estimate", "low",
                                                                                                 "high")):
        return None
    return f"{value['estimate']:.3f} (95% CI {value['low']:.3f} to {value['high']:.3f})"


def evidence_figures(evidence: dict[str, Any]) -> dict[str, str]:
    """The key figures of a promotion audit record's evidence (inference/promotion.py), for the card and the CLI:
    paired predictions, events, the AUROC difference and the challenger's calibration, each with its 95% CI."""
    paired = evidence.get("paired_evidence")
    figures: dict[str, str] = {}
    if not isinstance(paired, dict):
        if evidence.get("note"):
            figures["evidence"] = str(evidence["note"])
        return figures
    for key, label in (("pairs", "paired predictions"), ("events", "events")):
        if isinstance(paired.get(key), int):
            figures[label] = str(paired[key])
    for key, label in (("auroc_difference", "AUROC difference"), ("calibration_slope", "calibration slope"),
                       ("calibration_intercept", "calibration intercept")):
        text = _interval_text(paired.get(key))
        if text is not None:
            figures[label] = text
    criteria = evidence.get("criteria")
    if evidence.get("criteria_applied") and isinstance(criteria, list):
        passed = sum(1 for c in criteria if isinstance(c, dict) and c.get("passed"))
        figures["acceptance criteria"] = f"{passed} of {len(criteria)} met"
    elif evidence.get("criteria_applied") is False:
        figures["acceptance criteria"] = "not applied (rollback)"
    return figures
