"""Governed promotion end to end (issue #14): `cds-onnx models promote` refuses a challenger whose shadow evidence does
not meet the champion's acceptance criteria, naming every failing one; accepts it once enough good evidence is
recorded, on the audit record; a running service switches champion without a restart; rollback is audited too.

Shadow predictions and outcomes are written through the Store's API (tests/shadow_evidence.py, seeded); the
evidence comes from monitoring.evidence.paired_evidence. The model repository is a temporary copy of the T2D demo
model, so the test owns its files. Every wait is a deadline on an observable state, never a timing assertion.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.signing import load_local_key, mint_token
from service_process import ROOT, start_service
from shadow_evidence import MODEL, record_shadow
from store.audit import verify_chain
from store.store import Store

SECRET = "development-only-pseudonymisation-key"  # config/development.toml
SWITCH_SECONDS = 60  # generous deadline for a loaded machine; the service polls every 2 s


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[dict[str, Any]]:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / MODEL, models / MODEL)
    env = {**os.environ, "CDS_ONNX_MODELS__ROOT": str(models),
           "CDS_ONNX_STORE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
           "CDS_ONNX_STORE__SPOOL_DIR": str(tmp_path / "spool")}
    store = Store(env["CDS_ONNX_STORE__URL"], SECRET.encode())
    store.migrate()
    yield {"tmp": tmp_path, "models": models, "env": env, "store": store}
    store.dispose()


def cli(ws: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", *args, "--config", "config/development.toml"],
                          cwd=ROOT, env=ws["env"], capture_output=True, text=True, timeout=300)


def promote(ws: dict[str, Any], version: str = "1.1.0") -> subprocess.CompletedProcess[str]:
    return cli(ws, "models", "promote", MODEL, "--version", version, "--approver", "Dr Grace Reviewer",
               "--reason", "Shadow evidence review, governance board 2025-03")


def failing(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """criterion -> its refusal line, from the ✗ lines a refusal prints."""
    lines = [ln.strip()[2:] for ln in result.stderr.splitlines() if ln.strip().startswith("✗ ")]
    return {ln.split(":", 1)[0]: ln for ln in lines}


def folder_sha256(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_promotion_is_refused_until_the_evidence_meets_the_criteria_then_audited(workspace: dict[str, Any]) -> None:
    store: Store = workspace["store"]
    record_shadow(store, seed=1, n=60)  # 5 events
    first = promote(workspace)
    assert first.returncode == 1, first.stdout
    assert "refused: t2d-onset-5y 1.1.0 does not meet 4 of the 4 acceptance criteria of the champion 1.0.0" in \
        first.stderr
    fails = failing(first)
    assert list(fails) == ["events", "non-inferior discrimination", "calibration slope", "calibration intercept"]
    assert fails["events"] == "events: observed 5 events in 60 paired predictions; required at least 20"
    assert "not computable" in fails["non-inferior discrimination"]
    assert "Traceback" not in first.stderr and store.audit_records() == []

    record_shadow(store, seed=2, n=100, first_patient=1000, miscalibration=1.2)  # 36 more, challenger under-predicts
    second = promote(workspace)
    assert second.returncode == 1
    fails = failing(second)
    assert list(fails) == ["calibration intercept"], second.stderr
    observed = re.search(r"observed (-?[0-9.]+) \(95% CI (-?[0-9.]+) to (-?[0-9.]+)\)", fails["calibration intercept"])
    assert observed is not None and float(observed.group(1)) > 0.2  # events under-predicted: a positive intercept
    assert fails["calibration intercept"].endswith("required within [-0.2, 0.2]")
    assert store.audit_records() == []

    record_shadow(store, seed=6, n=1400, first_patient=5000)  # well-calibrated evidence
    third = promote(workspace)
    assert third.returncode == 0, third.stderr
    assert "promoted t2d-onset-5y 1.0.0 -> 1.1.0 (audit record #1" in third.stdout
    assert "✓ calibration intercept" in third.stdout
    [rec] = store.audit_records(MODEL)
    assert (rec.action, rec.from_version, rec.to_version) == ("promote", "1.0.0", "1.1.0")
    assert rec.approver == "Dr Grace Reviewer" and rec.reason.startswith("Shadow evidence review")
    assert json.loads(rec.files) == folder_sha256(workspace["models"] / MODEL / "1.1.0")
    assert {"model.onnx", "manifest.yaml", "features.yaml", "golden.yaml"} <= set(json.loads(rec.files))
    evidence = json.loads(rec.evidence)
    assert rec.evidence_digest == hashlib.sha256(rec.evidence.encode()).hexdigest()
    assert evidence["criteria_applied"] is True and all(c["passed"] for c in evidence["criteria"])
    assert evidence["paired_evidence"]["pairs"] == 1560 and evidence["paired_evidence"]["events"] > 20
    assert evidence["acceptance"]["non_inferiority_margin"] == 0.02
    assert re.fullmatch(r"[0-9a-f]{64}", evidence["paired_evidence_digest"])

    again = promote(workspace)
    assert again.returncode == 1 and "1.1.0 is already the champion of t2d-onset-5y" in again.stderr

    history = cli(workspace, "models", "history", MODEL)
    assert history.returncode == 0 and "chain verified (1 record)" in history.stdout
    assert "promote 1.0.0 -> 1.1.0 by Dr Grace Reviewer" in history.stdout

    back = cli(workspace, "models", "rollback", MODEL, "--approver", "Dr Grace Reviewer", "--reason",
               "Cards disagree with clinicians' judgement")
    assert back.returncode == 0, back.stderr
    assert "rolled back t2d-onset-5y 1.1.0 -> 1.0.0 (audit record #2" in back.stdout
    records = store.audit_records(MODEL)
    assert [(r.action, r.from_version, r.to_version) for r in records] == [("promote", "1.0.0", "1.1.0"),
                                                                         ("rollback", "1.1.0", "1.0.0")]
    assert json.loads(records[1].evidence)["criteria_applied"] is False
    assert json.loads(records[1].files) == folder_sha256(workspace["models"] / MODEL / "1.0.0")
    assert verify_chain(MODEL, records).ok
    twice = cli(workspace, "models", "rollback", MODEL, "--approver", "x", "--reason", "y")
    assert twice.returncode == 1 and "has no promotion to roll back" in twice.stderr
    assert "chain verified (2 records)" in cli(workspace, "models", "history", MODEL).stdout


def test_a_version_that_is_not_loaded_and_an_unnamed_approver_are_refused(workspace: dict[str, Any]) -> None:
    missing = promote(workspace, "9.9.9")
    assert missing.returncode == 1
    assert ("refused: 9.9.9 is not a loaded, valid version folder of t2d-onset-5y (loaded versions: 1.0.0, 1.1.0)"
            in missing.stderr)
    nobody = cli(workspace, "models", "promote", MODEL, "--version", "1.1.0", "--approver", "  ", "--reason", "r")
    assert nobody.returncode == 1 and "--approver is empty" in nobody.stderr
    unknown = cli(workspace, "models", "promote", "no-such-model", "--version", "1", "--approver", "a",
                  "--reason", "r")
    assert unknown.returncode == 1 and "no model 'no-such-model'" in unknown.stderr
    forced = cli(workspace, "models", "promote", MODEL, "--version", "1.1.0", "--approver", "a", "--reason", "r",
                 "--force")
    assert forced.returncode == 2 and "No such option" in forced.stderr  # governance: there is no --force
    assert workspace["store"].audit_records() == []


# ---- the running service switches champion without a restart ---------------------------------------------------
def t2d_record(pid: str) -> list[dict[str, Any]]:
    return [F.patient(pid, 58, "male"), F.quantity_obs("39156-5", 33.5, "kg/m2", pid=pid),
            F.bp_panel(142, pid=pid), F.quantity_obs("2085-9", 38, "mg/dL", pid=pid),
            F.condition("714628002", display="Prediabetes", pid=pid)]


def hook_instance(pid: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"promotion-test/{pid}"))


def call_t2d(base: str, pid: str) -> dict[str, Any]:
    key = load_local_key(ROOT / "var" / "keys")
    disc_url = f"{base}/cds-services"
    services = httpx.get(disc_url, headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', disc_url)}"},
                         timeout=60).json()["services"]
    entry = next(s for s in services if s["id"] == MODEL)
    context = {"userId": "Practitioner/example", "patientId": pid}
    body = {"hook": "patient-view", "hookInstance": hook_instance(pid), "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], t2d_record(pid), context)}
    url = f"{base}/cds-services/{MODEL}"
    resp = httpx.post(url, json=body, headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', url)}"},
                      timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def champion_version_recorded(store: Store, pid: str) -> str | None:
    """The version whose prediction for this hook call was recorded as the champion (None until written)."""
    for row in store.predictions(hook_instance=hook_instance(pid)):
        if row["alias"] == "champion":
            return str(row["model_version"])
    return None


def wait_for_champion(base: str, store: Store, version: str, prefix: str) -> tuple[dict[str, Any], str]:
    deadline = time.monotonic() + SWITCH_SECONDS
    i = 0
    while time.monotonic() < deadline:
        i += 1
        pid = f"{prefix}-{i}"
        body = call_t2d(base, pid)
        seen = None
        record_deadline = time.monotonic() + SWITCH_SECONDS
        while seen is None and time.monotonic() < record_deadline:
            seen = champion_version_recorded(store, pid)
            if seen is None:
                time.sleep(0.2)
        if seen == version:
            return body, pid
        time.sleep(0.5)
    raise AssertionError(f"the service did not switch to champion {version} within {SWITCH_SECONDS} s")


def shadow_rows(store: Store, pid: str) -> list[dict[str, Any]]:
    """The call's challenger rows, once the service's recorder has written them (it writes off the request path, and
    the champion's row may land in an earlier transaction)."""
    deadline = time.monotonic() + SWITCH_SECONDS
    while True:
        rows = [r for r in store.predictions(hook_instance=hook_instance(pid)) if r["alias"] == "challenger"]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def risk_assessment_method(body: dict[str, Any]) -> str:
    [card] = body["cards"]
    resources = [a["resource"] for s in card.get("suggestions", []) for a in s.get("actions", [])
                 if isinstance(a.get("resource"), dict)]
    [ra] = [r for r in resources if r.get("resourceType") == "RiskAssessment"]
    return str(ra["method"])


def test_a_running_service_switches_champion_without_a_restart(workspace: dict[str, Any]) -> None:
    store: Store = workspace["store"]
    record_shadow(store, seed=6, n=1400)
    service = start_service(workspace["tmp"], extra_env={"CDS_ONNX_MODELS__ROOT": str(workspace["models"])})
    try:
        body = call_t2d(service.base, "before")
        assert "1.0.0" in risk_assessment_method(body)
        model = httpx.get(f"{service.base}/models/{MODEL}", timeout=60).json()
        assert (model["champion"], model["challenger"], model["history"]["records"]) == ("1.0.0", "1.1.0", 0)

        promoted = promote(workspace)
        assert promoted.returncode == 0, promoted.stderr
        body, pid = wait_for_champion(service.base, store, "1.1.0", "after")
        assert service.proc.poll() is None  # the same process: no restart
        assert "1.1.0" in risk_assessment_method(body)
        shadow = shadow_rows(store, pid)
        assert [r["model_version"] for r in shadow] == ["1.0.0"]  # the replaced champion runs in shadow

        model = httpx.get(f"{service.base}/models/{MODEL}", timeout=60).json()
        assert (model["champion"], model["challenger"], model["version"]) == ("1.1.0", "1.0.0", "1.1.0")
        [entry] = model["history"]["entries"]
        assert (entry["action"], entry["from_version"], entry["to_version"], entry["approver"]) == \
            ("promote", "1.0.0", "1.1.0", "Dr Grace Reviewer")
        assert entry["evidence_digest"] == store.audit_records(MODEL)[0].evidence_digest
        assert model["history"]["verified"] is True

        old = httpx.get(f"{service.base}/models/{MODEL}/card", params={"version": "1.0.0"}, timeout=60)
        assert old.status_code == 200
        assert "You are reading version 1.0.0, the challenger" in old.text
        card = httpx.get(f"{service.base}/models/{MODEL}/card", timeout=60).text
        assert "version 1.1.0 (champion)" in card and "Dr Grace Reviewer" in card
        assert "promote 1.0.0 → 1.1.0" in card and "chain verified (1 record)" in card
        assert httpx.get(f"{service.base}/models/{MODEL}", params={"version": "1.0.0"},
                         timeout=60).json()["alias"] == "challenger"
        unknown = httpx.get(f"{service.base}/models/{MODEL}/card", params={"version": "2.0.0"}, timeout=60)
        assert unknown.status_code == 404
        assert "no loaded version '2.0.0' (versions: 1.0.0, 1.1.0)" in unknown.text

        back = cli(workspace, "models", "rollback", MODEL, "--approver", "Dr Grace Reviewer", "--reason",
                   "Rollback drill")
        assert back.returncode == 0, back.stderr
        body, _ = wait_for_champion(service.base, store, "1.0.0", "rolled-back")
        assert "1.0.0" in risk_assessment_method(body) and service.proc.poll() is None
        model = httpx.get(f"{service.base}/models/{MODEL}", timeout=60).json()
        assert (model["champion"], model["history"]["records"]) == ("1.0.0", 2)
    finally:
        service.stop()
