"""Prefetch and fetch through the whole service, against a real FHIR R4 server (Medplum in memory, on 127.0.0.1)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fhir_server.fixture import FhirTestServer, fhir_server  # noqa: F401  (pytest fixture)

import fhirfactory as F
from cds_hooks.app import create_app
from conftest import SignedClient, make_settings

SERVICE = "/cds-services/ascvd-pce-10y"
DEADLINE = 4.0  # far above what a loaded machine needs for a real answer, far below the 20 s slow fault
MARGIN = 8.0  # scheduling delay allowed on a fully loaded 2-core machine


@pytest.fixture
def api_for(tmp_path: Path, local_key: Any) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(*fhir_servers: str, deadline: float = DEADLINE) -> SignedClient:
        settings = make_settings(tmp_path, prefetch={"deadline_seconds": deadline},
                                 auth={"clients": [{**_client(), "fhir_servers": list(fhir_servers)}]})
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return SignedClient(client, local_key)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _client() -> dict[str, Any]:
    import json

    from conftest import KEYS, TEST_ISSUER

    return {"iss": TEST_ISSUER, "jwks": json.loads((KEYS / "local" / "jwks.json").read_text())}


def load_patient(server: FhirTestServer, pid: str, **kw: Any) -> list[dict[str, Any]]:
    resources = F.pce_record(pid=pid, gender="male", race="white", sbp=150, smoker=True, treated=True, **kw)
    server.load({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})
    return resources


def with_server(server: FhirTestServer, pid: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return F.hook_request(prefetch, pid=pid, fhirServer=server.base_url, fhirAuthorization={
        "access_token": server.token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "cds-onnx"})


def comparable(card: dict[str, Any]) -> tuple[str, str, str]:
    return card["summary"], card["indicator"], card["detail"]


def test_same_card_from_prefetch_or_from_the_fhir_server(fhir_server: FhirTestServer, api_for: Any) -> None:
    pid = "int-" + str(time.time_ns())[-8:]
    resources = load_patient(fhir_server, pid)
    api = api_for(fhir_server.base_url)
    fhir_server.reset_requests()
    fetched = api.post(SERVICE, json=with_server(fhir_server, pid))
    assert fetched.status_code == 200, fetched.text
    seen = fhir_server.requests()
    assert seen and all(r["authorized"] for r in seen)  # the server saw the bearer token on every request
    from cds_hooks.bundle_prefetch import prefetch_from_resources

    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    prefetched = api.post(SERVICE, json=F.hook_request(
        prefetch_from_resources(templates, resources, {"patientId": pid, "userId": "Practitioner/x"}), pid=pid))
    assert comparable(fetched.json()["cards"][0]) == comparable(prefetched.json()["cards"][0])
    assert "10-year ASCVD risk" in fetched.json()["cards"][0]["summary"]


def test_a_mechanical_valve_device_is_found_by_the_fhir_servers_own_device_search(fhir_server: FhirTestServer,
                                                                                    api_for: Any) -> None:
    """The Device search (`type=`, not `code=`) runs on a real FHIR engine: a man of 50 with AF scores 0 without the
    valve; with a mechanical valve recorded only as a Device, no score (valvular AF), and the server was asked."""
    pid = "dev-" + str(time.time_ns())[-8:]
    record = [F.patient(pid, 50, "male"), F.condition("49436004", pid=pid, display="Atrial fibrillation")]
    valve = {"resourceType": "Device", "id": f"{pid}-valve", "status": "active", "patient": {"reference": f"Patient/{pid}"},
             "type": {"coding": [{"system": F.SNOMED, "code": "705991002", "display": "Mechanical heart valve prosthesis"}]}}
    api = api_for(fhir_server.base_url)
    for resources, expected in ((record, "CHA2DS2-VASc 0 "), (record + [valve], "No CHA2DS2-VASc estimate: CHA2DS2-VASc "
                                                                              "is not for valvular AF, and the record shows a mechanical")):
        fhir_server.load({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})
        fhir_server.reset_requests()
        resp = api.post("/cds-services/cha2ds2-vasc", json=with_server(fhir_server, pid))
        assert resp.status_code == 200, resp.text
        assert resp.json()["cards"][0]["summary"].startswith(expected), resp.json()["cards"][0]["summary"]
        assert any(r["path"].startswith("/fhir/R4/Device?") and "type=" in r["path"] for r in fhir_server.requests())


def test_operation_outcome_key_is_refetched(fhir_server: FhirTestServer, api_for: Any) -> None:
    pid = "oo-" + str(time.time_ns())[-8:]
    load_patient(fhir_server, pid)
    api = api_for(fhir_server.base_url)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    fhir_server.reset_requests()
    resp = api.post(SERVICE, json=with_server(fhir_server, pid, {"observation-hdl": outcome}))
    assert resp.status_code == 200
    assert any("2085-9" in r["path"] for r in fhir_server.requests())
    card = resp.json()["cards"][0]
    assert "not calculated" not in card["summary"] and "%" in card["summary"]
    state = api.app.state.cds
    assert state.recorder.flush(10)
    stored = state.store.prediction(state.store.predictions_for_card(card["uuid"])[0]["prediction_id"])
    assert stored["features"]["hdl"]["value"] == 50  # read from the re-fetched key


def test_paging_is_followed(fhir_server: FhirTestServer, api_for: Any) -> None:
    pid = "page-" + str(time.time_ns())[-8:]
    resources = load_patient(fhir_server, pid)
    older = [F.bp_panel(130 + i % 20, pid=pid, days=40 + i) for i in range(105)]  # more than one page (_count=100)
    fhir_server.load({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}} for r in older]})
    api = api_for(fhir_server.base_url, deadline=10.0)  # this test is about paging, not speed
    fhir_server.reset_requests()
    resp = api.post(SERVICE, json=with_server(fhir_server, pid))
    assert resp.status_code == 200, resp.text
    bp_requests = [r for r in fhir_server.requests() if "85354-9" in r["path"] or "_page" in r["path"]
                   or "_offset" in r["path"]]
    assert len(bp_requests) >= 2, fhir_server.requests()
    assert "150 mmHg" in resp.json()["cards"][0]["detail"]  # the newest reading still wins
    assert resources


@pytest.mark.parametrize("fault", ["500", "garbage", "slow"])
def test_failing_fhir_server_gives_412_within_the_deadline(fhir_server: FhirTestServer, api_for: Any,
                                                           fault: str) -> None:
    pid = "fault-" + str(time.time_ns())[-8:]
    load_patient(fhir_server, pid)
    api = api_for(fhir_server.base_url)
    fhir_server.set_fault(f"Patient/{pid}", fault, seconds=20.0)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        resp = api.post(SERVICE, json=with_server(fhir_server, pid))
        elapsed = time.monotonic() - started
    finally:
        fhir_server.clear_faults()
    assert resp.status_code == 412
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome" and "patient" in body["issue"][0]["diagnostics"]
    assert elapsed < DEADLINE + MARGIN < 20.0  # cut at the deadline, long before the slow answer


def test_fhir_server_that_is_down_gives_412_quickly(api_for: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/fhir"  # nothing listens here any more
    api = api_for(base)
    body = F.hook_request(None, fhirServer=base, fhirAuthorization={
        "access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"})
    started = time.monotonic()
    resp = api.post(SERVICE, json=body)
    assert resp.status_code == 412 and time.monotonic() - started < DEADLINE + MARGIN


def test_fhir_server_not_allowed_for_the_client_is_refused_without_connecting(api_for: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    api = api_for("https://ehr.example/fhir")
    try:
        body = F.hook_request(None, fhirServer=f"http://127.0.0.1:{port}/fhir", fhirAuthorization={
            "access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"})
        resp = api.post(SERVICE, json=body)
        assert resp.status_code == 403
        assert resp.json()["issue"][0]["expression"] == ["fhirServer"]
        with pytest.raises(TimeoutError):
            listener.accept()  # no connection was ever attempted
    finally:
        listener.close()
    assert httpx  # imported for type context


def test_invoke_builds_the_request_from_a_live_fhir_server(fhir_server: FhirTestServer, tmp_path: Path) -> None:
    import subprocess

    from service_process import CLI, ROOT, start_service

    pid = "cli-" + str(time.time_ns())[-8:]
    load_patient(fhir_server, pid)
    service = start_service(tmp_path)
    try:
        out = subprocess.run([CLI, "invoke", "ascvd-pce-10y", "--fhir-server", fhir_server.base_url, "--patient", pid,
                              "--token", fhir_server.token, "--url", service.base], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    finally:
        service.stop()
    assert out.returncode == 0, out.stderr
    assert f"fetched from {fhir_server.base_url}:" in out.stderr and "observation-hdl" in out.stderr
    assert "10-year ASCVD risk" in out.stdout and "(intermediate)" in out.stdout
    assert fhir_server.token not in out.stdout + out.stderr
