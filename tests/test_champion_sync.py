"""A serving process takes its champions from the promotion audit chain at start-up, and refuses (503, naming the
problem) to serve a model whose approved files were changed or whose chain does not verify, instead of guessing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

import fhirfactory as F
from cds_hooks.app import create_app
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import MODELS, SignedClient, make_settings
from inference.promotion import folder_digests
from store.audit import new_record
from store.store import Store

MODEL = "t2d-onset-5y"


def setup(tmp_path: Path) -> tuple[Path, Any]:
    root = tmp_path / "models"
    shutil.copytree(MODELS / MODEL, root / MODEL)
    settings = make_settings(tmp_path, models={"root": str(root)})
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    store.migrate()
    fields = new_record(None, model_id=MODEL, action="promote", from_version="1.0.0", to_version="1.1.0",
                        approver="Dr A", reason="test", evidence={"kind": "acceptance"},
                        files=folder_digests(root / MODEL / "1.1.0"))
    store.append_audit(fields)
    store.dispose()
    return root, settings


def call(api: SignedClient) -> Any:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == MODEL)
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    resources = [F.patient("p1", 58, "male"), F.quantity_obs("39156-5", 33.5, "kg/m2"), F.bp_panel(142),
                 F.quantity_obs("2085-9", 38, "mg/dL")]
    body = {"hook": "patient-view", "hookInstance": "3c6a6a4e-0a56-4b8e-9f2d-6f1f0d8e2b11", "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], resources, context)}
    return api.post(f"/cds-services/{MODEL}", json=body)


def test_the_governed_champion_is_served_from_the_first_request(tmp_path: Path, local_key: Any) -> None:
    _, settings = setup(tmp_path)
    with TestClient(create_app(settings)) as client:
        api = SignedClient(client, local_key)
        assert call(api).status_code == 200
        state = client.app.state.cds
        assert state.recorder.flush(10)
        rows = state.store.predictions(model_id=MODEL)
        assert {(r["alias"], r["model_version"]) for r in rows} == {("champion", "1.1.0"), ("challenger", "1.0.0")}
        metrics = client.get("/metrics").text
        assert f'cds_model_validated{{alias="champion",model="{MODEL}",version="1.1.0"}} 1.0' in metrics
        assert f'alias="champion",model="{MODEL}",version="1.0.0"' not in metrics


def test_changed_approved_files_stop_the_model_not_the_service(tmp_path: Path, local_key: Any) -> None:
    root, settings = setup(tmp_path)
    golden = root / MODEL / "1.1.0" / "golden.yaml"
    golden.write_text(golden.read_text() + "\n# edited after approval\n")
    with TestClient(create_app(settings)) as client:
        api = SignedClient(client, local_key)
        resp = call(api)
        assert resp.status_code == 503
        diagnostics = resp.json()["issue"][0]["diagnostics"]
        assert diagnostics == (f"model {MODEL} is not served: the files of {MODEL} 1.1.0 differ from those approved "
                               "in audit record #1 (changed: golden.yaml)")
        assert client.get("/healthz").status_code == 200  # the other models (none here) and the service stay up


def test_a_broken_chain_stops_the_model(tmp_path: Path, local_key: Any) -> None:
    _, settings = setup(tmp_path)
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER promotion_audit_no_update"))
        conn.execute(text("UPDATE promotion_audit SET to_version = '1.0.0', from_version = '1.1.0'"))
    store.dispose()
    with TestClient(create_app(settings)) as client:
        resp = call(SignedClient(client, local_key))
        assert resp.status_code == 503
        assert "its promotion audit chain does not verify: record #1" in resp.json()["issue"][0]["diagnostics"]


def test_every_replica_sharing_the_store_switches_when_one_promotion_is_recorded(tmp_path: Path,
                                                                                 local_key: Any) -> None:
    """Two replicas (two apps on one database): a promotion written once moves the champion in both, while they run."""
    import time

    root = tmp_path / "models"
    shutil.copytree(MODELS / MODEL, root / MODEL)
    shared = {"url": f"sqlite:///{tmp_path / 'shared.sqlite3'}"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    replicas = [create_app(make_settings(tmp_path / name, models={"root": str(root)}, store=shared))
                for name in ("a", "b")]
    with TestClient(replicas[0]) as a, TestClient(replicas[1]) as b:
        clients = [a, b]
        for c in clients:
            c.app.state.cds.champion_sync.poll_seconds = 0.2
            assert c.app.state.cds.repository.entries[MODEL].champion.version == "1.0.0"
        store = a.app.state.cds.store
        store.append_audit(new_record(None, model_id=MODEL, action="promote", from_version="1.0.0",
                                      to_version="1.1.0", approver="Dr A", reason="evidence met",
                                      evidence={}, files=folder_digests(root / MODEL / "1.1.0")))
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a speed assertion
        while time.monotonic() < deadline and any(
                c.app.state.cds.repository.entries[MODEL].champion.version != "1.1.0" for c in clients):
            time.sleep(0.1)
        for c in clients:
            api = SignedClient(c, local_key)
            assert call(api).status_code == 200
            assert c.app.state.cds.recorder.flush(10)
        rows = store.predictions(model_id=MODEL)
        assert {(r["alias"], r["model_version"]) for r in rows} == {("champion", "1.1.0"), ("challenger", "1.0.0")}
        assert len(rows) == 4  # each replica recorded one champion and one shadow prediction
