"""Serving speed: real `cds-onnx serve` processes on 127.0.0.1, against the floor and an idiomatic HealthChain peer.

Two request bodies, both the PCE service's prefetch for a Synthea record (tests/fixtures/synthea/, dates moved so its
newest entry is today): (a) "typical prefetch" — the service's own prefetch templates evaluated on the record, and
(b) "whole record" — the same templates without their `code=` filters, as an EHR that cannot filter by code sends
(about 1 MB). For each: p50/p99 latency and throughput with one uvicorn worker at concurrency 1 and 8, each as a
ratio to the floor (orjson.loads of the same body, measured here); the HealthChain peer on the same bodies when it is
installed (benchmarks/results/peer-venv, made by `make bench`). Both services run at once and each row is measured in
alternating rounds (cds-onnx, then the peer), each round with its own floor, so a change in the machine's speed
during the run weighs on both sides of every ratio alike; then `serve --workers 2` against `--workers 1`
throughput, and the levers (gc.freeze, CPU stages on the event loop) switched off one at a time, in alternating rounds
with every variant up at once.

The load generator is a small asyncio HTTP/1.1 client (pre-built requests, pre-minted ES384 tokens), so it takes
little CPU from the server on the same machine. Loops are bounded; everything is on loopback. Results go to
benchmarks/results/serving.json and, with --write-doc, to the table in docs/performance.md.

Run: `make bench`, or `.venv/bin/python benchmarks/serving_benchmark.py [--quick] [--write-doc]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_hooks.bundle_prefetch import bundle_resources, patient_of, prefetch_from_resources  # noqa: E402
from cds_hooks.signing import load_local_key, mint_token  # noqa: E402
from cds_hooks.time_shift import shift_to_today  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PEER_PYTHON = RESULTS / "peer-venv" / "bin" / "python"
CLI = str(Path(sys.executable).parent / "cds-onnx")
SERVICE = "ascvd-pce-10y"
ISSUER = "cds-onnx-cli"
FIXTURE = ROOT / "tests" / "fixtures" / "synthea" / "patient-0102-7f053ba4.json"  # eligible for the PCE, 16% risk
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- serving-benchmark:begin -->", "<!-- serving-benchmark:end -->"

# Variants of the cds-onnx server: the shipped one, and each lever switched off (benchmark-only monkeypatches).
NO_FREEZE = ("import cds_hooks.app as a; _c = a.create_app; "
             "a.create_app = lambda s, **k: _c(s, **{**k, 'freeze_gc': False})")
IN_THREAD = "import os; os.environ['CDS_ONNX_SERVER__CALL_STAGES_IN_THREAD'] = 'true'"  # the setting, switched on


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready at {url}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def cds_server(workers: int = 1, variant: str | None = None) -> Iterator[int]:
    """`cds-onnx serve --workers N` on a free loopback port with a throw-away store."""
    port = free_port()
    RESULTS.mkdir(parents=True, exist_ok=True)  # a fresh checkout has none (the workers benchmark starts here)
    tmp = Path(tempfile.mkdtemp(prefix="serving-", dir=RESULTS))
    env = {**os.environ, "CDS_ONNX_SERVER__HOST": "127.0.0.1", "CDS_ONNX_SERVER__PORT": str(port),
           "CDS_ONNX_STORE__URL": f"sqlite:///{tmp / 'store.sqlite3'}", "CDS_ONNX_STORE__SPOOL_DIR": str(tmp / "spool")}
    args = ["serve", "--dev", "--config", "config/development.toml", "--workers", str(workers)]
    if variant:
        cmd = [sys.executable, "-c", f"{variant}; import sys; from cds_hooks.cli import app; sys.argv[0] = 'cds-onnx'; "
               "app()", *args]
    else:
        cmd = [CLI, *args]
    log = tmp / "server.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
        deadline = time.monotonic() + 90  # every worker has started, not just the first one to answer
        while log.read_text().count("Application startup complete") < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        yield port
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def peer_server() -> Iterator[int]:
    port = free_port()
    log = RESULTS / "peer.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(PEER_PYTHON), str(ROOT / "benchmarks" / "peer_healthchain.py"), "--port",
                                 str(port)], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/cds/cds-discovery", proc, log)
        yield port
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------- workloads


def workloads() -> dict[str, bytes]:
    from cds_hooks.services import build_services
    from inference.repository import ModelRepository

    service = build_services(ModelRepository(ROOT / "models").load())[SERVICE]
    templates = {key: pk.template for key, pk in service.plan.items()}
    unfiltered = {key: re.sub(r"&code=[^&]*", "", t) for key, t in templates.items()}
    doc, _ = shift_to_today(orjson.loads(FIXTURE.read_bytes()))
    resources = bundle_resources(doc)
    context = {"userId": "Practitioner/example", "patientId": str(patient_of(resources, None)["id"])}
    bodies = {}
    for label, tmpl in (("(a) typical prefetch", templates), ("(b) whole record", unfiltered)):
        request = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
                   "prefetch": prefetch_from_resources(tmpl, resources, context)}
        bodies[label] = orjson.dumps(request)
    return bodies


def entries(body: bytes) -> int:
    pf = orjson.loads(body)["prefetch"]
    return sum(len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1 for v in pf.values() if v)


def floor_ms(body: bytes, repeat: int = 200) -> float:
    """orjson's parse and free of the body, with the collector off: the server runs no collection during a call
    (its thresholds are raised), and with it on here the parse paid for walking this process's heap (15–40% more)."""
    time.sleep(0.3)  # the servers' work left over from the last round (the recorder's batch) ends first
    samples = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            orjson.loads(body)
            samples.append(time.perf_counter() - t)
    finally:
        if was_enabled:
            gc.enable()
    return statistics.median(samples) * 1000


