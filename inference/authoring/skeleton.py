"""The model folder skeleton `cds-onnx models new ID --kind …` writes.

Why this exists: a model author should start from a folder that names every manifest field and every HTI-1 source
attribute of the model's kind, each with a comment saying what belongs there, rather than from a copy of another
model with its clinical content to unpick. Whatever the author must write is marked `<fill in: …>`, and
`cds-onnx models validate` lists every such mark that is left, with the rest of what is missing (model.onnx, golden
examples), until the folder can be served.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from inference.model_card import EVIDENCE_ATTRIBUTES, PREDICTIVE_ATTRIBUTES

MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")  # the manifest's `id` pattern
VERSION = "1.0.0"
Kind = Literal["predictive", "evidence-based"]


class SkeletonError(ValueError):
    """The skeleton cannot be written; the message says why and what to do."""


def new_model_folder(root: Path, model_id: str, kind: Kind) -> Path:
    """Write `root/model_id/1.0.0/` (manifest.yaml, features.yaml, golden.yaml, build.py) and
    `root/model_id/aliases.yaml`; returns the version folder. Never overwrites anything."""
    if not MODEL_ID.match(model_id):
        raise SkeletonError(f"'{model_id}' is not a model id: use 2–63 lowercase letters, digits and hyphens, "
                            "starting with a letter or digit (e.g. ldl-risk-10y)")
    if kind not in ("predictive", "evidence-based"):
        raise SkeletonError(f"kind '{kind}' is not predictive or evidence-based")
    model_dir = root / model_id
    if model_dir.exists():
        raise SkeletonError(f"{model_dir} already exists: choose another id, or add a version folder to it by hand")
    folder = model_dir / VERSION
    try:
        folder.mkdir(parents=True)
        (model_dir / "aliases.yaml").write_text(ALIASES, encoding="utf-8")
        (folder / "manifest.yaml").write_text(manifest_text(model_id, kind), encoding="utf-8")
        (folder / "features.yaml").write_text(FEATURES, encoding="utf-8")
        (folder / "golden.yaml").write_text(GOLDEN, encoding="utf-8")
        build = BUILD_PREDICTIVE if kind == "predictive" else BUILD_EVIDENCE
        (folder / "build.py").write_text(build.replace("__MODEL_ID__", model_id), encoding="utf-8")
    except OSError as exc:
        raise SkeletonError(f"cannot write {folder}: {exc.strerror or exc} (choose a writable --root)") from exc
    return folder


def manifest_text(model_id: str, kind: Kind) -> str:
    attributes = PREDICTIVE_ATTRIBUTES if kind == "predictive" else EVIDENCE_ATTRIBUTES
    lines = []
    for key, title in attributes.items():
        lines.append(f"    # {title}")
        lines.append(f'    {key}: "<fill in: {_short(title)}, or replace with {{not_available: \\"<reason>\\"}}>"')
    card = "\n".join(lines)
    what = ("a model learned from data: the 31 HTI-1 predictive decision support attributes"
            if kind == "predictive" else "a published equation or score: the 13 HTI-1 evidence-based attributes")
    return (MANIFEST.replace("__MODEL_ID__", model_id).replace("__KIND__", kind).replace("__KIND_NOTE__", what)
            .replace("__ATTRIBUTES__", card)
            .replace("__REFERENCE__", REFERENCE_PREDICTIVE if kind == "predictive" else ""))


def _short(title: str) -> str:
    return title[0].lower() + title[1:] if not title[:2].isupper() else title


ALIASES = """\
# Which version of this model the service shows (champion) and which runs in shadow (challenger, recorded, never
# shown). Promote a challenger after its monitoring evidence, never by editing both lines at once by guesswork.
champion: "1.0.0"
# challenger: "1.1.0"
"""

MANIFEST = """\
# The manifest: what this model is, what it serves, and how its cards read (docs/model-authoring.md lists every field).
# Replace every "<fill in: …>" and check the commented examples; `cds-onnx models validate` lists what is left.
id: __MODEL_ID__                 # lowercase letters, digits and hyphens; the CDS service id and the folder name
version: "1.0.0"                 # the folder name under models/__MODEL_ID__/
title: "<fill in: the title shown in discovery and on the model card, at most 120 characters>"
kind: __KIND__                   # __KIND_NOTE__
hooks: [patient-view]            # patient-view | order-select | order-sign | encounter-start | encounter-discharge
description: "<fill in: one or two sentences for CDS discovery: what the model estimates, for whom, from what>"
intended_population: "<fill in: who the model is for, e.g. adults aged 40–79 without clinical ASCVD>"
features: features.yaml          # the feature spec file (how each input is read from FHIR)
model_file: model.onnx           # the ONNX graph (build.py writes it)
# question: ldl-risk             # services answering one clinical question share it; discovery lists one per hook
# question_rank: 0               #   ... the lowest rank (unless the deployment lists more)

