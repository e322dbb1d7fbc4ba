"""A model folder whose graph is served by an Open Inference Protocol v2 endpoint: a real KServe Python model server
(tests/kserve_server/, its own venv made by tests/kserve_server/setup.sh) on 127.0.0.1, started and stopped here.

The same folder gives the identical number in process and through KServe; a stopped or slow endpoint gives the
documented "no number" card; a server whose metadata disagrees with the manifest, or a URL the configuration does not
allow, stops start-up with the folder and field named.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from inference.oip_backend import OipV2Graph, backend_allowed
from inference.sequence_graph import BackendUnavailable
from conftest import running_where
from service_process import free_port, stop_process
from test_sequence_model import MODEL, call, fixture, model_root, recorded, serve  # noqa: F401  (serve: fixture)

KSERVE = Path(__file__).resolve().parent / "kserve_server"
PYTHON = KSERVE / ".venv" / "bin" / "python"
NAME = "t2d-timeline-5y"


@dataclass
class KServe:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop_process(self.proc)


def start_kserve(tmp_path: Path, *extra: str, port: int | None = None) -> KServe:
    if not PYTHON.is_file():
        pytest.skip("KServe model server not installed: run tests/kserve_server/setup.sh (make test does)")
    port = port or free_port()
    log = (tmp_path / f"kserve-{port}.log").open("wb")
    proc = subprocess.Popen([str(PYTHON), "-m", "onnx_model_server", "--model_file",
                             str(MODEL / "1.0.0" / "model.onnx"), "--model_name", NAME, "--http_port", str(port),
                             *extra], cwd=KSERVE, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the KServe server exited: {(tmp_path / f'kserve-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/models/{NAME}/ready", timeout=1).status_code == 200:
                return KServe(proc, url)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError("the KServe server did not become ready within 120 s")


@pytest.fixture
def kserve(tmp_path: Path) -> Iterator[Any]:
    servers: list[KServe] = []

    def start(*extra: str, port: int | None = None) -> KServe:
        server = start_kserve(tmp_path, *extra, port=port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def remote_root(tmp_path: Path, url: str, timeout: float = 5.0) -> Path:
    """A copy of the timeline model whose manifest names the endpoint, without a graph of its own."""
    root = model_root(tmp_path / "remote")
    folder = root / NAME / "1.0.0"
    (folder / "model.onnx").unlink()
    path = folder / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["backend"] = {"type": "oip-v2", "url": url, "model_name": NAME, "timeout_seconds": timeout}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return root


def test_the_same_folder_in_process_and_through_kserve_gives_the_identical_number(
        serve: Any, kserve: Any, tmp_path: Path) -> None:
    server = kserve()
    local = serve()
    remote = serve(remote_root(tmp_path, server.url), models={"remote_backends": [server.url]})
    _, resources, pid = fixture()
    [here] = call(local, resources, pid)
    [there] = call(remote, resources, pid)
    assert recorded(remote, there)["outputs"]["risk_5y"] == recorded(local, here)["outputs"]["risk_5y"]
    assert there["summary"] == here["summary"] and there["detail"] == here["detail"]  # explanation too (one batch)
    assert "What moved the estimate most" in there["detail"]


def test_a_stopped_endpoint_gives_the_no_number_card(serve: Any, kserve: Any, tmp_path: Path) -> None:
    server = kserve()
    api = serve(remote_root(tmp_path, server.url), models={"remote_backends": [server.url]})
    server.stop()
    _, resources, pid = fixture()
    [card] = call(api, resources, pid)
    assert card["summary"].startswith("No T2D risk (timeline demo) estimate: the model could not be run")
    assert (f"the model could not be run: the model server {server.url} (model {NAME}) could not be reached "
            "(ConnectError)") in card["detail"]
    assert "%" not in card["summary"] and "suggestions" not in card


def test_a_slow_endpoint_gives_the_no_number_card_at_its_deadline(serve: Any, kserve: Any, tmp_path: Path) -> None:
    server = kserve("--delay_seconds", "8")
    # start-up cannot run the golden examples in time: the service starts and the model waits for its server
    api = serve(remote_root(tmp_path, server.url, timeout=0.5), models={"remote_backends": [server.url]})
    _, resources, pid = fixture()
    [card] = call(api, resources, pid)
    assert (f"the model could not be run: the model server {server.url} (model {NAME}) did not answer within "
            "0.5 s") in card["detail"]
    assert "%" not in card["summary"]


def test_an_endpoint_down_at_start_up_is_checked_and_used_once_it_answers(
        serve: Any, kserve: Any, tmp_path: Path) -> None:
    if not PYTHON.is_file():
        pytest.skip("KServe model server not installed: run tests/kserve_server/setup.sh (make test does)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = serve(remote_root(tmp_path, url), models={"remote_backends": [url]})  # starts: nothing listens yet
    _, resources, pid = fixture()
    [card] = call(api, resources, pid)
    assert f"the model server {url} (model {NAME}) could not be reached" in card["detail"]
    kserve(port=port)
    [card] = call(api, resources, pid)
    local = serve()
    [here] = call(local, resources, pid)
    assert recorded(api, card)["outputs"]["risk_5y"] == recorded(local, here)["outputs"]["risk_5y"]


def test_a_remote_backend_setting_must_be_an_http_base_url() -> None:
    from cds_hooks.settings import ConfigError, load_settings

    with pytest.raises(ConfigError) as err:
        load_settings(None, store={"hmac_secret": "x" * 20}, models={"remote_backends": ["ftp://kserve:8080"]})
    assert "models.remote_backends" in str(err.value) and "must start with http:// or https://" in str(err.value)


def test_metadata_that_disagrees_with_the_manifest_stops_start_up(kserve: Any, tmp_path: Path) -> None:
    from inference.repository import ModelFolderError, ModelRepository

    server = kserve("--rename_input", "ages=times")
    root = remote_root(tmp_path, server.url)
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root, (server.url,)).load()
    assert ("manifest.yaml: backend: the graph's inputs are [mask, times, tokens]; the manifest's sequence.inputs "
            "are [ages, mask, tokens]") in str(err.value)


def test_an_endpoint_the_configuration_does_not_allow_is_never_called(tmp_path: Path) -> None:
    from inference.repository import ModelFolderError, ModelRepository

    root = remote_root(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root, ("http://127.0.0.1:19",)).load()
    assert "backend.url: http://127.0.0.1:9 is not in the configuration's models.remote_backends" in str(err.value)
    assert backend_allowed("HTTP://127.0.0.1:9/", ["http://127.0.0.1:9"])
    assert not backend_allowed("http://127.0.0.1:9/v2", ["http://127.0.0.1:9"])
    assert not backend_allowed("http://127.0.0.1:9.evil.example", ["http://127.0.0.1:9"])


@pytest.mark.parametrize(("answer", "message"), [
    (httpx.Response(500, json={"error": "boom"}), "answered HTTP 500"),
    (httpx.Response(200, content=b"<html>"), "answered something that is not JSON"),
    (httpx.Response(200, json={"outputs": [{"name": "risk_5y", "datatype": "FP64", "shape": [2, 1],
                                            "data": [0.1]}]}), "gave a malformed answer (output risk_5y has 1 "
                                                               "values for shape [2, 1])"),
    (httpx.Response(200, json={"outputs": []}), "did not return risk_5y"),
])
def test_a_malformed_answer_is_a_sentence_for_the_card(answer: httpx.Response, message: str) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(__import__("json").loads(request.content))
        return answer

    graph = OipV2Graph("http://oip.test", NAME, None, 1.0, httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(BackendUnavailable) as err:
        graph.run({"tokens": np.array([[3, 4], [5, 6]], dtype=np.int64),
                   "ages": np.array([[50, 51], [50, 51]], dtype=np.float32)}, ["risk_5y"])
    assert message in str(err.value)
    assert seen[0]["inputs"][0] == {"name": "tokens", "shape": [2, 2], "datatype": "INT64", "data": [3, 4, 5, 6]}
    assert seen[0]["inputs"][1]["datatype"] == "FP32" and seen[0]["outputs"] == [{"name": "risk_5y"}]


def test_a_model_name_the_server_does_not_serve_stops_start_up(kserve: Any, tmp_path: Path) -> None:
    from inference.repository import ModelFolderError, ModelRepository

    server = kserve()
    root = remote_root(tmp_path, server.url)
    path = root / NAME / "1.0.0" / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["backend"]["model_name"] = "no-such-model"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root, (server.url,)).load()
    assert (f"manifest.yaml: backend: the model server {server.url} (model no-such-model) answered HTTP 404 — check "
            "backend.url and backend.model_name") in str(err.value)


def test_a_remote_models_prediction_never_waits_on_the_event_loop(
        serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Call stages run on the loop by default (server.call_stages_in_thread), but a model server can take up to its
    timeout to answer: those calls run in a worker thread, so health checks and other calls are not held up."""
    where: list[str] = []
    real = OipV2Graph._request

    def spy(self: OipV2Graph, method: str, url: str, body: dict[str, Any] | None) -> Any:
        where.append(running_where())
        return real(self, method, url, body)

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: each request fails at once
    api = serve(remote_root(tmp_path, url), models={"remote_backends": [url]})
    monkeypatch.setattr(OipV2Graph, "_request", spy)
    _, resources, pid = fixture()
    [card] = call(api, resources, pid)
    assert "could not be reached" in card["detail"]
    assert where and set(where) == {"thread"}
