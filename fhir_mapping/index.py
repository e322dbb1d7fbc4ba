"""One pass over a patient's resources: flatten Bundles, de-duplicate, and index by type and code.

Prefetch arrives as a map of keys to single resources or Bundles (searchset, collection, transaction), often with the
same resource under several keys. Indexing once per request keeps feature extraction linear in what it uses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

Resource = dict[str, Any]

_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense")


def main_code_element(resource_type: str) -> str:
    """The element holding a resource's main code: a medication's drug, a Device's `type` (R4 has no Device.code),
    any other resource's `code`."""
    if resource_type in _MEDICATION_TYPES:
        return "medicationCodeableConcept"
    return "type" if resource_type == "Device" else "code"


def as_list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (absent, malformed) as an empty list."""
    return value if isinstance(value, list) else []


def reference_of(resource: Resource, full_url: str | None = None) -> str:
    """'Type/id' for a resource, or its fullUrl when it has no id."""
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return f"{resource.get('resourceType')}/{rid}"
    return full_url or ""


def iter_resources(value: Any) -> Iterator[tuple[Resource, str | None]]:
    """Yield (resource, fullUrl) for a resource or every entry of a (possibly nested) Bundle."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for entry in as_list(value.get("entry")):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                res = entry["resource"]
                if res.get("resourceType") == "Bundle":
                    yield from iter_resources(res)
                else:
                    yield res, entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        return
    if isinstance(value.get("resourceType"), str):
        yield value, None


def referenced_patient(ref: str) -> str | None:
    """The id of the Patient a literal reference names: 'Patient/x', an absolute URL ending in Patient/x, either
    versioned ('…/_history/2'); None for anything else (a urn:uuid, '#contained', another type)."""
    parts = ref.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def subject_reference(resource: Resource) -> str | None:
    """The reference naming whom a resource is about: R4's `subject` (Observation, Condition, Encounter, Procedure,
    MedicationRequest, MedicationStatement …) or `patient` (AllergyIntolerance, Immunization, Device …)."""
    holder = resource.get("subject")
    if holder is None:
        holder = resource.get("patient")
    ref = holder.get("reference") if isinstance(holder, dict) else None
    return ref if isinstance(ref, str) and ref else None


# Code systems as records converted from C-CDA name them (by OID), read as the FHIR URIs value sets use.
SYSTEM_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "urn:oid:2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "urn:oid:2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:2.16.840.1.113883.6.1": "http://loinc.org",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.6.4": "http://www.cms.gov/Medicare/Coding/ICD10",
}


def codings(concept: Any) -> Iterator[tuple[str, str, str | None]]:
    """(system, code, display) of each coding of a CodeableConcept; tolerant of malformed input. A system named by
    its OID (SYSTEM_ALIASES) is given as its FHIR URI."""
    if not isinstance(concept, dict):
        return
    for coding in as_list(concept.get("coding")):
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                system = SYSTEM_ALIASES.get(system, system)
                display = coding.get("display")
                yield system, code, display if isinstance(display, str) else None


ANOTHER_PATIENT = "belongs to another patient"  # how a resource whose subject is another Patient is set aside


