"""`make run`'s commands start the real service process; `cds-onnx invoke` against it returns a card."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import fhirfactory as F
from service_process import CLI, ROOT, start_service


@pytest.fixture(scope="module")
def running_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = start_service(tmp_path_factory.mktemp("service"))
    try:
        yield service.base
    finally:
        service.stop()


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
