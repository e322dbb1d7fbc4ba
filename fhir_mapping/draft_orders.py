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
from functools import cache
from importlib import resources
from typing import Any

import yaml

from fhir_mapping.index import Resource, ResourceIndex, codings, referenced_patient, subject_reference
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
    # a ServiceRequest's test under every code the spec reads as the same test (a urine ACR drafted as 14959-1 is
    # the 9318-7 a card would suggest): the codes of each Observation source holding one of its codes
    reads_as: frozenset[str] = frozenset()


def draft_entries(context: dict[str, Any]) -> list[tuple[Resource, str | None]]:
    """The resources of `context.draftOrders` with their fullUrls (validated by cds_hooks.hooks first)."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return [(e["resource"], e["fullUrl"] if isinstance(e.get("fullUrl"), str) else None)
            for e in entries or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def unresolved_draft_medications(context: dict[str, Any], record: ResourceIndex) -> list[str]:
    """The medicationReference targets of draft orders that neither the draftOrders Bundle nor the record holds
    (to be read from the FHIR server with the record's own)."""
    entries = draft_entries(context)
    drafts = ResourceIndex(entries)
    refs = []
    for res, _ in entries:
        ref = drafts.unresolved_medication_reference(res) if res.get("resourceType") == "MedicationRequest" else None
        if ref is not None and record.referenced_medication(res) is None:
            refs.append(ref)
    return list(dict.fromkeys(refs))


LOINC = "http://loinc.org"


@cache
def _panel_members() -> dict[str, frozenset[str]]:
    """'http://loinc.org|57698-3' -> the 'system|code' of its members the models read (data/loinc-panels.yaml)."""
    doc = yaml.safe_load((resources.files("fhir_mapping") / "data" / "loinc-panels.yaml").read_text("utf-8"))
    return {f"{LOINC}|{panel}": frozenset(f"{LOINC}|{m}" for m in members)
            for panel, members in doc["panels"].items()}


def _with_members(own: frozenset[str]) -> frozenset[str]:
    """A test order's codes, with the members of a panel it orders."""
    members = _panel_members()
    return own.union(*(members.get(code, frozenset()) for code in own))


# statuses of a request that is not being placed: withdrawn (ServiceRequest revoked; MedicationRequest cancelled, or
# stopped when an order re-signed at order-sign is being discontinued), done, or entered in error (FHIR R4)
_NOT_BEING_ORDERED = frozenset({"entered-in-error", "revoked", "completed", "cancelled", "stopped"})


def read_drafts(spec: FeatureSpec, drafts: list[Resource] | list[tuple[Resource, str | None]],
                valuesets: ValueSetLibrary, patient_id: str | None = None,
                record: ResourceIndex | None = None) -> list[DraftOrder]:
    """Each draft ServiceRequest and MedicationRequest (other kinds are not read), a medication with the first of the
    spec's drug classes that count it, if any; entered-in-error, revoked, cancelled, stopped or completed ones are
    not orders being placed, nor is one whose subject (or patient) is another patient than `patient_id` (a service
    call refuses those first, cds_hooks.hooks)."""
    entries = [d if isinstance(d, tuple) else (d, None) for d in drafts]
    index = ResourceIndex(entries)  # resolves a draft's contained Medication, or one of the Bundle by its fullUrl
    classes = list(dict.fromkeys(s.medication_class for feature in spec.features.values() for s in feature.sources
                                 if s.medication_class and s.resource == "MedicationRequest"))
    tests = [(frozenset(s.codes), frozenset(s.prefer_codes)) for f in spec.features.values() for s in f.sources
             if s.resource == "Observation" and s.codes]
    out: list[DraftOrder] = []
    for res, _ in entries:
        rtype = res.get("resourceType")
        if res.get("status") in _NOT_BEING_ORDERED or _another_patients(res, patient_id):
            continue
        if rtype == "ServiceRequest":
            concept = res.get("code")
            found = list(codings(concept))
            text = concept.get("text") if isinstance(concept, dict) else None
            name = next((d for _, _, d in found if d), None) or (text if isinstance(text, str) and text else None)
            if found or name:
                own = frozenset(f"{s}|{c}" for s, c, _ in found)
                out.append(DraftOrder(rtype, name or f"{found[0][1]}", own,
                                      reads_as=_same_test(_with_members(own), tests)))
        elif rtype == "MedicationRequest":
            view = medication_view(index, res)
            if view.unresolved_reference and record is not None:  # a Medication of the record, or fetched with it
                view = medication_view(record, res)
            titles = []  # every class that counts it: amlodipine/atorvastatin is an antihypertensive and a statin
            for klass in classes:
                drug_class = valuesets.drug_class(klass)
                rec = drug_class.recognise(view)
                if rec is not None and rec.counted:
                    titles.append(drug_class.title)
            label = " and ".join(dict.fromkeys(titles)) or None
            out.append(DraftOrder(rtype, view.name, frozenset(f"{s}|{c}" for s, c, _ in view.codings), label))
    return out


def _another_patients(res: Resource, patient_id: str | None) -> bool:
    ref = subject_reference(res)  # `subject`, or `patient` (a NutritionOrder, a VisionPrescription)
    named = referenced_patient(ref) if ref is not None else None
    return patient_id is not None and named is not None and named != patient_id


def _same_test(own: frozenset[str], tests: list[tuple[frozenset[str], frozenset[str]]]) -> frozenset[str]:
    """Every code the spec reads as the test a draft orders: the codes of a source holding one of its codes (only
    the less preferred ones when it holds only those: a whole-blood creatinine is not the serum one)."""
    same: set[str] = set()
    for codes, preferred in tests:
        if own & codes:
            same |= codes if not preferred or own & preferred else codes - preferred
    return frozenset(same)
