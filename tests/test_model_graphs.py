"""Checks every shipped model graph against its build script, its golden examples and its reference implementation.

For each ``models/<id>/<version>/`` with a build.py: a rebuild is byte-identical to the committed model.onnx, the
graph follows the ONNX contract, onnxruntime reproduces golden outputs, golden outputs sit within the published
tolerance of the published values, and the graph agrees with reference.py on random in-range vectors.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from inference.graph_builder import IR_VERSION, OPSET, PRODUCER, load_module, model_bytes

MODELS = Path(__file__).resolve().parents[1] / "models"
FOLDERS = sorted(p.parent for p in MODELS.glob("*/*/build.py"))
IDS = [f"{p.parent.name}/{p.name}" for p in FOLDERS]


@pytest.fixture(scope="module", params=FOLDERS, ids=IDS)
def folder(request: pytest.FixtureRequest) -> Path:
    return request.param


def _session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def _run(folder: Path, build, rows: list[dict]) -> dict[str, np.ndarray]:
    x = np.array([[float(r[name]) for name in build.INPUTS] for r in rows], dtype=np.float64)
    names = list(build.OUTPUTS)
    values = _session(folder).run(names, {"features": x})
    return dict(zip(names, values))


def _golden(folder: Path) -> dict:
    return yaml.safe_load((folder / "golden.yaml").read_text())


def test_models_exist() -> None:
    expected = {
        "ascvd-pce-10y",
        "prevent-base",
        "prevent-full",
        "egfr-ckd-epi-2021",
        "kfre-4var",
        "cha2ds2-vasc",
        "news2",
    }
    assert {f"{m}/1.0.0" for m in expected} <= set(IDS)


def test_rebuild_is_byte_identical(folder: Path) -> None:
    build = load_module(folder / "build.py")
    rebuilt = model_bytes(build.build_model())
    committed = (folder / "model.onnx").read_bytes()
    assert hashlib.sha256(rebuilt).hexdigest() == hashlib.sha256(committed).hexdigest()


def test_build_cli_writes_to_out(folder: Path, tmp_path: Path) -> None:
    build = load_module(folder / "build.py")
    from inference.graph_builder import build_main

    out = build_main(build.build_model, folder / "model.onnx", ["--out", str(tmp_path / "m.onnx")])
    assert out.read_bytes() == (folder / "model.onnx").read_bytes()


def test_contract(folder: Path) -> None:
    build = load_module(folder / "build.py")
    model = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == PRODUCER
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    (inp,) = model.graph.input
    assert inp.name == "features"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == len(build.INPUTS)
    assert [o.name for o in model.graph.output] == list(build.OUTPUTS)
    for out in model.graph.output:
        assert out.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        d = out.type.tensor_type.shape.dim
        assert d[0].dim_param and d[1].dim_value == 1
    aliases = yaml.safe_load((folder.parent / "aliases.yaml").read_text())
    assert (folder.parent / aliases["champion"] / "model.onnx").is_file()
    # runtime shapes: a batch of 3 copies of the first golden example gives [3, 1] doubles
    ex = _golden(folder)["examples"][0]["inputs"]
    for name, value in _run(folder, build, [ex, ex, ex]).items():
        assert value.dtype == np.float64 and value.shape == (3, 1), name


def test_golden_outputs(folder: Path) -> None:
    build = load_module(folder / "build.py")
    ref = load_module(folder / "reference.py")
    golden = _golden(folder)
    tol = float(golden["tolerance"])
    assert tol <= 1e-9
    examples = golden["examples"]
    assert len(examples) >= 5
    got = _run(folder, build, [ex["inputs"] for ex in examples])
    for i, ex in enumerate(examples):
        assert set(ex["inputs"]) == set(build.INPUTS), ex["name"]
        assert set(ex["outputs"]) == set(build.OUTPUTS), ex["name"]
        again = ref.compute(ex["inputs"])
        for name, expected in ex["outputs"].items():
            assert abs(got[name][i, 0] - expected) <= tol, (ex["name"], name, got[name][i, 0], expected)
            assert abs(again[name] - expected) <= tol, (ex["name"], name, "reference drifted from golden")


def test_published_values(folder: Path) -> None:
    examples = [ex for ex in _golden(folder)["examples"] if "published" in ex]
    assert examples, "each model needs at least one published worked example"
    for ex in examples:
        assert ex.get("source"), ex["name"]
        tol = float(ex["published_tolerance"])
        for name, published in ex["published"].items():
            if ex.get("published_rounding") == "truncate":
                # the source shows the value cut to its last digit (step = tolerance), not rounded
                assert math.floor(ex["outputs"][name] / tol + 1e-9) * tol == pytest.approx(float(published), abs=1e-12), \
                    (ex["name"], name)
            else:
                assert abs(ex["outputs"][name] - float(published)) <= tol, (ex["name"], name)


def _sample(ranges: dict, rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        row = {}
        for name, (lo, hi, kind) in ranges.items():
            if kind == "flag":
                row[name] = float(rng.integers(0, 2))
            elif kind == "int":
                row[name] = float(rng.integers(int(lo), int(hi) + 1))
            elif kind == "tenth":
                row[name] = round(float(rng.integers(round(lo * 10), round(hi * 10) + 1)) / 10, 1)
            else:
                row[name] = float(rng.uniform(lo, hi))
        rows.append(row)
    return rows


def test_reference_agrees_on_random_vectors(folder: Path) -> None:
    build = load_module(folder / "build.py")
    ref = load_module(folder / "reference.py")
    assert list(ref.RANGES) == list(build.INPUTS)
    rows = _sample(ref.RANGES, np.random.default_rng(20240601), 400)
    got = _run(folder, build, rows)
    for name in build.OUTPUTS:
        assert np.all(np.isfinite(got[name])), name
    for i, row in enumerate(rows):
        expected = ref.compute(row)
        for name in build.OUTPUTS:
            assert math.isclose(got[name][i, 0], expected[name], rel_tol=1e-10, abs_tol=1e-12), (row, name)


def test_prevent_full_without_addons_equals_base_and_ignores_missing_values() -> None:
    base_dir, full_dir = MODELS / "prevent-base" / "1.0.0", MODELS / "prevent-full" / "1.0.0"
    base_build, full_build = load_module(base_dir / "build.py"), load_module(full_dir / "build.py")
    rows = _sample(load_module(base_dir / "reference.py").RANGES, np.random.default_rng(7), 50)
    missing = [{**r, "uacr": math.nan, "hba1c": math.nan, "has_uacr": 0.0, "has_hba1c": 0.0} for r in rows]
    base_out = _run(base_dir, base_build, rows)
    full_out = _run(full_dir, full_build, missing)
    for name in base_build.OUTPUTS:
        assert np.all(np.isfinite(full_out[name])), name
        np.testing.assert_allclose(full_out[name], base_out[name], rtol=1e-12, atol=0)
    # an add-on present changes the answer (the selection is live, not always base)
    with_uacr = [{**r, "uacr": 300.0, "has_uacr": 1.0} for r in missing]
    assert np.all(_run(full_dir, full_build, with_uacr)["cvd_10y"] != full_out["cvd_10y"])


def test_news2_temperature_edges_are_robust_to_float_noise() -> None:
    folder = MODELS / "news2" / "1.0.0"
    build, ref = load_module(folder / "build.py"), load_module(folder / "reference.py")
    cases = {35.0: 3, 35.1: 1, 36.0: 1, 36.1: 0, 38.0: 0, 38.1: 1, 39.0: 1, 39.1: 2}
    rows, expected = [], []
    for temp, points in cases.items():
        for noise in (-1e-9, 0.0, 1e-9):
            rows.append({**ref.NORMAL, "temperature": temp + noise})
            expected.append(points)
    got = _run(folder, build, rows)
    assert got["score"][:, 0].tolist() == [float(p) for p in expected]
