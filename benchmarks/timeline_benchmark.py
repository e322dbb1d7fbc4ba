"""Timeline model latency on a whole ~1 MB patient record, against the orjson parse of the same body.

The record is the mapping benchmark's (synthetic/generate_patients.py --large-record, cached under
benchmarks/results/). One prediction of the timeline demonstration model (models/t2d-timeline-5y) is what the service
does for a patient-view call after prefetch: parse the body, index it, map the guard features, extract the timeline,
tokenise it, and run the graph once on the batch that holds the patient and one masked row per concept group
(inference and explanation together). Each stage is timed on its own and the whole is compared with
`orjson.loads` of the body, the floor any JSON service pays. Prints a table, writes
benchmarks/results/timeline.json and, with --write-doc, the "Timeline models" section of docs/performance.md.

Run: `.venv/bin/python benchmarks/timeline_benchmark.py [--repeat 30] [--write-doc]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fhir_mapping.index import ResourceIndex  # noqa: E402
from fhir_mapping.mapper import map_features  # noqa: E402
from fhir_mapping.timeline import extract_timeline, with_record  # noqa: E402
from inference.repository import load_version  # noqa: E402
from mapping_benchmark import REFERENCE_DATE, RESULTS, large_record  # noqa: E402

FOLDER = ROOT / "models" / "t2d-timeline-5y" / "1.0.0"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- timeline-benchmark:begin -->", "<!-- timeline-benchmark:end -->"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    fn()  # warm
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--large-bytes", type=int, default=1_000_000)
    parser.add_argument("--write-doc", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args(argv)

    runtime: Any = load_version(FOLDER)
    body = large_record(args.large_bytes)
    at = datetime.fromisoformat(REFERENCE_DATE).replace(tzinfo=UTC)
    types = runtime.spec.resource_types()

    def parse() -> Any:
        return orjson.loads(body)

    doc = parse()
    index = ResourceIndex.from_prefetch({"record": doc}, types)
    patient_id = index.patient()["id"]
    timeline = extract_timeline(runtime.spec.timeline, index, at=at, patient_id=patient_id)
    encoded = runtime.encode(timeline)
    groups, tokens, times, mask = runtime.explanation_batch(encoded)  # the batch predict runs

    def whole() -> Any:
        idx = ResourceIndex.from_prefetch({"record": orjson.loads(body)}, types)
        mapping = map_features(runtime.spec, idx, at=at, valuesets=runtime.valuesets, patient_id=patient_id)
        return runtime.predict(with_record(mapping, idx, at, patient_id))

    stages = {
        "orjson.loads (floor)": parse,
        "index": lambda: ResourceIndex.from_prefetch({"record": doc}, types),
        "guard features (map_features)": lambda: map_features(runtime.spec, index, at=at,
                                                              valuesets=runtime.valuesets, patient_id=patient_id),
        "timeline extraction": lambda: extract_timeline(runtime.spec.timeline, index, at=at, patient_id=patient_id),
        "tokenise (truncate, vocabulary, ages)": lambda: runtime.encode(timeline),
        f"inference + explanation (one batch of {tokens.shape[0]} rows)": lambda: runtime.run_sequences(tokens, times, mask),
        "whole prediction (parse → card-ready Prediction)": whole,
    }
    results: dict[str, dict[str, float]] = {}
    prediction = None
    for name, fn in stages.items():
        xs, out = timed(fn, args.repeat)
        results[name] = {"p50_ms": p50(xs), "p95_ms": p95(xs)}
        if name.startswith("whole"):
            prediction = out
    floor = results["orjson.loads (floor)"]["p50_ms"]
    assert prediction is not None and prediction.outputs is not None, prediction and prediction.refusals
    report = {
        "date": datetime.now(UTC).isoformat(), "bytes": len(body), "entries": len(doc.get("entry", [])),
        "events": encoded.total_events, "read_events": encoded.read_events, "unknown": encoded.unknown,
        "groups_masked": len(groups), "repeat": args.repeat, "stages": results,
        "max_length": runtime.sequence.max_length,
        "ratio_whole_to_floor": results["whole prediction (parse → card-ready Prediction)"]["p50_ms"] / floor,
        "risk_5y": prediction.outputs["risk_5y"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "timeline.json").write_text(json.dumps(report, indent=1))
    for name, r in results.items():
        print(f"{name:60s} p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  ({r['p50_ms'] / floor:5.1f}× floor)")
    print(f"whole / floor = {report['ratio_whole_to_floor']:.1f}×")
    if args.write_doc:
        write_doc(report)
    return 0


def write_doc(report: dict[str, Any]) -> None:
    m = report["machine"]
    floor = report["stages"]["orjson.loads (floor)"]["p50_ms"]
    lines = [BEGIN, "",
             f"Measured {report['date'][:10]} on this machine ({m['cpus']} cores, Python {m['python']}, load average "
             f"{m['load_avg'][0]:.1f} at the start: other work was running, so read the ratios, not absolute times). "
             f"Record: {report['bytes']:,} bytes, {report['entries']} entries; timeline {report['events']} coded "
             f"events in the 10-year look-back ({report['read_events']} read, max_length {report['max_length']}), "
             f"{report['unknown']} unknown tokens, {report['groups_masked']} concept groups masked. "
             f"{report['repeat']} timed runs per stage, one onnxruntime thread.", "",
             "| stage | p50 | p95 | p50 / orjson floor |", "|---|---|---|---|"]
    for name, r in report["stages"].items():
        lines.append(f"| {name} | {r['p50_ms']:.2f} ms | {r['p95_ms']:.2f} ms | {r['p50_ms'] / floor:.1f}× |")
    lines += ["", f"The whole prediction costs **{report['ratio_whole_to_floor']:.1f}×** the parse of its body.", "",
              END]
    text = DOC.read_text()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = (text.rstrip("\n") + "\n\n## Timeline models (benchmarks/timeline_benchmark.py)\n\n"
                "What a sequence model (docs/timeline-models.md) costs on a whole record, stage by stage.\n\n"
                + block + "\n")
    DOC.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
