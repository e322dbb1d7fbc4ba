"""Deterministic float64 ONNX graph construction for the shipped clinical models.

Why this exists: every model folder under ``models/`` carries a ``build.py`` that turns published coefficients into a
``model.onnx`` that follows the ONNX contract in ``docs/architecture.md`` (one ``features`` input, tensor(double)
[N, k]; one tensor(double) [N, 1] output per model output). Running a build twice must write byte-identical files, so
node and initializer names come from a counter, the opset and IR version are fixed, and nothing time-dependent is
recorded. The helpers here keep each build script down to the arithmetic of its equation.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "cds-onnx"
INPUT_NAME = "features"


class GraphBuilder:
    """Accumulates nodes and float64 initializers for one model graph; every value is a tensor name."""

    def __init__(self, model_id: str, version: str, inputs: Sequence[str]) -> None:
        if not inputs:
            raise ValueError("inputs: a model needs at least one input column")
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"inputs: duplicate input names in {list(inputs)}")
        self.model_id = model_id
        self.version = version
        self.inputs = tuple(inputs)
        self._nodes: list[onnx.NodeProto] = []
        self._inits: list[onnx.TensorProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0
        self._columns: dict[str, str] = {}

    # -- naming -------------------------------------------------------------------------------------------------
    def _name(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    # -- leaves -------------------------------------------------------------------------------------------------
    def col(self, name: str) -> str:
        """Column ``name`` of ``features`` as an [N, 1] tensor (one Gather node per column, reused)."""
        if name not in self.inputs:
            raise KeyError(f"input {name!r} is not one of {list(self.inputs)}")
        if name not in self._columns:
            index = self.const_int64([self.inputs.index(name)], f"idx_{name}")
            out = self._name(f"col_{name}")
            self._nodes.append(helper.make_node("Gather", [INPUT_NAME, index], [out], name=out, axis=1))
            self._columns[name] = out
        return self._columns[name]

    def const(self, value: float | Sequence[float] | np.ndarray, hint: str = "c") -> str:
        """A float64 initializer; a scalar becomes shape [1, 1] so it broadcasts against [N, 1] columns."""
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 0:
            array = array.reshape(1, 1)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"constant {hint}: non-finite value")
        name = self._name(hint)
        self._inits.append(numpy_helper.from_array(array, name))
        return name

    def const_int64(self, value: Sequence[int], hint: str) -> str:
        name = self._name(hint)
        self._inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    # -- operators ----------------------------------------------------------------------------------------------
    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs: Any) -> str:
        out = self._name(hint or op_type.lower())
        self._nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def _operand(self, x: str | float) -> str:
        return x if isinstance(x, str) else self.const(float(x))

    def add(self, a: str | float, b: str | float) -> str:
        return self.op("Add", self._operand(a), self._operand(b))

    def sub(self, a: str | float, b: str | float) -> str:
        return self.op("Sub", self._operand(a), self._operand(b))

    def mul(self, a: str | float, b: str | float) -> str:
        return self.op("Mul", self._operand(a), self._operand(b))

    def div(self, a: str | float, b: str | float) -> str:
        return self.op("Div", self._operand(a), self._operand(b))

    def minimum(self, a: str | float, b: str | float) -> str:
        return self.op("Min", self._operand(a), self._operand(b))

    def maximum(self, a: str | float, b: str | float) -> str:
        return self.op("Max", self._operand(a), self._operand(b))

    def log(self, x: str) -> str:
        return self.op("Log", x)

    def exp(self, x: str) -> str:
        return self.op("Exp", x)

    def one_minus(self, x: str) -> str:
        return self.sub(1.0, x)

    def concat(self, parts: Sequence[str]) -> str:
        """Concatenate [N, 1] (or [N, m]) tensors along columns."""
        return self.op("Concat", *parts, axis=1)

    def matmul(self, x: str, matrix: np.ndarray | Sequence[Sequence[float]], hint: str = "w") -> str:
        return self.op("MatMul", x, self.const(np.asarray(matrix, dtype=np.float64), hint))

    def row_sum(self, x: str) -> str:
        """Sum over columns, keeping an [N, 1] shape."""
        axes = self.const_int64([1], "axes")
        return self.op("ReduceSum", x, axes, keepdims=1)

    def row_max(self, x: str) -> str:
        return self.op("ReduceMax", x, keepdims=1, axes=[1])

    def indicator_ge(self, x: str, cuts: Sequence[float]) -> str:
        """[N, m] matrix of 1.0 where x >= cut_j, else 0.0."""
        ge = self.op("GreaterOrEqual", x, self.const(np.asarray([list(cuts)], dtype=np.float64), "cuts"))
        return self.op("Cast", ge, to=TensorProto.DOUBLE)

    def where(self, condition_flag: str, then: str | float, otherwise: str | float) -> str:
        """Element-wise select on a 0/1 flag (flag > 0.5); the unselected branch never leaks NaN or inf."""
        cond = self.op("Greater", condition_flag, self.const(0.5, "half"))
        return self.op("Where", cond, self._operand(then), self._operand(otherwise))

    def step(self, x: str, cuts: Sequence[float], values: Sequence[float]) -> str:
        """Piecewise-constant score: values[0] below cuts[0], values[j] on [cuts[j-1], cuts[j]), values[-1] above.

        Cuts must ascend strictly; the result is values[0] + sum_j (values[j+1] - values[j]) * [x >= cuts[j]].
        """
        if len(values) != len(cuts) + 1:
            raise ValueError("step: need exactly one more value than cut")
        if any(b <= a for a, b in itertools.pairwise(cuts)):
            raise ValueError("step: cuts must ascend strictly")
        deltas = [[values[j + 1] - values[j]] for j in range(len(cuts))]
        return self.add(self.matmul(self.indicator_ge(x, cuts), deltas, "deltas"), float(values[0]))

    # -- outputs and model --------------------------------------------------------------------------------------
    def output(self, name: str, tensor: str) -> None:
        """Expose ``tensor`` ([N, 1] double) under the contract output ``name``."""
        self._nodes.append(helper.make_node("Identity", [tensor], [name], name=f"out_{name}"))
        self._outputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", 1]))

    def build(self, doc: str, metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
        if not self._outputs:
            raise ValueError("build: the graph has no outputs")
        features = helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", len(self.inputs)])
        graph = helper.make_graph(
            self._nodes, f"{self.model_id}-{self.version}", [features], self._outputs, initializer=self._inits
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version=self.version,
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        props = {"model_id": self.model_id, "version": self.version, "inputs": ",".join(self.inputs)}
        props.update(metadata or {})
        helper.set_model_props(model, dict(sorted(props.items())))
        onnx.checker.check_model(model, full_check=True)
        return model


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Deterministic serialisation (no map fields are used, so protobuf output is stable)."""
    return model.SerializeToString(deterministic=True)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_main(
    build_model: Callable[[], onnx.ModelProto], default_out: Path, argv: Sequence[str] | None = None
) -> Path:
    """Command-line entry for a build script: ``python build.py [--out PATH]``; prints the sha256 written."""
    parser = argparse.ArgumentParser(description=f"Build {default_out} from published coefficients")
    parser.add_argument("--out", type=Path, default=default_out, help="where to write model.onnx")
    args = parser.parse_args(argv)
    data = model_bytes(build_model())
    args.out.write_bytes(data)
    print(f"{args.out} sha256={sha256_of(data)}")
    return args.out


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """Import a model folder's build.py/reference.py by path (model folders are not Python packages)."""
    path = Path(path).resolve()
    mod_name = name or "_cds_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_golden(
    path: Path,
    examples: Sequence[Mapping[str, Any]],
    compute: Callable[[Mapping[str, float]], Mapping[str, float]],
    tolerance: float = 1.0e-9,
) -> None:
    """Write golden.yaml: each example's inputs with the reference outputs at full double precision."""
    rendered = []
    for ex in examples:
        outputs = {k: float(v) for k, v in compute(ex["inputs"]).items()}
        if not all(math.isfinite(v) for v in outputs.values()):
            raise ValueError(f"golden example {ex['name']!r}: reference output is not finite")
        item: dict[str, Any] = {"name": ex["name"], "inputs": dict(ex["inputs"]), "outputs": outputs}
        for key in ("published", "published_tolerance", "published_rounding", "source"):
            if key in ex:
                item[key] = ex[key]
        rendered.append(item)
    text = yaml.safe_dump({"tolerance": tolerance, "examples": rendered}, sort_keys=False, width=120)
    Path(path).write_text(text)
