"""Validate a model version folder and collect every problem, instead of stopping at the first.

`cds-onnx models validate`, `serve` and the app's start-up all load models through here (via
`inference.repository.load_version`), so an author sees the same list everywhere, one problem per line as
`file: field: problem — fix`. Beyond each file on its own, the checks cross the files: manifest inputs against the
feature spec (names, units, ranges, defaults), the ONNX graph's signature against the manifest, the golden examples
against the validated ranges and the graph, and every card text rendered through the real card builder from the
golden examples, so a card that cannot be built fails here rather than on every call.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fhir_mapping.medications import DrugClassError
from fhir_mapping.result import FeatureValue, MappingResult, MissingFeature
from fhir_mapping.spec import FeatureSpec
from fhir_mapping.units import default_registry
from fhir_mapping.valuesets import ValueSetError, ValueSetLibrary
from inference.manifest import Manifest
from inference.model_card import required_attributes
from inference.problems import (DOCS, PLACEHOLDER_PROBLEM, Problem, manifest_problems, placeholder_problems,
                                read_yaml, yaml_model_problems)
from inference.runtime import INPUT_NAME, ModelRuntime, Prediction

CARD_VALUES = ("value", "category")  # the names card.summary may use: {value} and {category}
_PLACEHOLDER = re.compile(r"(?<![{\\])\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


@dataclass
class VersionCheck:
    """The outcome of validating one version folder: a ready runtime only when there is no problem."""

    folder: Path
    runtime: ModelRuntime | None = None
    problems: list[Problem] = field(default_factory=list)


def check_version(folder: Path) -> VersionCheck:
    """Validate one `models/<id>/<version>/` folder completely; never raises for a problem in the folder."""
    check = _check_version(folder)
    check.problems = _without_repeats(check.problems)
    return check


def _check_version(folder: Path) -> VersionCheck:
    check = VersionCheck(folder)
    manifest_path = folder / "manifest.yaml"
    manifest, problems = manifest_problems(manifest_path)
    check.problems += problems
    valuesets = ValueSetLibrary([folder / "valuesets", folder.parent / "valuesets"])
    spec, problems = spec_problems(folder / (manifest.features if manifest else "features.yaml"), valuesets)
    check.problems += problems
    if manifest is None:
        return check
    if folder.name != manifest.version or folder.parent.name != manifest.id:
        check.problems.append(Problem(
            manifest_path, "id" if folder.parent.name != manifest.id else "version",
            f"the folder is {folder.parent.name}/{folder.name} but the manifest says {manifest.id}/{manifest.version}",
            f"keep the folder at models/{manifest.id}/{manifest.version}/ or change id/version to match"))
    check.problems += card_problems(manifest_path, manifest)
    check.problems += model_card_problem_list(manifest_path, manifest)
    if spec is not None:
        check.problems += cross_problems(manifest_path, folder / manifest.features, manifest, spec)
    golden_path = folder / "golden.yaml"
    examples, problems = golden_problems(golden_path, manifest, spec)
    check.problems += problems
    model_path = folder / manifest.model_file
    runtime, problems = graph_problems(model_path, folder, manifest, spec, valuesets)
    check.problems += problems
    if runtime is None:
        return check
    check.problems += reproduction_problems(golden_path, runtime, examples)
    if not check.problems:
        check.problems += rendering_problems(manifest_path, runtime, examples)
    if not check.problems:
        check.runtime = runtime
    return check


def _without_repeats(problems: list[Problem]) -> list[Problem]:
    """A field that still holds a placeholder is reported once, as that, not again as a wrong value."""
    marked = {(p.file, p.field) for p in problems if p.problem == PLACEHOLDER_PROBLEM}
    return [p for p in problems if p.problem == PLACEHOLDER_PROBLEM or (p.file, p.field) not in marked]


# -- the feature spec ---------------------------------------------------------------------------------------------

def spec_problems(path: Path, valuesets: ValueSetLibrary) -> tuple[FeatureSpec | None, list[Problem]]:
    spec, problems = yaml_model_problems(path, FeatureSpec, ("is not a mapping", "write `spec_version: 1` and "
                                                                                 f"`features:` (see {DOCS})"))
    if spec is None:
        return None, problems
    for name, feature in spec.features.items():
        named = [(f"features.{name}.sources[{i}].valueset", s.valueset) for i, s in enumerate(feature.sources)
                 if s.valueset]
        named += [(f"features.{name}.sources[{i}].reason_valueset", s.reason_valueset)
                  for i, s in enumerate(feature.sources) if s.reason_valueset]
        if feature.answers and feature.answers.valueset:
            named.append((f"features.{name}.answers.valueset", feature.answers.valueset))
        for where, vs_name in named:
            try:
                valuesets.get(vs_name)
            except ValueSetError as exc:
                problems.append(Problem(path, where, str(exc), "use a shipped value set (docs/valuesets.md) or add "
                                        "the file to the model folder's valuesets/"))
        for i, source in enumerate(feature.sources):
            if source.medication_class:
                try:
                    valuesets.drug_class(source.medication_class)
                except (DrugClassError, ValueSetError) as exc:
                    problems.append(Problem(path, f"features.{name}.sources[{i}].medication_class", str(exc),
                                            "use a shipped drug class (docs/valuesets.md) or add it to drugclasses/"))
    return spec, problems  # valid fields, maybe with placeholders or unknown value sets: checked further, not served


# -- the manifest against itself, the model card and the feature spec ----------------------------------------------

def card_problems(path: Path, manifest: Manifest) -> list[Problem]:
    """card.summary names only card values and can be filled; the template exists; no other card text has a
    placeholder (only the summary is filled)."""
    from jinja2 import TemplateError

    from cards.markdown import environment

    problems = []
    summary = manifest.card.summary
    allowed = ", ".join(f"{{{v}}}" for v in CARD_VALUES)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(summary) if name is not None]
    except ValueError as exc:
        problems.append(Problem(path, "card.summary", f"cannot be filled ({exc})",
                                f"write placeholders as {allowed}; write a literal brace as {{{{ or }}}}"))
        names = []
    for name in dict.fromkeys(names):
        if name not in CARD_VALUES:
            shown = f"{{{name}}}" if name else "{}"
            problems.append(Problem(path, "card.summary", f"names {shown} which is not a card value",
                                    f"use one of {allowed}"))
    if not problems:
        for cat in manifest.categories:
            try:
                summary.format(value="12.3%", category=cat.label)
            except (ValueError, IndexError, KeyError, AttributeError) as exc:
                problems.append(Problem(path, "card.summary", f"cannot be filled ({exc})",
                                        f"write placeholders as {allowed} without format specifications"))
                break
    try:
        environment().get_template(manifest.card.template)
    except TemplateError:
        problems.append(Problem(path, "card.template", f"'{manifest.card.template}' is not a card template",
                                "use risk.md.j2 (the templates are in cards/templates/)"))
    for where, text in _card_texts(manifest):
        for name in dict.fromkeys(_PLACEHOLDER.findall(text or "")):
            problems.append(Problem(path, where, f"writes {{{name}}}, but only card.summary fills placeholders",
                                    "write the text out (the card shows it exactly as written)"))
    return problems


def _card_texts(manifest: Manifest) -> list[tuple[str, str | None]]:
    texts: list[tuple[str, str | None]] = [("card.short_title", manifest.card.short_title)]
    texts += [(f"inputs[{i}].label", spec_in.label) for i, spec_in in enumerate(manifest.inputs)]
    for i, out in enumerate(manifest.outputs):
        texts.append((f"outputs[{i}].label", out.label))
        texts += [(f"outputs[{i}].applies_when[{j}].reason", c.reason) for j, c in enumerate(out.applies_when)]
    for i, cat in enumerate(manifest.categories):
        texts += [(f"categories[{i}].description", cat.description), (f"categories[{i}].guidance", cat.guidance)]
        for j, follow in enumerate(cat.follow_ups):
            texts += [(f"categories[{i}].follow_ups[{j}].label", follow.label),
                      (f"categories[{i}].follow_ups[{j}].text", follow.text)]
    for i, rule in enumerate(manifest.population):
        texts += [(f"population[{i}].reason", rule.reason), (f"population[{i}].guidance", rule.guidance),
                  (f"population[{i}].unconfirmed", rule.unconfirmed)]
    return texts


def model_card_problem_list(path: Path, manifest: Manifest) -> list[Problem]:
    """The HTI-1 source attributes of the manifest's kind, each a value or {not_available: reason}."""
    attrs = manifest.model_card.get("attributes")
    if not isinstance(attrs, dict):
        return [Problem(path, "model_card.attributes", "missing",
                        f"add the {len(required_attributes(manifest.kind))} HTI-1 source attributes of a "
                        f"{manifest.kind} model (see {DOCS})")]
    problems = []
    for key, title in required_attributes(manifest.kind).items():
        value = attrs.get(key)
        where = f"model_card.attributes.{key}"
        if key not in attrs or _empty(value):
            problems.append(Problem(path, where, "missing",
                                    f"add it ({title}), or write {{not_available: \"<reason>\"}}"))
        elif isinstance(value, dict) and "not_available" in value and _empty(value["not_available"]):
            problems.append(Problem(path, where, "not_available without a reason", "say why it is not available"))
    unknown = [k for k in attrs if k not in required_attributes(manifest.kind)]
    for key in unknown:
        problems.append(Problem(path, f"model_card.attributes.{key}",
                                f"is not an HTI-1 source attribute of a {manifest.kind} model",
                                "remove it, or check `kind` (predictive and evidence-based models have different "
                                "attribute sets)"))
    return problems


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0)