class ResourceIndex:
    """Resources of one patient, indexed by type and by (system, code) of their main code."""

    def __init__(self, resources: Iterable[tuple[Resource, str | None]], types: frozenset[str] | None = None) -> None:
        """Index resources; with `types`, resources of other types are skipped (Patient and Medication are kept)."""
        wanted = None if types is None else types | {"Patient", "Medication"}
        self.by_type: dict[str, list[Resource]] = defaultdict(list)
        self.by_code: dict[tuple[str, str, str], list[Resource]] = defaultdict(list)
        self.codes_by_type: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.by_ref: dict[str, Resource] = {}
        self.refs: dict[int, str] = {}
        self._about: dict[str, list[Resource]] = defaultdict(list)  # subject reference -> the resources naming it
        self._elsewhere: dict[str | None, dict[int, str]] = {}
        # why a referenced Medication the record lacks could not be read (set by whoever tried: the service call)
        self.unread_medications: dict[str, str] = {}
        seen: set[str] = set()
        for res, full_url in resources:
            rtype = res.get("resourceType")
            if not isinstance(rtype, str) or (wanted is not None and rtype not in wanted):
                continue
            ref = reference_of(res, full_url)
            if ref:
                if ref in seen:
                    continue
                seen.add(ref)
                self.by_ref[ref] = res
                if full_url:
                    self.by_ref[full_url] = res
            self.refs[id(res)] = ref
            self.by_type[rtype].append(res)
            about = subject_reference(res)
            if about is not None:
                self._about[about].append(res)
            # the main code (one generator, not one per layer)
            for system, code, _ in codings(res.get(main_code_element(rtype))):
                self.by_code[(rtype, system, code)].append(res)
                self.codes_by_type[rtype].add((system, code))

    @classmethod
    def from_prefetch(cls, prefetch: dict[str, Any], types: frozenset[str] | None = None) -> ResourceIndex:
        def gen() -> Iterator[tuple[Resource, str | None]]:
            for value in prefetch.values():
                yield from iter_resources(value)

        return cls(gen(), types)

    def ref(self, resource: Resource) -> str:
        return self.refs.get(id(resource), reference_of(resource))

    def patient(self, patient_id: str | None = None) -> Resource | None:
        patients = self.by_type.get("Patient", [])
        if patient_id:
            for p in patients:
                if p.get("id") == patient_id:
                    return p
            return None
        return patients[0] if patients else None

    def elsewhere(self, patient_id: str | None = None) -> dict[int, str]:
        """id(resource) -> why it is set aside, for every resource whose subject names someone other than the patient
        in context (`patient_id`, else the record's Patient).

        A prefetch can carry another patient's resources (a search that ignored its patient parameter, a Bundle
        assembled wrongly); using one would put someone else's diagnosis or laboratory value on this patient's card.
        The patient is named as "Patient/<id>", an absolute URL ending in Patient/<id>, or the fullUrl (urn:uuid) of
        the patient's entry. A resource with no subject, or one naming it in a way that cannot be read (identifier or
        display only, an unresolved urn:uuid), is kept: patient-scoped searches of some EHRs leave the subject out.
        Decided once per distinct reference (a record usually has one or two), so each check is a lookup.
        """
        if patient_id in self._elsewhere:
            return self._elsewhere[patient_id]
        patient = self.patient(patient_id)
        pid = patient_id or (patient.get("id") if patient is not None else None)
        found: dict[int, str] = {}
        if isinstance(pid, str) and pid:
            for ref, resources in self._about.items():
                note = self._not_about(ref, pid)
                if note is not None:
                    found.update((id(res), note) for res in resources)
        self._elsewhere[patient_id] = found
        return found

    def _not_about(self, ref: str, pid: str) -> str | None:
        """Why a subject reference does not name patient `pid` (None when it does, or when that cannot be told)."""
        target = self.by_ref.get(ref)  # "Patient/x", or the fullUrl of an entry (urn:uuid, absolute URL)
        if target is not None:
            rtype, rid = target.get("resourceType"), target.get("id")
        else:
            parts = ref.split("?", 1)[0].rstrip("/").split("/")
            if len(parts) >= 4 and parts[-2] == "_history":  # a versioned reference: Patient/x/_history/2
                parts = parts[:-2]
            if len(parts) < 2 or not (parts[-2][:1].isupper() and parts[-2].isalpha()):
                return None  # '#contained', an unresolved urn:uuid, a conditional reference: cannot be told
            rtype, rid = parts[-2], parts[-1]
        if rtype != "Patient":
            return f"is about {rtype}/{rid}, not the patient"
        if not rid:  # a Patient entry without an id cannot be told apart from the patient
            return None
        return None if rid == pid else f"{ANOTHER_PATIENT} ({ref})"

    def medication_concept(self, resource: Resource) -> Any:
        """The medication CodeableConcept of a Medication* resource, resolving contained/Medication references."""
        concept = resource.get("medicationCodeableConcept")
        if concept is not None:
            return concept
        med = self.referenced_medication(resource)
        return med.get("code") if med is not None else None

    def unresolved_medication_reference(self, resource: Resource) -> str | None:
        """The medicationReference target of a Medication* resource that neither a contained resource nor this
        index supplies (to be read from the FHIR server); None when it is resolved or there is none."""
        ref_obj = resource.get("medicationReference")
        ref = ref_obj.get("reference") if isinstance(ref_obj, dict) else None
        if isinstance(ref, str) and ref and not ref.startswith("#") and self.referenced_medication(resource) is None:
            return ref
        return None

    def referenced_medication(self, resource: Resource) -> Resource | None:
        """The Medication a Medication* resource's medicationReference names: contained ('#id'), or in the index by
        its reference, relative or absolute ('https://ehr/fhir/Medication/1'); None when it is not there."""
        ref_obj = resource.get("medicationReference")
        ref = ref_obj.get("reference") if isinstance(ref_obj, dict) else None
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith("#"):
            for contained in as_list(resource.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained
            return None
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":  # a version-specific reference: the resource it names
            ref, parts = "/".join(parts[:-2]), parts[:-2]
        med = self.by_ref.get(ref) or (self.by_ref.get("/".join(parts[-2:])) if len(parts) >= 2 else None)
        return med if isinstance(med, dict) and med.get("resourceType") in (None, "Medication") else None

    def with_codes(self, rtype: str, tokens: Iterable[str]) -> list[Resource]:
        """Resources of rtype whose main code matches any 'system|code' token (components are not main codes)."""
        out: list[Resource] = []
        seen: set[int] = set()
        for token in tokens:
            system, _, code = token.partition("|")
            for res in self.by_code.get((rtype, system, code), ()):
                if id(res) not in seen:
                    seen.add(id(res))
                    out.append(res)
        return out
