"""The timeline spec: a patient's FHIR resources as a time-ordered stream of coded events, for sequence models.

EHR foundation models (CLMBR, MOTOR and their kin) read the patient's whole longitudinal record — every coded
diagnosis, lab, medication and encounter with its time — not a handful of tabular features. A model folder declares in
`timeline.yaml` which code systems count, how far back to look, which units numeric values are normalised to and how
they are binned into tokens, and which groups of codes an explanation masks. This module turns one patient's resources
into that event stream in the MEDS shape (subject, time, `SYSTEM/CODE`, optional numeric value). Pure: no I/O except
loading timeline.yaml at start-up. Status rules are the mapper's own (`fhir_mapping.mapper.status_problem`), so an
entered-in-error, refuted or doNotPerform resource never becomes an event. docs/timeline-models.md documents the file.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fhir_mapping.fhirdates import parse_fhir_date, parse_fhir_datetime
from fhir_mapping.index import Resource, ResourceIndex, as_list, codings
from fhir_mapping.mapper import status_problem
from fhir_mapping.primitives import parse_decimal
from fhir_mapping.result import MappingResult
from fhir_mapping.spec import FeatureSpec, PrefetchKey, Source, validation_summary
from fhir_mapping.units import UnitError, UnitRegistry, default_registry
from fhir_mapping.valuesets import ValueSetError, ValueSetLibrary

UCUM = "http://unitsofmeasure.org"
BIRTH_CODE = "MEDS_BIRTH"  # the MEDS convention for the birth event
TimelineResource = Literal["Condition", "Observation", "MedicationRequest", "MedicationStatement", "Encounter",
                           "Procedure"]
_DAYS_PER_YEAR = 365.25

# Statuses that make an event by default: history counts (a resolved diagnosis, a completed prescription happened),
# doubt does not (entered-in-error, refuted, cancelled, draft, preliminary never become events).
TIMELINE_STATUSES: dict[str, tuple[str, ...]] = {
    "Condition": ("active", "recurrence", "relapse", "inactive", "remission", "resolved"),  # clinicalStatus
    "Observation": ("final", "amended", "corrected"),
    "MedicationRequest": ("active", "completed", "stopped", "on-hold"),
    "MedicationStatement": ("active", "completed", "stopped", "on-hold", "intended"),
    "Encounter": ("finished", "in-progress", "arrived", "triaged", "onleave"),
    "Procedure": ("completed", "in-progress"),
}


class TimelineSpecError(ValueError):
    """A timeline.yaml or vocabulary is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_code(token: str) -> str:
    system, sep, code = token.partition("/")
    if not sep or not system or not code or "|" in token:
        raise ValueError(f"'{token}' must be written 'SYSTEM/CODE' (e.g. LOINC/4548-4)")
    return token


class ResourceRule(_Strict):
    """Which resources of one type become events."""

    statuses: tuple[str, ...] | None = None  # default: TIMELINE_STATUSES[type]
    components: bool = False  # Observation: each coded component (e.g. systolic BP of a panel) is its own event

    def source(self, rtype: str) -> Source:
        # A Source only to carry the resource type and statuses into the mapper's status rule (no filter is used)
        return Source.model_construct(resource=rtype, statuses=self.statuses or TIMELINE_STATUSES[rtype])


class ValueRule(_Strict):
    """How the value of one code becomes part of its token: numeric bins (after unit conversion) or coded answers."""

    unit: str | None = None
    analyte: str | None = None
    bins: tuple[float, ...] = ()  # ascending thresholds: k thresholds make bins 0..k (bin i: i thresholds ≤ value)
    answers: bool = False  # valueCodeableConcept: token CODE|SYSTEM/ANSWER

    @model_validator(mode="after")
    def _coherent(self) -> ValueRule:
        if self.answers == bool(self.bins):
            raise ValueError("give either `bins` (with `unit`) or `answers: true`")
        if self.bins:
            if list(self.bins) != sorted(set(self.bins)):
                raise ValueError("`bins` must be strictly increasing")
            if not self.unit:
                raise ValueError("numeric `bins` need the `unit` values are converted to")
            if default_registry().lookup(self.unit) is None:
                raise ValueError(f"unit '{self.unit}' is not in the unit registry")
        return self

    def bin_of(self, value: float) -> int:
        return bisect_right(self.bins, value)


