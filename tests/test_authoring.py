"""The authoring kit end to end: `models new` → fill the skeleton (a logistic model exported with the wrap helper)
→ `models validate` → the real app → a CDS call whose card shows the number computed here with numpy; and the wrap
helper against scikit-learn and LightGBM predictions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from conftest import ROOT, SignedClient, make_settings

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extra: pip install -e '.[test]'")
pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra: pip install -e '.[test]'")

from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from inference.authoring import ExportError, export_model  # noqa: E402

MODEL_ID = "bp-demo-risk"


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_ONNX_")}
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**base, "NO_COLOR": "1", "COLUMNS": "200", **env})


def training_data(n: int = 400, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(40, 79, n), rng.uniform(95, 195, n)])
    logit = -9.0 + 0.06 * x[:, 0] + 0.03 * x[:, 1]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def fill(value: Any, text: str = "Synthetic demonstration value for the authoring test") -> Any:
    """Replace every skeleton placeholder with plain text (what an author writes by hand)."""
    if isinstance(value, dict):
        return {k: fill(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, text) for v in value]
    if isinstance(value, str) and "<fill in" in value:
        return text
    return value


def fill_folder(folder: Path, model: LogisticRegression) -> None:
    """Fill the skeleton: texts, a card summary, the graph from the wrap helper and golden examples computed here."""
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    manifest = fill(manifest)
    manifest["title"] = "Blood pressure demo risk (synthetic, not for clinical use)"
    manifest["outputs"][0]["label"] = "10-year demo risk"
    manifest["card"]["short_title"] = "Demo risk"
    manifest["card"]["summary"] = "Demo risk {value} ({category})"
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    export_model(model, ["age", "sbp"], folder / "model.onnx", output_name="risk", model_id=MODEL_ID)
    examples = []
    for age, sbp in [(55.0, 130.0), (70.0, 180.0)]:
        examples.append({"name": f"age {age:g}, SBP {sbp:g}", "inputs": {"age": age, "sbp": sbp},
                         "outputs": {"risk": logistic(model, age, sbp)}})
    (folder / "golden.yaml").write_text(yaml.safe_dump({"tolerance": 1e-9, "examples": examples}, sort_keys=False))


def logistic(model: LogisticRegression, age: float, sbp: float) -> float:
    """The fitted model's probability, read independently from its coefficients."""
    z = float(model.intercept_[0]) + float(model.coef_[0][0]) * age + float(model.coef_[0][1]) * sbp
    return float(1.0 / (1.0 + np.exp(-z)))