def cross_problems(manifest_path: Path, spec_path: Path, manifest: Manifest, spec: FeatureSpec) -> list[Problem]:
    """Names, units, ranges and defaults agree between the manifest and the feature spec."""
    problems = []
    known = spec.features
    fix = "define it there or fix the name"
    for i, spec_in in enumerate(manifest.inputs):
        feature = known.get(spec_in.name)
        if feature is None:
            problems.append(Problem(manifest_path, f"inputs[{i}].name",
                                    f"'{spec_in.name}' is not a feature of {spec_path.name}", fix))
            continue
        here = f"features.{spec_in.name}"
        if spec_in.unit is not None and feature.unit is not None and spec_in.unit != feature.unit:
            problems.append(Problem(spec_path, f"{here}.unit",
                                    f"{feature.unit} differs from manifest inputs.{spec_in.name}.unit {spec_in.unit}",
                                    "make them the same UCUM unit"))
        if spec_in.unit is None and feature.unit is not None:
            problems.append(Problem(manifest_path, f"inputs[{i}].unit",
                                    f"missing, but {spec_path.name} reads {spec_in.name} in {feature.unit}",
                                    f"add unit: \"{feature.unit}\""))
        low_high = spec_in.range
        if feature.default is not None:
            if spec_in.kind == "binary" and feature.default not in (0, 1):
                problems.append(Problem(spec_path, f"{here}.default",
                                        f"{feature.default:g} for binary manifest input {spec_in.name}", "use 0 or 1"))
            elif low_high is not None and not low_high[0] <= feature.default <= low_high[1]:
                problems.append(Problem(spec_path, f"{here}.default",
                                        f"{feature.default:g} is outside manifest inputs.{spec_in.name}.range "
                                        f"[{low_high[0]:g}, {low_high[1]:g}], so every patient without a value would "
                                        "be refused", "use a default inside the range, or no default"))
    for i, rule in enumerate(manifest.population):
        if rule.feature not in known:
            problems.append(Problem(manifest_path, f"population[{i}].feature",
                                    f"'{rule.feature}' is not a feature of {spec_path.name}", fix))
        for j, cond in enumerate(rule.only_if):
            if cond.feature not in known:
                problems.append(Problem(manifest_path, f"population[{i}].only_if[{j}].feature",
                                        f"'{cond.feature}' is not a feature of {spec_path.name}", fix))
    labels = {c.label for c in manifest.categories}
    for i, advice in enumerate(manifest.advice):
        for j, cond in enumerate(advice.when):
            if cond.feature not in known:
                problems.append(Problem(manifest_path, f"advice[{i}].when[{j}].feature",
                                        f"'{cond.feature}' is not a feature of {spec_path.name}", fix))
        for j, name in enumerate(advice.unchecked):
            if name not in known:
                problems.append(Problem(manifest_path, f"advice[{i}].unchecked[{j}]",
                                        f"'{name}' is not a feature of {spec_path.name}", fix))
        if advice.written_in is not None and default_registry().lookup(advice.written_in) is None:
            problems.append(Problem(manifest_path, f"advice[{i}].written_in",
                                    f"unit '{advice.written_in}' is not in the unit registry", "write a UCUM unit"))
        for label in advice.categories:
            if label not in labels:
                problems.append(Problem(manifest_path, f"advice[{i}].categories", f"'{label}' is not a category",
                                        f"use one of {', '.join(sorted(labels))}"))
    for i, note in enumerate(manifest.card.notes):
        if note.written_in is not None and default_registry().lookup(note.written_in) is None:
            problems.append(Problem(manifest_path, f"card.notes[{i}].written_in",
                                    f"unit '{note.written_in}' is not in the unit registry", "write a UCUM unit"))
        for j, cond in enumerate(note.when):
            if cond.feature not in known:
                problems.append(Problem(manifest_path, f"card.notes[{i}].when[{j}].feature",
                                        f"'{cond.feature}' is not a feature of {spec_path.name}", fix))
        for name in dict.fromkeys(_PLACEHOLDER.findall(note.text)):
            if name not in ("evidence", "value", "date"):
                problems.append(Problem(manifest_path, f"card.notes[{i}].text",
                                        f"writes {{{name}}}, but a note fills only {{evidence}}, {{value}} and "
                                        "{date}",
                                        "write the text out, or use {evidence} for the records it rests on, {value} "
                                        "and {date} for its first condition's value as the card shows it"))
    for i, out in enumerate(manifest.outputs):
        for j, cond in enumerate(out.applies_when):
            if cond.feature not in known:
                problems.append(Problem(manifest_path, f"outputs[{i}].applies_when[{j}].feature",
                                        f"'{cond.feature}' is not a feature of {spec_path.name}", fix))
    if manifest.explain:
        by_name = {i.name: i for i in manifest.inputs}
        for name, value in manifest.explain.baseline.items():
            spec_in = by_name.get(name)
            if spec_in is None:
                problems.append(Problem(manifest_path, f"explain.baseline.{name}",
                                        f"'{name}' is not an input of the model", "remove it or fix the name"))
            elif spec_in.range is not None and not spec_in.range[0] <= value <= spec_in.range[1]:
                problems.append(Problem(manifest_path, f"explain.baseline.{name}",
                                        f"{value:g} is outside inputs.{name}.range "
                                        f"[{spec_in.range[0]:g}, {spec_in.range[1]:g}]",
                                        "use a reference value inside the validated range"))
    return problems