class Group(_Strict):
    """A concept group an explanation masks as a whole ("HbA1c results"): codes and/or value sets."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    label: str = Field(max_length=80)
    codes: tuple[str, ...] = ()
    valuesets: tuple[str, ...] = ()  # value set files (fhir_mapping/valuesets or the model folder's valuesets/)

    @field_validator("codes")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_code(c) for c in value)

    @model_validator(mode="after")
    def _something(self) -> Group:
        if not self.codes and not self.valuesets:
            raise ValueError(f"group '{self.id}' needs `codes` or `valuesets`")
        return self


class Demographics(_Strict):
    birth: bool = True  # a MEDS_BIRTH event at the date of birth
    gender: bool = True  # a Gender/<administrative gender> event at the date of birth


class TimelineSpec(_Strict):
    """A whole timeline.yaml."""

    spec_version: Literal[1] = 1
    lookback_days: int = Field(gt=0)
    code_systems: dict[str, str]  # prefix (LOINC) -> FHIR system URL; listed order is the preference order
    resources: dict[TimelineResource, ResourceRule]
    demographics: Demographics = Demographics()
    values: dict[str, ValueRule] = Field(default_factory=dict)  # SYSTEM/CODE -> how its value is tokenised
    groups: tuple[Group, ...] = ()

    @field_validator("code_systems")
    @classmethod
    def _systems(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("name at least one code system")
        for prefix, url in value.items():
            if not prefix.isalnum():
                raise ValueError(f"prefix '{prefix}' must be letters and digits (e.g. LOINC, ICD10CM)")
            if not url.startswith(("http://", "https://", "urn:")):
                raise ValueError(f"system of {prefix} must be a FHIR system URL, not '{url}'")
        if len(set(value.values())) != len(value):
            raise ValueError("two prefixes name the same system URL")
        return value

    @field_validator("values")
    @classmethod
    def _value_codes(cls, value: dict[str, ValueRule]) -> dict[str, ValueRule]:
        for code in value:
            _check_code(code)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> TimelineSpec:
        for code in list(self.values) + [c for g in self.groups for c in g.codes]:
            prefix = code.partition("/")[0]
            if prefix not in self.code_systems and prefix != "Gender" and code != BIRTH_CODE:
                raise ValueError(f"'{code}' uses prefix '{prefix}', which code_systems does not declare")
        ids = [g.id for g in self.groups]
        if len(set(ids)) != len(ids):
            raise ValueError("group ids must be unique")
        return self

    def resource_types(self) -> frozenset[str]:
        return frozenset(self.resources)

    def prefix_of(self, system: str) -> str | None:
        return _prefix_map(tuple(self.code_systems.items())).get(system)

    def prefetch_plan(self) -> dict[str, PrefetchKey]:
        """One FHIR search per resource type the timeline reads (no code filter: the timeline is the whole record)."""
        patient = "patient={{context.patientId}}"
        templates = {
            "Condition": f"Condition?{patient}",
            "Observation": f"Observation?{patient}&_sort=-date&_count=1000",
            "MedicationRequest": f"MedicationRequest?{patient}&_include=MedicationRequest:medication",
            "MedicationStatement": f"MedicationStatement?{patient}&_include=MedicationStatement:medication",
            "Encounter": f"Encounter?{patient}&_sort=-date&_count=1000",
            "Procedure": f"Procedure?{patient}",
        }
        return {f"timeline-{rtype.lower()}": PrefetchKey(template=templates[rtype], features=())
                for rtype in self.resources}


@lru_cache(maxsize=64)
def _prefix_map(systems: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """FHIR system URL -> prefix, built once per declared code_systems."""
    return {url: prefix for prefix, url in systems}


class TimelineFeatureSpec(FeatureSpec):
    """A sequence model's features.yaml (the demographics and population features its guards read) together with
    its timeline.yaml: the index keeps, and the prefetch asks for, what both read."""

    timeline: TimelineSpec

    def resource_types(self) -> frozenset[str]:
        return super().resource_types() | self.timeline.resource_types()

    def prefetch_plan(self, valuesets: ValueSetLibrary) -> dict[str, PrefetchKey]:
        plan = super().prefetch_plan(valuesets)
        templates = {pk.template for pk in plan.values()}
        for key, pk in self.timeline.prefetch_plan().items():
            if pk.template not in templates:
                plan[key] = pk
        return plan


@dataclass(frozen=True)
class Event:
    """One event of the stream (MEDS: subject_id, time, code, numeric_value) and the token it becomes."""

    time: datetime
    code: str  # SYSTEM/CODE
    token: str  # code, or code|binN, or code|SYSTEM/ANSWER
    value: float | None = None  # numeric value in the spec's unit (binned codes) else as recorded
    unit: str | None = None
    source: str = ""  # the resource it was read from ("Observation/123")
    static: bool = False  # birth and gender: outside the look-back, never truncated away


@dataclass
class Timeline:
    """A patient's events up to the prediction time, oldest first, and what was passed over and why."""

    subject: str
    at: datetime
    birth: datetime | None
    events: list[Event] = field(default_factory=list)
    passed_over: Counter[str] = field(default_factory=Counter)  # reason -> count
    unusable_values: int = 0  # values that could not be converted to the spec's unit (token without a bin)

    def meds_rows(self) -> list[dict[str, Any]]:
        """The events as MEDS rows (subject_id, time, code, numeric_value)."""
        return [{"subject_id": self.subject, "time": e.time, "code": e.code, "numeric_value": e.value}
                for e in self.events]


