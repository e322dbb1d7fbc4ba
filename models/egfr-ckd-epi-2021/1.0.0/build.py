"""Build the race-free CKD-EPI 2021 creatinine equation (eGFRcr) as a float64 ONNX graph.

Equation: Inker LA, Eneanya ND, Coresh J, et al. New Creatinine- and Cystatin C-Based Equations to Estimate GFR
without Race. N Engl J Med 2021;385:1737-1749 (doi:10.1056/NEJMoa2102953). Constants checked against the
machine-readable copies scientific-tools-org/kidney.epi R/egfr_ckdepi2021.R and martingmayer/preventr R/helpers.R
calculate_ckd_epi():
    eGFR = 142 * min(Scr/k, 1)^a * max(Scr/k, 1)^-1.200 * 0.9938^age * 1.012 [female]
    k = 0.7 (female) / 0.9 (male); a = -0.241 (female) / -0.302 (male).
The graph evaluates it in log space: exp(ln 142 + a ln min + (-1.2) ln max + age ln 0.9938 + female ln 1.012).

Run: python models/egfr-ckd-epi-2021/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "egfr-ckd-epi-2021"
VERSION = "1.0.0"
INPUTS = ("creatinine", "age", "female")  # mg/dL (IDMS-traceable), years, 0/1
OUTPUTS = ("egfr",)  # mL/min/1.73 m2

MULTIPLIER = 142.0
FEMALE_FACTOR = 1.012
AGE_BASE = 0.9938
UPPER_EXPONENT = -1.200
KAPPA = {"female": 0.7, "male": 0.9}
ALPHA = {"female": -0.241, "male": -0.302}


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    female = g.col("female")
    male = g.one_minus(female)
    kappa = g.add(g.mul(female, KAPPA["female"]), g.mul(male, KAPPA["male"]))
    alpha = g.add(g.mul(female, ALPHA["female"]), g.mul(male, ALPHA["male"]))
    ratio = g.div(g.col("creatinine"), kappa)
    ln_low = g.log(g.minimum(ratio, 1.0))
    ln_high = g.log(g.maximum(ratio, 1.0))
    log_egfr = g.add(
        g.add(g.mul(alpha, ln_low), g.mul(ln_high, UPPER_EXPONENT)),
        g.add(
            g.mul(g.col("age"), math.log(AGE_BASE)), g.add(g.mul(female, math.log(FEMALE_FACTOR)), math.log(MULTIPLIER))
        ),
    )
    g.output("egfr", g.exp(log_egfr))
    return g.build(
        "CKD-EPI 2021 race-free creatinine eGFR (Inker 2021). Inputs: " + ", ".join(INPUTS) + ".",
        {"citation": "Inker LA et al. N Engl J Med 2021;385:1737-1749"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