# -- golden examples ----------------------------------------------------------------------------------------------

@dataclass
class Example:
    index: int
    name: str
    inputs: dict[str, float]
    outputs: dict[str, float]
    extra: dict[str, float]  # values given for features that are not graph inputs (e.g. population features)


def absent_addons(spec: FeatureSpec | None, values: dict[str, float]) -> set[str]:
    """Add-on inputs that the example marks as not measured (their `present_of` flag is at its default): their value
    is a placeholder the graph ignores, so it need not lie in the validated range."""
    if spec is None:
        return set()
    return {f.present_of for name, f in spec.features.items()
            if f.present_of is not None and name in values and values[name] == f.default}


def golden_problems(path: Path, manifest: Manifest, spec: FeatureSpec | None = None
                    ) -> tuple[tuple[list[Example], float], list[Problem]]:
    """The usable examples and the tolerance, with every problem of the file."""
    doc, problems = read_yaml(path)
    if problems:
        return ([], 0.0), problems
    if not isinstance(doc, dict):
        return ([], 0.0), [Problem(path, "", "is not a mapping", "write `tolerance:` and `examples:` (see "
                                                                  f"{DOCS})")]
    problems = placeholder_problems(path, doc)
    try:
        tolerance = float(doc.get("tolerance", 1e-9))
    except (TypeError, ValueError):
        problems.append(Problem(path, "tolerance", f"{doc.get('tolerance')!r} is not a number", "write e.g. 1.0e-9"))
        tolerance = 1e-9
    raw = doc.get("examples")
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(path, "examples", "no worked examples",
                                "add at least one example with `name`, `inputs` and `outputs`"))
        return ([], tolerance), problems
    by_name = {i.name: i for i in manifest.inputs}
    outputs = {o.name for o in manifest.outputs}
    for input_name in by_name:
        if all(isinstance(e, dict) and isinstance(e.get("inputs"), dict) and input_name not in e["inputs"]
               for e in raw):
            problems.append(Problem(path, "examples", f"no example has a value for {input_name}",
                                    f"add {input_name}: <value> to the inputs of every example"))
    examples = []
    for k, ex in enumerate(raw):
        where = f"examples[{k}]"
        if not isinstance(ex, dict):
            problems.append(Problem(path, where, "is not a mapping", "give `name`, `inputs` and `outputs`"))
            continue
        name = str(ex.get("name") or f"example {k + 1}")
        given = ex.get("inputs") if isinstance(ex.get("inputs"), dict) else None
        expected = ex.get("outputs") if isinstance(ex.get("outputs"), dict) else None
        if given is None:
            problems.append(Problem(path, f"{where}.inputs", "missing", "give a value for every manifest input"))
            continue
        if expected is None or not expected:
            problems.append(Problem(path, f"{where}.outputs", "missing",
                                    "give the outputs the example must reproduce (from an independent reference)"))
            expected = {}
        ok = True
        values: dict[str, float] = {}
        for key, value in given.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError):
                problems.append(Problem(path, f"{where}.inputs.{key}", f"{value!r} is not a number", "write a number"))
                ok = False
        placeholders = absent_addons(spec, values)
        for input_name, spec_in in by_name.items():
            if input_name not in values:
                if input_name in given:
                    continue
                if not all(isinstance(e, dict) and isinstance(e.get("inputs"), dict) and input_name not in e["inputs"]
                           for e in raw):  # missing from every example: said once below
                    problems.append(Problem(path, f"{where}.inputs", f"has no value for {input_name}",
                                            f"add {input_name}: <value>"))
                ok = False
                continue
            value = values[input_name]
            if spec_in.kind == "binary" and value not in (0, 1):
                problems.append(Problem(path, f"{where}.inputs.{input_name}", f"{value:g} for a binary input",
                                        "use 0 or 1"))
            elif (spec_in.range is not None and not spec_in.range[0] <= value <= spec_in.range[1]
                  and input_name not in placeholders):
                problems.append(Problem(path, f"{where}.inputs.{input_name}",
                                        f"{value:g} is outside manifest inputs.{input_name}.range "
                                        f"[{spec_in.range[0]:g}, {spec_in.range[1]:g}]",
                                        "use a value inside the validated range (the service refuses others)"))
        checked: dict[str, float] = {}
        for out_name, value in expected.items():
            if out_name not in outputs:
                problems.append(Problem(path, f"{where}.outputs.{out_name}", "is not an output of the model",
                                        f"use one of {', '.join(sorted(outputs))}"))
                continue
            try:
                checked[str(out_name)] = float(value)
            except (TypeError, ValueError):
                problems.append(Problem(path, f"{where}.outputs.{out_name}", f"{value!r} is not a number",
                                        "write the expected output as a number"))
        if ok:
            extra = {k: v for k, v in values.items() if k not in by_name}
            examples.append(Example(k, name, {n: values[n] for n in by_name}, checked, extra))
    return (examples, tolerance), problems