class CompiledGroups:
    """Concept groups resolved against value sets once, at load time, for fast matching per event code."""

    def __init__(self, spec: TimelineSpec, valuesets: ValueSetLibrary) -> None:
        self.spec = spec
        self._codes = [(g, frozenset(g.codes)) for g in spec.groups]
        self._sets = [(g, [valuesets.get(name) for name in g.valuesets]) for g in spec.groups]

    def groups_of(self, code: str) -> list[str]:
        prefix, _, raw = code.partition("/")
        system = self.spec.code_systems.get(prefix)
        found = [g.id for g, codes in self._codes if code in codes]
        for g, sets in self._sets:
            if g.id not in found and system and any(vs.lookup(system, raw) for vs in sets):
                found.append(g.id)
        return found


# ---- extraction ----------------------------------------------------------------------------------------------------
def extract_timeline(spec: TimelineSpec, index: ResourceIndex, *, at: datetime, patient_id: str | None = None,
                     units: UnitRegistry | None = None) -> Timeline:
    """The patient's events from `at - lookback_days` to `at` (inclusive), oldest first, plus birth and gender."""
    registry = units or default_registry()
    patient = index.patient(patient_id)
    subject = str((patient or {}).get("id") or patient_id or "")
    birth_date = parse_fhir_date(patient.get("birthDate")) if isinstance(patient, dict) else None
    birth = datetime(birth_date.year, birth_date.month, birth_date.day, tzinfo=UTC) if birth_date else None
    timeline = Timeline(subject=subject, at=at, birth=birth)
    events: list[Event] = []
    if birth is not None and patient is not None:
        ref = index.ref(patient)
        if spec.demographics.birth:
            events.append(Event(birth, BIRTH_CODE, BIRTH_CODE, source=ref, static=True))
        gender = patient.get("gender")
        if spec.demographics.gender and isinstance(gender, str) and gender:
            events.append(Event(birth, f"Gender/{gender}", f"Gender/{gender}", source=ref, static=True))
    since = at - timedelta(days=spec.lookback_days)
    elsewhere = index.elsewhere(patient_id)  # resources about another patient are never events of this one
    for rtype, rule in spec.resources.items():
        source = rule.source(rtype)
        for res in index.by_type.get(rtype, ()):
            if id(res) in elsewhere:
                timeline.passed_over[f"{rtype}: about another patient"] += 1
                continue
            why = status_problem(res, source)
            if why is None and rtype.startswith("Medication"):
                medication = index.referenced_medication(res)
                if medication is not None and medication.get("status") == "entered-in-error":
                    why = "entered in error"
            if why is not None:
                timeline.passed_over[f"{rtype}: {why}"] += 1
                continue
            when = parse_fhir_datetime(_event_time(res, rtype))
            if when is None:
                timeline.passed_over[f"{rtype}: no usable date"] += 1
                continue
            if when > at:
                timeline.passed_over[f"{rtype}: after the prediction time"] += 1
                continue
            if when < since:
                timeline.passed_over[f"{rtype}: older than the look-back"] += 1
                continue
            read = _read_events(spec, registry, index, res, rtype, rule, when, timeline)
            if not read:
                timeline.passed_over[f"{rtype}: no code in the declared code systems"] += 1
            events.extend(read)
    events.sort(key=event_order)
    timeline.events = _one_per_fact(events, timeline)
    return timeline


