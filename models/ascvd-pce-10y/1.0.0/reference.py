"""Independent scalar implementation of the 2013 Pooled Cohort Equations, used to compute and check golden outputs.

It shares only the transcribed coefficient tables with build.py; the arithmetic (explicit group choice, SBP branch and
``S10 ** exp(x)``) is written separately from the graph so that a mistake in either shows up as a disagreement.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import load_module, write_golden

_build = load_module(Path(__file__).with_name("build.py"))

# Allowed input ranges (ACC estimator): (low, high, kind); kind is "real", "int" or "flag".
RANGES: dict[str, tuple[float, float, str]] = {
    "age": (40, 79, "real"),
    "total_cholesterol": (130, 320, "real"),
    "hdl": (20, 100, "real"),
    "sbp": (90, 200, "real"),
    "bp_treated": (0, 1, "flag"),
    "smoker": (0, 1, "flag"),
    "diabetes": (0, 1, "flag"),
    "female": (0, 1, "flag"),
    "black": (0, 1, "flag"),
}


def compute(x: Mapping[str, float]) -> dict[str, float]:
    """10-year hard ASCVD risk (probability) for one person."""
    if x["female"]:
        group = "black_female" if x["black"] else "white_female"
    else:
        group = "black_male" if x["black"] else "white_male"
    c = dict(zip(_build.TERMS, _build.COEFFICIENTS[group]))
    la = math.log(x["age"])
    ltc = math.log(x["total_cholesterol"])
    lhdl = math.log(x["hdl"])
    lsbp = math.log(x["sbp"])
    s = c["ln_age"] * la + c["ln_age_sq"] * la * la
    s += c["ln_tc"] * ltc + c["ln_age_x_ln_tc"] * la * ltc
    s += c["ln_hdl"] * lhdl + c["ln_age_x_ln_hdl"] * la * lhdl
    if x["bp_treated"]:
        s += c["ln_treated_sbp"] * lsbp + c["ln_age_x_ln_treated_sbp"] * la * lsbp
    else:
        s += c["ln_untreated_sbp"] * lsbp + c["ln_age_x_ln_untreated_sbp"] * la * lsbp
    if x["smoker"]:
        s += c["smoker"] + c["ln_age_x_smoker"] * la
    if x["diabetes"]:
        s += c["diabetes"]
    return {"risk_10y": 1.0 - _build.S10[group] ** math.exp(s - _build.MEAN_SUM[group])}


_TABLE_A = {"age": 55, "total_cholesterol": 213, "hdl": 50, "sbp": 120, "bp_treated": 0, "smoker": 0, "diabetes": 0}
_SRC = "Goff DC Jr et al. 2013 ACC/AHA guideline, Table A (55 y, TC 213, HDL 50, untreated SBP 120, non-smoker, no DM)"


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": inputs}


EXAMPLES: list[dict] = [
    {
        "name": "Goff 2013 Table A worked example, white women",
        "inputs": {**_TABLE_A, "female": 1, "black": 0},
        "published": {"risk_10y": 0.021},
        "published_tolerance": 0.0005,
        "source": _SRC,
    },
    {
        "name": "Goff 2013 Table A worked example, African-American women",
        "inputs": {**_TABLE_A, "female": 1, "black": 1},
        "published": {"risk_10y": 0.030},
        "published_tolerance": 0.0005,
        "source": _SRC,
    },
    {
        "name": "Goff 2013 Table A worked example, white men (exact arithmetic 5.4 %, table prints 5.3 %)",
        "inputs": {**_TABLE_A, "female": 0, "black": 0},
        "published": {"risk_10y": 0.054},
        "published_tolerance": 0.0005,
        "source": _SRC + "; ACC ASCVD Risk Estimator gives 5.4 %",
    },
    {
        "name": "Goff 2013 Table A worked example, African-American men",
        "inputs": {**_TABLE_A, "female": 0, "black": 1},
        "published": {"risk_10y": 0.061},
        "published_tolerance": 0.0005,
        "source": _SRC,
    },
    _ex(
        "white woman, treated SBP 150, smoker, diabetes",
        age=62,
        total_cholesterol=240,
        hdl=38,
        sbp=150,
        bp_treated=1,
        smoker=1,
        diabetes=1,
        female=1,
        black=0,
    ),
    _ex(
        "African-American woman, treated SBP 150 (checks the negative ln Age x ln treated SBP)",
        age=62,
        total_cholesterol=240,
        hdl=38,
        sbp=150,
        bp_treated=1,
        smoker=0,
        diabetes=0,
        female=1,
        black=1,
    ),
    _ex(
        "African-American woman, treated SBP, smoker, diabetes",
        age=70,
        total_cholesterol=200,
        hdl=45,
        sbp=160,
        bp_treated=1,
        smoker=1,
        diabetes=1,
        female=1,
        black=1,
    ),
    _ex(
        "white man, treated SBP, smoker",
        age=48,
        total_cholesterol=260,
        hdl=35,
        sbp=145,
        bp_treated=1,
        smoker=1,
        diabetes=0,
        female=0,
        black=0,
    ),
    _ex(
        "African-American man, treated SBP, diabetes",
        age=66,
        total_cholesterol=180,
        hdl=55,
        sbp=135,
        bp_treated=1,
        smoker=0,
        diabetes=1,
        female=0,
        black=1,
    ),
    _ex(
        "lower range edges, white woman",
        age=40,
        total_cholesterol=130,
        hdl=100,
        sbp=90,
        bp_treated=0,
        smoker=0,
        diabetes=0,
        female=1,
        black=0,
    ),
    _ex(
        "upper range edges, white man, all risk factors",
        age=79,
        total_cholesterol=320,
        hdl=20,
        sbp=200,
        bp_treated=1,
        smoker=1,
        diabetes=1,
        female=0,
        black=0,
    ),
    _ex(
        "upper range edges, African-American woman, untreated",
        age=79,
        total_cholesterol=320,
        hdl=20,
        sbp=200,
        bp_treated=0,
        smoker=1,
        diabetes=1,
        female=1,
        black=1,
    ),
    _ex(
        "lower range edges, African-American man",
        age=40,
        total_cholesterol=130,
        hdl=100,
        sbp=90,
        bp_treated=0,
        smoker=0,
        diabetes=0,
        female=0,
        black=1,
    ),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
