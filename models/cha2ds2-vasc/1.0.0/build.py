"""Build the CHA2DS2-VASc stroke-risk score (atrial fibrillation) as a float64 ONNX graph.

Points: Lip GYH, Nieuwlaat R, Pisters R, Lane DA, Crijns HJGM. Refining clinical risk stratification for predicting
stroke and thromboembolism in atrial fibrillation using a novel risk factor-based approach: the Euro Heart Survey on
Atrial Fibrillation. Chest 2010;137(2):263-272. Point definitions checked against the machine-readable copy
rhavekost/clinical-toolkit (cardiovascular-risk knowledge asset cha2ds2-vasc.md).
C (CHF/LV dysfunction) 1, H (hypertension) 1, A2 (age >= 75) 2, D (diabetes) 1, S2 (stroke/TIA/thromboembolism) 2,
V (vascular disease) 1, A (age 65-74) 1, Sc (female) 1. Range 0-9. Age is in completed years.
Second output `score_va`: the same points without the sex point (CHA2DS2-VA, 2024 ESC AF guideline), by which the
card's categories are read: the guidelines' thresholds for women are one point above men's (2023 ACC/AHA/ACCP/HRS:
anticoagulation recommended at >= 2 in men and >= 3 in women, considered at 1 and 2), which is CHA2DS2-VA >= 2 and 1.

Run: python models/cha2ds2-vasc/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "cha2ds2-vasc"
VERSION = "1.0.0"
INPUTS = ("age", "female", "chf", "hypertension", "diabetes", "stroke_tia", "vascular")  # years, then 0/1 flags
OUTPUTS = ("score", "score_va")

FLAG_POINTS = {"female": 1.0, "chf": 1.0, "hypertension": 1.0, "diabetes": 1.0, "stroke_tia": 2.0, "vascular": 1.0}
AGE_CUTS = (65.0, 75.0)  # completed years: <65 -> 0, 65-74 -> 1, >=75 -> 2
AGE_POINTS = (0.0, 1.0, 2.0)


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    flags = g.concat([g.col(name) for name in FLAG_POINTS])
    flag_points = g.matmul(flags, [[p] for p in FLAG_POINTS.values()], "points")
    sex_free = g.add(flag_points, g.step(g.col("age"), AGE_CUTS, AGE_POINTS))
    sex_free = g.sub(sex_free, g.col("female"))  # the female point, taken out again: CHA2DS2-VA
    g.output("score", g.add(flag_points, g.step(g.col("age"), AGE_CUTS, AGE_POINTS)))
    g.output("score_va", sex_free)
    return g.build(
        "CHA2DS2-VASc score (Lip 2010). Inputs: " + ", ".join(INPUTS) + ".",
        {"citation": "Lip GYH et al. Chest 2010;137(2):263-272"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