def reproduction_problems(path: Path, runtime: ModelRuntime, golden: tuple[list[Example], float]) -> list[Problem]:
    examples, tolerance = golden
    problems = []
    names = [i.name for i in runtime.manifest.inputs]
    for ex in examples:
        row = np.array([[ex.inputs[n] for n in names]], dtype=np.float64)
        try:
            got = runtime.run_matrix(row)
        except Exception as exc:  # onnxruntime raises its own exception types for a graph that fails to run
            problems.append(Problem(path, f"examples[{ex.index}]", f"the graph fails on example '{ex.name}' ({exc})",
                                    "rebuild model.onnx so it runs on the manifest's inputs"))
            continue
        for out_name, expected in ex.outputs.items():
            value = float(got[out_name][0])
            if not abs(value - expected) <= tolerance:
                problems.append(Problem(
                    path, f"examples[{ex.index}].outputs.{out_name}",
                    f"golden example '{ex.name}' not reproduced: {out_name} = {value!r}, expected {expected!r} "
                    f"(tolerance {tolerance:g})",
                    "fix the graph or the expected value (compute it with an independent reference)"))
    return problems


# -- the ONNX graph -----------------------------------------------------------------------------------------------

def graph_problems(path: Path, folder: Path, manifest: Manifest, spec: FeatureSpec | None,
                   valuesets: ValueSetLibrary) -> tuple[ModelRuntime | None, list[Problem]]:
    """Load the graph and check it against the ONNX contract; a runtime only when the signature is right."""
    how = f"build it with the folder's build script (see {DOCS}, \"The ONNX contract\")"
    if not path.is_file():
        return None, [Problem(path, "", "file not found", how)]
    if spec is None:
        return None, []  # the runtime needs the feature spec; its problems are reported already
    try:
        runtime = ModelRuntime(folder, manifest, spec, valuesets)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        message = " ".join(str(exc).split())
        return None, [Problem(path, "", f"onnxruntime cannot load it ({message[:300]})", how)]
    problems = []
    inputs = runtime.session.get_inputs()
    k = len(manifest.inputs)
    if len(inputs) != 1:
        problems.append(Problem(path, "inputs", f"the graph has {len(inputs)} inputs "
                                f"({', '.join(i.name for i in inputs)}) but the service feeds one, '{INPUT_NAME}'",
                                f"make one input '{INPUT_NAME}', double [N, {k}] (see {DOCS})"))
    else:
        graph_in = inputs[0]
        if graph_in.name != INPUT_NAME:
            problems.append(Problem(path, "inputs", f"graph input '{graph_in.name}' but the service feeds "
                                    f"'{INPUT_NAME}'", f"rename the graph input to '{INPUT_NAME}' (see {DOCS})"))
        if graph_in.type != "tensor(double)":
            problems.append(Problem(path, f"inputs.{graph_in.name}", f"is {graph_in.type}; the service feeds "
                                    "tensor(double)", "make the input double and cast inside the graph if the model "
                                    "computes in float (inference.authoring.export_model does this)"))
        shape = graph_in.shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k):
            problems.append(Problem(path, f"inputs.{graph_in.name}", f"has shape {shape} but the manifest has {k} "
                                    f"inputs", f"make the shape [N, {k}] (one column per manifest input, in order)"))
    graph_outputs = {o.name: o for o in runtime.session.get_outputs()}
    for out in manifest.outputs:
        got = graph_outputs.get(out.name)
        if got is None:
            problems.append(Problem(path, f"outputs.{out.name}", f"output '{out.name}' is not produced by the graph "
                                    f"(it has {', '.join(graph_outputs)})",
                                    "name a graph output after each manifest output, or fix the manifest's name"))
        elif got.type != "tensor(double)":
            problems.append(Problem(path, f"outputs.{out.name}", f"is {got.type}; the service reads tensor(double)",
                                    "cast the output to double inside the graph"))
    return (None if problems else runtime), problems


