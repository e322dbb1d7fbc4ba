"""Independent scalar implementation of the AHA PREVENT base equations, used to compute and check golden outputs.

Shares only the transcribed coefficient tables with build.py; the predictor transforms and the logistic link are
written out here per person (explicit if/else for sex, ``exp(x) / (1 + exp(x))``), separately from the graph.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import load_module, write_golden

_build = load_module(Path(__file__).with_name("build.py"))

# Allowed input ranges (AHA PREVENT calculator / preventr): (low, high, kind); kind is "real", "int" or "flag".
# The 30-year outputs are intended for ages 30-59 only; the graph still computes them up to 79.
RANGES: dict[str, tuple[float, float, str]] = {
    "age": (30, 79, "real"),
    "female": (0, 1, "flag"),
    "total_cholesterol": (130, 320, "real"),
    "hdl": (20, 100, "real"),
    "sbp": (90, 180, "real"),
    "bp_treated": (0, 1, "flag"),
    "statin": (0, 1, "flag"),
    "diabetes": (0, 1, "flag"),
    "smoker": (0, 1, "flag"),
    "egfr": (15, 140, "real"),
    "bmi": (18.5, 39.9, "real"),
}


def terms(x: Mapping[str, float]) -> dict[str, float]:
    """Predictor transforms of Khan 2024 (supplement), cholesterol converted at 0.02586 mmol/L per mg/dL."""
    age = (x["age"] - 55) / 10
    non_hdl = (x["total_cholesterol"] - x["hdl"]) * 0.02586 - 3.5
    hdl = (x["hdl"] * 0.02586 - 1.3) / 0.3
    sbp, bmi, egfr = x["sbp"], x["bmi"], x["egfr"]
    sbp_ge110 = (max(sbp, 110) - 130) / 20
    bmi_ge30 = (max(bmi, 30) - 30) / 5
    egfr_lt60 = (min(egfr, 60) - 60) / -15
    return {
        "age": age,
        "age_sq": age**2,
        "non_hdl": non_hdl,
        "hdl": hdl,
        "sbp_lt110": (min(sbp, 110) - 110) / 20,
        "sbp_ge110": sbp_ge110,
        "diabetes": x["diabetes"],
        "smoker": x["smoker"],
        "bmi_lt30": (min(bmi, 30) - 25) / 5,
        "bmi_ge30": bmi_ge30,
        "egfr_lt60": egfr_lt60,
        "egfr_ge60": (max(egfr, 60) - 90) / -15,
        "bp_treated": x["bp_treated"],
        "statin": x["statin"],
        "treated_sbp_ge110": x["bp_treated"] * sbp_ge110,
        "treated_non_hdl": x["statin"] * non_hdl,
        "age_x_non_hdl": age * non_hdl,
        "age_x_hdl": age * hdl,
        "age_x_sbp_ge110": age * sbp_ge110,
        "age_x_diabetes": age * x["diabetes"],
        "age_x_smoker": age * x["smoker"],
        "age_x_bmi_ge30": age * bmi_ge30,
        "age_x_egfr_lt60": age * egfr_lt60,
        "constant": 1.0,
    }


def risk(table: Mapping[str, tuple[float, ...]], column: int, t: Mapping[str, float]) -> float:
    """Logistic risk from one coefficient column; every term in the table must be present in ``t``."""
    xb = sum(coefs[column] * t[name] for name, coefs in table.items())
    return math.exp(xb) / (1 + math.exp(xb))


def compute_with(
    tables: Mapping[tuple[str, str], Mapping[str, tuple[float, ...]]],
    model: str,
    x: Mapping[str, float],
    t: Mapping[str, float],
) -> dict[str, float]:
    out = {}
    for horizon in ("10y", "30y"):
        for k, outcome in enumerate(("cvd", "ascvd", "hf")):
            column = 2 * k + (0 if x["female"] else 1)
            out[f"{outcome}_{horizon}"] = risk(tables[(model, horizon)], column, t)
    return out


def compute(x: Mapping[str, float]) -> dict[str, float]:
    """All six base-model risks (probabilities) for one person."""
    return compute_with(_build.COEFFICIENTS, "base", x, terms(x))


_KHAN = {
    "age": 50,
    "total_cholesterol": 200,
    "hdl": 45,
    "sbp": 160,
    "bp_treated": 1,
    "statin": 0,
    "diabetes": 1,
    "smoker": 0,
    "egfr": 90,
    "bmi": 35,
}
_SRC = (
    "Khan SS et al. Circulation 2024 supplement sample calculation (age 50, SBP 160 treated, TC 200, HDL 45, "
    "no statin, diabetes, non-smoker, eGFR 90, BMI 35)"
)


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": inputs}


EXAMPLES: list[dict] = [
    {
        "name": "Khan 2024 sample patient, woman",
        "inputs": {**_KHAN, "female": 1},
        "published": {"cvd_10y": 0.1468, "ascvd_10y": 0.0920, "hf_10y": 0.0806},
        "published_tolerance": 0.00005,
        "source": _SRC,
    },
    {
        "name": "Khan 2024 sample patient, man",
        "inputs": {**_KHAN, "female": 0},
        "published": {"cvd_10y": 0.1632, "ascvd_10y": 0.1019, "hf_10y": 0.1059},
        "published_tolerance": 0.00005,
        "source": _SRC,
    },
    _ex(
        "young healthy woman, lower edges (SBP<110, eGFR>60, BMI<30 branches)",
        age=30,
        female=1,
        total_cholesterol=130,
        hdl=100,
        sbp=90,
        bp_treated=0,
        statin=0,
        diabetes=0,
        smoker=0,
        egfr=140,
        bmi=18.5,
    ),
    _ex(
        "older man, upper edges, all risk factors, on statin",
        age=79,
        female=0,
        total_cholesterol=320,
        hdl=20,
        sbp=180,
        bp_treated=1,
        statin=1,
        diabetes=1,
        smoker=1,
        egfr=15,
        bmi=39.9,
    ),
    _ex(
        "woman 45, smoker, CKD eGFR 45, BMI 28",
        age=45,
        female=1,
        total_cholesterol=230,
        hdl=50,
        sbp=135,
        bp_treated=0,
        statin=1,
        diabetes=0,
        smoker=1,
        egfr=45,
        bmi=28,
    ),
    _ex(
        "man 59, exactly at the hinge points SBP 110, eGFR 60, BMI 30",
        age=59,
        female=0,
        total_cholesterol=190,
        hdl=40,
        sbp=110,
        bp_treated=1,
        statin=0,
        diabetes=0,
        smoker=0,
        egfr=60,
        bmi=30,
    ),
    _ex(
        "man 40, smoker, diabetes, BMI 33",
        age=40,
        female=0,
        total_cholesterol=250,
        hdl=35,
        sbp=128,
        bp_treated=0,
        statin=0,
        diabetes=1,
        smoker=1,
        egfr=105,
        bmi=33,
    ),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
