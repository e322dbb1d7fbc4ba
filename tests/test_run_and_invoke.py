"""`make run`'s commands start the real service process; `cds-onnx invoke` against it returns a card."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import fhirfactory as F

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "cds-onnx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def running_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("service")
    port = free_port()
    env = {**os.environ, "CDS_ONNX_SERVER__PORT": str(port),
           "CDS_ONNX_STORE__URL": f"sqlite:///{tmp / 'store.sqlite3'}",
           "CDS_ONNX_STORE__SPOOL_DIR": str(tmp / "spool")}
    # the same two commands `make run` runs
    subprocess.run([CLI, "keys", "generate", "--dir", "var/keys", "--if-missing"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([CLI, "serve", "--config", "config/development.toml"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(tmp / 'server.log').read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not become ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_invoke_with_a_bundle_returns_a_card(running_service: str, tmp_path: Path) -> None:
    bundle = tmp_path / "patient.json"
    bundle.write_text(json.dumps(F.bundle(F.pce_record(gender="male", race="white"), "transaction")))
    out = subprocess.run([CLI, "invoke", "ascvd-pce-10y", "--bundle", str(bundle), "--url", running_service],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "10-year ASCVD risk 5.4% (borderline)" in out.stdout
    assert "Save 10-year ASCVD risk to the chart" in out.stdout

    as_json = subprocess.run([CLI, "invoke", "ascvd-pce-10y", "--bundle", str(bundle), "--url", running_service,
                              "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    cards = json.loads(as_json.stdout)["cards"]
    assert cards[0]["indicator"] == "info" and cards[0]["summary"].startswith("10-year ASCVD risk 5.4%")


def test_unsigned_calls_are_refused_by_the_shipped_configuration(running_service: str) -> None:
    resp = httpx.get(f"{running_service}/cds-services", timeout=5)
    assert resp.status_code == 401 and resp.content == b""
