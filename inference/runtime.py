"""One loaded model version: its manifest, feature spec, onnxruntime session and the prediction it makes.

Sessions are created and warmed once at start-up; a prediction is one session.run over the patient's row plus the
rows the explanation needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fhir_mapping.result import MappingResult
from fhir_mapping.spec import FeatureSpec
from fhir_mapping.valuesets import ValueSetLibrary
from inference.explain import coalition_matrix, shapley_values
from inference.guards import attributed_refusals, refusal_guidance, unmet
from inference.manifest import Category, Manifest

INPUT_NAME = "features"


@dataclass(frozen=True)
class Contribution:
    feature: str
    label: str
    delta: float  # change in the explained output versus the reference value


@dataclass
class Prediction:
    model_id: str
    model_version: str
    alias: str
    inputs: dict[str, float]
    outputs: dict[str, float] | None = None
    category: Category | None = None
    refusals: list[str] = field(default_factory=list)
    missing_required: list[str] = field(default_factory=list)
    contributions: list[Contribution] = field(default_factory=list)
    reference_output: float | None = None
    suppressed: bool = False  # no card at all (the patient is deceased): a risk card would be wrong and hurtful
    guidance: list[str] = field(default_factory=list)  # what the guideline says instead, for a refused population
    withheld: dict[str, str] = field(default_factory=dict)  # secondary outputs not given, with the reason
    notes: list[str] = field(default_factory=list)  # lines the result card adds (e.g. a truncated timeline)
    # what each refusal came from ("population:<feature>", "range:<input>"; "" for death and non-finite values), in
    # the order of `refusals` (the sequence runtime's own checks leave it empty; the record pads it with "")
    refused_by: list[str] = field(default_factory=list)


def stopped_by_guards(manifest: Manifest, mapping: MappingResult, values: dict[str, float], pred: Prediction,
                      label: Callable[[str], str] = str) -> bool:
    """The guards every runtime applies before any number, in this order: death (no card at all), non-finite values,
    population rules and validated ranges (with the guideline's guidance), then missing inputs. Fills `pred` and
    returns True when one of them stops the prediction. One function, so tabular and sequence models cannot differ."""
    if mapping.deceased:
        pred.refusals, pred.refused_by, pred.suppressed = [f"No risk estimate: {mapping.deceased}"], [""], True
        return True
    non_finite = [n for n, v in values.items() if not math.isfinite(v)]
    if non_finite:
        pred.refusals = [f"{label(n)} is not a finite number" for n in non_finite]
        pred.refused_by = [""] * len(pred.refusals)
        return True
    attributed = attributed_refusals(manifest, values, mapping)
    pred.refusals, pred.refused_by = [r for r, _ in attributed], [by for _, by in attributed]
    if pred.refusals:
        # what else bars a number: the other refusals, and the inputs still missing behind them
        unknown = sum(spec_in.name not in values for spec_in in manifest.inputs)
        pred.guidance = refusal_guidance(manifest, values, mapping, len(pred.refusals), unknown)
        return True
    missing = [spec_in.name for spec_in in manifest.inputs if spec_in.name not in values]
    if missing:
        pred.missing_required = missing
        return True
    return False


def settle_outputs(manifest: Manifest, mapping: MappingResult, values: dict[str, float], pred: Prediction) -> bool:
    """After the graph: no number when any output is not finite; outputs whose `applies_when` fails are withheld
    with the reason; the category is set. Returns False when the prediction is refused."""
    assert pred.outputs is not None
    bad = [n for n, v in pred.outputs.items() if not math.isfinite(v)]
    if bad:
        pred.outputs, pred.refusals, pred.refused_by = None, [f"the model produced no finite {', '.join(bad)}"], [""]
        return False
    for spec_out in manifest.outputs:
        reason = unmet(spec_out.applies_when, values, mapping) if spec_out.applies_when else None
        if reason is not None:
            pred.outputs.pop(spec_out.name, None)
            pred.withheld[spec_out.name] = reason
    pred.category = manifest.category_for(pred.outputs)
    return True


class ModelRuntime:
    """A model version ready to predict."""

    def __init__(self, folder: Path, manifest: Manifest, spec: FeatureSpec, valuesets: ValueSetLibrary) -> None:
        self.folder, self.manifest, self.spec, self.valuesets = folder, manifest, spec, valuesets
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / manifest.model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.output_names = [o.name for o in manifest.outputs]
        self._columns = {spec_in.name: j for j, spec_in in enumerate(manifest.inputs)}

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    def run_matrix(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on an [N, k] float64 matrix; outputs by name as [N] arrays."""
        results = self.session.run(self.output_names, {INPUT_NAME: np.ascontiguousarray(rows, dtype=np.float64)})
        return {name: np.asarray(arr, dtype=np.float64).reshape(-1) for name, arr in zip(self.output_names, results)}

    def warm_up(self) -> None:
        row = np.zeros((1, len(self.manifest.inputs)), dtype=np.float64)
        for j, spec_in in enumerate(self.manifest.inputs):
            if spec_in.range is not None:
                row[0, j] = (spec_in.range[0] + spec_in.range[1]) / 2
        self.run_matrix(row)

    def predict(self, mapping: MappingResult, alias: str = "champion") -> Prediction:
        """Guards first (death, population, ranges of what is known), then missing inputs, then one onnxruntime
        call for the prediction and its explanation."""
        values = {name: fv.value for name, fv in mapping.values.items() if name in self._columns}
        pred = Prediction(self.id, self.version, alias, inputs=values)
        if stopped_by_guards(self.manifest, mapping, values, pred, self._label):
            return pred
        patient = np.array([values[spec_in.name] for spec_in in self.manifest.inputs], dtype=np.float64)
        explain = self.manifest.explain
        if explain:
            columns = [self._columns[f] for f in explain.features]
            baseline = patient.copy()
            for name, value in explain.baseline.items():
                baseline[self._columns[name]] = value
            rows = coalition_matrix(patient, baseline, columns)
        else:
            rows = patient[np.newaxis, :]
        out = self.run_matrix(rows)
        last = rows.shape[0] - 1
        pred.outputs = {name: float(arr[last]) for name, arr in out.items()}
        if not settle_outputs(self.manifest, mapping, values, pred):
            return pred
        if explain:
            target = explain.output or self.manifest.primary.name
            phi = shapley_values(out[target], len(columns))
            pred.reference_output = float(out[target][0])
            pred.contributions = sorted(
                (Contribution(f, self._label(f), float(d)) for f, d in zip(explain.features, phi)),
                key=lambda c: -abs(c.delta),
            )
        return pred

    def _label(self, name: str) -> str:
        return next((i.label for i in self.manifest.inputs if i.name == name), name)
