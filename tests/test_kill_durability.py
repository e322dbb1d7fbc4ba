"""A process killed with SIGKILL during a stream of feedback posts loses none of the feedback answered 200."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from cds_hooks.signing import load_local_key, mint_token
from service_process import ROOT, free_port, start_service
from store.store import Store

SECRET = "development-only-pseudonymisation-key"  # config/development.toml


def test_sigkill_during_feedback_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    service = start_service(tmp_path, port=port, name="first")
    key = load_local_key(ROOT / "var" / "keys")
    url = f"{service.base}/cds-services/ascvd-pce-10y/feedback"
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()
    base_time = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def stream() -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set():
                card = str(uuid.uuid4())
                stamp = (base_time + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
                body = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": stamp}]}
                try:
                    resp = client.post(url, json=body,
                                       headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', url)}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if resp.status_code == 200:
                    acknowledged.append((card, stamp))
                i += 1

    writer = threading.Thread(target=stream)
    writer.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    service.stop(signal.SIGKILL)  # no shutdown hooks run
    stop.set()
    writer.join(10)
    assert len(acknowledged) >= 40, service.log.read_text()[-2000:]

    restarted = start_service(tmp_path, port=port, name="second")
    try:
        store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", SECRET.encode())
        stored = {row["card_uuid"] for row in store.feedback_joined()}
        lost = [card for card, _ in acknowledged if card not in stored]
        assert not lost, f"{len(lost)} acknowledged feedback items lost"
        store.dispose()
    finally:
        restarted.stop()


def test_sigkill_under_concurrent_service_calls_loses_no_answered_prediction(tmp_path: Path) -> None:
    """Every card answered 200 has its prediction in the store after a SIGKILL and a restart (journal replay)."""
    import fhirfactory as F
    from cds_hooks.bundle_prefetch import prefetch_from_resources

    port = free_port()
    service = start_service(tmp_path, port=port, name="first")
    key = load_local_key(ROOT / "var" / "keys")
    url = f"{service.base}/cds-services/ascvd-pce-10y"
    with httpx.Client(timeout=10) as client:
        discovery = client.get(f"{service.base}/cds-services",
                               headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', service.base + '/cds-services')}"})
        templates = next(s for s in discovery.json()["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    prefetch = prefetch_from_resources(templates, F.pce_record(gender="male", race="white"), context)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
                        "prefetch": prefetch}
                try:
                    resp = client.post(url, json=body,
                                       headers={"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', url)}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if resp.status_code == 200:
                    with lock:
                        answered.extend(card["uuid"] for card in resp.json()["cards"])

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    service.stop(signal.SIGKILL)  # no shutdown hooks, no queue drain
    stop.set()
    for t in threads:
        t.join(15)
    assert len(answered) >= 60, service.log.read_text()[-2000:]

    restarted = start_service(tmp_path, port=port, name="second")  # replays the killed process's journal
    try:
        store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", SECRET.encode())
        deadline = time.monotonic() + 30
        lost = answered
        while lost and time.monotonic() < deadline:
            lost = [card for card in answered if not store.predictions_for_card(card)]
            time.sleep(0.2)
        assert not lost, f"{len(lost)} of {len(answered)} answered predictions lost"
        journals = list((tmp_path / "spool").glob("journal-*.jsonl"))
        assert all("p1" not in p.read_text().split('"patient_id":')[1][:6] for p in journals if p.stat().st_size)
        store.dispose()
    finally:
        restarted.stop()
