"""Scoring one patient, and a Spark partition of patients, with the online service's own code.

For each service, the patient's export is answered to the service's prefetch templates exactly as an EHR would answer
them (`cds_hooks.bundle_prefetch`), referenced Medications are added the way the online service adds the ones it
reads from the FHIR server, and then the shared pipeline (`cds_hooks.pipeline`: index → mapper → guards → ONNX model
→ explanation) and the card's chart resource (`cards.builder.chart_resource`) run unchanged, with "now" = the as-of
instant. The model repository is loaded once per Python worker process, on first use.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cards.builder import CardContext, chart_resource
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.pipeline import REFERENCED_MEDICATIONS_KEY, index_of, map_patient, predict, unresolved_medications
from cds_hooks.services import CdsService, build_services
from inference.repository import ModelRepository
from inference.runtime import ModelRuntime, Prediction
from population.grouping import PatientRecord
from population.ndjson import reference_id

# Outcomes, one per patient × service × model version
RESULT, MISSING, REFUSED, DECEASED, ERROR = "result", "missing-data", "refused", "deceased", "error"


@dataclass(frozen=True)
class ScoringPlan:
    """What every worker needs, small enough to ship with each task."""

    models_root: str  # a local folder, or the name of the folder shipped with SparkContext.addFile
    shipped: bool  # models_root is a SparkFiles name (resolved on each worker)
    service_ids: tuple[str, ...]
    as_of: datetime  # aware; "now" for the mapper, the guards and the RiskAssessment
    base_url: str  # the service's public base URL, as in the online RiskAssessment's method and note
    time_zone: str | None  # mapping.time_zone of the configuration (IANA name), else read from each record
    # (model id, champion, challenger) as the promotion audit chain says, applied on each worker after loading
    aliases: tuple[tuple[str, str, str | None], ...] = ()


def apply_aliases(services: dict[str, CdsService], aliases: tuple[tuple[str, str, str | None], ...]) -> None:
    """Serve each model's governed champion and challenger, as the online service does (cds_hooks/champion_sync)."""
    for model_id, champion, challenger in aliases:
        for service in services.values():
            if service.model.id == model_id:
                service.model.set_aliases(champion, challenger)


_SERVICES: dict[str, dict[str, CdsService]] = {}


def services_for(plan: ScoringPlan) -> dict[str, CdsService]:
    """The plan's services, from a model repository loaded once per process (a Python worker is reused across
    tasks, so one onnxruntime session per model version serves every patient the worker scores)."""
    root = plan.models_root
    if plan.shipped:
        from pyspark import SparkFiles

        root = SparkFiles.get(root)
    if root not in _SERVICES:
        from pathlib import Path

        _SERVICES[root] = build_services(ModelRepository(Path(root)).load())
    services = _SERVICES[root]
    apply_aliases(services, plan.aliases)
    return {sid: services[sid] for sid in plan.service_ids}


def score_partition(plan: ScoringPlan, groups: Iterator[tuple[str, PatientRecord]]) -> Iterator[dict[str, Any]]:
    """mapPartitions body: one row per patient × service × model version (champion, then challenger if any)."""
    services = services_for(plan)
    zone = ZoneInfo(plan.time_zone) if plan.time_zone else None
    for patient_id, (texts, medications) in groups:
        resources = [orjson.loads(t) for t in texts]
        meds = {ref: orjson.loads(t) for ref, t in medications.items()}
        for service in services.values():
            yield from score_patient(service, patient_id, resources, meds, plan, zone)


def score_patient(service: CdsService, patient_id: str, resources: list[dict[str, Any]],
                  medications: dict[str, dict[str, Any]], plan: ScoringPlan,
                  zone: ZoneInfo | None) -> list[dict[str, Any]]:
    """Rows for one patient and one service. An unexpected failure on one patient becomes an `error` row naming the
    exception; it never stops the job."""
    try:
        return _score(service, patient_id, resources, medications, plan, zone)
    except Exception as exc:  # a record the mapper cannot handle must not lose every other patient's score
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"{type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return [_row(plan, patient_id, service, service.model.champion, "champion", None, {}, ERROR,
                     error=message[:500], patient_resource=_has_patient(resources, patient_id))]