def _one_per_fact(events: list[Event], timeline: Timeline) -> list[Event]:
    """One event per fact: the same result or entry sent twice (two ids, as when it arrives through two interfaces,
    or two encounters of one visit) has one code, token and value at one time, and a copy would count it twice."""
    kept: list[Event] = []
    seen: set[tuple[datetime, str, str, float | None, bool]] = set()
    for event in events:
        key = (event.time, event.code, event.token, event.value, event.static)
        if key in seen:
            timeline.passed_over[f"{event.source.partition('/')[0] or 'Event'}: the same event sent again"] += 1
            continue
        seen.add(key)
        kept.append(event)
    return kept


def event_order(event: Event) -> tuple[Any, ...]:
    """Oldest first; at the same time, static events first, then by code, value and source (record order never
    matters, so the same record always gives the same sequence)."""
    return (event.time, not event.static, event.code, event.value if event.value is not None else float("-inf"),
            event.token, event.source)


def _event_time(res: Resource, rtype: str) -> Any:
    """When the event happened: onset/effective/performed/authored start, else when it was recorded."""
    keys = {
        "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
        "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod.start", "issued"),
        "MedicationRequest": ("authoredOn",),
        "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
        "Encounter": ("period.start", "period.end"),
        "Procedure": ("performedDateTime", "performedPeriod.start"),
    }[rtype]
    for key in keys:
        head, _, tail = key.partition(".")
        value = res.get(head)
        if tail:
            value = value.get(tail) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def _pick_code(spec: TimelineSpec, concept: Any) -> str | None:
    """SYSTEM/CODE of the concept's coding in the most preferred declared system (first listed in code_systems)."""
    by_prefix: dict[str, str] = {}
    for system, code, _ in codings(concept):
        prefix = spec.prefix_of(system)
        if prefix is not None and prefix not in by_prefix and code.strip():
            by_prefix[prefix] = code.strip()
    for prefix in spec.code_systems:
        if prefix in by_prefix:
            return f"{prefix}/{by_prefix[prefix]}"
    return None


def _concept_of(index: ResourceIndex, res: Resource, rtype: str) -> Any:
    if rtype.startswith("Medication"):
        return index.medication_concept(res)
    if rtype == "Encounter":
        types = as_list(res.get("type"))
        return next((t for t in types if isinstance(t, dict) and t.get("coding")), None)
    return res.get("code")


def _read_events(spec: TimelineSpec, registry: UnitRegistry, index: ResourceIndex, res: Resource, rtype: str,
                 rule: ResourceRule, when: datetime, timeline: Timeline) -> list[Event]:
    ref = index.ref(res)
    if rtype == "Observation" and rule.components:
        parts = [c for c in as_list(res.get("component")) if isinstance(c, dict)]
        events = [e for c in parts for e in _observation_event(spec, registry, c, when, ref, timeline)]
        if events:
            return events
    if rtype == "Observation":
        return _observation_event(spec, registry, res, when, ref, timeline)
    code = _pick_code(spec, _concept_of(index, res, rtype))
    return [Event(when, code, code, source=ref)] if code else []


def _observation_event(spec: TimelineSpec, registry: UnitRegistry, element: Resource, when: datetime, ref: str,
                       timeline: Timeline) -> list[Event]:
    """An Observation (or one of its components) as an event, its value tokenised as the spec says."""
    code = _pick_code(spec, element.get("code"))
    if code is None:
        return []
    rule = spec.values.get(code)
    qty = element.get("valueQuantity")
    if rule is not None and rule.answers:
        answer = _pick_code(spec, element.get("valueCodeableConcept"))
        return [Event(when, code, f"{code}|{answer}" if answer else code, source=ref)]
    raw = parse_decimal(qty.get("value")) if isinstance(qty, dict) else None
    if raw is None:
        return [Event(when, code, code, source=ref)]
    unit = qty.get("code") or qty.get("unit")
    if rule is None or rule.unit is None:
        return [Event(when, code, code, value=raw, unit=unit if isinstance(unit, str) else None, source=ref)]
    try:
        value = registry.convert(raw, unit, rule.unit, rule.analyte, ucum=qty.get("system") == UCUM)
    except (UnitError, OverflowError, ValueError):
        timeline.unusable_values += 1
        return [Event(when, code, code, source=ref)]
    return [Event(when, code, f"{code}|bin{rule.bin_of(value)}", value=value, unit=rule.unit, source=ref)]


