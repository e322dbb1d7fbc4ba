"""Independent scalar CKD-EPI 2021 creatinine equation (direct powers, explicit sex branch) for golden outputs.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import write_golden

# (low, high, kind). The equation is for adults (age >= 18) with IDMS creatinine > 0; the upper bounds are
# plausibility limits chosen for sampling and guards.
RANGES: dict[str, tuple[float, float, str]] = {
    "creatinine": (0.1, 20.0, "real"),
    "age": (18, 110, "real"),
    "female": (0, 1, "flag"),
}


def compute(x: Mapping[str, float]) -> dict[str, float]:
    scr, age = x["creatinine"], x["age"]
    if x["female"]:
        kappa, alpha, sex_factor = 0.7, -0.241, 1.012
    else:
        kappa, alpha, sex_factor = 0.9, -0.302, 1.0
    r = scr / kappa
    return {"egfr": 142 * min(r, 1) ** alpha * max(r, 1) ** -1.200 * 0.9938**age * sex_factor}


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": inputs}


EXAMPLES: list[dict] = [
    {
        "name": "kidney.epi worked example: male, 60, Scr 1.4 mg/dL",
        "inputs": {"creatinine": 1.4, "age": 60, "female": 0},
        "published": {"egfr": 57.54},
        "published_tolerance": 0.005,
        "source": "Inker 2021 equation; scientific-tools-org/kidney.epi documentation example (57.54)",
    },
    _ex("female at kappa (Scr 0.7): both min/max terms are 1", creatinine=0.7, age=50, female=1),
    _ex("male at kappa (Scr 0.9)", creatinine=0.9, age=50, female=0),
    _ex("female below kappa (Scr 0.5), age 18", creatinine=0.5, age=18, female=1),
    _ex("male below kappa (Scr 0.6), age 30", creatinine=0.6, age=30, female=0),
    _ex("female above kappa (Scr 2.5), age 75", creatinine=2.5, age=75, female=1),
    _ex("male, very high Scr 12, age 90", creatinine=12.0, age=90, female=0),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
