"""Independent scalar NEWS2 written as the chart's if/elif ladders on integer (or integer tenths) values.

Edge vectors carry a hand-read "published" score from RCP Chart 1 so that both this reference and the graph are
checked against the chart, not only against each other. Run ``python reference.py`` to rewrite golden.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from inference.graph_builder import write_golden

# (low, high, kind): plausibility limits for sampling and guards; "tenth" = recorded to 0.1.
RANGES: dict[str, tuple[float, float, str]] = {
    "resp_rate": (0, 60, "int"),
    "spo2": (50, 100, "int"),
    "scale2": (0, 1, "flag"),
    "on_oxygen": (0, 1, "flag"),
    "sbp": (40, 300, "int"),
    "pulse": (20, 250, "int"),
    "consciousness": (0, 1, "flag"),
    "temperature": (30.0, 44.0, "tenth"),
}


def _rr(v: int) -> int:
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    if v <= 24:
        return 2
    return 3


def _spo2(v: int, scale2: bool, oxygen: bool) -> int:
    if not scale2:
        return 3 if v <= 91 else 2 if v <= 93 else 1 if v <= 95 else 0
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92 or not oxygen:
        return 0
    return 1 if v <= 94 else 2 if v <= 96 else 3


def _sbp(v: int) -> int:
    return 3 if v <= 90 else 2 if v <= 100 else 1 if v <= 110 else 0 if v <= 219 else 3


def _pulse(v: int) -> int:
    return 3 if v <= 40 else 1 if v <= 50 else 0 if v <= 90 else 1 if v <= 110 else 2 if v <= 130 else 3


def _temp(tenths: int) -> int:
    return 3 if tenths <= 350 else 1 if tenths <= 360 else 0 if tenths <= 380 else 1 if tenths <= 390 else 2


def compute(x: Mapping[str, float]) -> dict[str, float]:
    oxygen = bool(x["on_oxygen"])
    parts = [
        _rr(round(x["resp_rate"])),
        _spo2(round(x["spo2"]), bool(x["scale2"]), oxygen),
        2 if oxygen else 0,
        _sbp(round(x["sbp"])),
        _pulse(round(x["pulse"])),
        3 if x["consciousness"] else 0,
        _temp(round(x["temperature"] * 10)),
    ]
    return {"score": float(sum(parts)), "max_single": float(max(parts))}


NORMAL = {
    "resp_rate": 18,
    "spo2": 98,
    "scale2": 0,
    "on_oxygen": 0,
    "sbp": 120,
    "pulse": 72,
    "consciousness": 0,
    "temperature": 36.8,
}
_CHART = "RCP 2017 NEWS2 Chart 1 (band read by hand)"

# (parameter changes, expected aggregate score, expected largest single score) read off Chart 1 by hand.
EDGES: list[tuple[dict, int, int]] = [
    ({"resp_rate": 8}, 3, 3),
    ({"resp_rate": 9}, 1, 1),
    ({"resp_rate": 11}, 1, 1),
    ({"resp_rate": 12}, 0, 0),
    ({"resp_rate": 20}, 0, 0),
    ({"resp_rate": 21}, 2, 2),
    ({"resp_rate": 24}, 2, 2),
    ({"resp_rate": 25}, 3, 3),
    ({"spo2": 91}, 3, 3),
    ({"spo2": 92}, 2, 2),
    ({"spo2": 93}, 2, 2),
    ({"spo2": 94}, 1, 1),
    ({"spo2": 95}, 1, 1),
    ({"spo2": 96}, 0, 0),
    ({"spo2": 96, "on_oxygen": 1}, 2, 2),
    ({"spo2": 83, "scale2": 1}, 3, 3),
    ({"spo2": 84, "scale2": 1}, 2, 2),
    ({"spo2": 85, "scale2": 1}, 2, 2),
    ({"spo2": 86, "scale2": 1}, 1, 1),
    ({"spo2": 87, "scale2": 1}, 1, 1),
    ({"spo2": 88, "scale2": 1}, 0, 0),
    ({"spo2": 92, "scale2": 1}, 0, 0),
    ({"spo2": 93, "scale2": 1}, 0, 0),
    ({"spo2": 99, "scale2": 1}, 0, 0),
    ({"spo2": 88, "scale2": 1, "on_oxygen": 1}, 2, 2),
    ({"spo2": 92, "scale2": 1, "on_oxygen": 1}, 2, 2),
    ({"spo2": 93, "scale2": 1, "on_oxygen": 1}, 3, 2),
    ({"spo2": 94, "scale2": 1, "on_oxygen": 1}, 3, 2),
    ({"spo2": 95, "scale2": 1, "on_oxygen": 1}, 4, 2),
    ({"spo2": 96, "scale2": 1, "on_oxygen": 1}, 4, 2),
    ({"spo2": 97, "scale2": 1, "on_oxygen": 1}, 5, 3),
    ({"spo2": 83, "scale2": 1, "on_oxygen": 1}, 5, 3),
    ({"spo2": 86, "scale2": 1, "on_oxygen": 1}, 3, 2),
    ({"sbp": 90}, 3, 3),
    ({"sbp": 91}, 2, 2),
    ({"sbp": 100}, 2, 2),
    ({"sbp": 101}, 1, 1),
    ({"sbp": 110}, 1, 1),
    ({"sbp": 111}, 0, 0),
    ({"sbp": 219}, 0, 0),
    ({"sbp": 220}, 3, 3),
    ({"pulse": 40}, 3, 3),
    ({"pulse": 41}, 1, 1),
    ({"pulse": 50}, 1, 1),
    ({"pulse": 51}, 0, 0),
    ({"pulse": 90}, 0, 0),
    ({"pulse": 91}, 1, 1),
    ({"pulse": 110}, 1, 1),
    ({"pulse": 111}, 2, 2),
    ({"pulse": 130}, 2, 2),
    ({"pulse": 131}, 3, 3),
    ({"consciousness": 1}, 3, 3),
    ({"temperature": 35.0}, 3, 3),
    ({"temperature": 35.1}, 1, 1),
    ({"temperature": 36.0}, 1, 1),
    ({"temperature": 36.1}, 0, 0),
    ({"temperature": 38.0}, 0, 0),
    ({"temperature": 38.1}, 1, 1),
    ({"temperature": 39.0}, 1, 1),
    ({"temperature": 39.1}, 2, 2),
    (
        {"resp_rate": 26, "spo2": 90, "on_oxygen": 1, "sbp": 88, "pulse": 135, "consciousness": 1, "temperature": 34.5},
        20,
        3,
    ),
    ({"resp_rate": 22, "pulse": 105, "temperature": 38.4}, 4, 2),
    ({"resp_rate": 22, "spo2": 95, "pulse": 112, "temperature": 38.4}, 6, 2),
]


def _edge_name(changes: dict) -> str:
    return "NEWS2 band edge: " + ", ".join(f"{k}={v}" for k, v in changes.items())


EXAMPLES: list[dict] = [
    {
        "name": "RR 18, SpO2 98 on air, SBP 120, HR 72, alert, 36.8 C, Scale 1",
        "inputs": dict(NORMAL),
        "published": {"score": 0, "max_single": 0},
        "published_tolerance": 0.0,
        "source": "RCP 2017 NEWS2 Chart 1; reference worked example (score 0, low risk)",
    },
] + [
    {
        "name": _edge_name(changes),
        "inputs": {**NORMAL, **changes},
        "published": {"score": score, "max_single": top},
        "published_tolerance": 0.0,
        "source": _CHART,
    }
    for changes, score, top in EDGES
]


if __name__ == "__main__":
    write_golden(Path(__file__).with_name("golden.yaml"), EXAMPLES, compute)