# ---------------------------------------------------------------------------------------------- load generator


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float
    errors: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds


def merged(runs: list[Run]) -> Run:
    """Alternating rounds of one measurement as one run: every latency, the time and the errors of all."""
    return Run([x for r in runs for x in r.latencies_ms], sum(r.seconds for r in runs), sum(r.errors for r in runs))


def round_medians(runs: list[Run]) -> tuple[float, float]:
    """p50 and p99 of alternating rounds: the median of the rounds' own, never of the rounds pooled (a slow round's
    latencies would all land in the pooled p99)."""
    return statistics.median(r.p50 for r in runs), statistics.median(r.p99 for r in runs)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                    body: bytes) -> tuple[int, bytes]:
    writer.write(head)
    writer.write(body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def heads(port: int, path: str, body: bytes, count: int, *, sign: bool, close: bool) -> list[bytes]:
    key = load_local_key(ROOT / "var" / "keys") if sign else None
    out = []
    for _ in range(count):
        auth = f"Authorization: Bearer {mint_token(key, ISSUER, f'http://127.0.0.1:{port}{path}')}\r\n" if key else ""
        out.append((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n{auth}{'Connection: close' + chr(13) + chr(10) if close else ''}"
                    "\r\n").encode())
    return out


async def _load(port: int, reqs: list[bytes], body: bytes, concurrency: int, close: bool) -> Run:
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(reqs))

    async def worker() -> None:
        nonlocal errors
        conn = None
        while queue:
            head = queue.pop()
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            t = time.perf_counter()
            try:
                status, _ = await _exchange(*conn, head, body)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1  # counted and reported, never retried silently
                conn[1].close()
                conn = None
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            errors += status != 200
            if close:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, time.perf_counter() - start, errors)


def load(port: int, path: str, body: bytes, requests: int, concurrency: int, *, sign: bool = True,
         close: bool = False, warmup: int = 10) -> Run:
    asyncio.run(_load(port, heads(port, path, body, warmup, sign=sign, close=close), body, 1, close))
    return asyncio.run(_load(port, heads(port, path, body, requests, sign=sign, close=close), body, concurrency,
                             close))


