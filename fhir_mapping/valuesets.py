"""Value sets as data files: code lists (RxNorm products, SNOMED, ICD-10-CM prefixes) a feature spec can name.

Shipped sets live in fhir_mapping/valuesets/; a model folder may carry its own in <model>/valuesets/, which are
looked up first. Matching is exact on (system, code), or by code prefix for sets marked `"match": "prefix"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


class ValueSetError(ValueError):
    """A value set file is missing or malformed."""


@dataclass
class ValueSet:
    id: str
    title: str
    match: str  # "exact" | "prefix"
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    prefixes: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # system -> [(prefix, entry)]

    def lookup(self, system: str | None, code: str | None) -> dict[str, Any] | None:
        """The value-set entry for this coding, or None."""
        if not system or not code:
            return None
        if self.match == "prefix":
            for prefix, entry in self.prefixes.get(system, ()):
                if code.startswith(prefix):
                    return entry
            return None
        return self.entries.get((system, code))

    def systems_codes(self) -> list[str]:
        """'system|code' tokens (exact sets only), for FHIR search parameters."""
        return [f"{s}|{c}" for (s, c) in self.entries]


def parse_valueset(doc: dict[str, Any], origin: str) -> ValueSet:
    try:
        vs = ValueSet(id=str(doc["id"]), title=str(doc.get("title", doc["id"])), match=doc.get("match", "exact"))
        if vs.match not in ("exact", "prefix"):
            raise ValueSetError(f"{origin}: match must be 'exact' or 'prefix', not {vs.match!r}")
        for i, entry in enumerate(doc["codes"]):
            system, code = entry.get("system"), entry.get("code")
            if not system or not code:
                raise ValueSetError(f"{origin}: codes[{i}] needs system and code")
            if vs.match == "prefix":
                vs.prefixes.setdefault(system, []).append((str(code), entry))
            else:
                vs.entries[(system, str(code))] = entry
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
        self.drug_classes = DrugClassLibrary([d.parent / "drugclasses" for d in self._dirs], self.raw_codes)

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
