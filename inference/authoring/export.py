"""Wrap a fitted scikit-learn or LightGBM model into the service's ONNX contract.

Why this exists: converters (skl2onnx, onnxmltools) write graphs with their own input name, float32 inputs, a label
output and a probability matrix; the service feeds one input named `features`, tensor(double) [N, k] (manifest input
order) and reads one tensor(double) [N, 1] per manifest output (docs/model-authoring.md, "The ONNX contract"). This
module converts the model and adds the few nodes that bridge the two, then runs the result in onnxruntime against
the estimator's own predictions, so an author never hand-edits a graph.

Precision: tree ensembles (scikit-learn trees and LightGBM) are exported with a float32 core, because scikit-learn
compares float32 feature values with the split thresholds and a double graph could route a value near a threshold
down the other branch; everything else (linear models, pipelines of them) is exported in double end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

INPUT_NAME = "features"  # inference.runtime.INPUT_NAME: what the service feeds
OPSET = 17
ML_OPSET = 3
LIGHTGBM_OPSET = 15  # the highest opset onnxmltools' LightGBM converter supports
IR_VERSION = 8
Precision = Literal["auto", "double", "float"]


class ExportError(ValueError):
    """The model cannot be exported to the service's contract; the message says why and what to do."""


def export_model(estimator: Any, feature_names: Sequence[str], out_path: Path | str | None = None, *,
                 output_name: str = "risk", model_id: str = "model", version: str = "1.0.0",
                 positive_class: Any = None, precision: Precision = "auto", check_rows: Any = None,
                 tolerance: float = 1e-6) -> onnx.ModelProto:
    """Convert `estimator` to a graph with input `features` double [N, len(feature_names)] and one output
    `output_name` double [N, 1]: the probability of `positive_class` for a classifier (default: the last class,
    i.e. 1 for 0/1 labels), the prediction for a regressor.

    `feature_names` are the manifest's inputs in column order (the order the estimator was fitted on). With
    `check_rows` (an [n, k] array), the graph is run in onnxruntime on those rows and must agree with the
    estimator's predict_proba (or predict) within `tolerance`, else ExportError. With `out_path`, the graph is
    written there. Returns the ONNX model.
    """
    names = [str(n) for n in feature_names]
    if not names or len(set(names)) != len(names):
        raise ExportError("feature_names must list every input once, in the manifest's order")
    fitted = getattr(estimator, "n_features_in_", None)
    if fitted is None and _is_lightgbm(estimator):
        fitted = estimator.booster_.num_feature() if hasattr(estimator, "booster_") else None
    if fitted is None:
        raise ExportError(f"{type(estimator).__name__} is not fitted (or not a scikit-learn/LightGBM model): fit it "
                          "before exporting")
    if fitted != len(names):
        raise ExportError(f"the model was fitted on {fitted} columns but feature_names lists {len(names)}: give one "
                          "name per column, in the order the model was fitted on")
    if output_name == INPUT_NAME:
        raise ExportError(f"output_name cannot be '{INPUT_NAME}' (that is the input's name)")
    core_dtype = _precision(estimator, precision)
    inner, column = _convert(estimator, len(names), core_dtype, positive_class)
    model = _wrap(inner, len(names), core_dtype, column, output_name, model_id, version, names)
    if check_rows is not None:
        check_against(estimator, model, np.asarray(check_rows, dtype=np.float64), output_name, column, tolerance)
    if out_path is not None:
        Path(out_path).write_bytes(model.SerializeToString(deterministic=True))
    return model


def check_against(estimator: Any, model: onnx.ModelProto, rows: np.ndarray, output_name: str, column: int | None,
                  tolerance: float) -> float:
    """Largest difference between onnxruntime and the estimator on `rows`; ExportError when above `tolerance`."""
    import onnxruntime as ort

    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ExportError("check_rows must be a non-empty [n, k] array")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.asarray(session.run([output_name], {INPUT_NAME: rows})[0], dtype=np.float64).reshape(-1)
    if column is None:
        expected = np.asarray(estimator.predict(rows), dtype=np.float64).reshape(-1)
    else:
        expected = np.asarray(estimator.predict_proba(rows), dtype=np.float64)[:, column]
    diff = np.abs(got - expected)
    worst = int(np.argmax(diff))
    if not diff[worst] <= tolerance:
        raise ExportError(f"onnxruntime and {type(estimator).__name__} disagree by {diff[worst]:.3g} on check row "
                          f"{worst} (tolerance {tolerance:g}); try precision='double' or 'float', or report the model "
                          "type")
    return float(diff[worst])


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _is_lightgbm(estimator: Any) -> bool:
    return type(_final_step(estimator)).__module__.startswith("lightgbm")