# The graph's inputs, in column order of its `features` tensor. Each name must be a feature of features.yaml, with
# the same UCUM unit. `range` is the validated range: outside it the service gives no number and says why.
# kind: continuous (default) | binary (0/1) | category | count.
inputs:
  - {name: age, label: Age, unit: a, range: [40, 79]}
  - {name: sbp, label: Systolic blood pressure, unit: "mm[Hg]", range: [90, 200]}

# The graph's outputs (each a double [N, 1] tensor of that name). Exactly one is `primary: true`: its value and
# category make the card. kind: probability (shown as %) | score | value; decimals: digits shown;
# horizon_years: the prediction horizon (RiskAssessment.prediction.whenPeriod); outcome: a coding of what is predicted.
outputs:
  - name: risk
    label: "<fill in: e.g. 10-year risk of …>"
    kind: probability
    primary: true
    decimals: 1
    horizon_years: 10
    # outcome: {system: "http://snomed.info/sct", code: "…", display: "…"}
    # applies_when: [{feature: age, min: 30, max: 59, reason: …}]   (secondary outputs only: withheld otherwise)

# Bands of the primary output, lowest first. The first whose `below` (strictly) / `at_least` holds for the output as
# the card shows it (rounded to `decimals`) applies; the last has neither. indicator: info | warning | critical (never
# critical for an informational risk). `guidance` is what the guideline suggests for the band (options, not
# directives); follow_ups are draft orders offered on the card, only where a guideline supports them
# (`recommended: true` only where it recommends them).
categories:
  - label: lower
    below: 0.1
    indicator: info
    description: "<fill in: e.g. risk below 10%>"
    guidance: "<fill in: what the guideline suggests at this risk>"
  - label: higher
    indicator: warning
    description: "<fill in: e.g. risk 10% or more>"
    guidance: "<fill in: what the guideline suggests at this risk>"
    # follow_ups:
    #   - label: Order a lipid panel          # button text
    #     text: Lipid panel                   # what is ordered, in words
    #     code: {system: "http://loinc.org", code: "24331-1", display: "Lipid panel"}
    #     recommended: false
    #     guideline: "which guideline statement supports it"

# Who the model is for: a rule on any feature of features.yaml (equals / min / max). A patient who fails a rule, or
# whose value cannot be read, gets no number and a card saying `reason` (and `guidance`: what to do instead).
population: []
#  - feature: established_ascvd
#    equals: 0
#    reason: "the equations are for primary prevention, and the record shows established ASCVD"
#    guidance: "what the guideline says for this patient instead"

# Per-feature contributions (exact Shapley values, at most 12 features) against a reference patient.
explain:
  features: [sbp]
  baseline: {sbp: 120}
  baseline_label: "<fill in: who the reference patient is, e.g. the same patient with SBP 120 mmHg>"

card:
  short_title: "<fill in: e.g. 10-year LDL risk, 60 characters at most>"  # used in every card summary
  # The summary line (under 140 characters). Placeholders: {value} (the primary output as shown) and {category}.
  summary: "<fill in: e.g. 10-year risk> {value} ({category})"
  template: risk.md.j2           # the card detail template (cards/templates/)
  # topic: {system: "http://snomed.info/sct", code: "…", display: "…"}
  # risk_assessment_code: {system: "http://snomed.info/sct", code: "…", display: "…"}
  # observation_code: {…}        # a measured value (like eGFR) is saved as an Observation with this code instead
  # links: [{label: "The guideline", url: "https://…"}]

# Scenarios on the details page, recomputed with this model inside the validated ranges.
what_if: []
#  - label: Blood pressure treated to 130 mmHg
#    set: {sbp: 130}
#    applies_when: [{feature: sbp, min: 131, reason: systolic blood pressure is already 130 mmHg or lower}]
#    note: what the scenario assumes

limitations:
  - "<fill in: a known limitation a clinician should weigh (add one line per limitation)>"