def _score(service: CdsService, patient_id: str, resources: list[dict[str, Any]],
           medications: dict[str, dict[str, Any]], plan: ScoringPlan, zone: ZoneInfo | None) -> list[dict[str, Any]]:
    templates = {key: pk.template for key, pk in service.plan.items()}
    prefetch = prefetch_from_resources(templates, resources + list(medications.values()), {"patientId": patient_id})
    index = index_of(service, prefetch)
    unresolved = unresolved_medications(index)
    if unresolved:  # as online, where the service reads these from the FHIR server: here, from the export
        found = []
        for ref in dict.fromkeys(unresolved):
            med_id = reference_id(ref, "Medication")
            med = medications.get(f"Medication/{med_id}") if med_id else None
            if med is not None:
                found.append({"fullUrl": ref, "resource": med})
        if found:
            prefetch[REFERENCED_MEDICATIONS_KEY] = {"resourceType": "Bundle", "type": "collection", "entry": found}
            index = index_of(service, prefetch)
            unresolved = unresolved_medications(index)
    champion = service.model.champion
    mapping = map_patient(champion, index, at=plan.as_of, patient_id=patient_id, time_zone=zone)
    prediction, shadow = predict(service.model, mapping)
    features = {name: float(fv.value) for name, fv in mapping.values.items()}
    has_patient = index.patient(patient_id) is not None
    rows = []
    for runtime, pred in ((champion, prediction), (service.model.challenger, shadow)):
        if runtime is None or pred is None:
            continue
        outcome = _outcome(pred)
        resource = None
        if outcome == RESULT and pred.alias == "champion":
            ctx = CardContext(service.id, patient_id, None, plan.as_of, plan.base_url)
            resource = chart_resource(runtime.manifest, pred, mapping, ctx)
        rows.append(_row(plan, patient_id, service, runtime, pred.alias, pred, features, outcome, resource=resource,
                         unresolved=sorted(set(unresolved)), patient_resource=has_patient))
    return rows


def _outcome(pred: Prediction) -> str:
    """The card the online service gives for this prediction (cards.builder.build_cards' order)."""
    if pred.suppressed:
        return DECEASED
    if pred.missing_required:
        return MISSING
    if pred.refusals or pred.outputs is None or pred.category is None:
        return REFUSED
    return RESULT


def _row(plan: ScoringPlan, patient_id: str, service: CdsService, runtime: ModelRuntime, alias: str,
         pred: Prediction | None, features: dict[str, float], outcome: str, *, resource: dict[str, Any] | None = None,
         unresolved: list[str] | None = None, error: str | None = None,
         patient_resource: bool = True) -> dict[str, Any]:
    manifest = runtime.manifest
    outputs = dict(pred.outputs) if pred is not None and pred.outputs else {}
    primary = manifest.primary.name
    value = outputs.get(primary)
    return {
        "patient_id": patient_id,
        "service": service.id,
        "model_id": manifest.id,
        "model_version": manifest.version,
        "alias": alias,
        "outcome": outcome,
        "primary_output": primary,
        "primary_value": value if value is not None and math.isfinite(value) else None,
        "outputs": outputs,
        "category": pred.category.label if pred is not None and pred.category is not None else None,
        "refusal_reasons": list(pred.refusals) if pred is not None else [],
        "missing_inputs": list(pred.missing_required) if pred is not None else [],
        "features": features,
        "unresolved_medications": unresolved or [],
        "patient_resource": patient_resource,
        "error": error,
        "as_of": plan.as_of,
        "resource_type": resource["resourceType"] if resource is not None else None,
        "resource": orjson.dumps(resource).decode() if resource is not None else None,
    }


def _has_patient(resources: list[dict[str, Any]], patient_id: str) -> bool:
    return any(r.get("resourceType") == "Patient" and r.get("id") == patient_id for r in resources)
