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
