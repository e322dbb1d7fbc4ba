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

from fhir_mapping.primitives import parse_decimal

_MAX_UNIT_TEXT = 64  # longer "units" are free text, not units; they are refused before any parser sees them


class UnitError(ValueError):
    """The quantity's unit cannot be converted to the unit the feature needs."""


@dataclass(frozen=True)
class _Unit:
    code: str
    dimension: str
    factor: float
    offset: float = 0.0
    not_ucum: frozenset[str] = frozenset()  # folded spellings accepted as text but meaning another UCUM unit


@dataclass(frozen=True)
class UnitRegistry:
    units: dict[str, _Unit]  # folded spelling -> unit
    analytes: dict[str, dict[str, Any]]

    def lookup(self, unit: object) -> _Unit | None:
        if not isinstance(unit, str):  # a Quantity code/unit that is not a string is unusable, never an error
            return None
        return self.units.get(_fold(unit))

    def convert(self, value: float, unit: str | None, target: str, analyte: str | None = None,
                *, ucum: bool = False) -> float:
        """Convert value from unit to target; raise UnitError naming both units when impossible.

        With `ucum` the unit is a UCUM code (Quantity.system is UCUM), read strictly: 'C' is the coulomb and 'F' the
        farad there, not degrees; as free text (Quantity.unit) they are read as the temperatures clinicians mean.
        """
        dst = self.lookup(target)
        if dst is None:
            raise UnitError(f"target unit '{target}' is not in the unit registry")
        if unit is None or not isinstance(unit, str) or unit.strip() == "":
            raise UnitError(f"no unit given (expected {target})" if unit is None or isinstance(unit, str)
                            else f"unit is a {type(unit).__name__}, not text (expected {target})")
        if len(unit) > _MAX_UNIT_TEXT:
            raise UnitError(f"unit text is longer than {_MAX_UNIT_TEXT} characters (expected {target})")
        number = parse_decimal(value)
        if number is None:
            raise UnitError(f"value {value!r} is not a finite number")
        value = number
        if analyte is not None and not isinstance(analyte, str):
            analyte = None
        src = self.lookup(unit)
        if src is not None and ucum and _fold(unit) in src.not_ucum:
            raise UnitError(f"UCUM code '{unit}' is not a unit of {src.dimension} (the UCUM code is '{src.code}')")
        if src is None:
            if dst.dimension == "gfr" or "{" in unit or "{" in target:
                # annotations such as {1.73_m2} carry meaning UCUM arithmetic drops (mL/min is not mL/min/1.73 m2)
                raise UnitError(f"unit '{unit}' cannot be converted to '{target}'")
            return _ucum_convert(value, unit, target)
        base = value * src.factor + src.offset
        if src.dimension != dst.dimension:
            base = self._bridge(base, src.dimension, dst.dimension, analyte, unit, target)
        return (base - dst.offset) / dst.factor

    def _bridge(self, base: float, src_dim: str, dst_dim: str, analyte: str | None, unit: str, target: str) -> float:
        info = self.analytes.get(analyte or "", {})
        factor = info.get("mgdl_per_mmoll")
        if factor and {src_dim, dst_dim} == {"substance_concentration", "mass_concentration"}:
            # base units: mmol/L and mg/dL
            return base * factor if src_dim == "substance_concentration" else base / factor
        for rule in info.get("affine", []):
            if rule["from"] == src_dim and rule["to"] == dst_dim:
                return base * rule["factor"] + rule["offset"]
            if rule["to"] == src_dim and rule["from"] == dst_dim:
                return (base - rule["offset"]) / rule["factor"]
        what = f" for {analyte}" if analyte else ""
        raise UnitError(f"unit '{unit}' cannot be converted to '{target}'{what}")


_UCUM: list[Any] = []  # the UCUM registry, created on first use (it takes most of a second to build)


def _ucum_convert(value: float, unit: str, target: str) -> float:
    """Convert a unit the registry does not list through a full UCUM parser (ucumvert + pint), same dimension only."""
    try:
        from ucumvert import PintUcumRegistry
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UnitError(f"unit '{unit}' is not recognised (expected {target})") from exc
    if not _UCUM:
        _UCUM.append(PintUcumRegistry())
    ureg = _UCUM[0]
    try:
        source_q = ureg.from_ucum(unit)
        target_q = ureg.from_ucum(target)
    except Exception as exc:  # ucumvert raises its own parse errors (and lark's) for non-UCUM strings
        raise UnitError(f"unit '{unit}' is not a recognised UCUM unit (expected {target})") from exc
    try:
        return float((value * source_q).to(target_q).magnitude)
    except Exception as exc:  # pint.DimensionalityError and friends
        raise UnitError(f"unit '{unit}' cannot be converted to '{target}'") from exc


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
            unit = _Unit(code, dimension, float(spec["factor"]), float(spec.get("offset", 0.0)),
                         frozenset(_fold(x) for x in spec.get("not_ucum", [])))
            for spelling in [code, *spec.get("aliases", [])]:
                folded = _fold(spelling)
                if folded in table and table[folded] != unit:
                    raise ValueError(f"units.yaml: spelling '{spelling}' names two units")
                table[folded] = unit
    return UnitRegistry(table, analytes_doc["analytes"])
