"""Build the 2013 ACC/AHA Pooled Cohort Equations (10-year hard ASCVD risk) as a float64 ONNX graph.

Coefficients: Goff DC Jr, Lloyd-Jones DM, Bennett G, et al. 2013 ACC/AHA Guideline on the Assessment of
Cardiovascular Risk. Circulation 2014;129(25 Suppl 2):S49-S73, Table A. High-precision set as used by the ACC ASCVD
Risk Estimator, transcribed by hand and checked against the machine-readable copies cerner/ascvd-risk-calculator
app/load_fhir_data.js (computeTenYearScore) and bcjaeger/PooledCohort R/pcr.R: African-American-female coefficients to
4 dp, means -29.1817 / 86.6081 / 61.1816 / 19.5425, S10 0.96652 / 0.95334 / 0.91436 / 0.89536.
Errata honoured: AA-female ln Age x ln treated SBP is -6.4321 (negative); white-female ln untreated SBP is 1.957;
white-female ln Age x ln TC is -3.114.

Run: python models/ascvd-pce-10y/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "ascvd-pce-10y"
VERSION = "1.0.0"
# Column order of the `features` tensor (units: years, mg/dL, mg/dL, mmHg, then 0/1 flags; black=0 -> white equations).
INPUTS = ("age", "total_cholesterol", "hdl", "sbp", "bp_treated", "smoker", "diabetes", "female", "black")
OUTPUTS = ("risk_10y",)

# Term order of the linear predictor.
TERMS = (
    "ln_age",
    "ln_age_sq",
    "ln_tc",
    "ln_age_x_ln_tc",
    "ln_hdl",
    "ln_age_x_ln_hdl",
    "ln_treated_sbp",
    "ln_age_x_ln_treated_sbp",
    "ln_untreated_sbp",
    "ln_age_x_ln_untreated_sbp",
    "smoker",
    "ln_age_x_smoker",
    "diabetes",
)
GROUPS = ("white_female", "black_female", "white_male", "black_male")

# Goff 2013 Table A (high-precision AA-female set). One row per group, columns in TERMS order.
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    #               lnAge    lnAge2  lnTC    lnA*TC  lnHDL    lnA*HDL  lnTrSBP  lnA*Tr   lnUnSBP  lnA*Un   smk    lnA*smk dm
    "white_female": (-29.799, 4.884, 13.540, -3.114, -13.578, 3.149, 2.019, 0.0, 1.957, 0.0, 7.574, -1.665, 0.661),
    "black_female": (
        17.1141,
        0.0,
        0.9396,
        0.0,
        -18.9196,
        4.4748,
        29.2907,
        -6.4321,
        27.8197,
        -6.0873,
        0.6908,
        0.0,
        0.8738,
    ),
    "white_male": (12.344, 0.0, 11.853, -2.664, -7.990, 1.769, 1.797, 0.0, 1.764, 0.0, 7.837, -1.795, 0.658),
    "black_male": (2.469, 0.0, 0.302, 0.0, -0.307, 0.0, 1.916, 0.0, 1.809, 0.0, 0.549, 0.0, 0.645),
}
MEAN_SUM = {"white_female": -29.1817, "black_female": 86.6081, "white_male": 61.1816, "black_male": 19.5425}
S10 = {"white_female": 0.96652, "black_female": 0.95334, "white_male": 0.91436, "black_male": 0.89536}


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    ln_age = g.log(g.col("age"))
    ln_tc = g.log(g.col("total_cholesterol"))
    ln_hdl = g.log(g.col("hdl"))
    ln_sbp = g.log(g.col("sbp"))
    treated = g.col("bp_treated")
    untreated = g.one_minus(treated)
    smoker = g.col("smoker")
    ln_age_sbp = g.mul(ln_age, ln_sbp)
    terms = g.concat(
        [
            ln_age,
            g.mul(ln_age, ln_age),
            ln_tc,
            g.mul(ln_age, ln_tc),
            ln_hdl,
            g.mul(ln_age, ln_hdl),
            g.mul(treated, ln_sbp),
            g.mul(treated, ln_age_sbp),
            g.mul(untreated, ln_sbp),
            g.mul(untreated, ln_age_sbp),
            smoker,
            g.mul(ln_age, smoker),
            g.col("diabetes"),
        ]
    )
    beta = [[COEFFICIENTS[grp][t] for grp in GROUPS] for t in range(len(TERMS))]  # [terms, groups]
    centred = g.sub(g.matmul(terms, beta, "beta"), g.const([[MEAN_SUM[grp] for grp in GROUPS]], "mean_sum"))
    # risk = 1 - S10 ** exp(centred) = 1 - exp(exp(centred) * ln S10), per group: [N, 4]
    ln_s10 = g.const([[math.log(S10[grp]) for grp in GROUPS]], "ln_s10")
    risk_by_group = g.one_minus(g.exp(g.mul(g.exp(centred), ln_s10)))
    female = g.col("female")
    black = g.col("black")
    male = g.one_minus(female)
    white = g.one_minus(black)
    weights = g.concat([g.mul(female, white), g.mul(female, black), g.mul(male, white), g.mul(male, black)])
    g.output("risk_10y", g.row_sum(g.mul(risk_by_group, weights)))
    return g.build(
        "2013 ACC/AHA Pooled Cohort Equations, 10-year hard ASCVD risk (Goff 2013 Table A, high-precision set). "
        "Inputs: " + ", ".join(INPUTS) + ".",
        {"citation": "Goff DC Jr et al. Circulation 2014;129(25 Suppl 2):S49-S73, Table A"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