def truncate(events: list[Event], max_length: int) -> list[Event]:
    """At most `max_length` events: birth and gender always, then the most recent coded events (order kept)."""
    static = [e for e in events if e.static]
    coded = [e for e in events if not e.static]
    room = max(max_length - len(static), 0)
    if len(coded) <= room:
        return list(events)
    keep = {id(e) for e in coded[len(coded) - room:]} | {id(e) for e in static}
    return [e for e in events if id(e) in keep]


def years_between(earlier: datetime, later: datetime) -> float:
    """Years from `earlier` to `later` (365.25-day years), the unit of the `ages` and `times` inputs."""
    return (later - earlier).total_seconds() / 86400.0 / _DAYS_PER_YEAR


def event_times(timeline: Timeline, events: list[Event], kind: str) -> list[float]:
    """The time input of each event: `ages` (years since birth; needs timeline.birth) or `times` (years before the
    prediction time)."""
    if kind == "ages":
        if timeline.birth is None:
            raise ValueError("ages need the date of birth")
        birth = timeline.birth
        return [years_between(birth, e.time) for e in events]
    return [years_between(e.time, timeline.at) for e in events]


# ---- loading -------------------------------------------------------------------------------------------------------
def load_timeline_spec(path: Path, valuesets: ValueSetLibrary) -> TimelineSpec:
    """Load and validate a timeline.yaml; TimelineSpecError names the file and the field."""
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TimelineSpecError(f"{path}: cannot read timeline spec: {exc}") from exc
    try:
        spec = TimelineSpec.model_validate(doc)
    except ValidationError as exc:
        raise TimelineSpecError(f"{path}: {validation_summary(exc)}") from exc
    for group in spec.groups:
        for name in group.valuesets:
            try:
                valuesets.get(name)
            except ValueSetError as exc:
                raise TimelineSpecError(f"{path}: groups.{group.id}.valuesets: {exc}") from exc
    return spec


# ---- the record beside the features -------------------------------------------------------------------------------
@dataclass
class RecordMapping(MappingResult):
    """A mapping result that keeps the patient's indexed record and the prediction time, so a sequence model can read
    the whole timeline (tabular models read only `values` and `missing`, as before)."""

    index: ResourceIndex | None = None
    at: datetime | None = None
    patient_id: str | None = None
    unobtained: dict[str, str] = field(default_factory=dict)  # timeline searches that failed: key -> reason
    cut_short: tuple[str, ...] = ()  # timeline searches with more pages than were read


def with_record(mapping: MappingResult, index: ResourceIndex, at: datetime, patient_id: str | None) -> RecordMapping:
    """The mapping with the record it was read from attached (the same objects, nothing copied)."""
    base = {f.name: getattr(mapping, f.name) for f in fields(MappingResult)}
    return RecordMapping(**base, index=index, at=at, patient_id=patient_id)


def mark_record_gaps(mapping: MappingResult, spec: FeatureSpec, plan: dict[str, PrefetchKey], failed: dict[str, str],
                     truncated: list[str] | tuple[str, ...]) -> None:
    """Note on a sequence model's mapping which of the searches its timeline reads could not be obtained or were cut
    short, so the model refuses an incomplete timeline (or says that old events may be missing) instead of reading
    a partial record as the whole one. Does nothing for tabular models."""
    if not isinstance(mapping, RecordMapping) or not isinstance(spec, TimelineFeatureSpec):
        return
    templates = {pk.template for pk in spec.timeline.prefetch_plan().values()}
    keys = sorted(k for k, pk in plan.items() if pk.template in templates)
    mapping.unobtained = {k: failed[k] for k in keys if k in failed}
    mapping.cut_short = tuple(k for k in keys if k in truncated)
