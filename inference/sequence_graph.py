"""Where a sequence model's graph runs: in process with onnxruntime, or remotely (inference/oip_backend.py).

Both answer the same two questions — what inputs and outputs the graph declares, and what it computes for a batch
— so the sequence runtime checks the ONNX contract and runs predictions the same way whichever backend a model
folder names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

# onnxruntime type names as OIP v2 datatypes, so both backends' signatures read alike
_ORT_TO_OIP = {"tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(float)": "FP32",
               "tensor(double)": "FP64", "tensor(bool)": "BOOL"}


class BackendUnavailable(RuntimeError):
    """The graph gave no usable answer (a remote server failed or was slow, or the runtime refused the inputs); the
    message is written for the card. `transient`: the server was unreachable, slow or failing (5xx) and may recover;
    otherwise it answered, but not as the model folder expects (4xx, malformed)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, OIP v2 datatype (INT64, FP32, FP64 …), shape (None for a dynamic axis)."""

    name: str
    datatype: str
    shape: tuple[int | None, ...]


class SequenceGraph(Protocol):
    where: str

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]: ...

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]: ...


class LocalGraph:
    """An ONNX graph in this process (one intra-op thread, like the tabular models)."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.where = f"{path.name} (in process)"

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        def spec(arg: ort.NodeArg) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
            return TensorSpec(arg.name, _ORT_TO_OIP.get(arg.type, arg.type), shape)

        return [spec(a) for a in self.session.get_inputs()], [spec(a) for a in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            return dict(zip(outputs, self.session.run(outputs, feeds)))
        except Exception as exc:  # onnxruntime raises its own exception types (e.g. a token id past the embedding)
            raise BackendUnavailable(f"onnxruntime could not run {self.where}: {exc}") from exc
