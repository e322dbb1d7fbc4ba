"""Build the 4-variable Kidney Failure Risk Equation (2- and 5-year kidney failure risk) as a float64 ONNX graph.

Coefficients and centring means: Tangri N, Stevens LA, Griffith J, et al. A predictive model for progression of
chronic kidney disease to kidney failure. JAMA 2011;305(15):1553-1559. Baseline survivals (North America and the
recalibrated non-North-America values): Tangri N, Grams ME, Levey AS, et al. Multinational Assessment of Accuracy of
Equations for Predicting Risk of Kidney Failure: A Meta-analysis. JAMA 2016;315(2):164-174. Checked against the
machine-readable copy lshpaner/kfre (PyPI kfre 0.1.18) src/kfre/main.py and docs equations.rst.

    lp   = -0.2201 (age/10 - 7.036) + 0.2467 (male - 0.5642) - 0.5567 (eGFR/5 - 7.222) + 0.4510 (ln ACR - 5.137)
    risk = 1 - S0 ** exp(lp)        (ACR in mg/g; S0 by region and horizon)

Run: python models/kfre-4var/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "kfre-4var"
VERSION = "1.0.0"
INPUTS = ("age", "male", "egfr", "uacr", "north_america")  # years, 0/1, mL/min/1.73 m2, mg/g, 0/1
OUTPUTS = ("risk_2y", "risk_5y")

BETA = {"age_per_10y": -0.2201, "male": 0.2467, "egfr_per_5": -0.5567, "ln_acr": 0.4510}
MEAN = {"age_per_10y": 7.036, "male": 0.5642, "egfr_per_5": 7.222, "ln_acr": 5.137}
S0 = {
    "north_america": {"risk_2y": 0.9750, "risk_5y": 0.9240},
    "other": {"risk_2y": 0.9832, "risk_5y": 0.9365},
}


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    centred = {
        "age_per_10y": g.sub(g.div(g.col("age"), 10.0), MEAN["age_per_10y"]),
        "male": g.sub(g.col("male"), MEAN["male"]),
        "egfr_per_5": g.sub(g.div(g.col("egfr"), 5.0), MEAN["egfr_per_5"]),
        "ln_acr": g.sub(g.log(g.col("uacr")), MEAN["ln_acr"]),
    }
    design = g.concat([centred[k] for k in BETA])
    hazard_ratio = g.exp(g.matmul(design, [[b] for b in BETA.values()], "beta"))
    na = g.col("north_america")
    other = g.one_minus(na)
    for out in OUTPUTS:
        ln_s0 = g.add(g.mul(na, math.log(S0["north_america"][out])), g.mul(other, math.log(S0["other"][out])))
        g.output(out, g.one_minus(g.exp(g.mul(hazard_ratio, ln_s0))))
    return g.build(
        "Kidney Failure Risk Equation, 4-variable (Tangri 2011; S0 per Tangri 2016). Inputs: "
        + ", ".join(INPUTS)
        + ".",
        {"citation": "Tangri N et al. JAMA 2011;305:1553-1559; Tangri N et al. JAMA 2016;315:164-174"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
