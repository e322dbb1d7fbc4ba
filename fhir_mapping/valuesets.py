"""Value sets as data files: code lists (RxNorm products, SNOMED, ICD-10-CM prefixes) a feature spec can name.

Shipped sets live in fhir_mapping/valuesets/; a model folder may carry its own in <model>/valuesets/, which are
looked up first. Matching is exact on (system, code), or by code prefix for sets marked `"match": "prefix"`.
ICD-10 codes are compared without their dot and case (`E11.9`, `E119` and `e11.9` are one code): EHRs and claims
feeds write them both ways, and a code written without its dot is the same diagnosis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


# Code systems whose codes are written with or without a dot after the category (ICD-10-CM, WHO ICD-10).
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})


def normal_code(system: str, code: str) -> str:
    """The code as compared: ICD-10 codes without dots, spaces or case; any other code as written."""
    if system in ICD10_SYSTEMS:
        return code.replace(".", "").replace(" ", "").upper()
    return code


class ValueSetError(ValueError):
    """A value set file is missing or malformed."""


@dataclass
class ValueSet:
    id: str
    title: str
    match: str  # "exact" | "prefix"
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    prefixes: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # system -> [(prefix, entry)]
    icd: bool = False  # holds ICD-10 codes, so a record's codes must be compared without their dots

    def matching_codes(self, present: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (system, code) pairs of `present`, as written in the record, that an exact set holds."""
        found = present & self.entries.keys()
        if self.icd:
            found |= {(s, c) for s, c in present if s in ICD10_SYSTEMS and (s, normal_code(s, c)) in self.entries}
        return found

    def lookup(self, system: str | None, code: str | None) -> dict[str, Any] | None:
        """The value-set entry for this coding, or None."""
        if not system or not code:
            return None
        if system in ICD10_SYSTEMS:
            code = normal_code(system, code)
        if self.match == "prefix":
            for prefix, entry in self.prefixes.get(system, ()):
                if code.startswith(prefix):
                    return entry
            return None
        return self.entries.get((system, code))

    def systems_codes(self) -> list[str]:
        """'system|code' tokens (exact sets only), for FHIR search parameters: each code as the file writes it, and
        an ICD-10 code with a dot also without it (J96.12 and J9612: EHRs store either, and a server matches the
        token exactly, so a search for one form alone never brings the other)."""
        tokens = []
        for (system, _), entry in self.entries.items():
            code = str(entry["code"])
            tokens.append(f"{system}|{code}")
            if system in ICD10_SYSTEMS and "." in code:
                tokens.append(f"{system}|{code.replace('.', '')}")
        return tokens


def parse_valueset(doc: dict[str, Any], origin: str) -> ValueSet:
    try:
        vs = ValueSet(id=str(doc["id"]), title=str(doc.get("title", doc["id"])), match=doc.get("match", "exact"))
        if vs.match not in ("exact", "prefix"):
            raise ValueSetError(f"{origin}: match must be 'exact' or 'prefix', not {vs.match!r}")
        for i, entry in enumerate(doc["codes"]):
            system, code = entry.get("system"), entry.get("code")
            if not system or not code:
                raise ValueSetError(f"{origin}: codes[{i}] needs system and code")
            vs.icd = vs.icd or system in ICD10_SYSTEMS
            if vs.match == "prefix":
                vs.prefixes.setdefault(system, []).append((normal_code(system, str(code)), entry))
            else:
                vs.entries[(system, normal_code(system, str(code)))] = entry
    except (KeyError, TypeError) as exc:
        raise ValueSetError(f"{origin}: not a value set file ({exc})") from exc
    for items in vs.prefixes.values():
        items.sort(key=lambda item: -len(item[0]))  # longest prefix first
    return vs


class ValueSetLibrary:
    """Loads value sets by name from a list of folders (first hit wins), caching each."""

    def __init__(self, extra_dirs: list[Path] | None = None) -> None:
        from fhir_mapping.medications import DrugClassLibrary

        self._dirs = list(extra_dirs or [])
        self._cache: dict[str, ValueSet] = {}
        self.drug_classes = DrugClassLibrary([d.parent / "drugclasses" for d in self._dirs], self.raw_codes, self.get)

    def drug_class(self, name: str) -> Any:
        """A drug class (fhir_mapping.medications.DrugClass) by id: model folder's drugclasses/ first."""
        return self.drug_classes.get(name)

    def raw_codes(self, name: str) -> list[dict[str, Any]]:
        """The `codes` entries of a value set file as written (drug classes read displays and ingredients)."""
        vs = self.get(name)
        return list(vs.entries.values()) + [e for items in vs.prefixes.values() for _, e in items]

    def get(self, name: str) -> ValueSet:
        if name in self._cache:
            return self._cache[name]
        for folder in self._dirs:
            path = folder / f"{name}.json"
            if path.is_file():
                vs = parse_valueset(json.loads(path.read_text(encoding="utf-8")), str(path))
                self._cache[name] = vs
                return vs
        shipped = resources.files("fhir_mapping") / "valuesets" / f"{name}.json"
        if shipped.is_file():
            vs = parse_valueset(json.loads(shipped.read_text(encoding="utf-8")), f"valuesets/{name}.json")
            self._cache[name] = vs
            return vs
        raise ValueSetError(f"value set '{name}' not found (looked in {[str(d) for d in self._dirs]} and the shipped sets)")
