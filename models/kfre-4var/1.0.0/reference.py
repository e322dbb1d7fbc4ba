"""Independent scalar 4-variable KFRE (explicit region branch, ``S0 ** exp(lp)``) for golden outputs and checks.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import load_module, write_golden

_build = load_module(Path(__file__).with_name("build.py"))

# (low, high, kind). Intended population: adults with CKD G3a-G5 not on dialysis (eGFR < 60, typically 10-59).
RANGES: dict[str, tuple[float, float, str]] = {
    "age": (18, 100, "real"),
    "male": (0, 1, "flag"),
    "egfr": (10, 59, "real"),
    "uacr": (0.1, 25000, "real"),
    "north_america": (0, 1, "flag"),
}


def compute(x: Mapping[str, float]) -> dict[str, float]:
    b, m = _build.BETA, _build.MEAN
    lp = (
        b["age_per_10y"] * (x["age"] / 10 - m["age_per_10y"])
        + b["male"] * (x["male"] - m["male"])
        + b["egfr_per_5"] * (x["egfr"] / 5 - m["egfr_per_5"])
        + b["ln_acr"] * (math.log(x["uacr"]) - m["ln_acr"])
    )
    s0 = _build.S0["north_america" if x["north_america"] else "other"]
    return {out: 1 - s0[out] ** math.exp(lp) for out in ("risk_2y", "risk_5y")}


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": inputs}


_CLINICIAN_REVIEWS = (
    "Kidney Disease Progression: How to Calculate Risk. Clinician Reviews (Q&A; numbers attributed to Tangri 2011 and "
    "the kidneyfailurerisk.com calculator): 'A 63-year-old woman with a GFR of 45 mL/min and an ACR of 30 mg/g has a "
    "0.4% two-year risk and a 1.3% five-year risk' and 'a 55-year-old man with a GFR of 38 mL/min and an ACR of "
    "150 mg/g has a 2.9% two-year risk and a 9% five-year risk'. The published figures are the risks cut (not rounded) "
    "to one decimal of a percent, as the calculator displays them; rounding would give 1.4% and 3.0%."
)

EXAMPLES: list[dict] = [
    {
        "name": "published: female 63, eGFR 45, ACR 30 mg/g (North America)",
        "inputs": {"age": 63, "male": 0, "egfr": 45, "uacr": 30, "north_america": 1},
        "published": {"risk_2y": 0.004, "risk_5y": 0.013},
        "published_tolerance": 0.001,
        "published_rounding": "truncate",
        "source": _CLINICIAN_REVIEWS,
    },
    {
        "name": "published: male 55, eGFR 38, ACR 150 mg/g (North America)",
        "inputs": {"age": 55, "male": 1, "egfr": 38, "uacr": 150, "north_america": 1},
        "published": {"risk_2y": 0.029, "risk_5y": 0.09},
        "published_tolerance": 0.001,
        "published_rounding": "truncate",
        "source": _CLINICIAN_REVIEWS,
    },
    _ex("female 55, eGFR 45, ACR 30 mg/g, North America (computed from the published coefficients)",
        age=55, male=0, egfr=45, uacr=30, north_america=1),
    _ex("same person outside North America", age=55, male=0, egfr=45, uacr=30, north_america=0),
    _ex("male 70, eGFR 20, ACR 1500, North America", age=70, male=1, egfr=20, uacr=1500, north_america=1),
    _ex(
        "male 45, eGFR 10, ACR 25000, non-North America (upper risk)",
        age=45,
        male=1,
        egfr=10,
        uacr=25000,
        north_america=0,
    ),
    _ex("female 85, eGFR 59, ACR 0.1 (lower risk edge)", age=85, male=0, egfr=59, uacr=0.1, north_america=1),
    _ex("female 18, eGFR 30, ACR 300, North America", age=18, male=0, egfr=30, uacr=300, north_america=1),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
