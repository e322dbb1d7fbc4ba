"""Mapping speed: cds-onnx's selective mapping against full fhir.resources R4B validation of the same data.

Two inputs: (a) a typical prefetch of about 50 resources and (b) a whole ~1 MB synthetic patient record (generated
offline by synthetic/generate_patients.py --large-record, cached under benchmarks/results/). For each, the time to
parse the JSON with orjson, index it and map every feature of a model spec (PCE and PREVENT), against the time to
parse and fully validate every resource with fhir.resources.R4B. Prints both, their ratio, and writes
benchmarks/results/mapping.json. Run: `make bench` or `python benchmarks/mapping_benchmark.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from fhir_mapping.index import ResourceIndex  # noqa: E402
from fhir_mapping.mapper import map_features  # noqa: E402
from fhir_mapping.spec import load_feature_spec  # noqa: E402
from fhir_mapping.valuesets import ValueSetLibrary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIXTURES = ROOT / "tests" / "fixtures" / "synthea"
REFERENCE_DATE = "2025-01-01"


def large_record(target_bytes: int) -> bytes:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"large-record-{target_bytes}.json"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "synthetic" / "generate_patients.py"), "--large-record", str(path),
                        "--large-bytes", str(target_bytes), "--reference-date", REFERENCE_DATE], check=True)
    return path.read_bytes()


def typical_prefetch(count: int = 50) -> bytes:
    """The patient, the latest labs and vitals a CVD model asks for, plus conditions and medications: ~50 resources."""
    bundle = json.loads((FIXTURES / "patient-0066-cea543a6.json").read_text())
    entries = bundle["entry"]
    patient = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
    rest = [e for e in entries if e["resource"]["resourceType"] in ("Observation", "Condition", "MedicationRequest")]
    rest.sort(key=lambda e: e["resource"].get("effectiveDateTime") or e["resource"].get("authoredOn") or "",
              reverse=True)
    chosen = patient + rest[: count - len(patient)]
    return orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": chosen})


def timeit(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm caches (value sets, unit registry, compiled FHIRPath)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def full_validation(raw: bytes) -> int:
    doc = orjson.loads(raw)
    n = 0
    for entry in doc.get("entry", []):
        res = entry["resource"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-bytes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)

    library = ValueSetLibrary()
    specs = {name: load_feature_spec(ROOT / "models" / name / "1.0.0" / "features.yaml", library)
             for name in ("ascvd-pce-10y", "prevent-base")}
    at = datetime.fromisoformat(REFERENCE_DATE).replace(tzinfo=UTC) + timedelta(days=1)
    inputs = {"typical prefetch": typical_prefetch(), "whole record": large_record(args.large_bytes)}
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "platform": platform.platform()}, "results": {}}
    print(f"{'input':<18} {'resources':>9} {'bytes':>9} {'model':<14} {'mapping':>10} {'full R4B':>10} {'ratio':>7}")
    for label, raw in inputs.items():
        resources = len(orjson.loads(raw).get("entry", []))
        validate_s = timeit(lambda raw=raw: full_validation(raw), max(3, args.repeat // 5))
        for model, spec in specs.items():
            def mapping(raw: bytes = raw, spec: Any = spec) -> None:
                index = ResourceIndex.from_prefetch({"record": orjson.loads(raw)}, spec.resource_types())
                map_features(spec, index, at=at, valuesets=library)

            map_s = timeit(mapping, args.repeat)
            ratio = validate_s / map_s
            report["results"][f"{label} / {model}"] = {"resources": resources, "bytes": len(raw),
                                                       "mapping_ms": map_s * 1000, "full_validation_ms": validate_s * 1000,
                                                       "ratio": ratio}
            print(f"{label:<18} {resources:>9} {len(raw):>9} {model:<14} {map_s * 1000:>8.2f}ms "
                  f"{validate_s * 1000:>8.1f}ms {ratio:>6.0f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mapping.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