citation: "<fill in: the publication or report that describes the model>"
# citation_url: https://doi.org/…

# The model card: the ONC HTI-1 source attributes (45 CFR 170.315(b)(11)) of a __KIND__ model. Each is a value, or
# {not_available: "<reason>"} when it truly is not available; an empty one stops the service from starting.
model_card:
  attributes:
__ATTRIBUTES__
__REFERENCE__
# Optional: how monitoring joins outcomes and what evidence promotes a challenger (docs/monitoring.md).
# monitoring:
#   outcome: {label: "…", codes: ["http://snomed.info/sct|…"], horizon_days: 3650}
#   min_events: 20
# acceptance:
#   min_events: 20
#   non_inferiority_margin: 0.02
"""

REFERENCE_PREDICTIVE = """\
  # For drift monitoring: each input's (and "__score__"'s) distribution in the training data, as bin edges and the
  # proportion of training rows in each bin. build.py can write it; see training/train_t2d.py for an example.
  # reference_distribution:
  #   sbp: {edges: [-1.0e12, 110, 125, 140, 1.0e12], proportions: [0.25, 0.25, 0.25, 0.25]}
"""

FEATURES = """\
# The feature spec: how each input is read from FHIR R4 (docs/feature-spec.md has the whole language).
# Every manifest input needs a feature of the same name and unit; population rules may use more features.
spec_version: 1
features:
  age:
    label: Age
    demographic: age               # age | gender | race | ethnicity (read from Patient)
  sbp:
    label: Systolic blood pressure
    sources:                       # tried together; the newest usable value wins (aggregate: latest)
      - resource: Observation
        codes: ["http://loinc.org|85354-9", "http://loinc.org|55284-4"]   # blood pressure panels
        component: ["http://loinc.org|8480-6"]                            # ... their systolic component
      - {resource: Observation, codes: ["http://loinc.org|8480-6"]}       # a systolic reading on its own
    unit: "mm[Hg]"                 # UCUM; values in other units are converted, unusable ones are passed over
    lookback_days: 365             # only values from the last year
    missing_note: a blood pressure from the last year is needed
  # A diagnosis that counts when present, and is assumed absent (with a note on the card) when not recorded:
  # diabetes:
  #   label: Diabetes
  #   value: exists
  #   required: false
  #   sources: [{resource: Condition, valueset: diabetes}]
  #   default: 0
  #   default_note: no diabetes on the problem list
"""

GOLDEN = """\
# Worked examples: inputs and the outputs the graph must reproduce (within `tolerance`), checked at every start.
# For an equation, take the published worked examples and compute the outputs with an independent reference
# implementation (not the graph). For a learned model, build.py writes examples from held-out rows.
tolerance: 1.0e-9
examples:
  - name: "<fill in: where the example comes from, e.g. the paper's Table 3, first patient>"
    inputs: {age: 55, sbp: 130}
    outputs: {risk: "<fill in: the expected value, e.g. 0.0523>"}
"""

BUILD_EVIDENCE = '''\
"""Build model.onnx for __MODEL_ID__ from published coefficients (an evidence-based model).

