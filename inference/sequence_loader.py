"""Load and validate a sequence model version folder (a manifest with a `sequence:` block).

Beside what every folder needs (manifest, features.yaml for the guards' features, HTI-1 model card, golden examples),
a sequence folder has timeline.yaml and a vocabulary, and a graph with the sequence ONNX contract: inputs tokens
(INT64), time and mask (FP32), each [N, T]; one FP64 [N, 1] output per manifest output. The graph is model.onnx in
process, or an Open Inference Protocol v2 endpoint the manifest's `backend:` names and the configuration allows
(`models.remote_backends`). Every problem is reported as `file: field: problem — fix`, like other folders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fhir_mapping.timeline import TimelineFeatureSpec, TimelineSpec, TimelineSpecError
from fhir_mapping.timeline_vocab import load_vocabulary
from fhir_mapping.valuesets import ValueSetError, ValueSetLibrary
from inference.manifest import Manifest
from inference.oip_backend import BackendUnavailable, OipV2Graph, backend_allowed
from inference.problems import Problem, manifest_problems, read_yaml, yaml_model_problems
from inference.sequence_graph import LocalGraph, SequenceGraph
from inference.sequence_runtime import SequenceRuntime
from inference.validation import card_problems, cross_problems, model_card_problem_list, spec_problems

log = logging.getLogger(__name__)
DOCS = "docs/timeline-models.md"


def load_sequence_version(folder: Path, manifest: Manifest, remote_backends: tuple[str, ...] = ()
                          ) -> tuple[SequenceRuntime | None, list[Problem]]:
    """(runtime, []) for a valid folder, else (None, every problem found)."""
    assert manifest.sequence is not None
    manifest_path = folder / "manifest.yaml"
    seq = manifest.sequence
    problems: list[Problem] = []
    if folder.name != manifest.version or folder.parent.name != manifest.id:
        problems.append(Problem(manifest_path, "version", f"the folder is {folder.parent.name}/{folder.name} but the "
                                f"manifest says {manifest.id}/{manifest.version}",
                                f"keep the folder at models/{manifest.id}/{manifest.version}/"))
    if manifest.explain is not None:
        problems.append(Problem(manifest_path, "explain", "a sequence model is explained by the concept groups of "
                                f"{seq.timeline}, not by Shapley values over inputs", "remove `explain`"))
    if manifest.what_if:
        problems.append(Problem(manifest_path, "what_if", "what-if scenarios change tabular inputs; a sequence model "
                                "reads the timeline", "remove `what_if`"))
    valuesets = ValueSetLibrary([folder / "valuesets", folder.parent / "valuesets"])
    spec, found = spec_problems(folder / manifest.features, valuesets)
    problems += found
    problems += card_problems(manifest_path, manifest) + model_card_problem_list(manifest_path, manifest)
    if spec is not None:
        problems += cross_problems(manifest_path, folder / manifest.features, manifest, spec)
    vocabulary = None
    timeline, found = timeline_problems(folder / seq.timeline, valuesets)
    problems += found
    try:
        vocabulary = load_vocabulary(folder / seq.vocabulary)
    except TimelineSpecError as exc:
        problems.append(Problem(folder / seq.vocabulary, "", str(exc).split(": ", 1)[-1], f"see {DOCS}"))
    graph, found = _graph(folder, manifest, remote_backends)
    problems += found
    if problems or spec is None or timeline is None or vocabulary is None or graph is None:
        return None, problems
    full_spec = TimelineFeatureSpec(spec_version=spec.spec_version, prefetch_date_limits=spec.prefetch_date_limits,
                                    features=spec.features, timeline=timeline)
    runtime = SequenceRuntime(folder, manifest, full_spec, valuesets, vocabulary, graph)
    try:
        problems += verify_graph(runtime)
    except BackendUnavailable as exc:
        if not exc.transient:
            problems.append(Problem(folder / "manifest.yaml", "backend", str(exc),
                                    "check backend.url and backend.model_name against the model server"))
        else:
            # the service starts; this model gives no number (and says why) until its server answers and matches
            log.warning("%s %s: %s; its predictions wait for the model server", manifest.id, manifest.version, exc)
            runtime.pending_check = lambda: verify_graph(runtime)
    return (None, problems) if problems else (runtime, [])


def timeline_problems(path: Path, valuesets: ValueSetLibrary) -> tuple[TimelineSpec | None, list[Problem]]:
    """(spec or None, every problem of a timeline.yaml): syntax, skeleton markers, fields, unknown value sets."""
    spec, problems = yaml_model_problems(path, TimelineSpec, ("is not a mapping", "write `code_systems:`, `groups:` "
                                                                                  f"and the other fields (see {DOCS})"))
    if spec is None:
        return None, problems
    for i, group in enumerate(spec.groups):
        for name in group.valuesets:
            try:
                valuesets.get(name)
            except ValueSetError as exc:
                problems.append(Problem(path, f"groups[{i}].valuesets", str(exc), "use a shipped value set "
                                        "(docs/valuesets.md) or add the file to the model folder's valuesets/"))
    return (None, problems) if problems else (spec, [])


def _graph(folder: Path, manifest: Manifest, remote_backends: tuple[str, ...]
           ) -> tuple[SequenceGraph | None, list[Problem]]:
    path = folder / "manifest.yaml"
    backend = manifest.backend
    if backend is None:
        model_path = folder / manifest.model_file
        if not model_path.is_file():
            return None, [Problem(path, "model_file", f"{manifest.model_file} not found in {folder}",
                                  "add the graph, or name an OIP v2 endpoint under `backend:`")]
        try:
            return LocalGraph(model_path), []
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            return None, [Problem(model_path, "", f"cannot be loaded by onnxruntime ({exc})",
                                  "re-export it (training/train_timeline.py)")]
    if not backend_allowed(backend.url, remote_backends):
        return None, [Problem(path, "backend.url", f"{backend.url} is not in the configuration's "
                              "models.remote_backends", "add the exact base URL to [models] remote_backends in the "
                              "service's configuration (the folder alone may not name a new host)")]
    return OipV2Graph(backend.url, backend.model_name, backend.model_version, backend.timeout_seconds), []


def verify_graph(runtime: SequenceRuntime) -> list[Problem]:
    """The graph's signature against the manifest, the vocabulary against the embedding, the golden examples against
    the graph. Raises BackendUnavailable when a remote graph does not answer (transient) or answers unusably."""
    folder, manifest = runtime.folder, runtime.manifest
    path = folder / (manifest.model_file if manifest.backend is None else "manifest.yaml")
    field = "" if manifest.backend is None else "backend"
    assert manifest.sequence is not None
    names = manifest.sequence.inputs
    inputs, outputs = runtime.graph.signature()
    problems: list[Problem] = []
    by_name = {t.name: t for t in inputs}
    wanted = {names.tokens: "INT64", names.time: "FP32", names.mask: "FP32"}
    if set(by_name) != set(wanted):
        return [Problem(path, field, f"the graph's inputs are [{', '.join(sorted(by_name))}]; the manifest's "
                        f"sequence.inputs are [{', '.join(sorted(wanted))}]",
                        "export the graph with those input names, or name its inputs under sequence.inputs")]
    for name, datatype in wanted.items():
        got = by_name[name]
        if got.datatype != datatype or len(got.shape) != 2:
            problems.append(Problem(path, field, f"input {name} is {got.datatype} {list(got.shape)}; the contract is "
                                    f"{datatype} [N, T]", f"see {DOCS} (ONNX contract)"))
    out_by_name = {t.name: t for t in outputs}
    for out in manifest.outputs:
        got = out_by_name.get(out.name)
        if got is None:
            problems.append(Problem(path, field, f"output {out.name} is not produced by the graph (it has "
                                    f"{', '.join(out_by_name)})", "name the manifest's outputs as the graph does"))
        elif got.datatype != "FP64" or len(got.shape) != 2 or got.shape[1] not in (1, None):
            problems.append(Problem(path, field, f"output {out.name} is {got.datatype} {list(got.shape)}; the "
                                    "contract is FP64 [N, 1]", "cast the output to double in the graph"))
    if problems:
        return problems
    top = runtime.vocabulary.size - 1
    try:
        runtime.run_sequences(np.array([[top, runtime.vocabulary.unknown_id]], dtype=np.int64),
                              np.array([[40.0, 50.0]], dtype=np.float32), np.ones((1, 2), dtype=np.float32))
    except BackendUnavailable as exc:
        if exc.transient:
            raise
        return [Problem(folder / manifest.sequence.vocabulary, "tokens", f"the graph cannot read token id {top} "
                        f"({exc})", "export the graph with an embedding as large as the vocabulary")]
    return golden_problems(runtime)


def golden_problems(runtime: SequenceRuntime) -> list[Problem]:
    """Each worked example in golden.yaml (tokens, times, optional mask → outputs) is reproduced by the graph."""
    path = runtime.folder / "golden.yaml"
    doc, problems = read_yaml(path)
    if problems:
        return problems
    examples: Any = doc.get("examples") if isinstance(doc, dict) else None
    if not isinstance(examples, list) or not examples:
        return [Problem(path, "examples", "no worked examples", "training/train_timeline.py writes them")]
    tolerance = float(doc.get("tolerance", 1e-6))
    for i, ex in enumerate(examples):
        where = f"examples[{i}]"
        try:
            tokens = np.array([ex["tokens"]], dtype=np.int64)
            times = np.array([ex["times"]], dtype=np.float32)
            mask = np.array([ex.get("mask") or [1.0] * tokens.shape[1]], dtype=np.float32)
            expected = {str(k): float(v) for k, v in ex["outputs"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(path, where, f"needs tokens, times and outputs as lists of numbers ({exc})",
                                    "regenerate golden.yaml with training/train_timeline.py"))
            continue
        if not (tokens.shape == times.shape == mask.shape) or tokens.shape[1] == 0:
            problems.append(Problem(path, where, "tokens, times and mask differ in length (or are empty)",
                                    "give one time and one mask value per token"))
            continue
        if int(tokens.max()) >= runtime.vocabulary.size or int(tokens.min()) < 0:
            problems.append(Problem(path, f"{where}.tokens", "has ids outside the vocabulary",
                                    "use ids from vocab.json"))
            continue
        got = runtime.run_sequences(tokens, times, mask)
        for name, value in expected.items():
            if name not in got:
                problems.append(Problem(path, f"{where}.outputs.{name}", "is not an output of the model",
                                        "name a manifest output"))
            elif abs(float(got[name][0]) - value) > tolerance:
                problems.append(Problem(path, f"{where}.outputs.{name}", f"not reproduced: the graph gives "
                                        f"{float(got[name][0])!r}, the example says {value!r} (tolerance "
                                        f"{tolerance:g})", "re-export the graph and its golden examples together"))
    return problems


def load_if_sequence(folder: Path, remote_backends: tuple[str, ...] = ()) -> SequenceRuntime | list[Problem] | None:
    """The folder's sequence runtime, or its problems; None when the folder is not a sequence model (no `sequence:`
    block, or a manifest that does not load — the tabular validation then reports it)."""
    manifest, problems = manifest_problems(folder / "manifest.yaml")
    if problems or manifest is None:
        return None
    if manifest.sequence is None:
        if manifest.backend is not None:
            return [Problem(folder / "manifest.yaml", "backend", "a remote backend serves sequence models only (a "
                            "tabular model runs in process)",
                            f"remove `backend:`, or add a `sequence:` block ({DOCS})")]
        return None
    runtime, problems = load_sequence_version(folder, manifest, remote_backends)
    return runtime if runtime is not None else problems