def first_card(port: int, path: str, body: bytes, *, sign: bool) -> dict[str, Any]:
    import httpx

    headers = {"Content-Type": "application/json"}
    if sign:
        key = load_local_key(ROOT / "var" / "keys")
        headers["Authorization"] = f"Bearer {mint_token(key, ISSUER, f'http://127.0.0.1:{port}{path}')}"
    resp = httpx.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers, timeout=30, trust_env=False)
    resp.raise_for_status()
    return resp.json()["cards"][0]


def in_process_risk(body: bytes) -> float:
    """cds-onnx's exact risk for this body, on the service's own code path (mapping → runtime), for the peer check."""
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.mapper import map_features
    from inference.repository import ModelRepository

    req = orjson.loads(body)
    runtime = ModelRepository(ROOT / "models").load().entries[SERVICE].champion
    index = ResourceIndex.from_prefetch({k: v for k, v in req["prefetch"].items() if v}, runtime.spec.resource_types())
    mapping = map_features(runtime.spec, index, at=datetime.now(UTC), valuesets=runtime.valuesets,
                           patient_id=req["context"]["patientId"])
    pred = runtime.predict(mapping)
    assert pred.outputs is not None, pred.refusals or pred.missing_required
    return pred.outputs["risk_10y"]


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per measurement (bounded)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--no-peer", action="store_true", help="skip the HealthChain peer")
    parser.add_argument("--no-levers", action="store_true", help="skip the gc.freeze / worker-thread ablations")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds per row (cds-onnx, then the peer, each round with its own floor)")
    parser.add_argument("--write-doc", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    n = 60 if args.quick else args.requests
    subprocess.run([CLI, "keys", "generate", "--dir", "var/keys", "--if-missing"], cwd=ROOT, check=True,
                   capture_output=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    bodies = workloads()
    path = f"/cds-services/{SERVICE}"
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "requests": n,
                              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "platform": platform.platform(), "load_avg": os.getloadavg()},
                              "workloads": {}, "workers": {}, "levers": {}, "peer": None, "rounds": args.rounds}
    rows: list[str] = []

    def row(label: str, body: bytes, who: str, conc: int, runs: list[Run], floors: list[float]) -> None:
        """One table row from alternating rounds: each figure is the median of the rounds' own (a round's ratio
        uses that round's floor), so rounds in a slow minute and in a fast one are never mixed into one ratio."""
        med = statistics.median
        p50, p99 = round_medians(runs)
        rows.append(f"| {label} | {entries(body)} | {len(body):,} | {who} | {conc} | {p50:.1f} ms | "
                    f"{p99:.1f} ms | {merged(runs).rps:.0f}/s | {med(floors):.2f} ms | "
                    f"{med(r.p50 / f for r, f in zip(runs, floors, strict=True)):.1f}× | "
                    f"{med(r.p99 / r.p50 for r in runs):.1f} |")
        print(rows[-1], flush=True)

    print("| workload | entries | bytes | service | concurrency | p50 | p99 | throughput | floor | p50/floor | "
          "p99/p50 |")
    results: dict[str, dict[str, Run]] = {label: {} for label in bodies}
    peer_note = None
    if args.no_peer:
        peer_note = "peer skipped (--no-peer)"
    elif not PEER_PYTHON.exists():
        peer_note = (f"peer skipped: {PEER_PYTHON.relative_to(ROOT)} not found (make bench creates it with "
                     "`pip install '.[bench]'`-equivalent: healthchain 0.16, onnxruntime, numpy)")
    ppath = f"/cds/cds-services/{SERVICE}"
    # Both services are up at once and measured in alternating rounds, each round with its own floor, so a change
    # in the machine's speed during the run (common on a shared host) falls on both sides of every ratio alike.
    with cds_server() as port, (peer_server() if peer_note is None else nullcontext(None)) as pport:
        for label, body in bodies.items():
            report["workloads"][label] = {"entries": entries(body), "bytes": len(body)}
            card = first_card(port, path, body, sign=True)
            if pport is not None:
                report["peer"] = report.get("peer") or {}
                peer_card = first_card(pport, ppath, body, sign=False)
                peer_risk, ours = float(peer_card["detail"]), in_process_risk(body)
                same = abs(peer_risk - ours) <= 1e-12 and peer_card["summary"].split()[-1] in card["summary"]
                report["peer"][label] = {"peer_risk": peer_risk, "cds_onnx_risk": ours, "same": same,
                                         "cds_onnx_summary": card["summary"]}
                print(f"{label}: HealthChain risk {peer_risk!r}, cds-onnx {ours!r} ({card['summary']!r}): "
                      f"{'same' if same else 'DIFFERENT'}", flush=True)
            floors: list[float] = []
            for conc in (1, 8):
                big = label.startswith("(b)")
                ours_n = max(20, n // 3) if big else n
                theirs_n = max(20, n // 6) if big else max(20, n // 2)
                mine: list[Run] = []
                theirs: list[Run] = []
                row_floors: list[float] = []
                for i in range(args.rounds):
                    row_floors.append(floor_ms(body, repeat=100))
                    mine.append(load(port, path, body, max(1, ours_n // args.rounds), conc, warmup=10 if i == 0 else 3))
                    if pport is not None:
                        theirs.append(load(pport, ppath, body, max(1, theirs_n // args.rounds), conc, sign=False,
                                           warmup=5 if i == 0 else 2))
                floors += row_floors
                run = merged(mine)
                assert run.errors == 0, f"{run.errors} non-200 answers from cds-onnx"
                results[label][f"cds-onnx c{conc}"] = run
                row(label, body, "cds-onnx", conc, mine, row_floors)
                if theirs:
                    peer_run = merged(theirs)
                    assert peer_run.errors == 0, f"{peer_run.errors} non-200 answers from the peer"
                    results[label][f"HealthChain c{conc}"] = peer_run
                    row(label, body, "HealthChain 0.16", conc, theirs, row_floors)
                    ratio = statistics.median(t.p50 / m.p50 for t, m in zip(theirs, mine, strict=True))
                    report["workloads"][label][f"peer_ratio_c{conc}"] = ratio
                    print(f"  HealthChain / cds-onnx p50 at concurrency {conc}: {ratio:.1f}× (median of the rounds)",
                          flush=True)
            report["workloads"][label]["floor_ms"] = statistics.median(floors)
    if peer_note:
        print(peer_note)

    # Scale-out: N = 1 vs N = 2 worker processes, a new connection per request (so the kernel spreads them); both
    # servers up at once, measured in alternating rounds.
    body = bodies["(a) typical prefetch"]
    with cds_server(1) as one, cds_server(2) as two:
        runs: dict[int, list[Run]] = {1: [], 2: []}
        for _ in range(2):
            for workers, port in ((1, one), (2, two)):
                runs[workers].append(load(port, path, body, n, 8, close=True, warmup=20))
                print(f"  workers={workers}: {runs[workers][-1].rps:.0f} req/s, {runs[workers][-1].errors} errors",
                      flush=True)
    for workers, done in runs.items():
        best = max(done, key=lambda r: r.rps)
        report["workers"][workers] = {"rps": [r.rps for r in done], "p50_ms": best.p50, "p99_ms": best.p99,
                                      "errors": sum(r.errors for r in done)}
        print(f"workers={workers}: {', '.join(f'{r.rps:.0f}' for r in done)} req/s (c8, (a), new connection each)",
              flush=True)
    scale = max(report["workers"][2]["rps"]) / max(report["workers"][1]["rps"])
    report["workers"]["ratio"] = scale
    print(f"workers 2 / 1 throughput: {scale:.2f}×")

    if not args.no_levers:  # each lever off in turn, same requests, (b) at concurrency 8, alternating rounds
        body = bodies["(b) whole record"]
        variants = (("shipped", None), ("no gc.freeze, default GC thresholds", NO_FREEZE),
                    ("CPU stages in a worker thread", IN_THREAD))
        with ExitStack() as stack:
            ports = {name: stack.enter_context(cds_server(1, variant)) for name, variant in variants}
            lever_runs: dict[str, list[Run]] = {name: [] for name in ports}
            for i in range(args.rounds):
                for name, port in ports.items():
                    lever_runs[name].append(load(port, path, body, max(15, n // 3 // args.rounds), 8,
                                                 warmup=10 if i == 0 else 3))
        for name, done in lever_runs.items():  # medians of the rounds' own, like the table
            p50, p99 = round_medians(done)
            rps = merged(done).rps
            report["levers"][name] = {"p50_ms": p50, "p99_ms": p99, "rps": rps, "rps_rounds": [r.rps for r in done]}
            print(f"lever {name:<24} (b) c8: p50 {p50:.1f} ms, p99 {p99:.1f} ms, {rps:.1f} req/s "
                  f"(rounds: {', '.join(f'{r.rps:.0f}' for r in done)})", flush=True)

    report["rows"] = rows
    report["peer_note"] = peer_note
    for label, runs in results.items():
        report["workloads"][label]["runs"] = {k: {"p50_ms": r.p50, "p99_ms": r.p99, "rps": r.rps}
                                              for k, r in runs.items()}
    (RESULTS / "serving.json").write_text(json.dumps(report, indent=1))
    if args.write_doc:
        write_doc(report)
    return 0


def write_doc(report: dict[str, Any]) -> None:
    m = report["machine"]
    lines = [BEGIN, "",
             f"Measured {report['date'][:10]} on this machine ({m['cpus']} cores, Python {m['python']}, load average "
             f"{m['load_avg'][0]:.1f} at the start: other work was running, so compare ratios within the table, not "
             f"absolute times across runs). {report['requests']} timed requests per (a) row; one uvicorn worker. "
             + (f"Both services were up at once and each row is {report['rounds']} alternating rounds (cds-onnx, then "
                "HealthChain), " if report.get("peer") else f"Each row is {report['rounds']} rounds, ")
             + "each round with its own floor (orjson's parse and free with the collector off); every figure is the "
             "median of the rounds' own, so a ratio is not the table's p50 divided by its floor (a round's ratio uses "
             "that round's floor); throughput is over all rounds.", "",
             "| workload | entries | bytes | service | concurrency | p50 | p99 | throughput | floor (orjson.loads) | "
             "p50/floor | p99/p50 |", "|---|---|---|---|---|---|---|---|---|---|---|", *report["rows"], ""]
    if report.get("peer"):
        ratios = [f"{label} {w[f'peer_ratio_c{c}']:.1f}× at concurrency {c}"
                  for label, w in report["workloads"].items() for c in (1, 8) if f"peer_ratio_c{c}" in w]
        lines.append(f"* HealthChain p50 / cds-onnx p50, median of the rounds: {'; '.join(ratios)}.")
        for label, p in report["peer"].items():
            lines.append(f"* Same risk {label}: HealthChain {p['peer_risk']!r}, cds-onnx {p['cds_onnx_risk']!r} "
                         f"({'equal to 1e-12' if p['same'] else 'DIFFERENT'}; the last bits differ because cds-onnx "
                         "runs the patient's row inside the explanation's batch).")
    elif report.get("peer_note"):
        lines.append(f"* {report['peer_note']}.")
    w = report["workers"]
    lines.append(f"* `serve --workers 2` vs `--workers 1`, (a) at concurrency 8, a new connection per request: "
                 f"{max(w[2]['rps']):.0f} vs {max(w[1]['rps']):.0f} req/s = **{w['ratio']:.2f}×** (best of two "
                 "alternating runs each, both servers up at once; "
                 f"{w[1]['errors'] + w[2]['errors']} failed exchanges; the load generator runs on the same cores).")
    for name, lv in report["levers"].items():
        rounds = ", ".join(f"{x:.0f}" for x in lv.get("rps_rounds", []))
        lines.append(f"* Lever check, (b) at concurrency 8, {name}: p50 {lv['p50_ms']:.1f} ms, p99 {lv['p99_ms']:.1f} "
                     f"ms, {lv['rps']:.1f} req/s (medians of alternating rounds, all three servers up at once: "
                     f"{rounds} req/s).")
    lines += ["", END]
    text = DOC.read_text()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Serving (benchmarks/serving_benchmark.py)\n\n" + block + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
