"""Independent scalar implementation of PREVENT with the UACR / HbA1c add-ons, for golden outputs and checks.

Model choice is written as plain if/else (preventr's rule: base, +UACR, +HbA1c, or full when both are present; SDI
treated as missing); the base predictor transforms come from prevent-base's reference, the add-on terms are added here.

Run ``python reference.py`` to rewrite golden.yaml from EXAMPLES.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import load_module, write_golden

_build = load_module(Path(__file__).with_name("build.py"))
_base_ref = load_module(Path(__file__).resolve().parents[2] / "prevent-base" / "1.0.0" / "reference.py")

# Allowed input ranges (AHA PREVENT calculator / preventr): (low, high, kind).
RANGES: dict[str, tuple[float, float, str]] = {
    **_base_ref.RANGES,
    "uacr": (0.1, 25000, "real"),
    "hba1c": (4.5, 15, "real"),
    "has_uacr": (0, 1, "flag"),
    "has_hba1c": (0, 1, "flag"),
}


def choose_model(x: Mapping[str, float]) -> str:
    if x["has_uacr"] and x["has_hba1c"]:
        return "full"
    if x["has_uacr"]:
        return "uacr"
    if x["has_hba1c"]:
        return "hba1c"
    return "base"


def compute(x: Mapping[str, float]) -> dict[str, float]:
    """All six risks (probabilities) from the model the available add-ons select."""
    model = choose_model(x)
    t = dict(_base_ref.terms(x))
    t["sdi_4_6"] = 0.0
    t["sdi_7_10"] = 0.0
    t["missing_sdi"] = 1.0
    if x["has_uacr"]:
        t["ln_acr"], t["missing_acr"] = math.log(x["uacr"]), 0.0
    else:
        t["ln_acr"], t["missing_acr"] = 0.0, 1.0
    if x["has_hba1c"]:
        a1c = x["hba1c"] - 5.3
        t["hba1c_dm"] = a1c if x["diabetes"] else 0.0
        t["hba1c_no_dm"] = 0.0 if x["diabetes"] else a1c
        t["missing_hba1c"] = 0.0
    else:
        t["hba1c_dm"], t["hba1c_no_dm"], t["missing_hba1c"] = 0.0, 0.0, 1.0
    return _base_ref.compute_with(_build.COEFFICIENTS, model, x, t)


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
    "no statin, diabetes, non-smoker, eGFR 90, BMI 35); base model because neither UACR nor HbA1c is given"
)
_NONE = {"uacr": 0.0, "hba1c": 0.0, "has_uacr": 0, "has_hba1c": 0}


def _ex(name: str, **inputs: float) -> dict:
    return {"name": name, "inputs": inputs}


EXAMPLES: list[dict] = [
    {
        "name": "Khan 2024 sample patient, woman, no UACR/HbA1c (base model)",
        "inputs": {**_KHAN, "female": 1, **_NONE},
        "published": {"cvd_10y": 0.1468, "ascvd_10y": 0.0920, "hf_10y": 0.0806},
        "published_tolerance": 0.00005,
        "source": _SRC,
    },
    {
        "name": "Khan 2024 sample patient, man, no UACR/HbA1c (base model)",
        "inputs": {**_KHAN, "female": 0, **_NONE},
        "published": {"cvd_10y": 0.1632, "ascvd_10y": 0.1019, "hf_10y": 0.1059},
        "published_tolerance": 0.00005,
        "source": _SRC,
    },
    _ex(
        "Khan sample woman, UACR 40 mg/g only (+UACR model)",
        **_KHAN,
        female=1,
        uacr=40,
        hba1c=0,
        has_uacr=1,
        has_hba1c=0,
    ),
    _ex(
        "Khan sample man, HbA1c 7.5 % only, diabetic (+HbA1c model)",
        **_KHAN,
        female=0,
        uacr=0,
        hba1c=7.5,
        has_uacr=0,
        has_hba1c=1,
    ),
    _ex(
        "Khan sample woman, UACR 40 and HbA1c 7.5 (full model, SDI missing)",
        **_KHAN,
        female=1,
        uacr=40,
        hba1c=7.5,
        has_uacr=1,
        has_hba1c=1,
    ),
    _ex(
        "non-diabetic man, HbA1c 5.9 and UACR 12 (full model, HbA1c no-DM term)",
        age=58,
        female=0,
        total_cholesterol=215,
        hdl=42,
        sbp=138,
        bp_treated=0,
        statin=1,
        diabetes=0,
        smoker=1,
        egfr=72,
        bmi=29,
        uacr=12,
        hba1c=5.9,
        has_uacr=1,
        has_hba1c=1,
    ),
    _ex(
        "non-diabetic woman, HbA1c 4.5 only (lower edge)",
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
        uacr=0,
        hba1c=4.5,
        has_uacr=0,
        has_hba1c=1,
    ),
    _ex(
        "man 79, upper edges, UACR 25000 only",
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
        uacr=25000,
        hba1c=0,
        has_uacr=1,
        has_hba1c=0,
    ),
    _ex(
        "woman 66, UACR 0.1 and HbA1c 15 (full model, edges)",
        age=66,
        female=1,
        total_cholesterol=180,
        hdl=60,
        sbp=150,
        bp_treated=1,
        statin=0,
        diabetes=1,
        smoker=0,
        egfr=50,
        bmi=31,
        uacr=0.1,
        hba1c=15,
        has_uacr=1,
        has_hba1c=1,
    ),
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
