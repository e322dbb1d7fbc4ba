"""Throughput of `cds-onnx serve --workers 2` against `--workers 1`, with a load generator that takes little CPU.

On a 2-core machine the load generator shares the cores with the server, so whatever CPU it takes is taken from the
second worker: the serving benchmark's Python client (a new connection per request) measured 0.97×. Here the load
comes from wrk (Debian's `wrk`, C, one thread, keep-alive connections) sending the serving benchmark's (a) "typical
prefetch" body to the PCE service, each request with its own pre-minted ES384 token (the service refuses a replayed
`jti`, so tokens are never reused), for a fixed duration after a warm-up. The CPU time of each server process, of wrk
and the machine's idle time are read from /proc, so the table shows where the cores went. Each connection count is
measured with the replay cache in the embedded store and, when Debian's redis-server is installed, in a throw-away
Redis on loopback.

Run: `.venv/bin/python benchmarks/workers_benchmark.py [--seconds 20] [--connections 8,32] [--no-redis] [--write-doc]`.
Results: benchmarks/results/workers.json, and with --write-doc the "Worker scaling" block of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from serving_benchmark import RESULTS, SERVICE, cds_server, free_port, workloads  # noqa: E402

from cds_hooks.signing import load_local_key, mint_token  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- workers-benchmark:begin -->", "<!-- workers-benchmark:end -->"
ISSUER = "cds-onnx-cli"
TICKS = os.sysconf("SC_CLK_TCK")

LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local f = assert(io.open(os.getenv("BODY_FILE"), "rb")); local body = f:read("*a"); f:close()
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = #tokens end  -- never reached: the token file is larger than any run (checked after)
  return wrk.format("POST", os.getenv("CALL_PATH"), {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. tokens[i]}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.3f %.3f\\n", summary.requests, summary.errors.status,
           summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
           summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


# The machine's own ceiling: one process doing pure-Python work of the same kind as a call's (orjson parse of the
# same body, the per-request index of it, the free), against two such processes at once. On a shared virtual machine
# two busy vCPUs are often slower each than one (a host's hyperthread siblings, its other tenants), so "2 cores" may
# give well under 2× for any program; this says how much under, in the same minutes as the servers' runs.
REFERENCE = r"""
import sys, time
import orjson
from fhir_mapping.index import ResourceIndex
body = open(sys.argv[1], "rb").read()
start, seconds = float(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.005)
count, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    doc = orjson.loads(body)
    ResourceIndex.from_prefetch({k: v for k, v in doc["prefetch"].items() if v is not None})
    del doc
    count += 1
print(count / seconds)
"""


def machine_scaling(body: bytes, seconds: float) -> dict[str, float]:
    """Rounds per second of the reference in one process, then in two started together, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body.json"
        path.write_bytes(body)
        rates: dict[int, float] = {}
        for processes in (1, 2):
            start = time.time() + 2.0  # both have imported and wait for the same moment
            procs = [subprocess.Popen([sys.executable, "-c", REFERENCE, str(path), str(start), str(seconds)],
                                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                      text=True) for _ in range(processes)]
            rates[processes] = sum(float(proc.communicate(timeout=seconds + 60)[0]) for proc in procs)
    return {"one": rates[1], "two": rates[2], "ratio": rates[2] / rates[1]}


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def machine_idle_seconds() -> float:
    """Idle + iowait time of all CPUs together, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / TICKS


def tree(pid: int) -> list[int]:
    out = [pid]
    for child in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(child.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in out:
            out.append(int(child.name))
    return out


def server_pids(port: int) -> list[int]:
    """The `cds-onnx serve` process listening on `port` and its workers."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = proc.joinpath("environ").read_bytes()
        except OSError:
            continue
        if f"CDS_ONNX_SERVER__PORT={port}".encode() in env.split(b"\0"):
            parent = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            if f"CDS_ONNX_SERVER__PORT={port}".encode() not in Path(f"/proc/{parent}/environ").read_bytes():
                return tree(int(proc.name))
    raise RuntimeError(f"no server process found for port {port}")


