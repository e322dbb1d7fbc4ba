"""What durable recording costs a request: the fsync'd prediction journal against the physical floor.

A CDS response is sent only once its prediction is journalled (store/journal.py). This measures, in one run on the
same disk, the time from handing a record over to its being durable, at 1 and at 8 concurrent requests (group
commit shares one fsync among waiting requests) — through `Recorder.record` (the request's own thread writes and
syncs, as the service does) and through `Recorder.submit` (a hand-off to the journal's thread) — against two
floors: one bare `os.fsync` of a small append on the same disk (what durability cannot avoid) and the orjson parse
of a typical prefetch body (the per-request floor the performance goals use). Prints a table and writes
benchmarks/results/journal.json.
Run: `.venv/bin/python benchmarks/journal_benchmark.py [--records 400]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store.recorder import Recorder  # noqa: E402
from store.records import CardRecord, PredictionRecord  # noqa: E402
from store.store import Store  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def record() -> PredictionRecord:
    features = {n: {"value": 1.0, "unit": "mg/dL", "defaulted": False,
                    "sources": [{"reference": f"Observation/{uuid.uuid4()}", "date": "2026-11-01"}]}
                for n in ("age", "total_cholesterol", "hdl", "sbp", "bp_treated", "smoker", "diabetes", "female")}
    return PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=str(uuid.uuid4()), hook="patient-view",
        service_id="ascvd-pce-10y", model_id="ascvd-pce-10y", model_version="1.0.0", alias="champion",
        patient_id="p1", encounter_id=None, created_at=datetime.now(UTC), features=features, missing={},
        outputs={"risk_10y": 0.0632}, category="borderline",
        cards=[CardRecord(str(uuid.uuid4()), "10-year ASCVD risk 6.3% (borderline)", "info", [str(uuid.uuid4())])],
    )


def durable_latency(recorder: Recorder, records: int, concurrency: int, via: str = "record") -> list[float]:
    """Seconds from hand-over to durable, per record, with `concurrency` threads, through `record` or `submit`."""
    times: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            rec = record()
            t0 = time.perf_counter()
            if via == "record":
                recorder.record(rec)
            else:
                recorder.submit(rec).result(timeout=30)
            with lock:
                times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(records // concurrency,)) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def bare_fsync(folder: Path, n: int) -> list[float]:
    times = []
    with open(folder / "fsync-floor.bin", "ab") as fh:
        for _ in range(n):
            t0 = time.perf_counter()
            fh.write(b"x" * 1500 + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400)
    args = parser.parse_args()
    body = (ROOT / "tests" / "fixtures" / "synthea").glob("patient-*.json")
    sample = next(iter(sorted(body))).read_bytes()[:200_000]
    parse = []
    for _ in range(50):
        t0 = time.perf_counter()
        try:
            orjson.loads(sample)
        except orjson.JSONDecodeError:
            orjson.loads(next(iter(sorted((ROOT / "tests" / "fixtures" / "synthea").glob("patient-*.json")))).read_bytes())
        parse.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").exists() else None) as tmp:
        folder = Path(tmp)
        store = Store(f"sqlite:///{folder / 'bench.sqlite3'}", b"benchmark-secret-0123456789")
        store.migrate()
        recorder = Recorder(store, spool_dir=folder / "spool")
        recorder.start()
        floor = bare_fsync(folder, 100)
        one = durable_latency(recorder, args.records, 1)
        eight = durable_latency(recorder, args.records, 8)
        one_submit = durable_latency(recorder, args.records, 1, via="submit")
        eight_submit = durable_latency(recorder, args.records, 8, via="submit")
        fsyncs = recorder.journal.fsyncs if recorder.journal else 0
        recorder.stop()
        store.dispose()
    med = statistics.median
    rows = {
        "fsync floor (one small append)": med(floor),
        "orjson parse of the prefetch body": med(parse),
        "durable record, 1 request at a time": med(one),
        "durable record, 8 concurrent requests": med(eight),
        "via the journal thread, 1 at a time": med(one_submit),
        "via the journal thread, 8 concurrent": med(eight_submit),
    }
    print(f"{'what':45} {'median':>10}  ratio to fsync floor")
    for name, value in rows.items():
        print(f"{name:45} {value * 1000:8.3f} ms  {value / rows['fsync floor (one small append)']:6.2f}x")
    print(f"fsyncs: {fsyncs} for {4 * args.records} records (group commit)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "journal.json").write_text(json.dumps(
        {"medians_ms": {k: v * 1000 for k, v in rows.items()}, "fsyncs": fsyncs, "records": 4 * args.records,
         "at": datetime.now(UTC).isoformat()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
