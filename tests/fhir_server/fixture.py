"""Starts the test FHIR server (server.mjs, Medplum in memory) on 127.0.0.1 and exposes it as a pytest fixture.

Exists so every test that needs a real FHIR R4 server (prefetch, end-to-end service calls) shares one process
per session and drives its request log and fault knobs through a typed object instead of raw HTTP.

Use from a test module or conftest (tests/ is on sys.path under pytest's default import mode)::

    from fhir_server.fixture import fhir_server  # noqa: F401  (re-exported pytest fixture)

If node or the npm packages are missing the fixture skips with a message naming tests/fhir_server/setup.sh.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import pytest

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "server.mjs"
FaultKind = Literal["500", "garbage", "not-fhir", "slow", "foreign-next"]


class FhirServerUnavailable(RuntimeError):
    """Node or the npm packages of the test server are not installed."""


class FhirTestServer:
    """A running server.mjs process: FHIR base URL, bearer token, data loading, request log and faults."""

    def __init__(self, token: str | None = None, start_timeout: float = 60.0) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self.origin = ""
        self.base_url = ""

    def start(self) -> Self:
        node = shutil.which("node")
        if node is None:
            raise FhirServerUnavailable("node is not installed (Node.js 20+ is needed for tests/fhir_server)")
        if not (HERE / "node_modules" / "@medplum" / "fhir-router").is_dir():
            raise FhirServerUnavailable("npm packages missing: run tests/fhir_server/setup.sh")
        env = {**os.environ, "FHIR_TOKEN": self.token, "FHIR_PORT": "0"}
        self._proc = subprocess.Popen(
            [node, "--experimental-websocket", "--no-warnings", str(SERVER_SCRIPT)],
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line = self._read_first_line()
        info = json.loads(line)
        self.origin = f"http://127.0.0.1:{info['listening']}"
        self.base_url = self.origin + info["base_path"]
        return self

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def _read_first_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self._start_timeout)
        if not result or not result[0].strip():
            self.stop()
            raise RuntimeError("test FHIR server did not start: " + "".join(self._stderr)[-2000:])
        return result[0]

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- FHIR data -------------------------------------------------------------------------------------------
    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction/batch Bundle to the FHIR base; raise if any entry failed. Returns the response Bundle."""
        response = httpx.post(
            self.base_url + "/",
            json=bundle,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json"},
            timeout=30,
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        bad = [e["response"] for e in answer.get("entry", []) if not str(e["response"]["status"]).startswith("2")]
        if bad:
            raise AssertionError(f"test FHIR server rejected {len(bad)} entries: {bad[:3]}")
        return answer

    def clear_data(self) -> None:
        """Empty the in-memory repository."""
        httpx.delete(self.origin + "/__data", timeout=10).raise_for_status()

    # -- request log -----------------------------------------------------------------------------------------
    def requests(self) -> list[dict[str, Any]]:
        """Every FHIR request seen since the last reset: {"method", "path" (path+query), "authorized", "accept"}."""
        response = httpx.get(self.origin + "/__requests", timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def reset_requests(self) -> None:
        httpx.delete(self.origin + "/__requests", timeout=10).raise_for_status()

    # -- faults ----------------------------------------------------------------------------------------------
    def set_fault(self, path_prefix: str, kind: FaultKind, seconds: float = 0.0) -> None:
        """Make requests whose path+query (relative to the FHIR base) starts with path_prefix misbehave.

        kinds: "500" (HTTP 500), "garbage" (200 with a non-JSON body), "not-fhir" (200 with JSON that is not a
        resource), "slow" (answer normally after `seconds`), "foreign-next" (searchset `next` link on another origin).
        """
        response = httpx.post(
            self.origin + "/__faults", json={"path_prefix": path_prefix, "kind": kind, "seconds": seconds}, timeout=10
        )
        response.raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(self.origin + "/__faults", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    """One test FHIR server per session. Faults and the request log persist: clear them in your own tests."""
    server = FhirTestServer()
    try:
        server.start()
    except FhirServerUnavailable as exc:
        pytest.skip(f"test FHIR server unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()