def run(workers: int, body: bytes, seconds: float, connections: int, warmup: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    key = load_local_key(ROOT / "var" / "keys")
    path = f"/cds-services/{SERVICE}"
    with cds_server(workers) as port, tempfile.TemporaryDirectory() as tmp:
        budget = int((seconds + warmup) * 400) + 1000  # more tokens than the server can answer in the time
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("\n".join(mint_token(key, ISSUER, f"http://127.0.0.1:{port}{path}") for _ in range(budget)))
        (Path(tmp) / "body.json").write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        env = {**os.environ, "TOKENS_FILE": str(tokens), "BODY_FILE": str(Path(tmp) / "body.json"),
               "CALL_PATH": path}
        base = [wrk, "-t1", f"-c{connections}", "-s", str(script), f"http://127.0.0.1:{port}"]
        subprocess.run([*base, f"-d{warmup:.0f}s"], env=env, capture_output=True, timeout=warmup + 60, check=True)
        # the warm-up used its own tokens: mint a fresh file so no jti is replayed
        tokens.write_text("\n".join(mint_token(key, ISSUER, f"http://127.0.0.1:{port}{path}") for _ in range(budget)))
        pids = server_pids(port)
        before = cpu_seconds(pids)
        per_process_before = {pid: cpu_seconds([pid]) for pid in pids}
        idle_before = machine_idle_seconds()
        children_before = os.times()
        started = time.monotonic()
        proc = subprocess.Popen([*base, f"-d{seconds:.0f}s"], env=env, stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=seconds + 60)
        wall = time.monotonic() - started
        server_cpu = cpu_seconds(pids) - before
        per_process = sorted((round(cpu_seconds([pid]) - per_process_before[pid], 2) for pid in pids), reverse=True)
        idle = machine_idle_seconds() - idle_before
        children = os.times()
        wrk_cpu = (children.children_user - children_before.children_user
                   + children.children_system - children_before.children_system)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {out[-500:]}")
    requests, bad_status, socket_errors, duration_us = (int(match.group(i)) for i in range(1, 5))
    if requests + 100 > budget:
        raise RuntimeError("the run used up its tokens; raise the budget")
    duration = duration_us / 1e6
    return {"workers": workers, "requests": requests, "non_2xx": bad_status, "socket_errors": socket_errors,
            "seconds": duration, "req_per_s": requests / duration, "p50_ms": float(match.group(5)),
            "p99_ms": float(match.group(6)), "server_cpu_s": server_cpu, "wall_s": wall,
            "wrk_cpu_s": wrk_cpu, "cpu_s_per_process": per_process, "machine_idle_cores": idle / wall,
            "server_cpu_per_request_ms": 1000 * server_cpu / max(requests, 1)}


@contextmanager
def redis_replay_cache() -> Iterator[str | None]:
    """A throw-away redis-server on loopback for the replay cache (None when Debian's redis-server is missing)."""
    server = shutil.which("redis-server")
    if server is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def measure(label: str, body: bytes, args: argparse.Namespace, connections: int) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    machine: list[dict[str, float]] = []
    for _ in range(args.repeats):
        machine.append(machine_scaling(body, args.reference_seconds))
        print(f"[{label}, {connections} connections] machine ceiling: the reference at {machine[-1]['one']:.0f}/s "
              f"in one process, {machine[-1]['two']:.0f}/s in two = {machine[-1]['ratio']:.2f}x", flush=True)
        for workers in (1, 2):
            result = run(workers, body, args.seconds, connections, args.warmup)
            runs[workers].append(result)
            print(f"[{label}, {connections} connections] workers={workers}: {result['req_per_s']:.1f} req/s, "
                  f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, server CPU "
                  f"{result['server_cpu_per_request_ms']:.2f} ms/request, wrk "
                  f"{result['wrk_cpu_s'] / result['wall_s']:.2f} cores, machine idle "
                  f"{result['machine_idle_cores']:.2f} cores, CPU s per process {result['cpu_s_per_process']}, "
                  f"non-2xx {result['non_2xx']}, socket errors {result['socket_errors']}", flush=True)
    best = {w: max(rs, key=lambda r: r["req_per_s"]) for w, rs in runs.items()}
    ratio = best[2]["req_per_s"] / best[1]["req_per_s"]
    # each repeat's two runs follow each other, so their ratio shares the machine's state of the moment: the spread
    # of these paired ratios shows how much of a difference between runs is the machine
    pairs = [two["req_per_s"] / one["req_per_s"] for one, two in zip(runs[1], runs[2], strict=True)]
    paired = sorted(pairs)
    # each repeat's server ratio against the machine's ceiling measured just before it
    share = sorted(pair / m["ratio"] for pair, m in zip(pairs, machine, strict=True))
    print(f"[{label}, {connections} connections] --workers 2 / --workers 1 throughput: {ratio:.2f}x (best of each); "
          f"paired {', '.join(f'{r:.2f}x' for r in paired)}; of the machine's ceiling "
          f"{', '.join(f'{r:.0%}' for r in share)}", flush=True)
    return {"replay_cache": label, "connections": connections, "runs": runs, "best": best, "ratio": ratio,
            "paired_ratios": paired, "machine": machine, "share_of_ceiling": share}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--connections", default="8,32", help="comma-separated keep-alive connection counts")
    parser.add_argument("--repeats", type=int, default=2, help="runs per worker count (the best is kept)")
    parser.add_argument("--no-redis", action="store_true", help="only the embedded store's replay cache")
    parser.add_argument("--reference-seconds", type=float, default=5,
                        help="length of each run of the machine-ceiling reference (one process, then two)")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk); nothing measured", file=sys.stderr)
        return 2
    body = workloads()["(a) typical prefetch"]
    load_before = os.getloadavg()[0]
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    configurations = []
    for connections in counts:
        configurations.append(measure("store (SQLite)", body, args, connections))
    if not args.no_redis:
        with redis_replay_cache() as url:
            if url is None:
                print("redis-server is not installed: the Redis replay-cache rows are skipped", file=sys.stderr)
            else:
                os.environ["CDS_ONNX_AUTH__REPLAY_CACHE_URL"] = url  # the servers started below inherit it
                try:
                    for connections in counts:
                        configurations.append(measure("Redis", body, args, connections))
                finally:
                    del os.environ["CDS_ONNX_AUTH__REPLAY_CACHE_URL"]
    report = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_average_at_start": load_before,
              "seconds": args.seconds, "repeats": args.repeats, "reference_seconds": args.reference_seconds,
              "configurations": configurations}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps(report, indent=1))
    if args.write_doc:
        write_doc(report)
    return 0


