"""The model repository: `models/<model-id>/<version>/` folders, validated at start-up, with champion/challenger aliases.

Adding a model is adding a folder. Start-up refuses to run with a broken folder and names the folder and the problem:
graph inputs/outputs that do not match the manifest, a feature spec that does not cover the inputs, golden examples
that are not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from fhir_mapping.spec import SpecError, load_feature_spec
from fhir_mapping.valuesets import ValueSetLibrary
from inference.manifest import ManifestError, load_manifest
from inference.model_card import model_card_problems
from inference.runtime import INPUT_NAME, ModelRuntime


class ModelFolderError(RuntimeError):
    """A model folder cannot be served; the message names the folder and the problem."""


@dataclass
class ModelEntry:
    """A model id with its champion (shown) and optional challenger (shadow, recorded, never shown)."""

    id: str
    champion: ModelRuntime
    challenger: ModelRuntime | None
    versions: dict[str, ModelRuntime]


def load_version(folder: Path) -> ModelRuntime:
    """Load and fully validate one model version folder."""
    try:
        manifest = load_manifest(folder)
    except ManifestError as exc:
        raise ModelFolderError(str(exc)) from exc
    if folder.name != manifest.version or folder.parent.name != manifest.id:
        raise ModelFolderError(
            f"{folder}: folder must be models/{manifest.id}/{manifest.version}/ to match the manifest's id and version"
        )
    valuesets = ValueSetLibrary([folder / "valuesets", folder.parent / "valuesets"])
    try:
        spec = load_feature_spec(folder / manifest.features, valuesets)
    except SpecError as exc:
        raise ModelFolderError(str(exc)) from exc
    uncovered = [i.name for i in manifest.inputs if i.name not in spec.features]
    uncovered += [r.feature for r in manifest.population if r.feature not in spec.features]
    if uncovered:
        raise ModelFolderError(f"{folder}: inputs not defined in {manifest.features}: {', '.join(uncovered)}")
    problems = model_card_problems(manifest)
    if problems:
        raise ModelFolderError(f"{folder}: model card incomplete: {'; '.join(problems)}")
    if not (folder / manifest.model_file).is_file():
        raise ModelFolderError(f"{folder}: {manifest.model_file} not found")
    try:
        runtime = ModelRuntime(folder, manifest, spec, valuesets)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelFolderError(f"{folder}: {manifest.model_file} cannot be loaded by onnxruntime: {exc}") from exc
    _check_signature(folder, runtime)
    _check_golden(folder, runtime)
    runtime.warm_up()
    return runtime


def _check_signature(folder: Path, runtime: ModelRuntime) -> None:
    inputs = runtime.session.get_inputs()
    k = len(runtime.manifest.inputs)
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = ", ".join(i.name for i in inputs)
        raise ModelFolderError(f"{folder}: graph inputs are [{names}]; expected one input named '{INPUT_NAME}'")
    if inputs[0].type != "tensor(double)":
        raise ModelFolderError(f"{folder}: input '{INPUT_NAME}' is {inputs[0].type}; expected tensor(double)")
    shape = inputs[0].shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k):
        raise ModelFolderError(f"{folder}: input '{INPUT_NAME}' has shape {shape}; expected [N, {k}]")
    graph_outputs = {o.name: o for o in runtime.session.get_outputs()}
    for out in runtime.manifest.outputs:
        got = graph_outputs.get(out.name)
        if got is None:
            raise ModelFolderError(
                f"{folder}: output '{out.name}' is not produced by the graph (it has {', '.join(graph_outputs)})"
            )
        if got.type != "tensor(double)":
            raise ModelFolderError(f"{folder}: output '{out.name}' is {got.type}; expected tensor(double)")


def _check_golden(folder: Path, runtime: ModelRuntime) -> None:
    path = folder / "golden.yaml"
    if not path.is_file():
        raise ModelFolderError(f"{folder}: golden.yaml not found (worked examples are required)")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    tolerance = float(doc.get("tolerance", 1e-9))
    examples = doc.get("examples") or []
    if not examples:
        raise ModelFolderError(f"{folder}: golden.yaml has no examples")
    names = [i.name for i in runtime.manifest.inputs]
    for ex in examples:
        try:
            row = np.array([[float(ex["inputs"][n]) for n in names]], dtype=np.float64)
        except KeyError as exc:
            raise ModelFolderError(f"{folder}: golden example '{ex.get('name')}' has no input {exc}") from exc
        got = runtime.run_matrix(row)
        for out_name, expected in (ex.get("outputs") or {}).items():
            if out_name not in got:
                raise ModelFolderError(f"{folder}: golden example '{ex.get('name')}' names unknown output {out_name}")
            value = float(got[out_name][0])
            if abs(value - float(expected)) > tolerance:
                raise ModelFolderError(
                    f"{folder}: golden example '{ex.get('name')}' not reproduced: {out_name} = {value!r}, "
                    f"expected {expected!r} (tolerance {tolerance})"
                )


class ModelRepository:
    """All models under a root folder, each with its aliases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, ModelEntry] = {}

    def load(self) -> ModelRepository:
        if not self.root.is_dir():
            raise ModelFolderError(f"{self.root}: model repository folder not found")
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            self.entries[model_dir.name] = self._load_model(model_dir)
        return self

    def _load_model(self, model_dir: Path) -> ModelEntry:
        aliases_path = model_dir / "aliases.yaml"
        if not aliases_path.is_file():
            raise ModelFolderError(f"{model_dir}: aliases.yaml not found (it names the champion version)")
        aliases = yaml.safe_load(aliases_path.read_text(encoding="utf-8")) or {}
        if not isinstance(aliases, dict) or "champion" not in aliases:
            raise ModelFolderError(f"{aliases_path}: must name a `champion` version")
        versions: dict[str, ModelRuntime] = {}
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and (p / "manifest.yaml").is_file()):
            versions[version_dir.name] = load_version(version_dir)
        picked = {}
        for alias in ("champion", "challenger"):
            version = aliases.get(alias)
            if version is None:
                continue
            version = str(version)
            if version not in versions:
                raise ModelFolderError(f"{aliases_path}: {alias} version '{version}' has no folder {model_dir / version}")
            picked[alias] = versions[version]
        champion = picked["champion"]
        challenger = picked.get("challenger")
        if challenger is not None:
            if challenger is champion:
                raise ModelFolderError(f"{aliases_path}: champion and challenger are the same version")
            if [i.name for i in challenger.manifest.inputs] != [i.name for i in champion.manifest.inputs]:
                # a challenger runs in shadow on the champion's features; it may use a different graph, not different inputs
                raise ModelFolderError(f"{aliases_path}: the challenger's inputs differ from the champion's")
        return ModelEntry(model_dir.name, champion, challenger, versions)
