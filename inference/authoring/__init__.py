"""Tools for model authors: wrap a trained model into the service's ONNX contract, and write a new model folder.

`export_model` turns a fitted scikit-learn estimator or pipeline, or a LightGBM model, into a `model.onnx` that the
service can load (one `features` double [N, k] input, one double [N, 1] output per manifest output), checked against
the estimator's own predictions. `new_model_folder` writes the skeleton `cds-onnx models new` starts an author with.
"""

from __future__ import annotations

from inference.authoring.export import ExportError, export_model
from inference.authoring.skeleton import SkeletonError, new_model_folder

__all__ = ["ExportError", "SkeletonError", "export_model", "new_model_folder"]
