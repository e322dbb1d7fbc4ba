"""The part of a service call that knows no HTTP: prefetch → index → features → model, shared by every caller.

The online service (`service_call.ServiceCaller`) and population scoring (`population/`) both call these functions,
so a patient's record gives the same features, guards and prediction whichever way it arrives.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Literal

from cards.fhir_resources import format_output
from cds_hooks.services import CdsService
from fhir_mapping.index import ResourceIndex
from fhir_mapping.mapper import map_features
from fhir_mapping.result import MappingResult
from fhir_mapping.timeline import with_record
from inference.manifest import Manifest
from inference.repository import ModelEntry
from inference.runtime import ModelRuntime, Prediction

REFERENCED_MEDICATIONS_KEY = "_referenced-medications"  # the prefetch key under which read Medications are added


def index_of(service: CdsService, resources: dict[str, Any]) -> ResourceIndex:
    """The patient's resources as the champion's feature spec reads them (absent prefetch keys left out)."""
    types = service.model.champion.spec.resource_types()
    return ResourceIndex.from_prefetch({k: v for k, v in resources.items() if v is not None}, types)


def unresolved_medications(index: ResourceIndex) -> list[str]:
    """medicationReference targets that neither the prefetch nor a contained resource supplies, of the orders and
    statements that may be current (a stopped or completed one is never read, so its drug need not be known)."""
    refs: list[str] = []
    for rtype in ("MedicationRequest", "MedicationStatement"):
        for res in index.by_type.get(rtype, ()):
            status = res.get("status")
            if isinstance(status, str) and status in _NEVER_CURRENT:  # a malformed status (a list) is not hashable
                continue
            ref = index.unresolved_medication_reference(res)
            if ref is not None:
                refs.append(ref)
    return list(dict.fromkeys(refs))


_NEVER_CURRENT = frozenset({"stopped", "completed", "cancelled", "entered-in-error", "not-taken", "revoked"})


def map_patient(runtime: ModelRuntime, index: ResourceIndex, *, at: datetime, patient_id: str,
                time_zone: tzinfo | None, partial_birth: Literal["missing", "first", "last"] = "missing",
                encounter_id: str | None = None) -> MappingResult:
    """The runtime's features for one patient at time `at` (the hook's now, or a population job's as-of), in the
    encounter the hook names, if any."""
    mapping = map_features(runtime.spec, index, at=at, valuesets=runtime.valuesets, patient_id=patient_id,
                           time_zone=time_zone, partial_birth=partial_birth, encounter_id=encounter_id)
    return with_record(mapping, index, at, patient_id)  # sequence models read the whole timeline from the record


def same_result(manifest: Manifest, one: Prediction, other: Prediction) -> bool:
    """Whether two predictions say the same on a card: the same refusals, missing inputs, category, withheld
    outputs, guidance and notes, and every output the same as shown (the manifest's decimals). A birth date written
    as a year alone gives two ages; when both give the same result, the age does not matter to it."""
    if one.refusals != other.refusals or one.category != other.category or one.withheld != other.withheld or \
            one.guidance != other.guidance or one.notes != other.notes or one.suppressed != other.suppressed:
        return False
    if one.outputs is None or other.outputs is None:
        return one.outputs is other.outputs and one.missing_required == other.missing_required
    return set(one.outputs) == set(other.outputs) and all(
        format_output(o.kind, one.outputs[o.name], o.decimals) ==
        format_output(o.kind, other.outputs[o.name], o.decimals) for o in manifest.outputs if o.name in one.outputs)


def same_inputs(one: MappingResult, other: MappingResult) -> bool:
    """Whether two mappings of one record show the same inputs: the same missing ones, and every value as shown (a
    derived eGFR takes the age at the creatinine, so two ages can give two eGFRs a card would show)."""
    if set(one.missing) != set(other.missing) or set(one.values) != set(other.values):
        return False
    return all((fv.display or f"{fv.value:.2f}") == (other.values[name].display or f"{other.values[name].value:.2f}")
               for name, fv in one.values.items())


def predict(entry: ModelEntry, mapping: MappingResult) -> tuple[Prediction, Prediction | None]:
    """The champion's prediction (guards, model, explanation) and the challenger's shadow prediction, if any."""
    prediction = entry.champion.predict(mapping, "champion")
    shadow = entry.challenger.predict(mapping, "challenger") if entry.challenger else None
    return prediction, shadow
