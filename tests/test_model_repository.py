"""The model repository refuses broken model folders with a message naming the folder and the problem."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from inference.repository import ModelFolderError, ModelRepository, load_version

PCE = Path(__file__).resolve().parent.parent / "models" / "ascvd-pce-10y"


def copy_pce(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(PCE, root / "ascvd-pce-10y")
    return root / "ascvd-pce-10y" / "1.0.0"


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def test_shipped_pce_folder_is_valid() -> None:
    runtime = load_version(PCE / "1.0.0")
    assert runtime.id == "ascvd-pce-10y" and runtime.version == "1.0.0"


def test_graph_with_wrong_input_name_is_refused(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 9])
    y = helper.make_tensor_value_info("risk_10y", TensorProto.DOUBLE, ["N", 9])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["risk_10y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    with pytest.raises(ModelFolderError, match=r"1\.0\.0/model\.onnx: inputs: graph input 'x' but the service feeds 'features'"):
        load_version(folder)


def test_manifest_input_missing_from_feature_spec_is_refused(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml", lambda m: m["inputs"][0].update(name="age_years"))
    with pytest.raises(ModelFolderError, match=r"manifest\.yaml: inputs\[0\]\.name: 'age_years' is not a feature of features\.yaml"):
        load_version(folder)


def test_input_count_must_match_the_graph(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml", lambda m: m["inputs"].pop())
    with pytest.raises(ModelFolderError, match=r"has shape .*but the manifest has 8 inputs — make the shape \[N, 8\]"):
        load_version(folder)


def test_output_not_produced_by_graph_is_refused(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml", lambda m: m["outputs"][0].update(name="risk_30y"))
    with pytest.raises(ModelFolderError, match="output 'risk_30y' is not produced by the graph"):
        load_version(folder)


def test_missing_model_card_attribute_is_refused(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml", lambda m: m["model_card"]["attributes"].pop("uses_race"))
    with pytest.raises(ModelFolderError, match="model_card.attributes.uses_race: missing"):
        load_version(folder)


def test_not_available_needs_a_reason(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml",
              lambda m: m["model_card"]["attributes"].update(funding_source={"not_available": ""}))
    with pytest.raises(ModelFolderError, match="model_card.attributes.funding_source: not_available without a reason"):
        load_version(folder)


def test_golden_mismatch_is_refused(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "golden.yaml", lambda g: g["examples"][0]["outputs"].update(risk_10y=0.0210))
    with pytest.raises(ModelFolderError, match=r"golden example 'Goff 2013 Table A worked example, white women' not "
                                               r"reproduced: risk_10y = 0\.0205"):
        load_version(folder)


def test_folder_must_match_id_and_version(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "manifest.yaml", lambda m: m.update(version="2.0.0"))
    with pytest.raises(ModelFolderError, match="keep the folder at models/ascvd-pce-10y/2.0.0/"):
        load_version(folder)


def test_invalid_feature_spec_names_file_feature_and_field(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    edit_yaml(folder / "features.yaml", lambda f: f["features"]["total_cholesterol"].update(unit="furlongs"))
    with pytest.raises(ModelFolderError, match=r"features.yaml: features\.total_cholesterol.*furlongs"):
        load_version(folder)


def test_aliases_pick_champion_and_challenger(tmp_path: Path) -> None:
    folder = copy_pce(tmp_path)
    challenger = folder.parent / "1.1.0"
    shutil.copytree(folder, challenger)
    edit_yaml(challenger / "manifest.yaml", lambda m: m.update(version="1.1.0"))
    (folder.parent / "aliases.yaml").write_text('champion: "1.0.0"\nchallenger: "1.1.0"\n')
    repo = ModelRepository(folder.parent.parent).load()
    entry = repo.entries["ascvd-pce-10y"]
    assert entry.champion.version == "1.0.0"
    assert entry.challenger is not None and entry.challenger.version == "1.1.0"
    (folder.parent / "aliases.yaml").write_text('champion: "3.0.0"\n')
    with pytest.raises(ModelFolderError, match="champion version '3.0.0' has no folder"):
        ModelRepository(folder.parent.parent).load()


def test_explanations_sum_to_the_difference_from_the_reference() -> None:
    from fhir_mapping.result import FeatureValue, MappingResult

    runtime = load_version(PCE / "1.0.0")
    values = dict(age=61, total_cholesterol=240, hdl=38, sbp=152, bp_treated=1, smoker=1, diabetes=1, female=0,
                  black=0, established_ascvd=0)
    mapping = MappingResult(values={k: FeatureValue(k, float(v)) for k, v in values.items()})
    pred = runtime.predict(mapping)
    assert pred.outputs is not None and pred.reference_output is not None
    total = sum(c.delta for c in pred.contributions)
    assert total == pytest.approx(pred.outputs["risk_10y"] - pred.reference_output, abs=1e-12)
    assert {c.feature for c in pred.contributions} == {"total_cholesterol", "hdl", "sbp", "bp_treated", "smoker",
                                                       "diabetes"}
    assert all(c.delta > 0 for c in pred.contributions)  # every factor is worse than optimal here
