"""Start the real `cds-onnx serve` process for tests, on 127.0.0.1 with a free port, and stop it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "cds-onnx")


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux: 32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on now, below the range the kernel gives outgoing connections. A port from bind(0) is
    in that range, and any connection opened meanwhile (a test's HTTP client, a database session, haproxy's to a
    replica) can take it as its local port before the server binds it: "address already in use" at start-up."""
    low = _ephemeral_low()
    if low > 11000:
        for _ in range(200):
            port = random.randrange(10000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:  # no room below the range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Signal a child process and wait for it; kill it if it has not gone after 15 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_service(tmp: Path, *, port: int | None = None, extra_env: dict[str, str] | None = None,
                  name: str = "server") -> ServiceProcess:
    """`cds-onnx serve --config config/development.toml` with the store and port overridden by environment."""
    port = port or free_port()
    env = {**os.environ, "CDS_ONNX_SERVER__PORT": str(port),
           "CDS_ONNX_STORE__URL": f"sqlite:///{tmp / 'store.sqlite3'}",
           "CDS_ONNX_STORE__SPOOL_DIR": str(tmp / "spool"), **(extra_env or {})}
    subprocess.run([CLI, "keys", "generate", "--dir", "var/keys", "--if-missing"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = tmp / f"{name}.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([CLI, "serve", "--dev", "--config", "config/development.toml"], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return ServiceProcess(proc, base, log)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not become ready: {log.read_text()}")
