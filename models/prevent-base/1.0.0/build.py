"""Build the AHA PREVENT base equations (10- and 30-year total CVD, ASCVD and heart failure) as a float64 ONNX graph.

Coefficients: Khan SS, Matsushita K, Sang Y, et al. Development and Validation of the American Heart Association's
PREVENT Equations. Circulation 2024;149:430-449 (doi:10.1161/CIRCULATIONAHA.123.067626), online supplement (base
model tables, 10- and 30-year). Transcribed from the machine-readable copy martingmayer/preventr (CRAN preventr
0.12.0) R/sysdata.rda data frames base_10yr / base_30yr, which agree exactly with bcjaeger/PooledCohort
data-raw/coefs_prevent.xlsx (sheets base_10, base_30). Erratum honoured: women's 10-year HF diabetes coefficient is
1.038346 (PyPrevent wrongly uses 1.0).

Model: x = sum(beta_i * t_i) + constant; risk = exp(x) / (1 + exp(x)) (logistic). Cholesterol in mg/dL is converted
with 0.02586 mmol/L per mg/dL, as in preventr and PooledCohort.

Run: python models/prevent-base/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "prevent-base"
VERSION = "1.0.0"
# Column order of `features`: years, 0/1, mg/dL, mg/dL, mmHg, 0/1, 0/1, 0/1, 0/1, mL/min/1.73 m2, kg/m2.
INPUTS = (
    "age",
    "female",
    "total_cholesterol",
    "hdl",
    "sbp",
    "bp_treated",
    "statin",
    "diabetes",
    "smoker",
    "egfr",
    "bmi",
)
OUTPUTS = ("cvd_10y", "ascvd_10y", "hf_10y", "cvd_30y", "ascvd_30y", "hf_30y")
OUTCOMES = ("cvd", "ascvd", "hf")
HORIZONS = ("10y", "30y")
MG_DL_TO_MMOL_L = 0.02586

# Columns of every coefficient tuple: female CVD, male CVD, female ASCVD, male ASCVD, female HF, male HF.
# Terms absent from a table (age_sq in 10-year models) have coefficient 0.
COEFFICIENTS: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    ("base", "10y"): {
        #  female CVD, male CVD, female ASCVD, male ASCVD, female HF, male HF
        "age": (0.7939329, 0.7688528, 0.719883, 0.7099847, 0.8998235, 0.8972642),
        "non_hdl": (0.0305239, 0.0736174, 0.1176967, 0.1658663, 0, 0),
        "hdl": (-0.1606857, -0.0954431, -0.151185, -0.1144285, 0, 0),
        "sbp_lt110": (-0.2394003, -0.4347345, -0.0835358, -0.2837212, -0.4559771, -0.6811466),
        "sbp_ge110": (0.3600781, 0.3362658, 0.3592852, 0.3239977, 0.3576505, 0.3634461),
        "diabetes": (0.8667604, 0.7692857, 0.8348585, 0.7189597, 1.038346, 0.923776),
        "smoker": (0.5360739, 0.4386871, 0.4831078, 0.3956973, 0.583916, 0.5023736),
        "bmi_lt30": (0, 0, 0, 0, -0.0072294, -0.0485841),
        "bmi_ge30": (0, 0, 0, 0, 0.2997706, 0.3726929),
        "egfr_lt60": (0.6045917, 0.5378979, 0.4864619, 0.3690075, 0.7451638, 0.6926917),
        "egfr_ge60": (0.0433769, 0.0164827, 0.0397779, 0.0203619, 0.0557087, 0.0251827),
        "bp_treated": (0.3151672, 0.288879, 0.2265309, 0.2036522, 0.3534442, 0.2980922),
        "statin": (-0.1477655, -0.1337349, -0.0592374, -0.0865581, 0, 0),
        "treated_sbp_ge110": (-0.0663612, -0.0475924, -0.0395762, -0.0322916, -0.0981511, -0.0497731),
        "treated_non_hdl": (0.1197879, 0.150273, 0.0844423, 0.114563, 0, 0),
        "age_x_non_hdl": (-0.0819715, -0.0517874, -0.0567839, -0.0300005, 0, 0),
        "age_x_hdl": (0.0306769, 0.0191169, 0.0325692, 0.0232747, 0, 0),
        "age_x_sbp_ge110": (-0.0946348, -0.1049477, -0.1035985, -0.0927024, -0.0946663, -0.1289201),
        "age_x_diabetes": (-0.27057, -0.2251948, -0.2417542, -0.2018525, -0.3581041, -0.3040924),
        "age_x_smoker": (-0.078715, -0.0895067, -0.0791142, -0.0970527, -0.1159453, -0.1401688),
        "age_x_bmi_ge30": (0, 0, 0, 0, -0.003878, 0.0068126),
        "age_x_egfr_lt60": (-0.1637806, -0.1543702, -0.1671492, -0.1217081, -0.1884289, -0.1797778),
        "constant": (-3.307728, -3.031168, -3.819975, -3.500655, -4.310409, -3.946391),
    },
    ("base", "30y"): {
        #  female CVD, male CVD, female ASCVD, male ASCVD, female HF, male HF
        "age": (0.5503079, 0.4627309, 0.4669202, 0.3994099, 0.6254374, 0.5681541),
        "age_sq": (-0.0928369, -0.0984281, -0.0893118, -0.0937484, -0.0983038, -0.1048388),
        "non_hdl": (0.0409794, 0.0836088, 0.1256901, 0.1744643, 0, 0),
        "hdl": (-0.1663306, -0.1029824, -0.1542255, -0.120203, 0, 0),
        "sbp_lt110": (-0.1628654, -0.2140352, -0.0018093, -0.0665117, -0.3919241, -0.4761564),
        "sbp_ge110": (0.3299505, 0.2904325, 0.322949, 0.2753037, 0.3142295, 0.30324),
        "diabetes": (0.6793894, 0.5331276, 0.6296707, 0.4790257, 0.8330787, 0.6840338),
        "smoker": (0.3196112, 0.2141914, 0.268292, 0.1782635, 0.3438651, 0.2656273),
        "bmi_lt30": (0, 0, 0, 0, 0.0594874, 0.0833107),
        "bmi_ge30": (0, 0, 0, 0, 0.2525536, 0.26999),
        "egfr_lt60": (0.1857101, 0.1155556, 0.100106, -0.0218789, 0.2981642, 0.2541805),
        "egfr_ge60": (0.0553528, 0.0603775, 0.0499663, 0.0602553, 0.0667159, 0.0638923),
        "bp_treated": (0.2894, 0.232714, 0.1875292, 0.1421182, 0.333921, 0.2583631),
        "statin": (-0.075688, -0.0272112, 0.0152476, 0.0135996, 0, 0),
        "treated_sbp_ge110": (-0.056367, -0.0384488, -0.0276123, -0.0218265, -0.0893177, -0.0391938),
        "treated_non_hdl": (0.1071019, 0.134192, 0.0736147, 0.1013148, 0, 0),
        "age_x_non_hdl": (-0.0751438, -0.0511759, -0.0521962, -0.0312619, 0, 0),
        "age_x_hdl": (0.0301786, 0.0165865, 0.0316918, 0.020673, 0, 0),
        "age_x_sbp_ge110": (-0.0998776, -0.1101437, -0.1046101, -0.0920935, -0.0974299, -0.1269124),
        "age_x_diabetes": (-0.3206166, -0.2585943, -0.2727793, -0.2159947, -0.404855, -0.3273572),
        "age_x_smoker": (-0.1607862, -0.1566406, -0.1530907, -0.1548811, -0.1982991, -0.2043019),
        "age_x_bmi_ge30": (0, 0, 0, 0, -0.0035619, -0.0182831),
        "age_x_egfr_lt60": (-0.1450788, -0.1166776, -0.1299149, -0.0712547, -0.1564215, -0.1342618),
        "constant": (-1.318827, -1.148204, -1.974074, -1.736444, -2.205379, -1.95751),
    },
}

# Union of the linear-predictor terms of the base model, in graph column order.
BASE_TERMS = (
    "age",
    "age_sq",
    "non_hdl",
    "hdl",
    "sbp_lt110",
    "sbp_ge110",
    "diabetes",
    "smoker",
    "bmi_lt30",
    "bmi_ge30",
    "egfr_lt60",
    "egfr_ge60",
    "bp_treated",
    "statin",
    "treated_sbp_ge110",
    "treated_non_hdl",
    "age_x_non_hdl",
    "age_x_hdl",
    "age_x_sbp_ge110",
    "age_x_diabetes",
    "age_x_smoker",
    "age_x_bmi_ge30",
    "age_x_egfr_lt60",
    "constant",
)


def base_terms(g: GraphBuilder) -> dict[str, str]:
    """The PREVENT predictor transforms (Khan 2024 supplement), each an [N, 1] tensor keyed by term name."""
    age = g.div(g.sub(g.col("age"), 55.0), 10.0)
    tc, hdl_mg = g.col("total_cholesterol"), g.col("hdl")
    non_hdl = g.sub(g.mul(g.sub(tc, hdl_mg), MG_DL_TO_MMOL_L), 3.5)
    hdl = g.div(g.sub(g.mul(hdl_mg, MG_DL_TO_MMOL_L), 1.3), 0.3)
    sbp = g.col("sbp")
    sbp_lt110 = g.div(g.sub(g.minimum(sbp, 110.0), 110.0), 20.0)
    sbp_ge110 = g.div(g.sub(g.maximum(sbp, 110.0), 130.0), 20.0)
    bmi = g.col("bmi")
    bmi_lt30 = g.div(g.sub(g.minimum(bmi, 30.0), 25.0), 5.0)
    bmi_ge30 = g.div(g.sub(g.maximum(bmi, 30.0), 30.0), 5.0)
    egfr = g.col("egfr")
    egfr_lt60 = g.div(g.sub(g.minimum(egfr, 60.0), 60.0), -15.0)
    egfr_ge60 = g.div(g.sub(g.maximum(egfr, 60.0), 90.0), -15.0)
    dm, smoker, bp_tx, statin = g.col("diabetes"), g.col("smoker"), g.col("bp_treated"), g.col("statin")
    zero = g.mul(g.col("age"), 0.0)
    return {
        "age": age,
        "age_sq": g.mul(age, age),
        "non_hdl": non_hdl,
        "hdl": hdl,
        "sbp_lt110": sbp_lt110,
        "sbp_ge110": sbp_ge110,
        "diabetes": dm,
        "smoker": smoker,
        "bmi_lt30": bmi_lt30,
        "bmi_ge30": bmi_ge30,
        "egfr_lt60": egfr_lt60,
        "egfr_ge60": egfr_ge60,
        "bp_treated": bp_tx,
        "statin": statin,
        "treated_sbp_ge110": g.mul(bp_tx, sbp_ge110),
        "treated_non_hdl": g.mul(statin, non_hdl),
        "age_x_non_hdl": g.mul(age, non_hdl),
        "age_x_hdl": g.mul(age, hdl),
        "age_x_sbp_ge110": g.mul(age, sbp_ge110),
        "age_x_diabetes": g.mul(age, dm),
        "age_x_smoker": g.mul(age, smoker),
        "age_x_bmi_ge30": g.mul(age, bmi_ge30),
        "age_x_egfr_lt60": g.mul(age, egfr_lt60),
        "constant": g.add(zero, 1.0),
        "zero": zero,
    }


def coefficient_matrix(table: Mapping[str, Sequence[float]], terms: Sequence[str]) -> list[list[float]]:
    """[terms, 6] matrix for one table; a term the table lacks gets 0 (e.g. age_sq in 10-year models)."""
    unknown = set(table) - set(terms)
    if unknown:
        raise ValueError(f"coefficient table has terms the graph does not build: {sorted(unknown)}")
    return [list(table.get(t, (0.0,) * 6)) for t in terms]


def select_sex(g: GraphBuilder, logits: str) -> str:
    """[N, 6] logits in (F CVD, M CVD, F ASCVD, M ASCVD, F HF, M HF) order -> [N, 3] for the person's sex."""
    female = g.col("female")
    male = g.one_minus(female)
    weights = g.concat([female, male, female, male, female, male])
    pair_sum = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    return g.matmul(g.mul(logits, weights), pair_sum, "pair_sum")


def emit_outputs(g: GraphBuilder, horizon: str, logits_by_sex: str) -> None:
    risks = g.op("Sigmoid", logits_by_sex)
    for j, outcome in enumerate(OUTCOMES):
        column = g.op(
            "Slice", risks, g.const_int64([j], "start"), g.const_int64([j + 1], "end"), g.const_int64([1], "axis")
        )
        g.output(f"{outcome}_{horizon}", column)


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    t = base_terms(g)
    design = g.concat([t[name] for name in BASE_TERMS])
    for horizon in HORIZONS:
        logits = g.matmul(design, coefficient_matrix(COEFFICIENTS[("base", horizon)], BASE_TERMS), f"beta_{horizon}")
        emit_outputs(g, horizon, select_sex(g, logits))
    return g.build(
        "AHA PREVENT base equations (Khan 2024), 10- and 30-year total CVD, ASCVD and HF risk. Inputs: "
        + ", ".join(INPUTS)
        + ".",
        {"citation": "Khan SS et al. Circulation 2024;149:430-449, supplement (base models)"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
