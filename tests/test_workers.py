"""`cds-onnx serve --workers 2`: two worker processes share one port, both start from the same configuration, and
signed CDS calls succeed through it. A real process on 127.0.0.1 (no pid is exposed over HTTP)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cds_hooks.signing import load_local_key, mint_token
from tests.service_process import CLI, ROOT, free_port

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to read the process tree")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def listening_sockets(pid: int, port: int) -> set[str]:
    """The inodes of the listening sockets for this port that the process holds."""
    try:
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return set()
    socket_inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in socket_inodes:
                found.add(fields[9])
    return found


def listens(pid: int, port: int) -> bool:
    return bool(listening_sockets(pid, port))


def assert_one_socket_each(workers: list[int], port: int) -> set[str]:
    """Each worker listens on its own SO_REUSEPORT socket (the kernel spreads connections over them), none shared."""
    held = {pid: listening_sockets(pid, port) for pid in workers}
    assert all(len(inodes) == 1 for inodes in held.values()), held
    union = set().union(*held.values())
    assert len(union) == len(workers), held
    return union


def test_serve_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CDS_ONNX_STORE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
           "CDS_ONNX_STORE__SPOOL_DIR": str(tmp_path / "spool")}
    subprocess.run([CLI, "keys", "generate", "--dir", "var/keys", "--if-missing"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = tmp_path / "server.log"
    with log.open("ab") as fh:  # --port on the command line: the workers must get it too (through the environment)
        proc = subprocess.Popen([CLI, "serve", "--dev", "--config", "config/development.toml", "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", "2"], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        workers: list[int] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            workers = [pid for pid in children(proc.pid) if listens(pid, port)]
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                ready = False
            started = log.read_text().count("Application startup complete")
            if ready and len(workers) == 2 and started == 2:  # both workers finished start-up
                break
            time.sleep(0.3)
        assert len(workers) == 2, f"worker processes holding port {port}: {workers}\n{log.read_text()}"
        sockets = assert_one_socket_each(workers, port)

        key = load_local_key(ROOT / "var" / "keys")
        url = f"{base}/cds-services"
        with httpx.Client(timeout=30, trust_env=False) as client:
            for _ in range(6):  # a new connection each time, so the kernel hands them to either worker
                resp = client.get(url, headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', url)}",
                                                "Connection": "close"})
                assert resp.status_code == 200, resp.text
                assert any(s["id"] == "ascvd-pce-10y" for s in resp.json()["services"])
        # both workers started the application from the parent's configuration (one start-up line each)
        assert log.read_text().count("Application startup complete") == 2, log.read_text()
        assert all(Path(f"/proc/{pid}").exists() for pid in workers)

        # a worker that dies is replaced, and the replacement takes over the socket the dead one listened on
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            replaced = [pid for pid in children(proc.pid) if listens(pid, port)]
            if len(replaced) == 2 and workers[0] not in replaced and log.read_text().count(
                    "Application startup complete") == 3:
                break
            time.sleep(0.3)
        assert workers[0] not in replaced and len(replaced) == 2, f"{replaced}\n{log.read_text()}"
        assert assert_one_socket_each(replaced, port) == sockets
        resp = httpx.get(f"{base}/readyz", timeout=10, trust_env=False, headers={"Connection": "close"})
        assert resp.status_code == 200
        workers = replaced

        # SIGHUP replaces every worker, one at a time, each on the socket its predecessor had
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            renewed = [pid for pid in children(proc.pid) if listens(pid, port)]
            if len(renewed) == 2 and not set(renewed) & set(workers) and log.read_text().count(
                    "Application startup complete") == 5:
                break
            time.sleep(0.3)
        assert len(renewed) == 2 and not set(renewed) & set(workers), f"{renewed}\n{log.read_text()}"
        assert assert_one_socket_each(renewed, port) == sockets
        workers = renewed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, log.read_text()
    assert not any(Path(f"/proc/{pid}").exists() and "cds-onnx" in Path(f"/proc/{pid}/cmdline").read_text()
                   for pid in workers)