The graph follows the service's ONNX contract (docs/model-authoring.md): input `features`, double [N, k], columns in
the order of the manifest's inputs; one double [N, 1] output per manifest output. inference/graph_builder.py keeps
the build deterministic (running it twice writes the same bytes). This example is a logistic equation,
risk = 1 / (1 + exp(-(intercept + sum of coefficient * input))); write your equation with the builder's operations
(add, mul, log, exp, step, where, matmul …; see the shipped models' build.py).

Run: python models/__MODEL_ID__/1.0.0/build.py [--out PATH], then write golden.yaml from the publication's worked
examples with `reference()` below (an independent plain-Python reading of the same equation) and run
`cds-onnx models validate`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import onnx

from inference.graph_builder import GraphBuilder, build_main

MODEL_ID = "__MODEL_ID__"
VERSION = "1.0.0"
INPUTS = ("age", "sbp")  # the manifest's inputs, in order
# The published coefficients, one per input, and the intercept: replace the None values.
COEFFICIENTS: dict[str, float | None] = {"age": None, "sbp": None}
INTERCEPT: float | None = None


def _coefficients() -> tuple[float, dict[str, float]]:
    missing = [name for name, value in COEFFICIENTS.items() if value is None]
    missing += ["INTERCEPT"] if INTERCEPT is None else []
    if missing:
        sys.exit(f"build.py: write the published values of {', '.join(missing)} first")
    return float(INTERCEPT), {name: float(value) for name, value in COEFFICIENTS.items()}  # type: ignore[arg-type]


def build_model() -> onnx.ModelProto:
    intercept, coefficients = _coefficients()
    g = GraphBuilder(MODEL_ID, VERSION, INPUTS)
    linear = g.add(g.matmul(g.concat([g.col(name) for name in INPUTS]), [[coefficients[n]] for n in INPUTS]),
                   intercept)
    g.output("risk", g.div(1.0, g.add(1.0, g.exp(g.mul(linear, -1.0)))))
    return g.build(f"{MODEL_ID} {VERSION}. Inputs: " + ", ".join(INPUTS) + ".", {"citation": "see manifest.yaml"})


def reference(inputs: dict[str, float]) -> dict[str, float]:
    """The same equation in plain Python, for golden.yaml (inference.graph_builder.write_golden)."""
    intercept, coefficients = _coefficients()
    linear = intercept + sum(coefficients[n] * inputs[n] for n in INPUTS)
    return {"risk": 1.0 / (1.0 + math.exp(-linear))}


if __name__ == "__main__":
    build_main(build_model, Path(__file__).with_name("model.onnx"))
'''

BUILD_PREDICTIVE = '''\
"""Train __MODEL_ID__ and write model.onnx and golden.yaml (a predictive model learned from data).

Reads a CSV with one column per manifest input (same names, same units as features.yaml) and a 0/1 outcome column,
fits a scikit-learn model, and wraps it into the service's ONNX contract with inference.authoring.export_model
(input `features` double [N, k] in manifest input order, output `risk` double [N, 1] = P(outcome = 1)), checked
against the model's own predict_proba on held-out rows. The held-out rows become the golden examples. Build the
training table by mapping your records through this folder's features.yaml, so training reads FHIR exactly as the
service will (training/train_t2d.py shows how). Then fill in the model card's validation attributes from your
evaluation, and run `cds-onnx models validate`.

Run: python models/__MODEL_ID__/1.0.0/build.py --data training.csv --label outcome
Needs: pip install 'cds-onnx[authoring]' (scikit-learn, skl2onnx; LightGBM models also need onnxmltools).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from inference.authoring import export_model

MODEL_ID = "__MODEL_ID__"
VERSION = "1.0.0"
INPUTS = ("age", "sbp")  # the manifest's inputs, in order
HERE = Path(__file__).resolve().parent
SEED = 20260101


def read_table(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in (*INPUTS, label) if rows and c not in rows[0]]
    if not rows or missing:
        raise SystemExit(f"{path}: needs a header and rows with columns {', '.join((*INPUTS, label))} "
                         f"(missing: {', '.join(missing) or 'rows'})")
    x = np.array([[float(r[c]) for c in INPUTS] for r in rows], dtype=np.float64)
    y = np.array([int(float(r[label])) for r in rows])
    return x, y


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    parser = argparse.ArgumentParser(description=f"Train {MODEL_ID} and write model.onnx and golden.yaml")
    parser.add_argument("--data", type=Path, required=True, help="CSV with the inputs and the outcome")
    parser.add_argument("--label", default="outcome", help="the 0/1 outcome column")
    parser.add_argument("--examples", type=int, default=5, help="held-out rows written as golden examples")
    args = parser.parse_args(argv)

    x, y = read_table(args.data, args.label)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    model = LogisticRegression(max_iter=1000)  # any scikit-learn classifier or pipeline, or LightGBM, works here
    model.fit(x_train, y_train)
    graph = export_model(model, INPUTS, HERE / "model.onnx", output_name="risk", model_id=MODEL_ID, version=VERSION,
                         check_rows=x_test)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    examples = []
    for i, row in enumerate(x_test[: args.examples]):
        value = float(session.run(["risk"], {"features": row[np.newaxis, :]})[0][0, 0])
        examples.append({"name": f"held-out row {i + 1}", "inputs": dict(zip(INPUTS, map(float, row))),
                         "outputs": {"risk": value}})
    (HERE / "golden.yaml").write_text(yaml.safe_dump({"tolerance": 1e-9, "examples": examples}, sort_keys=False),
                                      encoding="utf-8")
    print(f"wrote {HERE / 'model.onnx'} and {HERE / 'golden.yaml'} ({len(examples)} examples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''
