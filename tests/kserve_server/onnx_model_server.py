"""A KServe Python model server (Open Inference Protocol v2) serving one model folder's model.onnx with onnxruntime.

The OIP backend tests (tests/test_oip_backend.py) start it in its own venv (tests/kserve_server/setup.sh) on
127.0.0.1 and point a model folder's `backend:` at it, so the service is tested against a real KServe server:

    tests/kserve_server/.venv/bin/python -m onnx_model_server --model_file models/…/model.onnx \
        --model_name t2d-timeline-5y --http_port 8099 [--delay_seconds 5] [--rename_input ages=times]

`--delay_seconds` makes every inference answer late (the deadline test); `--rename_input` declares an input under
another name in the metadata (the signature-mismatch test).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import kserve
import kserve.protocol.rest.server as rest_server
import numpy as np
import onnxruntime as ort
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

_ORT_TO_OIP = {"tensor(int64)": "INT64", "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int32)": "INT32"}


class OnnxModel(kserve.Model):
    """model.onnx behind /v2/models/{name}: metadata from the graph, inference with onnxruntime."""

    def __init__(self, name: str, model_file: str, delay_seconds: float, renames: dict[str, str]) -> None:
        super().__init__(name)
        self.model_file, self.delay_seconds, self.renames = model_file, delay_seconds, renames
        self.session: ort.InferenceSession | None = None

    def load(self) -> bool:
        self.session = ort.InferenceSession(self.model_file, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    def _types(self, args: list[Any]) -> list[dict[str, Any]]:
        return [{"name": self.renames.get(a.name, a.name), "datatype": _ORT_TO_OIP[a.type],
                 "shape": [d if isinstance(d, int) else -1 for d in a.shape]} for a in args]

    def get_input_types(self) -> list[dict[str, Any]]:
        assert self.session is not None
        return self._types(self.session.get_inputs())

    def get_output_types(self) -> list[dict[str, Any]]:
        assert self.session is not None
        return self._types(self.session.get_outputs())

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        assert self.session is not None
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        feeds = {i.name: np.asarray(i.as_numpy()) for i in payload.inputs}
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(names, feeds)
        outputs = []
        for name, arr in zip(names, results):
            out = InferOutput(name=name, shape=list(arr.shape), datatype=_ORT_TO_OIP[f"tensor({_numpy_type(arr)})"])
            out.set_data_from_numpy(arr, binary_data=False)
            outputs.append(out)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)


def _numpy_type(arr: np.ndarray) -> str:
    return {np.dtype(np.float64): "double", np.dtype(np.float32): "float", np.dtype(np.int64): "int64"}[arr.dtype]


def _loopback_only() -> None:
    """KServe 0.21 binds its REST server to 0.0.0.0; a test server listens on 127.0.0.1 only."""
    config = rest_server.uvicorn.Config

    def on_loopback(app: Any, **kwargs: Any) -> Any:
        return config(app, **{**kwargs, "host": "127.0.0.1"})

    rest_server.uvicorn.Config = on_loopback  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--delay_seconds", type=float, default=0.0)
    parser.add_argument("--rename_input", action="append", default=[], help="graph name=published name")
    args, _ = parser.parse_known_args()
    renames = dict(item.split("=", 1) for item in args.rename_input)
    _loopback_only()
    model = OnnxModel(args.model_name, args.model_file, args.delay_seconds, renames)
    model.load()
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
