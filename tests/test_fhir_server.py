"""The test FHIR server itself: token check, request log, the searches prefetch relies on, paging and fault knobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhir_server.fixture import FhirServerUnavailable, FhirTestServer, fhir_server  # noqa: F401  (pytest fixture)
from fhir_server.synthetic import new_patient_id, patient_bundle, patient_resources


@pytest.fixture
def server(fhir_server: FhirTestServer) -> Iterator[FhirTestServer]:  # noqa: F811
    fhir_server.clear_faults()
    fhir_server.reset_requests()
    yield fhir_server
    fhir_server.clear_faults()


def get(server: FhirTestServer, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token or server.token}"}
    return httpx.get(f"{server.base_url}/{path}", headers=headers, timeout=10)


def ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_listens_on_loopback_under_a_fhir_base_path(server: FhirTestServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.base_url.endswith("/fhir/R4")


def test_wrong_token_gets_401_and_is_recorded_as_unauthorized(server: FhirTestServer) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid))
    server.reset_requests()
    assert get(server, f"Patient/{pid}", token="wrong").status_code == 401
    assert httpx.get(f"{server.base_url}/Patient/{pid}", timeout=10).status_code == 401
    assert get(server, f"Patient/{pid}").status_code == 200
    seen = server.requests()
    assert [r["authorized"] for r in seen] == [False, False, True]
    assert seen[-1]["path"] == f"/fhir/R4/Patient/{pid}"
    assert seen[-1]["accept"] == "application/fhir+json"


def test_searches_used_by_prefetch(server: FhirTestServer) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid))
    assert get(server, f"Patient/{pid}").json()["birthDate"] == "1965-04-12"
    chol = get(server, f"Observation?patient={pid}&code=http://loinc.org|2093-3").json()
    assert chol["type"] == "searchset" and ids(chol) == {f"{pid}-chol"}
    bp = get(server, f"Observation?patient=Patient/{pid}&code=85354-9").json()
    assert ids(bp) == {f"{pid}-bp"}
    assert ids(get(server, f"Condition?patient={pid}").json()) == {f"{pid}-htn"}
    assert ids(get(server, f"MedicationRequest?patient={pid}&status=active").json()) == {f"{pid}-med-active"}
    assert len(get(server, f"MedicationRequest?patient={pid}").json()["entry"]) == 2
    assert get(server, "Patient/does-not-exist").status_code == 404


def test_count_paging_has_next_links_until_the_last_page(server: FhirTestServer) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid, extra_cholesterol=4))  # 5 results for 2093-3
    url = f"Observation?patient={pid}&code=2093-3&_count=2"
    seen: set[str] = set()
    pages = 0
    while url:
        page = httpx.get(url if url.startswith("http") else f"{server.base_url}/{url}",
                         headers={"Authorization": f"Bearer {server.token}"}, timeout=10).json()
        assert page["total"] == 5
        seen |= ids(page)
        pages += 1
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert pages == 3 and len(seen) == 5


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("500", lambda r: r.status_code == 500),
        ("garbage", lambda r: r.status_code == 200 and r.text.startswith("<html>")),
        ("not-fhir", lambda r: r.status_code == 200 and "resourceType" not in r.json()),
    ],
)
def test_faults_apply_to_their_prefix_only_and_clear(server: FhirTestServer, kind: str, check) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid))
    server.set_fault(f"Patient/{pid}", kind)
    assert check(get(server, f"Patient/{pid}"))
    assert get(server, f"Condition?patient={pid}").status_code == 200
    server.clear_faults()
    assert get(server, f"Patient/{pid}").json()["resourceType"] == "Patient"


def test_slow_fault_delays_the_answer(server: FhirTestServer) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid))
    server.set_fault(f"Patient/{pid}", "slow", seconds=0.6)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.base_url}/Patient/{pid}", headers={"Authorization": f"Bearer {server.token}"},
                  timeout=0.3)


def test_foreign_next_fault_moves_next_link_to_another_origin(server: FhirTestServer) -> None:
    pid = new_patient_id()
    server.load(patient_bundle(pid, extra_cholesterol=3))
    server.set_fault(f"Observation?patient={pid}", "foreign-next")
    page = get(server, f"Observation?patient={pid}&code=2093-3&_count=2").json()
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert nxt.startswith("http://localhost:")


def test_bad_fault_is_rejected(server: FhirTestServer) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        server.set_fault("Patient", "explode")  # type: ignore[arg-type]


def test_seed_file_is_loaded_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = new_patient_id()
    seed = tmp_path / "seed.ndjson"
    seed.write_text("\n".join(json.dumps(r) for r in patient_resources(pid)) + "\n")
    monkeypatch.setenv("FHIR_SEED_FILE", str(seed))
    seeded = FhirTestServer()
    try:
        seeded.start()
    except FhirServerUnavailable as exc:
        pytest.skip(f"test FHIR server unavailable: {exc}")
    try:
        assert get(seeded, f"Condition?patient={pid}").json()["total"] == 1
        assert get(seeded, f"Patient/{pid}").status_code == 200
    finally:
        seeded.stop()


def test_missing_npm_packages_are_reported_as_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fhir_server.fixture as fixture_module

    monkeypatch.setattr(fixture_module, "HERE", tmp_path)
    with pytest.raises(FhirServerUnavailable, match="setup.sh"):
        FhirTestServer().start()


def test_missing_node_is_reported_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import fhir_server.fixture as fixture_module

    monkeypatch.setattr(fixture_module.shutil, "which", lambda name: None)
    with pytest.raises(FhirServerUnavailable, match="node"):
        FhirTestServer().start()