def _spread(ratios: list[float]) -> str:
    """Paired ratios as 'median (lowest–highest)'."""
    if not ratios:
        return ""
    return f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"


def _share(shares: list[float]) -> str:
    """Shares of the machine's ceiling as 'median (lowest–highest)' in percent."""
    if not shares:
        return ""
    return f"{statistics.median(shares):.0%} ({min(shares):.0%}–{max(shares):.0%})"


def write_doc(report: dict[str, Any]) -> None:
    rows = []
    for conf in report["configurations"]:
        for w, r in sorted(conf["best"].items()):
            rows.append(
                f"| {conf['replay_cache']} | {conf['connections']} | {w} | {r['req_per_s']:.1f} | {r['p50_ms']:.1f} ms | "
                f"{r['p99_ms']:.1f} ms | {r['server_cpu_per_request_ms']:.2f} ms | {r['server_cpu_s'] / r['seconds']:.2f} | "
                f"{r['wrk_cpu_s'] / r['wall_s']:.2f} | {r['machine_idle_cores']:.2f} | "
                f"{r['non_2xx'] + r['socket_errors']} | {'**%.2f×**' % conf['ratio'] if w == 2 else ''} | "
                f"{_spread(conf['paired_ratios']) if w == 2 else ''} | "
                f"{_spread([m['ratio'] for m in conf.get('machine', [])]) if w == 2 else ''} | "
                f"{_share(conf.get('share_of_ceiling', [])) if w == 2 else ''} |")
    table = "\n".join(rows)
    block = f"""{BEGIN}
Measured {report['measured'][:10]} on this machine ({report['cpus']} cores, Python {report['python']}, load average
{report['load_average_at_start']:.1f} at the start). wrk, one thread, keep-alive connections, {report['seconds']:.0f} s
after a warm-up, (a) typical prefetch to `{SERVICE}`, a fresh ES384 token per request; best of {report['repeats']} runs
per row ("2 / 1": best against best; "per repeat": each repeat's two runs, one right after the other, lowest to
highest). "Replay cache" is where the token ids are remembered: the embedded SQLite store, or Redis
(`auth.replay_cache_url`). Errors are non-2xx answers plus socket errors. "Machine 2 / 1" is the machine's own
ceiling, measured just before each repeat: a pure-Python reference of the same kind of work (orjson parse and index
of the same body) run {report.get('reference_seconds', 0):.0f} s in one process, then in two at once; "of the ceiling"
is each repeat's server ratio divided by that repeat's machine ratio.

| replay cache | connections | workers | req/s | p50 | p99 | server CPU per request | server cores busy | wrk cores | machine idle cores | errors | 2 / 1 | 2 / 1 per repeat | machine 2 / 1 | of the ceiling |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{table}

(`benchmarks/workers_benchmark.py --write-doc`)
{END}"""
    text = DOC.read_text(encoding="utf-8")
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Worker scaling (wrk)\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
