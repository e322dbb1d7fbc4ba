"""A card goes out only once its prediction is durable, and making it durable costs the request one sync.

The request's worker thread writes its own record to the journal (no hand-off to the journal's thread and back), and
concurrent writers share one write and one fdatasync. A journal that cannot write refuses the card (503). The
journal is emptied only once it has grown long, so a quiet service does not pay a second sync per request to
truncate it. Interleavings are controlled with events, never with sleeps.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
import store.journal as journal_module
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import KEYS, SignedClient, make_settings
from store.journal import Journal, JournalError
from store.recorder import Recorder
from store.store import Store
from test_store import SECRET, prediction

SERVICE = "ascvd-pce-10y"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[SignedClient]:
    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key

    with TestClient(create_app(make_settings(tmp_path))) as client:
        yield SignedClient(client, load_local_key(KEYS / "local"))


def call(api: SignedClient) -> Any:
    templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == SERVICE)["prefetch"]
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    body = {"hook": "patient-view", "hookInstance": "0d8e7a62-5a43-4f0e-9b7e-6c1b2f3a4d55", "context": context,
            "prefetch": prefetch_from_resources(templates, F.pce_record(gender="male", race="white"), context)}
    return api.post(f"/cds-services/{SERVICE}", json=body)


def test_the_request_thread_makes_its_own_record_durable_before_the_answer(
        api: SignedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_by: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced_by.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    resp = call(api)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["cards"]) == 1
    journal = api.app.state.cds.recorder.journal
    assert synced_by and "cds-onnx-journal" not in synced_by  # no hand-off to the journal's thread
    assert journal.fsyncs == len(synced_by)
    # what the answer stands on is on disk: the journal holds the one prediction (pseudonymised)
    lines = journal.path.read_text().splitlines()
    assert len(lines) == 1 and '"service_id":"ascvd-pce-10y"' in lines[0] and '"patient_id":"p1"' not in lines[0]


def test_a_journal_that_cannot_write_refuses_the_card(api: SignedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fdatasync", broken)
    resp = call(api)
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["code"] == "transient" and issue["expression"] == ["prediction"]
    assert "recorded durably" in issue["diagnostics"] and "no card" in issue["diagnostics"]
    recorder = api.app.state.cds.recorder
    assert recorder.flush(10)
    assert recorder.store.predictions() == []  # refused, so nothing was recorded as shown either


def test_concurrent_writers_share_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    first_sync_entered, release = threading.Event(), threading.Event()
    real = os.fdatasync
    calls = 0

    def fdatasync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first writer holds the turn while the others queue behind it
            first_sync_entered.set()
            assert release.wait(30)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    threads = [threading.Thread(target=journal.write, args=(f'{{"n":{i}}}',)) for i in range(5)]
    threads[0].start()
    assert first_sync_entered.wait(30)
    for t in threads[1:]:
        t.start()
    for _ in range(3000):  # until the four others are queued (bounded; no timing assertion)
        with journal._turn:
            if len(journal._pending) == 4:
                break
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(30)
    assert journal.fsyncs == 2 and journal.appended == 5
    assert sorted(journal.path.read_text().splitlines()) == sorted(f'{{"n":{i}}}' for i in range(5))
    journal.close(remove_if_settled=False)


def test_a_failed_sync_fails_every_writer_of_its_batch_and_the_next_batch_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    real = os.fdatasync
    fail = True

    def fdatasync(fd: int) -> None:
        if fail:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", fdatasync)
    with pytest.raises(JournalError, match="No space left"):
        journal.write('{"n":1}')
    assert journal.appended == 0
    fail = False
    journal.write('{"n":2}')
    assert journal.appended == 1
    journal.close(remove_if_settled=False)


def _settled_records(tmp_path: Path, count: int, **kw: Any) -> Journal:
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET)
    store.migrate()
    recorder = Recorder(store, spool_dir=tmp_path / "spool", retry_seconds=0.05, **kw)
    recorder.start()
    for _ in range(count):
        recorder.record(prediction())
        assert recorder.flush(10)  # settled in the database before the next one
    journal = recorder.journal
    assert journal is not None
    recorder.stop()
    return journal


def test_a_short_settled_journal_is_not_truncated_before_each_record(tmp_path: Path) -> None:
    journal = _settled_records(tmp_path, 3)
    assert journal.truncations == 0 and journal.fsyncs == 3  # one sync per record, none to truncate


def test_a_long_settled_journal_is_emptied(tmp_path: Path) -> None:
    journal = _settled_records(tmp_path, 3, journal_max_bytes=1)
    assert journal.truncations == 2  # before the second and the third record


def test_a_write_after_close_fails_every_waiter_instead_of_hanging(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write('{"n":1}')
    journal.close(remove_if_settled=False)
    errors: list[BaseException] = []

    def late() -> None:
        try:
            journal.write('{"n":2}')
        except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
            errors.append(exc)

    threads = [threading.Thread(target=late) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 3 and all(isinstance(e, JournalError) for e in errors)
