"""Run a model graph on an Open Inference Protocol v2 endpoint (KServe, Triton, Seldon) instead of in process.

Models too large for the service's process (an EHR foundation model on a GPU server) are served elsewhere; the model
folder's manifest names the endpoint (`backend: {type: oip-v2, url, model_name, timeout_seconds}`) and the deployment's
configuration must list the URL too (`models.remote_backends`), so a model folder alone never makes the service call
a new host. Requests are JSON tensors (`POST /v2/models/{name}/infer`) with a deadline; the model's metadata
(`GET /v2/models/{name}`) is checked against the manifest at start-up. Any failure — refused connection, timeout,
HTTP error, malformed answer — raises BackendUnavailable with a sentence for the card, never a 5xx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from inference.sequence_graph import BackendUnavailable, TensorSpec

# OIP v2 datatypes and the numpy dtypes they carry
_DTYPES: dict[str, Any] = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64,
                           "BOOL": np.bool_}
_OIP_OF_NUMPY = {np.dtype(v): k for k, v in _DTYPES.items()}
MAX_ANSWER_BYTES = 50_000_000


def normalise_base_url(url: str) -> str | None:
    """scheme://host[:port]/path with scheme and host lower-cased and trailing slashes dropped; None if not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # an unparseable host or port ("host:9.evil.example") is never an allowed URL
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    netloc = parts.hostname.lower() + (f":{port}" if port else "")
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def backend_allowed(url: str, allowlist: tuple[str, ...] | list[str]) -> bool:
    """Exact match of normalised base URLs (no prefix matching), as for the FHIR server allowlist."""
    wanted = normalise_base_url(url)
    return wanted is not None and any(normalise_base_url(a) == wanted for a in allowlist)


@dataclass
class OipV2Graph:
    """A graph behind an OIP v2 REST endpoint, called synchronously: a service call whose champion or challenger
    uses one runs its stages in a worker thread, never on the event loop (cds_hooks/service_call.py)."""

    url: str
    model_name: str
    model_version: str | None
    timeout_seconds: float
    client: httpx.Client | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = httpx.Client(trust_env=False, follow_redirects=False)
        path = f"/v2/models/{self.model_name}"
        if self.model_version:
            path += f"/versions/{self.model_version}"
        self._model_url = self.url.rstrip("/") + path

    @property
    def where(self) -> str:
        return f"model server {self.url} (model {self.model_name})"

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs the endpoint's metadata declares (GET /v2/models/{name})."""
        doc = self._request("GET", self._model_url, None)
        try:
            return ([_tensor_spec(t, "input") for t in doc["inputs"]],
                    [_tensor_spec(t, "output") for t in doc["outputs"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailable(f"the {self.where} gave unusable metadata ({exc})") from exc

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One inference request; outputs by name with the shape the server gives."""
        body = {"inputs": [_tensor(name, arr) for name, arr in feeds.items()],
                "outputs": [{"name": name} for name in outputs]}
        doc = self._request("POST", self._model_url + "/infer", body)
        got: dict[str, np.ndarray] = {}
        try:
            for item in doc["outputs"]:
                datatype = item["datatype"]
                shape = [int(d) for d in item["shape"]]
                if datatype not in _DTYPES:
                    raise ValueError(f"output {item['name']} has datatype {datatype}")
                arr = np.asarray(item["data"], dtype=_DTYPES[datatype])
                if arr.size != math.prod(shape):
                    raise ValueError(f"output {item['name']} has {arr.size} values for shape {shape}")
                got[str(item["name"])] = arr.reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailable(f"the {self.where} gave a malformed answer ({exc})") from exc
        absent = [n for n in outputs if n not in got]
        if absent:
            raise BackendUnavailable(f"the {self.where} did not return {', '.join(absent)}")
        return got

    def _request(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        assert self.client is not None
        try:
            response = self.client.request(method, url, json=body, timeout=httpx.Timeout(self.timeout_seconds))
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"the {self.where} did not answer within {self.timeout_seconds:g} s",
                                     transient=True) from exc
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"the {self.where} could not be reached ({type(exc).__name__})",
                                     transient=True) from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"the {self.where} answered HTTP {response.status_code}",
                                     transient=response.status_code >= 500)
        if len(response.content) > MAX_ANSWER_BYTES:
            raise BackendUnavailable(f"the {self.where} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            return response.json()
        except ValueError as exc:
            raise BackendUnavailable(f"the {self.where} answered something that is not JSON") from exc

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    datatype = _OIP_OF_NUMPY.get(arr.dtype)
    if datatype is None:
        raise TypeError(f"input {name}: dtype {arr.dtype} has no OIP v2 datatype")
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.reshape(-1).tolist()}


def _tensor_spec(doc: Any, kind: str) -> TensorSpec:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ValueError(f"an {kind} without a name")
    datatype = doc.get("datatype")
    shape = doc.get("shape")
    if not isinstance(datatype, str) or not isinstance(shape, list):
        raise ValueError(f"{kind} {doc['name']} needs datatype and shape")
    return TensorSpec(doc["name"], datatype.upper(), tuple(int(d) if int(d) >= 0 else None for d in shape))
