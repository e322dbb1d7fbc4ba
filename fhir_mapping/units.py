"""Unit normalisation for quantities read from FHIR.

Real records write the same unit many ways (mmHg, mm[Hg], mm Hg) and report labs in mass or substance units.
This module turns a (value, unit) pair into the unit a model expects, through the registry in data/units.yaml and
analyte-specific factors in data/analytes.yaml, or says exactly why it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


class UnitError(ValueError):
    """The quantity's unit cannot be converted to the unit the feature needs."""


@dataclass(frozen=True)
class _Unit:
    code: str
    dimension: str
    factor: float
    offset: float = 0.0


@dataclass(frozen=True)
class UnitRegistry:
    units: dict[str, _Unit]  # folded spelling -> unit
    analytes: dict[str, dict[str, Any]]

    def lookup(self, unit: str | None) -> _Unit | None:
        if unit is None:
            return None
        return self.units.get(_fold(unit))

    def convert(self, value: float, unit: str | None, target: str, analyte: str | None = None) -> float:
        """Convert value from unit to target; raise UnitError naming both units when impossible."""
        dst = self.lookup(target)
        if dst is None:
            raise UnitError(f"target unit '{target}' is not in the unit registry")
        if unit is None or unit.strip() == "":
            raise UnitError(f"no unit given (expected {target})")
        src = self.lookup(unit)
        if src is None:
            raise UnitError(f"unit '{unit}' is not recognised (expected {target})")
        base = value * src.factor + src.offset
        if src.dimension != dst.dimension:
            base = self._bridge(base, src.dimension, dst.dimension, analyte, unit, target)
        return (base - dst.offset) / dst.factor

    def _bridge(self, base: float, src_dim: str, dst_dim: str, analyte: str | None, unit: str, target: str) -> float:
        info = self.analytes.get(analyte or "", {})
        molar_mass = info.get("molar_mass")
        if molar_mass and {src_dim, dst_dim} == {"substance_concentration", "mass_concentration"}:
            # base units: mmol/L and mg/dL; mg/dL = mmol/L * molar_mass / 10
            if src_dim == "substance_concentration":
                return base * molar_mass / 10.0
            return base * 10.0 / molar_mass
        for rule in info.get("affine", []):
            if rule["from"] == src_dim and rule["to"] == dst_dim:
                return base * rule["factor"] + rule["offset"]
            if rule["to"] == src_dim and rule["from"] == dst_dim:
                return (base - rule["offset"]) / rule["factor"]
        what = f" for {analyte}" if analyte else ""
        raise UnitError(f"unit '{unit}' cannot be converted to '{target}'{what}")


def _fold(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").lower()


@lru_cache(maxsize=1)
def default_registry() -> UnitRegistry:
    """The registry shipped with the package (data/units.yaml + data/analytes.yaml), loaded once."""
    data_dir = resources.files("fhir_mapping") / "data"
    units_doc = yaml.safe_load((data_dir / "units.yaml").read_text(encoding="utf-8"))
    analytes_doc = yaml.safe_load((data_dir / "analytes.yaml").read_text(encoding="utf-8"))
    table: dict[str, _Unit] = {}
    for dimension, entries in units_doc["dimensions"].items():
        for code, spec in entries.items():
            unit = _Unit(code, dimension, float(spec["factor"]), float(spec.get("offset", 0.0)))
            for spelling in [code, *spec.get("aliases", [])]:
                folded = _fold(spelling)
                if folded in table and table[folded] != unit:
                    raise ValueError(f"units.yaml: spelling '{spelling}' names two units")
                table[folded] = unit
    return UnitRegistry(table, analytes_doc["analytes"])