# -- cards rendered from the golden examples ----------------------------------------------------------------------

def rendering_problems(path: Path, runtime: ModelRuntime, golden: tuple[list[Example], float]) -> list[Problem]:
    """Build every kind of card the model can give, through the real card builder: a result card for each golden
    example, a refusal card for each population rule, and a missing-data card."""
    from cards.builder import CardContext, build_cards

    manifest, spec = runtime.manifest, runtime.spec
    ctx = CardContext(service_id=manifest.id, patient_id="golden-example", encounter_id=None, at=datetime.now(UTC),
                      base_url="http://validation.invalid", details_url="http://validation.invalid/details/x")
    cases: list[tuple[str, Prediction, MappingResult]] = []
    for ex in golden[0]:
        mapping = _golden_mapping(runtime, ex)
        cases.append((f"golden example '{ex.name}'", runtime.predict(mapping), mapping))
    for i, rule in enumerate(manifest.population):
        pred = Prediction(manifest.id, manifest.version, "champion", inputs={}, refusals=[rule.reason],
                          guidance=[rule.guidance] if rule.guidance else [])
        cases.append((f"the refusal card of population[{i}]", pred, MappingResult()))
    missing = MappingResult(missing={i.name: MissingFeature(i.name, "nothing usable on record", label=i.label)
                                     for i in manifest.inputs})
    cases.append(("the missing-data card", Prediction(manifest.id, manifest.version, "champion", inputs={},
                                                      missing_required=[i.name for i in manifest.inputs]), missing))
    problems = []
    for what, pred, mapping in cases:
        try:
            build_cards(manifest, spec, pred, mapping, ctx)
        except Exception as exc:  # any failure here would be a 500 on every such call: report it in words
            problems.append(Problem(path, "card", f"building {what} fails ({type(exc).__name__}: {exc})",
                                    "fix the card text or template this names"))
    return problems


def _golden_mapping(runtime: ModelRuntime, ex: Example) -> MappingResult:
    """The example's inputs as mapped values, with population features set to a value the rules accept unless the
    example gives one."""
    spec = runtime.spec
    values: dict[str, FeatureValue] = {}
    placeholders = absent_addons(spec, ex.inputs)
    for spec_in in runtime.manifest.inputs:
        feature = spec.features.get(spec_in.name)
        value = ex.inputs[spec_in.name]
        if spec_in.name in placeholders and feature is not None and feature.default is not None:
            value = feature.default  # what the mapper gives a not-measured add-on (the graph ignores it)
        values[spec_in.name] = FeatureValue(spec_in.name, value,
                                            unit=feature.unit if feature else spec_in.unit,
                                            label=feature.label if feature else spec_in.label)
    for rule in runtime.manifest.population:
        if rule.feature in values:
            continue
        value = ex.extra.get(rule.feature)
        if value is None:
            value = next((v for v in (rule.equals, rule.min, rule.max) if v is not None), 0.0)
        feature = spec.features.get(rule.feature)
        values[rule.feature] = FeatureValue(rule.feature, float(value), label=feature.label if feature else None)
    return MappingResult(values=values)
