"""The orders being placed in an order-select or order-sign call (`context.draftOrders`), read against a model's spec.

Exists because a card written only from the record misses what the clinician is ordering at that moment: it would
offer a urine ACR already in the order, or stay silent that an anticoagulant being signed is one its score says is
not called for. Draft orders are not the record: they do not make a patient "on treatment" (a statin not yet taken
does not lower the LDL-C a risk was estimated from), so they never change a feature's value. They are read here, with
no I/O, into what a card says ("In this order: apixaban 5 MG Oral Tablet (anticoagulant)") and which of its own
suggested orders are already drafted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_mapping.index import Resource, ResourceIndex, codings
from fhir_mapping.medications import medication_view
from fhir_mapping.spec import FeatureSpec
from fhir_mapping.valuesets import ValueSetLibrary


@dataclass(frozen=True)
class DraftOrder:
    """One draft order as a card names it."""

    resource_type: str  # ServiceRequest, MedicationRequest …
    name: str  # as the order names it ('apixaban 5 MG Oral Tablet', 'Albumin/Creatinine [Mass Ratio] in Urine')
    codes: frozenset[str]  # 'system|code' of the order's own codings (a ServiceRequest's code, a drug's codes)
    recognised_as: str | None = None  # the title of the spec's drug class that recognises it ('anticoagulant')


def draft_resources(context: dict[str, Any]) -> list[Resource]:
    """The resources of `context.draftOrders` (validated by cds_hooks.hooks before anything reads them)."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return [e["resource"] for e in entries or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def read_drafts(spec: FeatureSpec, drafts: list[Resource], valuesets: ValueSetLibrary,
                patient_id: str | None = None) -> list[DraftOrder]:
    """Each draft ServiceRequest and MedicationRequest (other kinds are not read), a medication with the first of the
    spec's drug classes that recognises it, if any; entered-in-error, revoked or completed ones are not orders, nor
    is one whose subject is another patient than `patient_id` (a service call refuses those first, cds_hooks.hooks)."""
    index = ResourceIndex((r, None) for r in drafts)  # resolves a draft's contained or bundled Medication
    classes = list(dict.fromkeys(s.medication_class for feature in spec.features.values() for s in feature.sources
                                 if s.medication_class and s.resource == "MedicationRequest"))
    out: list[DraftOrder] = []
    for res in drafts:
        rtype = res.get("resourceType")
        if res.get("status") in ("entered-in-error", "revoked", "completed") or _another_patients(res, patient_id):
            continue
        if rtype == "ServiceRequest":
            concept = res.get("code")
            found = list(codings(concept))
            text = concept.get("text") if isinstance(concept, dict) else None
            name = next((d for _, _, d in found if d), None) or (text if isinstance(text, str) and text else None)
            if found or name:
                out.append(DraftOrder(rtype, name or f"{found[0][1]}", frozenset(f"{s}|{c}" for s, c, _ in found)))
        elif rtype == "MedicationRequest":
            view = medication_view(index, res)
            label = None
            for klass in classes:
                drug_class = valuesets.drug_class(klass)
                rec = drug_class.recognise(view)
                if rec is not None and rec.counted:
                    label = drug_class.title
                    break
            out.append(DraftOrder(rtype, view.name, frozenset(f"{s}|{c}" for s, c, _ in view.codings), label))
    return out


def _another_patients(res: Resource, patient_id: str | None) -> bool:
    subject = res.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if patient_id is None or not isinstance(ref, str) or not ref.startswith("Patient/"):
        return False
    return ref.split("/", 1)[1].split("/_history", 1)[0] != patient_id
