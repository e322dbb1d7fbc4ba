"""FHIR R4 resources that card suggestions create: a RiskAssessment to save the result, a ServiceRequest to order a test.

They are built as plain JSON, then validated with fhir.resources' R4B models so a suggestion never carries a
resource an EHR would reject (once per shape: `cards.shape_check`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest

from cards.shape_check import validate_shape
from fhir_mapping.fhirdates import parse_fhir_datetime
from fhir_mapping.result import MappingResult
from fhir_mapping.formatting import rounded, unit_label
from inference.manifest import Manifest, Output, display_scale
from inference.runtime import Prediction

UCUM = "http://unitsofmeasure.org"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
# The guideline category of a model maps onto HL7's qualitative risk codes where the words agree.
_QUALITATIVE = {"low": "low", "borderline": "moderate", "intermediate": "moderate", "moderate": "moderate",
                "high": "high", "very high": "high", "low-medium": "moderate", "medium": "moderate"}


def _date_time(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def risk_assessment(
    manifest: Manifest,
    prediction: Prediction,
    mapping: MappingResult,
    *,
    patient_id: str,
    encounter_id: str | None,
    at: datetime,
    model_card_url: str,
) -> dict[str, Any]:
    """A RiskAssessment recording the prediction, its method (model and version) and its basis (the inputs)."""
    assert prediction.outputs is not None and prediction.category is not None
    primary = manifest.primary
    basis = _basis(mapping)
    # every output the model gave (primary first), each with its outcome and horizon; withheld ones are not given
    predictions = [_prediction(manifest, o, prediction, at) for o in manifest.outputs
                   if o.primary and o.name in prediction.outputs]
    predictions += [_prediction(manifest, o, prediction, at) for o in manifest.outputs
                    if not o.primary and o.name in prediction.outputs]
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "method": {
            "coding": [{"system": model_card_url.rsplit("/", 2)[0], "code": manifest.id, "version": manifest.version,
                        "display": manifest.title}],
            "text": f"{manifest.title} (cds-onnx model {manifest.id} {manifest.version})",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": _date_time(at),
        "prediction": predictions,
        "note": [{"text": f"Computed by cds-onnx from {manifest.citation.rstrip().rstrip('.')}. "
                          f"Model card: {model_card_url}"}],
    }
    if manifest.card.risk_assessment_code:  # the kind of assessment (RiskAssessment.code), not an outcome
        resource["code"] = {"coding": [dict(manifest.card.risk_assessment_code)]}
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if basis:
        resource["basis"] = basis
    validate_shape(RiskAssessment, resource)
    return resource


def _years_after(at: datetime, years: float) -> datetime:
    """The moment `years` after `at`: whole years by the calendar (29 February to 28 February), else by days."""
    if float(years).is_integer():
        return at + relativedelta(years=int(years))
    return at + timedelta(days=round(365.25 * years))


def _prediction(manifest: Manifest, output: Output, prediction: Prediction, at: datetime) -> dict[str, Any]:
    """One RiskAssessment.prediction: the outcome (coded when the manifest gives a code), the probability or the
    value in words, the horizon, and for the primary output the qualitative category."""
    assert prediction.outputs is not None and prediction.category is not None
    coding = output.outcome
    outcome: dict[str, Any] = {"text": output.label}
    if coding:
        outcome["coding"] = [dict(coding)]
    pred: dict[str, Any] = {"outcome": outcome}
    value = prediction.outputs[output.name]
    if output.kind == "probability":
        pred["probabilityDecimal"] = round(value, 6)
    # the category sits on the prediction it was chosen on: KFRE's "very high" is a 2-year risk above 40 %, not a
    # statement about the 5-year one (RiskAssessment.prediction.qualitativeRisk describes its own prediction)
    decided_on = prediction.category.output
    if (output.name == decided_on) if decided_on else output.primary:
        qualitative = _QUALITATIVE.get(prediction.category.label.lower())
        if qualitative:
            pred["qualitativeRisk"] = {"coding": [{"system": RISK_PROBABILITY, "code": qualitative}],
                                       "text": prediction.category.label}
        else:
            pred["qualitativeRisk"] = {"text": prediction.category.label}
    if output.horizon_years:
        # the time frame, from the assessment on: R4's whenRange is read as an age range (its cardiac example writes
        # a 10-year risk at 39 as ages 39-49), so a range of {high: 10 a} alone would say "up to age 10"
        pred["whenPeriod"] = {"start": _date_time(at), "end": _date_time(_years_after(at, output.horizon_years))}
    if output.kind != "probability":
        pred["rationale"] = f"{output.label}: {format_output(output.kind, value, output.decimals)}"
    return pred


_DERIVED_FROM_TYPES = frozenset({"DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse", "Observation",
                                  "MolecularSequence"})


def _basis(mapping: MappingResult, names: Collection[str] | None = None) -> list[dict[str, str]]:
    """The records the values rest on (of the features `names` only, when given)."""
    refs: list[dict[str, str]] = []
    seen: set[str] = set()
    for name, fv in mapping.values.items():
        if names is not None and name not in names:
            continue
        for src in fv.sources if not fv.defaulted else ():
            if src.reference and src.reference not in seen and "/" in src.reference:
                seen.add(src.reference)
                refs.append({"reference": src.reference})
    return refs


def _measured_at(mapping: MappingResult, names: Collection[str]) -> datetime | None:
    """When the results a computed value rests on were taken: the oldest dated source of its inputs `names` (a
    creatinine's draw for an eGFR; not a urine ACR that only chooses the advice), so that the saved value ages with
    its specimen, not with the hook that computed it."""
    dates = [d for n, v in mapping.values.items() if n in names for src in v.sources if src.resource_type != "Patient"
             for d in (parse_fhir_datetime(src.date) if src.date else None,) if d is not None]
    return min(dates) if dates else None


def observation(
    manifest: Manifest,
    prediction: Prediction,
    mapping: MappingResult,
    *,
    patient_id: str,
    encounter_id: str | None,
    at: datetime,
    model_card_url: str,
) -> dict[str, Any]:
    """An Observation recording a computed value (e.g. eGFR), derived from the resources it was computed from."""
    assert prediction.outputs is not None and manifest.card.observation_code is not None
    primary = manifest.primary
    inputs = {i.name for i in manifest.inputs}  # what the value is computed from, not what chose the advice
    code = dict(manifest.card.observation_code)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [code], "text": code.get("display", primary.label)},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": _date_time(_measured_at(mapping, inputs) or at),
        "valueQuantity": {"value": primary.shown_value(prediction.outputs[primary.name]),  # the number on the card
                          "unit": primary.unit or "", "system": UCUM, "code": primary.unit or "1"},
        "method": {"text": f"{manifest.title} (cds-onnx model {manifest.id} {manifest.version})"},
        "note": [{"text": f"Computed by cds-onnx. Model card: {model_card_url}"}],
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    # R4 Observation.derivedFrom refers to Observations and documents only: the Patient (age, sex) is the subject
    derived = [r for r in _basis(mapping, inputs) if r["reference"].split("/", 1)[0] in _DERIVED_FROM_TYPES]
    if derived:
        resource["derivedFrom"] = derived
    validate_shape(Observation, resource)
    return resource


def service_request(code: dict[str, str] | None, *, patient_id: str, encounter_id: str | None, reason: str,
                    text: str | None = None) -> dict[str, Any]:
    """A draft order (a test the model needs, or a follow-up the guideline supports)."""
    concept: dict[str, Any] = {"text": text or (code or {}).get("display", "")}
    if code:
        concept["coding"] = [dict(code)]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": concept,
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    validate_shape(ServiceRequest, resource)
    return resource


def output_text(out: Output, value: float) -> str:
    """An output as the card shows it (format_output), with its readable unit for a measured value."""
    text = format_output(out.kind, value, out.decimals)
    label = unit_label(out.unit) if out.kind == "value" else ""
    return f"{text} {label}" if label else text


def format_output(kind: str, value: float, decimals: int) -> str:
    """How an output value reads on a card: probabilities as percentages, scores as numbers; rounded exactly as the
    category is chosen (Output.shown), so the number and the category on a card always agree."""
    shown = rounded(value * display_scale(kind), decimals)
    text = f"{abs(shown) if shown == 0 else shown:f}"  # never "-0"
    return f"{text}%" if kind == "probability" else text