def test_new_fill_validate_serve_call(tmp_path: Path, local_key: Any) -> None:
    made = cli(["models", "new", MODEL_ID, "--kind", "predictive", "--root", "models"], tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "models" / MODEL_ID / "1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == ["build.py", "features.yaml", "golden.yaml", "manifest.yaml"]
    assert yaml.safe_load((folder.parent / "aliases.yaml").read_text()) == {"champion": "1.0.0"}
    text = (folder / "manifest.yaml").read_text()
    from inference.model_card import PREDICTIVE_ATTRIBUTES

    for key, title in PREDICTIVE_ATTRIBUTES.items():  # every HTI-1 attribute, each with its title as a comment
        assert f"\n    {key}: " in text and f"# {title}" in text, key

    unfilled = cli(["models", "validate", "--root", "models"], tmp_path)
    assert unfilled.returncode == 1
    assert f"models/{MODEL_ID}/1.0.0/manifest.yaml: card.summary: still holds the skeleton's placeholder" \
        in unfilled.stderr
    assert f"models/{MODEL_ID}/1.0.0/model.onnx: file not found" in unfilled.stderr

    x, y = training_data()
    model = LogisticRegression(max_iter=2000).fit(x, y)
    fill_folder(folder, model)
    valid = cli(["models", "validate", "--root", "models"], tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert "ok: 1 models, 1 versions valid" in valid.stdout

    from cds_hooks.app import create_app

    settings = make_settings(tmp_path, models={"root": str(tmp_path / "models")})
    with TestClient(create_app(settings)) as client:
        api = SignedClient(client, local_key)
        services = api.get("/cds-services").json()["services"]
        templates = next(s for s in services if s["id"] == MODEL_ID)["prefetch"]
        record = [F.patient(age=62), F.bp_panel(148)]
        prefetch = prefetch_from_resources(templates, record, {"userId": "Practitioner/example", "patientId": "p1"})
        resp = api.post(f"/cds-services/{MODEL_ID}", json=F.hook_request(prefetch))
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]
    expected = logistic(model, 62, 148)
    category = "lower" if expected < 0.1 else "higher"
    assert card["summary"] == f"Demo risk {expected * 100:.1f}% ({category})"
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["prediction"][0]["probabilityDecimal"] == pytest.approx(round(expected, 6), abs=1e-12)


def test_generated_build_scripts_make_valid_graphs(tmp_path: Path) -> None:
    """The skeleton's build.py runs: the predictive one trains on a CSV and writes model.onnx and golden.yaml with
    the wrap helper; the evidence-based one builds its logistic equation once the coefficients are written."""
    for model_id, kind in (("csv-demo", "predictive"), ("eq-demo", "evidence-based")):
        assert cli(["models", "new", model_id, "--kind", kind, "--root", "models"], tmp_path).returncode == 0
    env = {"PYTHONPATH": str(ROOT)}
    learned = tmp_path / "models" / "csv-demo" / "1.0.0"
    x, y = training_data(300, seed=3)
    rows = ["age,sbp,outcome"] + [f"{a},{s},{o}" for (a, s), o in zip(x, y)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(learned / "build.py"), "--data", str(tmp_path / "train.csv")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    golden = yaml.safe_load((learned / "golden.yaml").read_text())
    session = ort.InferenceSession(str(learned / "model.onnx"), providers=["CPUExecutionProvider"])
    for ex in golden["examples"]:
        row = np.array([[ex["inputs"]["age"], ex["inputs"]["sbp"]]])
        assert session.run(["risk"], {"features": row})[0][0, 0] == pytest.approx(ex["outputs"]["risk"], abs=1e-12)

    equation = tmp_path / "models" / "eq-demo" / "1.0.0"
    script = equation / "build.py"
    refused = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
    assert refused.returncode != 0 and "write the published values of age, sbp, INTERCEPT first" in refused.stderr
    source = script.read_text().replace('{"age": None, "sbp": None}', '{"age": 0.05, "sbp": 0.02}')
    script.write_text(source.replace("INTERCEPT: float | None = None", "INTERCEPT: float | None = -7.5"))
    built = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env})
    assert built.returncode == 0, built.stderr
    session = ort.InferenceSession(str(equation / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["risk"], {"features": np.array([[60.0, 140.0]])})[0][0, 0]
    assert got == pytest.approx(1 / (1 + np.exp(-(-7.5 + 0.05 * 60 + 0.02 * 140))), abs=1e-15)


def test_models_new_refuses_an_existing_folder_and_a_bad_id(tmp_path: Path) -> None:
    assert cli(["models", "new", "dup-model", "--kind", "evidence-based", "--root", "models"], tmp_path).returncode == 0
    again = cli(["models", "new", "dup-model", "--kind", "evidence-based", "--root", "models"], tmp_path)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    bad = cli(["models", "new", "Bad_ID", "--kind", "predictive", "--root", "models"], tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "'Bad_ID' is not a model id" in bad.stderr
    kind = cli(["models", "new", "ok-id", "--kind", "learned", "--root", "models"], tmp_path)
    assert kind.returncode == 2 and "predictive or evidence-based" in kind.stderr
    assert not (tmp_path / "models" / "ok-id").exists()


# -- the wrap helper against the estimators' own predictions --------------------------------------------------------

def run_graph(model: Any, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    assert [(i.name, i.type) for i in inputs] == [("features", "tensor(double)")]
    assert [(o.name, o.type) for o in outputs] == [("risk", "tensor(double)")]
    result = session.run(["risk"], {"features": rows})[0]
    assert result.shape == (rows.shape[0], 1)
    return result[:, 0]


@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(max_iter=2000),
    lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    lambda: GradientBoostingClassifier(random_state=0, n_estimators=60),
    lambda: RandomForestClassifier(random_state=0, n_estimators=25),
], ids=["logistic", "scaled-logistic", "gradient-boosting", "random-forest"])
def test_export_matches_predict_proba(make: Any) -> None:
    x, y = training_data(500, seed=11)
    estimator = make().fit(x, y)
    held_out, _ = training_data(200, seed=12)
    got = run_graph(export_model(estimator, ["age", "sbp"], check_rows=held_out), held_out)
    assert np.max(np.abs(got - estimator.predict_proba(held_out)[:, 1])) <= 1e-6


def test_export_lightgbm_matches_predict_proba() -> None:
    lightgbm = pytest.importorskip("lightgbm", reason="lightgbm is in the test extra: pip install -e '.[test]'")
    pytest.importorskip("onnxmltools", reason="onnxmltools is in the test extra: pip install -e '.[test]'")
    x, y = training_data(500, seed=21)
    estimator = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=8, verbose=-1).fit(x, y)
    held_out, _ = training_data(200, seed=22)
    got = run_graph(export_model(estimator, ["age", "sbp"]), held_out)
    assert np.max(np.abs(got - estimator.predict_proba(held_out)[:, 1])) <= 1e-6


def test_export_refuses_what_does_not_fit_the_contract() -> None:
    x, y = training_data(100)
    fitted = LogisticRegression().fit(x, y)
    with pytest.raises(ExportError, match="fitted on 2 columns but feature_names lists 3"):
        export_model(fitted, ["age", "sbp", "extra"])
    with pytest.raises(ExportError, match="not fitted"):
        export_model(LogisticRegression(), ["age", "sbp"])
    with pytest.raises(ExportError, match="positive_class 5 is not one of the classes"):
        export_model(fitted, ["age", "sbp"], positive_class=5)
    with pytest.raises(ExportError, match="output_name cannot be 'features'"):
        export_model(fitted, ["age", "sbp"], output_name="features")
    # the check against the estimator catches a graph that disagrees with it (here: a precision the model loses)
    big = np.column_stack([x[:, 0] * 1e6, x[:, 1]])
    sharp = LogisticRegression(C=1e6, max_iter=5000).fit(big, y)
    with pytest.raises(ExportError, match="disagree"):
        export_model(sharp, ["age", "sbp"], precision="float", check_rows=big, tolerance=1e-12)
