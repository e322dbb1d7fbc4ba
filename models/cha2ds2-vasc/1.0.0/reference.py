"""Independent scalar CHA2DS2-VASc (written from the point table with if/else) for golden outputs and checks.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import write_golden

# (low, high, kind); age in completed years (the score is for adults with atrial fibrillation).
RANGES: dict[str, tuple[float, float, str]] = {
    "age": (18, 120, "int"),
    "female": (0, 1, "flag"),
    "chf": (0, 1, "flag"),
    "hypertension": (0, 1, "flag"),
    "diabetes": (0, 1, "flag"),
    "stroke_tia": (0, 1, "flag"),
    "vascular": (0, 1, "flag"),
}


def compute(x: Mapping[str, float]) -> dict[str, float]:
    score = 0
    if x["chf"]:
        score += 1
    if x["hypertension"]:
        score += 1
    if x["age"] >= 75:
        score += 2
    elif x["age"] >= 65:
        score += 1
    if x["diabetes"]:
        score += 1
    if x["stroke_tia"]:
        score += 2
    if x["vascular"]:
        score += 1
    sex_free = score  # CHA2DS2-VA (2024 ESC): every point but the sex one
    if x["female"]:
        score += 1
    return {"score": float(score), "score_va": float(sex_free)}


_NONE = {"chf": 0, "hypertension": 0, "diabetes": 0, "stroke_tia": 0, "vascular": 0}


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": {**_NONE, **inputs}}


EXAMPLES: list[dict] = [
    {
        "name": "female 70, hypertension, diabetes",
        "inputs": {**_NONE, "age": 70, "female": 1, "hypertension": 1, "diabetes": 1},
        "published": {"score": 4},
        "published_tolerance": 0.0,
        "source": "Lip 2010 point table; reference worked example (female 70 + HTN + DM = 4)",
    },
    _ex("male 64, nothing (age just below 65)", age=64, female=0),
    _ex("male 65 (age band starts)", age=65, female=0),
    _ex("male 74 (last year of the 1-point band)", age=74, female=0),
    _ex("male 75 (2-point age band starts)", age=75, female=0),
    _ex("female 40, prior stroke only", age=40, female=1, stroke_tia=1),
    _ex(
        "maximum: female 80 with every item",
        age=80,
        female=1,
        chf=1,
        hypertension=1,
        diabetes=1,
        stroke_tia=1,
        vascular=1,
    ),
    _ex("male 50, CHF and vascular disease", age=50, female=0, chf=1, vascular=1),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
