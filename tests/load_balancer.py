"""A real load balancer for tests: Debian's haproxy in front of service replicas, all on 127.0.0.1.

`Haproxy.start()` writes a configuration, runs `haproxy -db` (foreground, no daemon) and waits until its frontend
listens. The balancer:
* health-checks every replica with `GET /readyz` (a replica whose shared store or replay cache is down leaves the
  rotation, and comes back when its probe passes again);
* retries a request on another replica (`option redispatch 1`) when the connection failed before the request was sent
  (`conn-failure`) or the replica closed the connection without answering anything (`empty-response`, e.g. it was
  killed while handling the request). A CDS Hooks call is safe to retry in the second case only because its JWT is
  single-use: if the dead replica already accepted the token, the retry is refused as a replay (401) rather than run
  twice; if it had not got that far, the retry is a first use and succeeds;
* names the replica that answered in an `X-Replica` response header, and logs one line per request (request id from
  the client's `X-Request-Id`, replica, status, retries) to its stdout, which goes to a file.

When haproxy is not installed the fixture using it skips with a message saying how to install it.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from service_process import stop_process

HEALTH_INTERVAL_SECONDS = 1.0  # `inter`: one /readyz probe per replica per second
HEALTH_FALL = 2  # consecutive failed probes before a replica leaves the rotation
HEALTH_RISE = 2  # consecutive passed probes before it comes back
# Generous: the machine running the tests may be fully loaded, and a replica may take seconds to answer a probe.
CHECK_TIMEOUT_SECONDS = 10
SERVER_TIMEOUT_SECONDS = 60

_LOG_RE = re.compile(r"rid=(?P<rid>\S*) srv=(?P<srv>\S+) status=(?P<status>-?\d+) retries=(?P<retries>\+?-?\d+) "
                     r"term=(?P<term>\S+) req=(?P<req>.*)$")


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


@dataclass(frozen=True)
class LogLine:
    request_id: str  # the client's X-Request-Id, or "" when it sent none
    server: str  # the replica that answered ("<NOSRV>" when none could)
    status: int
    retries: int  # how many times haproxy retried the request (connection or L7 retries)
    redispatched: bool  # a retry went to another replica
    termination: str  # haproxy's termination state, e.g. "----" for a clean exchange
    request: str


@dataclass
class Haproxy:
    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path
    stats_socket: Path
    servers: dict[str, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path, port: int, servers: dict[str, int], *, timeout: float = 60) -> Haproxy:
        """haproxy on 127.0.0.1:`port` balancing round-robin over `servers` (name -> port on 127.0.0.1)."""
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("haproxy")
        workdir.mkdir(parents=True, exist_ok=True)
        stats_socket = workdir / "haproxy.sock"
        config = workdir / "haproxy.cfg"
        config.write_text(_config(port, servers, stats_socket))
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected its configuration:\n{check.stdout}\n{check.stderr}")
        log = workdir / "haproxy.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT)
        lb = cls(proc, port, config, log, stats_socket, dict(servers))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {log.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0 and stats_socket.exists():
                    return lb
            time.sleep(0.1)
        lb.stop()
        raise RuntimeError(f"haproxy did not start listening: {log.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)

    # ---- the runtime API (stats socket) -------------------------------------------------------------------------
    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.stats_socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """Replica name -> haproxy's view of it: "UP", "DOWN", "UP 1/2" (going down), "DOWN 1/2" (coming up), ..."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return {row["svname"]: row["status"] for row in rows
                if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_for_states(self, wanted: dict[str, str], timeout: float) -> dict[str, str]:
        """Wait until every named replica is in the wanted state ("UP" or "DOWN"); returns the last states seen."""
        deadline = time.monotonic() + timeout
        states = self.server_states()
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(name) == state for name, state in wanted.items()):
                return states
            time.sleep(0.2)
        raise AssertionError(f"haproxy did not see {wanted} within {timeout:.0f} s; it sees {states}")

    # ---- the request log ----------------------------------------------------------------------------------------
    def log_lines(self) -> list[LogLine]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _LOG_RE.search(line)
            if m:
                retries = m["retries"]
                out.append(LogLine(m["rid"] if m["rid"] != "-" else "", m["srv"], int(m["status"]),
                                   int(retries.lstrip("+")), retries.startswith("+"), m["term"], m["req"]))
        return out


def _config(port: int, servers: dict[str, int], stats_socket: Path) -> str:
    server_lines = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in servers.items())
    return f"""\
global
    maxconn 512
    # L7 retries (retry-on beyond conn-failure) keep a copy of the request; one that does not fit in a buffer is
    # never retried. CDS Hooks requests with prefetch can be large, so the buffer is generous.
    tune.bufsize 262144
    stats socket {stats_socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    log-format "rid=%[capture.req.hdr(0)] srv=%s status=%ST retries=%rc term=%tsc req=%r"
    option http-buffer-request
    timeout connect 5s
    timeout client {SERVER_TIMEOUT_SECONDS}s
    timeout server {SERVER_TIMEOUT_SECONDS}s
    timeout check {CHECK_TIMEOUT_SECONDS}s
    timeout http-request 30s
    timeout queue 30s
    # Retry on another replica when the connection failed, or when the replica closed it without a byte of answer
    # (killed mid-request). Single-use JWTs make the second case safe (see the module docstring).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend cds
    bind 127.0.0.1:{port}
    capture request header X-Request-Id len 64
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {int(HEALTH_INTERVAL_SECONDS * 1000)}ms fall {HEALTH_FALL} rise {HEALTH_RISE}
    http-response set-header X-Replica %s
{server_lines}
"""