def _tree_based(estimator: Any) -> bool:
    final = _final_step(estimator)
    if _is_lightgbm(final):
        return True
    try:
        from sklearn.ensemble import BaseEnsemble
        from sklearn.tree import BaseDecisionTree
    except ImportError:
        return False
    return isinstance(final, (BaseDecisionTree, BaseEnsemble)) or "HistGradientBoosting" in type(final).__name__


def _precision(estimator: Any, precision: Precision) -> int:
    if precision == "double":
        return TensorProto.DOUBLE
    if precision == "float":
        return TensorProto.FLOAT
    if precision != "auto":
        raise ExportError(f"precision '{precision}' is not one of auto, double, float")
    return TensorProto.FLOAT if _tree_based(estimator) else TensorProto.DOUBLE


def _convert(estimator: Any, k: int, core_dtype: int, positive_class: Any) -> tuple[onnx.ModelProto, int | None]:
    """The converter's graph, and which probability column is the output (None: a regressor's prediction)."""
    classes = getattr(_final_step(estimator), "classes_", None)
    column: int | None = None
    if classes is not None:
        classes = list(classes)
        wanted = classes[-1] if positive_class is None else positive_class
        if positive_class is None and len(classes) > 2:
            raise ExportError(f"the classifier has {len(classes)} classes {classes}: say which one the output is the "
                              "probability of with positive_class=")
        if wanted not in classes:
            raise ExportError(f"positive_class {wanted!r} is not one of the classes {classes}")
        column = classes.index(wanted)
    np_dtype = np.float32 if core_dtype == TensorProto.FLOAT else np.float64
    try:
        if _is_lightgbm(estimator) and not hasattr(estimator, "steps"):
            if core_dtype != TensorProto.FLOAT:
                raise ExportError("LightGBM models are exported in float precision (precision='auto' or 'float')")
            from onnxmltools import convert_lightgbm
            from onnxmltools.convert.common.data_types import FloatTensorType

            inner = convert_lightgbm(estimator, initial_types=[("input", FloatTensorType([None, k]))],
                                     target_opset=LIGHTGBM_OPSET, zipmap=False)
        else:
            from skl2onnx import to_onnx

            options = {id(_final_step(estimator)): {"zipmap": False}} if column is not None else None
            inner = to_onnx(estimator, np.zeros((1, k), dtype=np_dtype), options=options,
                            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET})
    except ImportError as exc:
        raise ExportError(f"the converter is not installed ({exc.name}): pip install 'cds-onnx[authoring]'") from exc
    except ExportError:
        raise
    except Exception as exc:  # converters raise many types (RuntimeError, NotImplementedError, MissingShapeCalculator)
        raise ExportError(f"{type(estimator).__name__} cannot be converted to ONNX: {exc}") from exc
    return inner, column


def _wrap(inner: onnx.ModelProto, k: int, core_dtype: int, column: int | None, output_name: str, model_id: str,
          version: str, names: list[str]) -> onnx.ModelProto:
    graph = inner.graph
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    for name in (INPUT_NAME, output_name):
        if name in used:
            raise ExportError(f"the converted graph already uses the tensor name '{name}': choose another "
                              "output_name")
    inner_input = graph.input[0].name
    if column is None:
        result = graph.output[0].name
    else:
        result = next((o.name for o in graph.output if "prob" in o.name.lower()), graph.output[-1].name)
    nodes = [helper.make_node("Cast", [INPUT_NAME], [inner_input], to=core_dtype, name="cds_cast_in")]
    nodes += list(graph.node)
    if column is not None:
        nodes += [
            helper.make_node("Constant", [], ["cds_column"],
                             value=helper.make_tensor("cds_column_value", TensorProto.INT64, [1], [column]),
                             name="cds_column"),
            helper.make_node("Gather", [result, "cds_column"], ["cds_selected"], axis=1, name="cds_select_class"),
        ]
        result = "cds_selected"
    nodes += [
        helper.make_node("Reshape", [result, "cds_shape"], ["cds_reshaped"], name="cds_reshape"),
        helper.make_node("Cast", ["cds_reshaped"], [output_name], to=TensorProto.DOUBLE, name="cds_cast_out"),
    ]
    shape = helper.make_tensor("cds_shape", TensorProto.INT64, [2], [-1, 1])
    wrapped = helper.make_graph(
        nodes, f"{model_id}-{version}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", k])],
        [helper.make_tensor_value_info(output_name, TensorProto.DOUBLE, ["N", 1])],
        initializer=[*graph.initializer, shape],
    )
    opsets = {o.domain: o.version for o in inner.opset_import}
    opsets[""] = max(opsets.get("", OPSET), 13)
    model = helper.make_model(wrapped, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="cds-onnx", producer_version=version,
                              doc_string=f"{model_id} {version}: inputs {', '.join(names)}")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"model_id": model_id, "version": version, "inputs": ",".join(names),
                                   "converted_by": inner.producer_name or "converter"})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the wrapped graph is not valid ONNX: {exc}") from exc
    return model
