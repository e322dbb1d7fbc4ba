"""A sequence model ready to predict: the patient's timeline → tokens, times and mask → one graph call.

Selected by a manifest's `sequence:` block (inference/sequence_loader.py). It keeps the tabular runtime's contract
with the rest of the service — `manifest`, `spec`, `valuesets`, `predict(mapping, alias) -> Prediction` — so the CDS
Hooks path, the recorder and the cards serve it unchanged. Guards keep their order: deceased → population and ranges
→ missing required features → timeline guards (date of birth, too few events) → the graph. The explanation masks
each concept group of timeline.yaml in turn, in the same batched call as the prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from datetime import datetime
from pathlib import Path

import numpy as np

from fhir_mapping.result import MappingResult
from fhir_mapping.timeline import (CompiledGroups, Event, RecordMapping, Timeline, TimelineFeatureSpec,
                                   event_times, extract_timeline, truncate)
from fhir_mapping.timeline_vocab import Vocabulary
from fhir_mapping.valuesets import ValueSetLibrary
from inference.manifest import Manifest
from inference.runtime import Contribution, Prediction, settle_outputs, stopped_by_guards
from inference.sequence_graph import BackendUnavailable, SequenceGraph
from inference.sequence_manifest import SequenceSpec

log = logging.getLogger(__name__)


@dataclass
class EncodedTimeline:
    """The events the graph reads (after truncation) and their inputs, with what the card must say about them."""

    timeline: Timeline
    events: list[Event]
    tokens: np.ndarray  # int64 [T]
    times: np.ndarray  # float32 [T]
    total_events: int  # coded (non-static) events before truncation
    read_events: int  # coded events kept
    unknown: int  # events whose token is not in the vocabulary (read as the unknown token)

    @property
    def truncated(self) -> bool:
        return self.read_events < self.total_events


class SequenceRuntime:
    """A sequence model version: manifest, timeline spec, vocabulary and the graph (in process or remote)."""

    def __init__(self, folder: Path, manifest: Manifest, spec: TimelineFeatureSpec, valuesets: ValueSetLibrary,
                 vocabulary: Vocabulary, graph: SequenceGraph) -> None:
        assert manifest.sequence is not None
        self.folder, self.manifest, self.spec, self.valuesets = folder, manifest, spec, valuesets
        self.sequence: SequenceSpec = manifest.sequence
        self.vocabulary, self.graph = vocabulary, graph
        self.groups = CompiledGroups(spec.timeline, valuesets)
        self.output_names = [o.name for o in manifest.outputs]
        self._group_cache: dict[str, list[str]] = {}
        # a remote graph that did not answer at start-up is checked (signature, golden examples) before first use
        self.pending_check: Callable[[], list[Any]] | None = None

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    # ---- the graph ----------------------------------------------------------------------------------------------
    def run_sequences(self, tokens: np.ndarray, times: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on [N, T] tokens (int64), times and mask (float32); outputs by name as [N] float64 arrays."""
        names = self.sequence.inputs
        feeds = {names.tokens: np.ascontiguousarray(tokens, dtype=np.int64),
                 names.time: np.ascontiguousarray(times, dtype=np.float32),
                 names.mask: np.ascontiguousarray(mask, dtype=np.float32)}
        got = self.graph.run(feeds, self.output_names)
        out: dict[str, np.ndarray] = {}
        for name in self.output_names:
            arr = np.asarray(got[name], dtype=np.float64).reshape(-1)
            if arr.shape[0] != tokens.shape[0]:
                raise BackendUnavailable(f"the {self.graph.where} returned {arr.shape[0]} values of {name} for "
                                         f"{tokens.shape[0]} rows")
            out[name] = arr
        return out

    def run_matrix(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Tabular rows are not this model's input (what-if needs a tabular model)."""
        raise TypeError(f"{self.id} is a sequence model: it reads the patient's timeline, not a row of features")

    def warm_up(self) -> None:
        self.run_sequences(np.array([[self.vocabulary.unknown_id] * 2], dtype=np.int64),
                           np.array([[50.0, 50.0]], dtype=np.float32), np.ones((1, 2), dtype=np.float32))

    # ---- the timeline -------------------------------------------------------------------------------------------
    def encode(self, timeline: Timeline) -> EncodedTimeline:
        """Truncate to the most recent events (birth and gender always kept), tokenise, and place each event in time.
        The times are ages (needs timeline.birth) or years before the prediction, as the manifest says."""
        events = truncate(timeline.events, self.sequence.max_length)
        ids, unknown = self.vocabulary.encode(events)
        times = event_times(timeline, events, self.sequence.time)
        return EncodedTimeline(timeline, events, np.array(ids, dtype=np.int64), np.array(times, dtype=np.float32),
                               sum(not e.static for e in timeline.events), sum(not e.static for e in events), unknown)

    def timeline_of(self, mapping: RecordMapping) -> Timeline:
        assert mapping.index is not None and mapping.at is not None
        return extract_timeline(self.spec.timeline, mapping.index, at=mapping.at, patient_id=mapping.patient_id)

    # ---- prediction ---------------------------------------------------------------------------------------------
    def predict(self, mapping: MappingResult, alias: str = "champion") -> Prediction:
        """Guards first, then the timeline guards, then one graph call for the prediction and its explanation."""
        inputs = {i.name for i in self.manifest.inputs}
        values = {name: fv.value for name, fv in mapping.values.items() if name in inputs}
        pred = Prediction(self.id, self.version, alias, inputs=values)
        if stopped_by_guards(self.manifest, mapping, values, pred):
            return pred
        if not isinstance(mapping, RecordMapping) or mapping.index is None or mapping.at is None:
            pred.refusals = ["the patient's record was not available to read the timeline from"]
            return pred
        if mapping.unobtained:
            gaps = "; ".join(f"{key}: {why}" for key, why in mapping.unobtained.items())
            pred.refusals = [f"part of the record could not be obtained ({gaps}), so the timeline would be "
                             "incomplete"]
            return pred
        timeline = self.timeline_of(mapping)
        if self.sequence.time == "ages" and timeline.birth is None:
            pred.refusals = ["the date of birth is not recorded, and this model reads the age at each event"]
            return pred
        encoded = self.encode(timeline)
        if encoded.total_events < self.sequence.min_events:
            window = _window(self.spec.timeline.lookback_days)
            pred.refusals = [f"only {encoded.total_events} coded event{'s' if encoded.total_events != 1 else ''} "
                             f"in the last {window} {'are' if encoded.total_events != 1 else 'is'} on record; the "
                             f"model needs at least {self.sequence.min_events}"]
            return pred
        unverified = self._unverified()
        if unverified:
            pred.refusals = [unverified]
            return pred
        unread = self._unread_concepts(encoded)
        if unread:
            # a result of a concept the model is built on, read as unknown (a glucose of 115 mg/dL, a band it never
            # saw in training; an HbA1c in mmol/mol): the estimate would rest on the model not reading it
            pred.refusals = [f"the model cannot read {unread}, which it never saw in training"]
            return pred
        groups, tokens, times, mask = self.explanation_batch(encoded)
        try:
            out = self.run_sequences(tokens, times, mask)
        except BackendUnavailable as exc:
            pred.refusals = [f"the model could not be run: {exc}"]
            return pred
        pred.outputs = {name: float(arr[0]) for name, arr in out.items()}
        if not settle_outputs(self.manifest, mapping, values, pred):
            return pred
        primary = self.manifest.primary
        target = out[primary.name]
        labels = {g.id: g.label for g in self.spec.timeline.groups}
        pred.contributions = sorted(
            (Contribution(f"group:{gid}", labels[gid], float(target[0] - target[r]))
             for r, (gid, _) in enumerate(groups, start=1)), key=lambda c: -abs(c.delta))
        counts = {gid: len(positions) for gid, positions in groups}
        pred.notes = self._notes(encoded, pred.contributions, counts, primary.kind)
        if mapping.cut_short:
            pred.notes.append(f"The EHR's search ({', '.join(mapping.cut_short)}) had more results than were read; "
                              "older events may be missing from the timeline.")
        return pred

    def explanation_batch(self, encoded: Any) -> tuple[list[tuple[str, list[int]]], np.ndarray, np.ndarray,
                                                         np.ndarray]:
        """The concept groups and the one batch the graph is run on: row 0 the patient, row r the patient with group
        r's events masked (occlusion)."""
        groups = self._group_positions(encoded.events, encoded.tokens)
        rows = 1 + len(groups)
        tokens = np.repeat(encoded.tokens[np.newaxis, :], rows, axis=0)
        times = np.repeat(encoded.times[np.newaxis, :], rows, axis=0)
        mask = np.ones((rows, len(encoded.events)), dtype=np.float32)
        for r, (_, positions) in enumerate(groups, start=1):
            mask[r, positions] = 0.0
        return groups, tokens, times, mask

    def _unverified(self) -> str | None:
        """Why the graph cannot be used yet (a remote graph not checked at start-up), else None."""
        check = self.pending_check
        if check is None:
            return None
        try:
            problems = check()
        except BackendUnavailable as exc:
            return f"the model could not be run: {exc}"
        if problems:
            log.error("%s %s: the model server does not match the model folder: %s", self.id, self.version,
                      "; ".join(str(p) for p in problems))
            return "the model server's model does not match this model's folder (the service log names the problem)"
        self.pending_check = None
        return None

    def _groups_of(self, code: str) -> list[str]:
        """The ids of the concept groups a code belongs to, remembered per code."""
        ids = self._group_cache.get(code)
        if ids is None:
            ids = self._group_cache[code] = self.groups.groups_of(code)
        return ids

    def _unread_concepts(self, encoded: EncodedTimeline) -> str | None:
        """'2 events of Blood glucose results' for the events read as the unknown token whose code belongs to one of
        timeline.yaml's concept groups (what the model is built on), else None; other unknown codes are counted on
        the card."""
        unknown = self.vocabulary.unknown_id
        counts: dict[str, int] = {}
        for i, event in enumerate(encoded.events):
            if event.static or int(encoded.tokens[i]) != unknown:
                continue
            for gid in self._groups_of(event.code)[:1]:
                counts[gid] = counts.get(gid, 0) + 1
        if not counts:
            return None
        labels = {g.id: g.label for g in self.spec.timeline.groups}
        return "; ".join(f"{n} event{'s' if n > 1 else ''} of {labels[gid]}" for gid, n in counts.items())

    def _group_positions(self, events: list[Event], tokens: np.ndarray) -> list[tuple[str, list[int]]]:
        """(group id, positions of its events) for every group with at least one event, in timeline.yaml order. An
        event read as the unknown token is in no group: the model did not read it as that concept (a hypertension
        code it never saw), so what leaving it out does is not that concept's effect, and the card counts it as
        unknown instead."""
        found: dict[str, list[int]] = {}
        unknown = self.vocabulary.unknown_id
        for i, event in enumerate(events):
            if event.static or int(tokens[i]) == unknown:
                continue
            for gid in self._groups_of(event.code):
                found.setdefault(gid, []).append(i)
        return [(g.id, found[g.id]) for g in self.spec.timeline.groups if g.id in found]

    def _notes(self, encoded: EncodedTimeline, contributions: list[Contribution], counts: dict[str, int],
               kind: str) -> list[str]:
        notes: list[str] = []
        shown = [c for c in contributions if c.delta != 0.0][: self.sequence.explain_top]
        if shown:
            parts = []
            for c in shown:
                n = counts[c.feature.removeprefix("group:")]
                verb = "raised" if c.delta > 0 else "lowered"
                parts.append(f"{c.label} ({n} event{'s' if n != 1 else ''}) {verb} it by {_delta(kind, c.delta)}")
            notes.append("What moved the estimate most (each group of events left out in turn): "
                         + "; ".join(parts) + ".")
        if encoded.truncated:
            first = next(e for e in encoded.events if not e.static)
            notes.append(f"Timeline truncated: the model read the most recent {encoded.read_events:,} of "
                         f"{encoded.total_events:,} coded events (from {_date(first.time)}); older events were left "
                         "out.")
        if encoded.unknown:
            one = encoded.unknown == 1
            what = "has a code the model was not trained on and was" if one else \
                "have codes the model was not trained on and were"
            notes.append(f"{encoded.unknown:,} of {len(encoded.events):,} events {what} read as unknown.")
        return notes


def _delta(kind: str, delta: float) -> str:
    if kind == "probability":
        return f"{abs(delta) * 100:.1f} percentage points"
    return f"{abs(delta):.2f}"


def _date(when: datetime) -> str:
    return when.date().isoformat()


def _window(days: int) -> str:
    if days % 365 == 0:
        years = days // 365
        return f"{years} year{'s' if years > 1 else ''}"
    return f"{days} day{'s' if days > 1 else ''}"
