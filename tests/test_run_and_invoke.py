"""`make run`'s commands start the real service process; `cds-onnx invoke` against it returns a card (also for the
README's saved Synthea record, moved to today with --shift-to-today)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import fhirfactory as F
from cds_hooks.time_shift import newest_clinical_date, shift_days
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


README_EXAMPLE = re.compile(r"^\.venv/bin/cds-onnx (invoke .*--shift-to-today.*)$", re.M)


def test_the_readme_example_with_shift_to_today_returns_a_risk_card(running_service: str) -> None:
    """Exactly the README's command (with --url for this test's port): a saved Synthea record, moved to today."""
    match = README_EXAMPLE.search((ROOT / "README.md").read_text())
    assert match, "README.md has no `cds-onnx invoke ... --shift-to-today` example"
    args = shlex.split(match[1])
    bundle = Path(args[args.index("--bundle") + 1])
    assert (ROOT / bundle).is_file(), f"the README's example names {bundle}, which does not exist"
    out = subprocess.run([CLI, *args, "--url", running_service], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"moved every date by \+\d+ days", out.stderr), out.stderr
    assert re.search(r"10-year ASCVD risk \d+(\.\d)?% \((low|borderline|intermediate|high)\)", out.stdout), out.stdout
    assert "not calculated" not in out.stdout and "No 10-year ASCVD risk estimate" not in out.stdout
    assert "Save 10-year ASCVD risk to the chart" in out.stdout

    # the same record as saved: its data is older than the look-back windows, so no number (why the flag exists)
    unshifted = [a for a in args if a != "--shift-to-today"]
    out = subprocess.run([CLI, *unshifted, "--url", running_service, "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "not calculated" in json.loads(out.stdout)["cards"][0]["summary"]


def test_shift_to_today_moves_the_dates_the_service_receives(running_service: str, tmp_path: Path) -> None:
    """An old record (the PCE worked example dated ten years back) gets its card once moved to today."""
    record = F.bundle(F.pce_record(gender="male", race="white"), "transaction")
    old = shift_days(record, -3650)
    bundle = tmp_path / "old.json"
    bundle.write_text(json.dumps(old))
    base = [CLI, "invoke", "ascvd-pce-10y", "--bundle", str(bundle), "--url", running_service, "--json"]
    stale = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "not calculated" in json.loads(stale.stdout)["cards"][0]["summary"], stale.stdout
    moved = subprocess.run([*base, "--shift-to-today"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0, moved.stderr
    newest = newest_clinical_date(old)
    assert newest is not None
    assert f"newest clinical entry {newest.isoformat()} -> " in moved.stderr
    assert "today)" in moved.stderr  # "today" or "yesterday, as its time of day is still to come today"
    assert json.loads(moved.stdout)["cards"][0]["summary"].startswith("10-year ASCVD risk 5.4%")


def test_shift_to_today_needs_a_bundle() -> None:
    out = subprocess.run([CLI, "invoke", "ascvd-pce-10y", "--fhir-server", "http://127.0.0.1:9/fhir", "--patient", "1",
                          "--shift-to-today", "--no-auth"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--shift-to-today moves the dates of a --bundle file" in out.stderr, out.stderr
