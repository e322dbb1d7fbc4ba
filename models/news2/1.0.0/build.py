"""Build NEWS2 (National Early Warning Score 2) as a float64 ONNX graph: aggregate score and largest single score.

Scoring: Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the assessment of
acute-illness severity in the NHS. London: RCP, 2017, Chart 1 "The NEWS scoring system"; SpO2 Scale 2 as confirmed by
Thorax (BMJ) Table 1. Hand-transcribed band tables below.

Band edges: respiration rate, SpO2, systolic BP and pulse are recorded as integers, so each cut sits half-way between
the last value of one band and the first of the next (e.g. RR 8 | 9 -> cut 8.5); temperature is recorded to 0.1 C, so
its cuts sit at 35.05 / 36.05 / 38.05 / 39.05. A value therefore scores as if rounded to the chart's resolution, and
float noise near a printed boundary (36.0 vs 36.000000001) cannot flip a band.
Outputs: `score` (0-20) and `max_single` (largest single-parameter score, for the "3 in one parameter" rule).

Run: python models/news2/1.0.0/build.py [--out PATH]
"""

from __future__ import annotations

from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "news2"
VERSION = "1.0.0"
# /min, %, 0/1 (use SpO2 Scale 2), 0/1 (supplemental oxygen), mmHg, /min, 0/1 (0 alert; 1 new confusion, voice,
# pain or unresponsive), degrees C.
INPUTS = ("resp_rate", "spo2", "scale2", "on_oxygen", "sbp", "pulse", "consciousness", "temperature")
OUTPUTS = ("score", "max_single")

# (cuts, scores): score[0] below cuts[0], score[j] from cuts[j-1] up to cuts[j], score[-1] from cuts[-1] up.
RESP_RATE = ((8.5, 11.5, 20.5, 24.5), (3, 1, 0, 2, 3))  # <=8 | 9-11 | 12-20 | 21-24 | >=25
SPO2_SCALE1 = ((91.5, 93.5, 95.5), (3, 2, 1, 0))  # <=91 | 92-93 | 94-95 | >=96
SPO2_SCALE2_AIR = ((83.5, 85.5, 87.5), (3, 2, 1, 0))  # <=83 | 84-85 | 86-87 | >=88 (88-92, or >=93 on air)
SPO2_SCALE2_OXYGEN = ((83.5, 85.5, 87.5, 92.5, 94.5, 96.5), (3, 2, 1, 0, 1, 2, 3))  # ... | 93-94 | 95-96 | >=97 on O2
SYSTOLIC_BP = ((90.5, 100.5, 110.5, 219.5), (3, 2, 1, 0, 3))  # <=90 | 91-100 | 101-110 | 111-219 | >=220
PULSE = ((40.5, 50.5, 90.5, 110.5, 130.5), (3, 1, 0, 1, 2, 3))  # <=40 | 41-50 | 51-90 | 91-110 | 111-130 | >=131
TEMPERATURE = ((35.05, 36.05, 38.05, 39.05), (3, 1, 0, 1, 2))  # <=35.0 | 35.1-36.0 | 36.1-38.0 | 38.1-39.0 | >=39.1
OXYGEN_POINTS = 2.0  # "Air or oxygen?": oxygen scores 2 on either SpO2 scale
CONSCIOUSNESS_POINTS = 3.0  # new confusion, voice, pain or unresponsive


def build_model() -> onnx.ModelProto:
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    spo2, scale2, oxygen = g.col("spo2"), g.col("scale2"), g.col("on_oxygen")
    scale2_score = g.add(
        g.mul(g.one_minus(oxygen), g.step(spo2, *SPO2_SCALE2_AIR)),
        g.mul(oxygen, g.step(spo2, *SPO2_SCALE2_OXYGEN)),
    )
    spo2_score = g.add(g.mul(g.one_minus(scale2), g.step(spo2, *SPO2_SCALE1)), g.mul(scale2, scale2_score))
    parts = g.concat(
        [
            g.step(g.col("resp_rate"), *RESP_RATE),
            spo2_score,
            g.mul(oxygen, OXYGEN_POINTS),
            g.step(g.col("sbp"), *SYSTOLIC_BP),
            g.step(g.col("pulse"), *PULSE),
            g.mul(g.col("consciousness"), CONSCIOUSNESS_POINTS),
            g.step(g.col("temperature"), *TEMPERATURE),
        ]
    )
    g.output("score", g.row_sum(parts))
    g.output("max_single", g.row_max(parts))
    return g.build(
        "NEWS2 aggregate score and largest single-parameter score (RCP 2017, Chart 1, including SpO2 Scale 2). "
        "Inputs: " + ", ".join(INPUTS) + ".",
        {"citation": "Royal College of Physicians. National Early Warning Score (NEWS) 2. London: RCP, 2017"},
    )


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
