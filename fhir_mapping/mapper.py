"""Map one patient's FHIR resources to model features, with provenance, following a feature spec.

Pure: resources and the spec in, values and reasons out. Each candidate resource is filtered (status, date window,
validity), read (quantity with unit conversion, coded answer, presence), and the survivors are aggregated. Anything
passed over is kept with the reason, so a card can say why a value was not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from math import isclose, isfinite
from statistics import fmean
from typing import Any, Literal

import fhirpathpy

from fhir_mapping.expressions import ExpressionError, compiled_expression
from fhir_mapping.formatting import quantity, rounded, system_name, unit_label
from fhir_mapping.fhirdates import age_in_years, last_day_of, parse_fhir_date, parse_fhir_datetime, period_after
from fhir_mapping.index import Resource, ResourceIndex, as_list, codings, main_code_element
from fhir_mapping.medications import (ACUTE_COURSE, MedicationView, Recognition, StatedReason, acute_order,
                                      medication_view, shipped_class_ids)
from fhir_mapping.race_ethnicity import recorded_categories
from fhir_mapping.result import (BOUND_NOTE, CHECK_AND_CODE, FOR_WANT_OF, NOT_COUNTED, NOTHING_ON_RECORD, FeatureValue,
                                 MappingResult, MissingFeature, SourceRef, not_counted_only)
from fhir_mapping.mentions import MentionRule, concept_texts
from fhir_mapping.spec import MENTION_TYPES, Feature, FeatureSpec, Source
from fhir_mapping.units import UnitError, UnitRegistry, default_registry
from fhir_mapping.validation import ValidationCache
from fhir_mapping.valuesets import ValueSetLibrary

UCUM = "http://unitsofmeasure.org"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
_CLOCK_SKEW = timedelta(minutes=5)  # an EHR's clock a little ahead of ours
_WIDEST_OFFSET = timedelta(hours=14)  # the furthest a local time runs ahead of UTC (UTC+14)
_WIDEST_WEST = timedelta(hours=12)  # the furthest a local time runs behind UTC (UTC-12)


_NEWEST_FIRST = ("latest", "days_since", "exists")
# abatementString words that say nothing has ended
_NOT_ABATED = re.compile(r"(unknown|ongoing|continuing|current|active|not resolved|unresolved|none|n/?a|"
                         r"not applicable|-)?")
# MedicationRequest intents that say the drug is ordered or taken (R4: a `plan` records home medications); a
# `proposal` or an `option` (one choice within a RequestGroup) is not, nor any value R4 does not define
_ORDERED_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"})


@dataclass
class _Candidate:
    value: float
    when: datetime | None
    ref: SourceRef
    res: Resource | None = None  # the resource, validated strictly only if the aggregate picks it
    test: str | None = None  # the kind of test a count counts it as (its source's analyte): one specimen per kind


class _Skip(Exception):
    """A candidate resource that cannot be used; the message says why."""


class _Unusable(_Skip):
    """A candidate that is malformed rather than not counting (no status, a date that is not a date): present but
    unusable, so a binary feature is unknown, not its default."""


class _Bound(_Skip):
    """A result written as a bound (`<3`, `>60`): a fact about the newest value, but not a measurement. `limit`: the
    comparator and the bound in the feature's unit, when it converts (a bound wholly outside a model's validated
    range places the patient outside it: inference/guards.py)."""

    def __init__(self, note: str, limit: tuple[str, float] | None = None, written: tuple[float, str] | None = None
                 ) -> None:
        super().__init__(note)
        self.limit = limit
        self.written = written if limit is not None else None  # the bound's number and unit as written


# a result written as text that is a bound and nothing else ('>300 mg/g', '< 3', '≥90'): the same fact as a Quantity
# with a comparator, so the same rules apply (an add-on above a limit gives no number)
# a qualitative result ('positive', 'trace', '++'): a result was given, in words, so it is no comment to pass over
_QUALITATIVE = re.compile(r"\s*(?:positive|negative|pos|neg|trace|detected|not detected|undetectable|present|absent|"
                          r"reactive|non-?reactive|high|low|normal|abnormal|elevated|raised|critical|\+{1,4}|-|"
                          r"h|l|hh|ll|a|aa|h\*|l\*)\s*[.!]?\s*",  # and the HL7 abnormal flags H, L, HH, LL, A, AA
                          re.IGNORECASE)
# a number (1,000 allowed), then at most a unit: words that do not start with a digit, without ';' or ',' (so
# '<30 mg/g; repeat 450 mg/g' or '>300 and rising 5' are text with numbers, unreadable, not bounds)
_TEXT_LIMIT = re.compile(r"\s*(<=|>=|<|>|≤|≥)\s*(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(\S.*?)?\s*")
_TEXT_BOUND = re.compile(r"\s*(<=|>=|<|>|≤|≥)\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
                         r"(?:\s*[^\d\s;,.][^\s;,]*(?:\s+[^\d\s;,.][^\s;,]*){0,3})?\s*")


def _day_in(written: str | None, zone: tzinfo) -> str | None:
    """The day a result was taken where the record is: a date alone as written, a time in the record's zone."""
    if not written:
        return None
    if "T" not in written:
        return written[:10]
    when = parse_fhir_datetime(written)
    return when.astimezone(zone).date().isoformat() if when is not None else None


def _count_span(cands: list[_Candidate], unread: list[SourceRef], zone: tzinfo = UTC) -> tuple[int, int]:
    """The fewest and the most distinct results among counted ones, one per specimen and kind of test: results of
    one moment and kind are one (an HbA1c sent in % and in mmol/mol), while an HbA1c and a fasting glucose of one
    sample are two (ADA 2025: two different tests of the same sample confirm a diagnosis); one written as a date
    alone may be the specimen of a timed one of its day (or not); an unread result may be one more, unless it was
    charted for a moment already counted (the same specimen sent twice)."""
    spans = [_specimen_span([c for c in cands if c.test == kind], zone) for kind in {c.test for c in cands}]
    low, high = sum(s[0] for s in spans), sum(s[1] for s in spans)
    seen = {*(c.when for c in cands if c.when is not None and c.ref.date and "T" in c.ref.date),
            *(c.ref.date[:10] for c in cands if c.ref.date and "T" not in c.ref.date)}
    extra: set[Any] = set()
    for ref in unread:
        when = parse_fhir_datetime(ref.date) if ref.date and "T" in ref.date else None
        key: Any = when if when is not None else (ref.date[:10] if ref.date else id(ref))
        if key not in seen:
            extra.add(key)
    return low, high + len(extra)


def _specimen_span(cands: list[_Candidate], zone: tzinfo) -> tuple[int, int]:
    """The fewest and the most specimens among results of one kind of test."""
    timed = {c.when for c in cands if c.when is not None and c.ref.date and "T" in c.ref.date}
    timed_days = {c.when.astimezone(zone).date().isoformat() for c in cands
                  if c.when is not None and c.ref.date and "T" in c.ref.date}
    dated_days = {c.ref.date[:10] for c in cands if c.ref.date and "T" not in c.ref.date}
    undated = sum(not c.ref.date for c in cands)
    low = len(timed) + len(dated_days - timed_days) + undated
    return low, low + len(dated_days & timed_days)


_REPLACING = frozenset({"corrected", "amended"})


def _supersedes(res: Resource) -> tuple[int, float]:
    """Of results of one moment, which replaces which: a corrected or amended one, then the later report."""
    issued = res.get("issued")
    when = parse_fhir_datetime(issued) if isinstance(issued, str) else None
    status = res.get("status")  # a malformed status (a list) is not hashable, and replaces nothing
    return int(isinstance(status, str) and status in _REPLACING), when.timestamp() if when is not None else 0.0


def _agree(one: _Candidate, other: _Candidate) -> bool:
    """Two readings of one result: within 1 %, or within half a step of the last digit each was written with."""
    if isclose(one.value, other.value, rel_tol=0.01):
        return True
    return abs(one.value - other.value) < _half_step(one) + _half_step(other)


def _half_step(c: _Candidate) -> float:
    """Half a unit of a reading written as a whole number, in the unit it was converted to (42 µmol/L: ± 0.5
    µmol/L), at most 2.5 % of it ('1' mg/dL is no ± 50 %). A decimal's precision is not known once parsed ('1.40'
    and '1.4' are one float), so it has none."""
    written = c.ref.original_value
    if isinstance(written, bool) or not isinstance(written, int) or written == 0:
        return 0.0
    return min(0.5 * abs(c.value / written), 0.025 * abs(c.value))


def _bound_side(limit: tuple[str, float] | None, threshold: float) -> bool | None:
    """Whether every value a bound allows is above `threshold` (True), none is (False), or it straddles (None)."""
    if limit is None:
        return None
    comparator, edge = limit
    if comparator in ("<", "<=") and edge <= threshold:
        return False
    if (comparator == ">" and edge >= threshold) or (comparator == ">=" and edge > threshold):
        return True
    return None


class _Unreadable(_Skip):
    """A result whose value cannot be read (no unit, unknown unit, bound, implausible): present, but unusable."""


def map_features(
    spec: FeatureSpec,
    index: ResourceIndex,
    *,
    at: datetime,
    valuesets: ValueSetLibrary,
    patient_id: str | None = None,
    units: UnitRegistry | None = None,
    time_zone: tzinfo | None = None,
    partial_birth: Literal["missing", "first", "last"] = "missing",
    encounter_id: str | None = None,
) -> MappingResult:
    """Map resources to every feature of the spec at hook time `at` (aware datetime).

    `time_zone` is the patient's local zone, for the local date that ages are counted on and the times vitals are
    shown in; without it the offset written in the record's newest timestamp is used, else UTC. `partial_birth`: a
    birth date written as a year or month alone that gives two ages leaves them missing, or reads them from the first
    or last day it can mean (the service maps both and uses them only when the result is the same either way).
    `encounter_id`: the encounter the hook names, for sources with `context_encounter`.
    """
    zone = time_zone or local_zone_of(index, patient_id)
    ctx = _Context(index, at, valuesets, units or default_registry(), ValidationCache(), patient_id, zone,
                   partial_birth)
    ctx.encounter_id = encounter_id
    result = MappingResult()
    result.deceased = deceased(index.patient(patient_id), at)
    derived = spec.derivation_order()
    adult_from = _adulthood(index.patient(patient_id))
    for name, feature in spec.features.items():
        if (feature.derived and not feature.sources) or feature.present_of or feature.on_date_of:
            continue
        outcome = ctx.map_one(name, feature)
        _store(result, name, ctx.ended(name, feature, outcome) if feature.ended_by else outcome)
    for name, feature in spec.features.items():
        if feature.on_date_of:
            _store(result, name, ctx.age_on_date_of(name, feature, spec, result))
    for name in derived:
        if spec.features[name].derived_when == "newer":
            _newest_evidence(name, spec, result, zone, adult_from)
        elif name not in result.values:
            outcome = _derive(name, spec, result, result.missing.get(name), adult_from)
            result.missing.pop(name, None)
            _store(result, name, outcome)
    for name, feature in spec.features.items():
        if feature.present_of:
            result.values[name] = _presence(name, feature, spec, result)
    # features listed before the derived ones they are computed from keep spec order
    result.values = {n: result.values[n] for n in spec.features if n in result.values}
    result.missing = {n: result.missing[n] for n in spec.features if n in result.missing}
    result.age_uncertain = ctx.age_uncertain
    return result


def _store(result: MappingResult, name: str, outcome: FeatureValue | MissingFeature) -> None:
    if isinstance(outcome, FeatureValue):
        result.values[name] = outcome
    else:
        result.missing[name] = outcome


def _later_day(derived: str | None, recorded: str | None) -> bool:
    """Whether a derived value rests on results from a later local day than the recorded one (`derived_when:
    newer`); on the same day the recorded value stands, and an undated derivation never replaces a dated record."""
    if derived is None:
        return False
    return recorded is None or derived[:10] > recorded[:10]  # both start with the local ISO date


def _local_day(ref: SourceRef | None, zone: tzinfo) -> str | None:
    """The local ISO date of a passed-over result (values carry theirs already): a date alone as written."""
    return _day_in(ref.date, zone) if ref is not None else None


def _unusable_of(result: MappingResult, name: str) -> SourceRef | None:
    """The newest result of a feature that could not be used, when the feature is missing because of it (a value,
    when there is one, rests on the newest result: an unreadable newest one leaves the feature missing)."""
    missing = result.missing.get(name)
    return missing.newest_unusable if missing is not None else None


def _newest_evidence(name: str, spec: FeatureSpec, result: MappingResult, zone: tzinfo,
                     adult_from: str | None = None) -> None:
    """`derived_when: newer`: the recorded value and the value derived from other results compete by local day (the
    later wins, the recorded one on the same day). Each side is spoken for by its newest result: when that one cannot
    be used (a bound, no unit, an unknown unit) the side has no usable value, and when that side is the newer one the
    feature is missing, naming the result — an older value, recorded or derived, is not used in its place."""
    feature = spec.features[name]
    recorded, measured = result.values.get(name), result.missing.get(name)
    outcome = _derive(name, spec, result, measured, adult_from)
    derived = outcome if isinstance(outcome, FeatureValue) else None
    own_bad = _unusable_of(result, name)
    inputs_bad = [(n, ref) for n in sorted(spec.derived_inputs(name)) if (ref := _unusable_of(result, n)) is not None]
    if isinstance(outcome, MissingFeature) and outcome.newest_unusable is not None:
        owner = _newest_input(name, spec, result)  # inputs read, but the equation has no value for them
        if owner is not None:
            inputs_bad.append((owner[0], outcome.newest_unusable))
    input_bad = max(inputs_bad, key=lambda t: _local_day(t[1], zone) or "", default=None)

    def side(value: FeatureValue | None, bad: SourceRef | None) -> tuple[str | None, FeatureValue | None,
                                                                          SourceRef | None] | None:
        bad_day = _local_day(bad, zone)
        if value is not None and (bad is None or not _later_day(bad_day, value.date)):
            return value.date, value, None
        return (bad_day, None, bad) if bad is not None else None

    rec = side(recorded, own_bad)
    der = side(derived, input_bad[1] if input_bad else None)
    if der is None and rec is None:  # nothing on either side: missing as the derivation says
        result.missing.pop(name, None)
        _store(result, name, outcome)
        return
    # the later day wins; on the same day the recorded value, unless it cannot be used and the derived one can (an
    # eGFR reported as '>90' beside the creatinine of the same specimen, from which CKD-EPI gives the number)
    derived_wins = der is not None and (rec is None or _later_day(der[0], rec[0])
                                        or (rec[1] is None and der[1] is not None and not _later_day(rec[0], der[0])))
    day, value, bad = der if derived_wins else rec  # type: ignore[misc]  # one of them is not None
    if value is not None:
        if value is derived:
            if rec is not None and rec[1] is not None:
                value.note = f"{value.note}; newer than the recorded {recorded.label or name} " \
                             f"{recorded.display or _fmt(recorded.value)} of {recorded.date}"
            elif rec is not None and rec[2] is not None:
                value.note = f"{value.note}; newer than the recorded result of {rec[0]}, which could not be used " \
                             f"({rec[2].note})"
            result.missing.pop(name, None)
            result.values[name] = value
        return  # the recorded value stands
    assert bad is not None
    if not derived_wins and recorded is None and measured is not None and measured.newest_unusable is bad:
        return  # the feature's own newest result stands, as its reason already says
    what = f"{spec.features[input_bad[0]].label.lower()}" if derived_wins and input_bad else f"{feature.label} result"
    older = []
    if recorded is not None:
        older.append(f"the recorded {feature.label} {recorded.display or _fmt(recorded.value)} of {recorded.date}")
    if derived is not None:
        older.append(f"the {feature.label} {derived.display or _fmt(derived.value)} computed from results of "
                     f"{derived.date}")
    reason = f"Newest {what}{f' ({day})' if day else ''} not usable: {bad.note}"
    if older:
        reason += f"; {' and '.join(older)} {'are' if len(older) > 1 else 'is'} older and not used in its place"
    if feature.missing_note:
        reason += f"; {feature.missing_note}"
    if bad.reference:
        reason += f"; newest result: {bad.reference}"
    passed = [bad] + [_with_note(s, f"older than the newest {what}, which could not be used")
                      for v in (recorded, derived) if v is not None for s in v.sources]
    result.values.pop(name, None)
    result.missing[name] = MissingFeature(name=name, label=feature.label, required=feature.required, reason=reason,
                                          ignored=(measured.ignored if measured else []) + passed,
                                          newest_unusable=_as_input(bad) if derived_wins else bad)


def _as_input(ref: SourceRef) -> SourceRef:
    """An input's result standing for a derived value: its limit ('<0.5 mg/dL' of a creatinine) is no limit of the
    derived value, so it is not carried (a guard would read it as an eGFR '<0.5')."""
    return replace(ref, limit=None) if ref.limit is not None else ref


def deceased(patient: Resource | None, at: datetime) -> str | None:
    """Why the record says the patient has died (deceasedBoolean true, or a deceasedDateTime not in the future)."""
    if not isinstance(patient, dict):
        return None
    if patient.get("deceasedBoolean") is True:
        return "the record marks the patient as deceased"
    text = patient.get("deceasedDateTime")
    if isinstance(text, str) and text:
        when = parse_fhir_datetime(text)
        if when is None:
            return f"the record gives a date of death ('{text}')"
        if not _in_future(text, at):
            return f"the record gives a date of death ({when.date().isoformat()})"
    return None


def _by_reference_only(resource: Resource) -> bool:
    """A Medication* resource that names its drug only by medicationReference (its codes are not in the index)."""
    return "medicationReference" in resource and "medicationCodeableConcept" not in resource


# written offsets that say nothing about the patient's local zone (UTC itself)
_UTC_SUFFIXES = ("Z", "+00:00", "-00:00")


def local_zone_of(index: ResourceIndex, patient_id: str | None = None) -> tzinfo:
    """The UTC offset of the newest timestamp in the patient's record that carries a non-zero one (EHRs write local
    offsets), else UTC. Of two timestamps naming the same instant, the one read first gives the offset."""
    texts: dict[str, None] = {}  # each distinct timestamp once, in the order read (a panel's results share theirs)
    elsewhere = index.elsewhere(patient_id)
    for rtype in ("Observation", "Encounter", "MedicationRequest", "Condition"):
        for res in index.by_type.get(rtype, ()):
            if id(res) in elsewhere:
                continue
            text = _resource_date(res)
            if text and len(text) > 10 and not text.endswith(_UTC_SUFFIXES):
                texts[text] = None
    newest: datetime | None = None
    for text in texts:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            continue
        if when.utcoffset() and (newest is None or when > newest):  # None (no offset) and zero are both falsy
            newest = when
    return newest.tzinfo if newest is not None and newest.tzinfo is not None else UTC


def _presence(name: str, feature: Feature, spec: FeatureSpec, result: MappingResult) -> FeatureValue:
    """`present_of`: 1 when the named feature holds a usable recorded value, else the default."""
    assert feature.present_of is not None and feature.default is not None
    target = result.values.get(feature.present_of)
    if target is not None and not target.defaulted:
        return FeatureValue(name=name, value=1.0, label=feature.label, display=display_value(feature, 1.0),
                            sources=target.sources, date=target.date,
                            note=f"{spec.features[feature.present_of].label} recorded")
    missing = result.missing.get(feature.present_of)
    # why there is no usable value: the reason it is missing, or the results its default was chosen over (a bound)
    why = f" ({missing.reason})" if missing else \
        f" ({target.passed_over})" if target is not None and target.passed_over else ""
    return FeatureValue(name=name, value=feature.default, label=feature.label, defaulted=True,
                        display=display_value(feature, feature.default),
                        note=f"{feature.default_note}{why}" if feature.default_note else None,
                        sources=missing.ignored if missing else target.sources if target is not None else [])


def _derive(name: str, spec: FeatureSpec, result: MappingResult, measured: MissingFeature | None,
            adult_from: str | None = None) -> FeatureValue | MissingFeature:
    feature = spec.features[name]
    assert feature.derived is not None
    needs = sorted(spec.derived_inputs(name))
    absent = [n for n in needs if n not in result.values]
    ignored = measured.ignored if measured else []
    if absent and not feature.sources and feature.derived_only_if is None:
        decided = _decided_without(name, spec, result, needs, absent)
        if decided is not None:
            return decided
    if absent:
        labels = ", ".join(spec.features[n].label.lower() for n in absent)
        if measured and all(spec.features[n].demographic for n in absent):
            # the results are there but an age or sex is not (a birth date written as a year alone): say that first,
            # not "nothing usable on record" (a card shows the first clause)
            why = "; ".join(f"{spec.features[n].label.lower()}: {result.missing[n].reason}"
                            for n in absent if n in result.missing)
            # (the measured source's own "nothing usable on record" would deny the results the value needs)
            return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                                  reason=f"{FOR_WANT_OF}{labels} ({why})")
        lead = f"{measured.reason}; it" if measured else "It"
        # an input whose results are on record but cannot be used (two creatinines of one moment that disagree)
        # says why first: "nothing usable on record" of the value's own code would deny them
        told = next((f"{spec.features[n].label}: {m.reason}; it" for n in absent if spec.features[n].sources
                     and (m := result.missing.get(n)) is not None and not m.reason.startswith(NOTHING_ON_RECORD)),
                    None)
        # a result on record that could not be read (an HbA1c without a unit) keeps the value unknown, not absent
        # (a rule read only when recorded is then unconfirmed, never passed); its limit is the input's, not this
        # value's (a creatinine '<0.5 mg/dL' is no eGFR '<0.5')
        unread = next((_as_input(m.newest_unusable) for n in absent if (m := result.missing.get(n)) is not None
                       and m.newest_unusable is not None), None)
        return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                              reason=f"{told or lead} cannot be computed without {labels}", newest_unusable=unread)
    # each input with the value used ('computed from serum creatinine 2.2 mg/dL, age at the creatinine 55 years …'),
    # so the details page shows what an eGFR or a BMI rests on
    # an add-on's stand-in default (HbA1c 5.3 % when none is usable, switched off by its 'measured' flag) is no value
    stand_ins = set(spec.presence_flags().values()) if any(result.values[n].defaulted for n in needs) else set()

    def shown(n: str) -> str:
        if n in stand_ins and result.values[n].defaulted:
            return "not used (no usable value)"
        return _shown(result.values[n], spec.features[n])
    used = ", ".join(f"{spec.features[n].label.lower()} {shown(n)}" for n in needs)
    try:
        value = compiled_expression(feature.derived).evaluate({n: result.values[n].value for n in needs})
    except ExpressionError:
        # inputs the equation has no value for (a creatinine of 0 or below): the newest of them is a result that
        # cannot be used, and an older value must not stand in for it (`derived_when: newer`)
        newest = _newest_input(name, spec, result)
        bad = _with_note(newest[1], f"{feature.label} cannot be computed from it") if newest else None
        return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                              reason=f"Cannot be computed from {used}", newest_unusable=bad)
    sources = _derived_sources(result, needs)
    dates = [result.values[n].date for n in needs if result.values[n].date]
    if feature.derived_only_if is not None:
        holds = compiled_expression(feature.derived_only_if).evaluate({n: result.values[n].value for n in needs})
        if not holds:  # outside the equation's own population: no value, saying why
            return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                                  reason=f"Not computed from {used}: {feature.derived_only_if_note}")
    reported = float(rounded(value, feature.reported_decimals)) if feature.reported_decimals is not None and \
        isfinite(value) else None
    display = quantity(reported, feature.unit, feature.reported_decimals or 0) if reported is not None else \
        display_value(feature, value)
    return FeatureValue(name=name, value=value, unit=feature.unit, label=feature.label, display=display,
                        sources=sources, note=f"computed from {used}" if needs else "set by this model's configuration",
                        date=_derived_date(name, spec, result, dates, adult_from), reported=reported)


def _derived_sources(result: MappingResult, inputs: list[str]) -> list[SourceRef]:
    """The records a derived value's inputs were read from; a defaulted input's are records passed over (a
    provisional diagnosis beside 'Diabetes: No'), which the derived value does not rest on."""
    return [s for n in inputs for s in result.values[n].sources
            if s.resource_type != "Patient" and not (result.values[n].defaulted and s.note)]


def _decided_without(name: str, spec: FeatureSpec, result: MappingResult, needs: list[str],
                     absent: list[str]) -> FeatureValue | None:
    """A purely derived value that its missing inputs cannot change (`hba1c_diabetes_range * (1 - diabetes)` is 0
    for a diabetic patient, whatever an HbA1c without a unit says), else None."""
    feature = spec.features[name]
    assert feature.derived is not None
    known = [n for n in needs if n not in absent]
    bounds = {n: (b["comparator"], b["limit"]) for n in absent
              if (m := result.missing.get(n)) is not None and (b := m.bound()) is not None}
    value = compiled_expression(feature.derived).decided_without({n: result.values[n].value for n in known}, bounds)
    if value is None:
        return None
    used = ", ".join(f"{spec.features[n].label.lower()} {_shown(result.values[n], spec.features[n])}" for n in known)
    unknown = ", ".join(spec.features[n].label.lower()
                        + (f" ({bounds[n][0]}{_fmt(bounds[n][1])})" if n in bounds else "") for n in absent)
    sources = _derived_sources(result, known)
    dates = [d for n in known if (d := result.values[n].date)]
    return FeatureValue(name=name, value=value, unit=feature.unit, label=feature.label,
                        display=display_value(feature, value), sources=sources,
                        note=f"computed from {used}, whatever {unknown} (not known)", date=min(dates, default=None))


def _newest_input(name: str, spec: FeatureSpec, result: MappingResult) -> tuple[str, SourceRef] | None:
    """The result a derivation that gave no value is blamed on, with its input's name (not the Patient: age and
    sex): the newest input of zero or less (a height of 0 cm, a creatinine of 0), else the newest input."""
    best: tuple[bool, str, str, SourceRef] | None = None
    for n in sorted(spec.derived_inputs(name)):
        fv = result.values.get(n)
        for ref in fv.sources if fv is not None else ():
            if ref.resource_type == "Patient":
                continue
            key = (fv.value <= 0, ref.date or "", n, ref)
            if best is None or key[:2] > best[:2]:
                best = key
    return (best[2], best[3]) if best is not None else None


def _derived_date(name: str, spec: FeatureSpec, result: MappingResult, dates: list[str],
                  adult_from: str | None) -> str | None:
    """A derived value's date: the oldest of its dated inputs; or that of the input the spec names
    (`derived_dated_by`: a BMI by its weight, an adult's height measured years ago still holding) when every other
    input was measured in adulthood (from the 18th birthday; a height at 14 is not the adult height). None when a
    measured input has no date (an undated height may be a child's)."""
    inputs = spec.derived_inputs(name)
    if any(result.values[n].date is None and any(src.resource_type != "Patient" for src in result.values[n].sources)
           for n in inputs):
        return None  # a measurement without a date: when the derived value holds is unknown (it never wins by date)
    dated_by = spec.features[name].derived_dated_by
    if dated_by is not None and result.values[dated_by].date and adult_from is not None:
        others = [result.values[n].date for n in inputs if n != dated_by]
        if all(d is not None and str(d)[:10] >= adult_from for d in others):
            return result.values[dated_by].date
    return min(dates) if dates else None


def _adulthood(patient: Resource | None) -> str | None:
    """The 18th birthday (the latest it can be, for a birth date written in part) as YYYY-MM-DD; None without one."""
    written = patient.get("birthDate") if patient is not None else None
    birth = parse_fhir_date(written)
    if birth is None or not isinstance(written, str):
        return None
    last = last_day_of(written, birth) if len(written) < 10 else birth
    try:
        return last.replace(year=last.year + 18).isoformat()
    except ValueError:  # 29 February
        return last.replace(year=last.year + 18, day=28).isoformat()


def _shown(value: FeatureValue, feature: Feature) -> str:
    """An input as a derivation's note names it: its display, else its number and unit."""
    return value.display or display_value(feature, value.value) or \
        (quantity(float(value.value), value.unit, 2) if value.unit else _fmt(float(value.value)))


class _Context:
    def __init__(
        self,
        index: ResourceIndex,
        at: datetime,
        valuesets: ValueSetLibrary,
        units: UnitRegistry,
        validation: ValidationCache,
        patient_id: str | None,
        zone: tzinfo = UTC,
        partial_birth: Literal["missing", "first", "last"] = "missing",
    ) -> None:
        self.index, self.at, self.valuesets, self.units = index, at, valuesets, units
        self.validation, self.patient_id, self.zone = validation, patient_id, zone
        self._recognised: dict[int, Recognition] = {}
        self._views: dict[int, MedicationView] = {}
        self._drug_classes: dict[int, frozenset[str]] = {}  # id(view) -> the shipped classes recognising it
        self._other_medications: list[tuple[Resource, Source, MedicationView, Recognition | None]] = []
        self._words_of: dict[int, list[str]] = {}  # id(resource) -> its main code in words (`mentions`)
        self.elsewhere = index.elsewhere(patient_id)  # id -> why: resources about someone else, never read
        self._unusable: list[SourceRef] = []  # this feature's matches that are present but malformed
        self.partial_birth = partial_birth
        self.age_uncertain: tuple[int, int] | None = None  # (youngest, oldest) from a birth date written in part
        self.encounter_id: str | None = None  # the encounter the hook names (context.encounterId)

    # ---- features -------------------------------------------------------------------------------------------
    def map_one(self, name: str, feature: Feature) -> FeatureValue | MissingFeature:
        if feature.demographic:
            return self._demographic(name, feature)
        if feature.sources and all(s.context_encounter for s in feature.sources) and not self._named_encounter():
            # a feature about the encounter the hook names: none named, or the record does not hold it
            if not self.encounter_id:
                return MissingFeature(name=name, label=feature.label, required=feature.required,
                                      reason=f"{NOTHING_ON_RECORD}: the hook names no encounter")
            # the hook acts on an encounter the record does not hold (its search missed it): what it is cannot be
            # checked, so a check read only when recorded is not passed for want of it (NEWS2 filed against an
            # encounter nobody saw because another stay is open)
            named = SourceRef(reference=f"Encounter/{self.encounter_id}", resource_type="Encounter",
                              note="the encounter the hook acts on is not in the record")
            return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=[named],
                                  reason=f"Encounter/{self.encounter_id}, the encounter the hook acts on, is not in "
                                         "the record", newest_unusable=named)
        candidates: list[_Candidate] = []
        ignored: list[SourceRef] = []
        self._other_medications, self._unusable = [], []
        matches = [(res, source) for source in feature.sources for res in self._matching(source)]
        if feature.aggregate in _NEWEST_FIRST and len(matches) > 1:
            return self._newest_usable(name, feature, matches)
        unreadable: SourceRef | None = None
        unread: list[SourceRef] = []  # results of a presence that could not be read (a count's unknowns)
        bound: SourceRef | None = None
        unread_value: SourceRef | None = None  # a value present but unreadable (no unit …): the newest result
        for res, source in matches:
            ref = self._ref(res, source)
            try:
                read_now = self._read(res, source, feature, ref)
                if feature.aggregate == "count":
                    for cand in read_now:
                        cand.test = source.analyte or feature.analyte
                candidates.extend(read_now)
            except _Skip as why:
                self._pass_over(ignored, ref, why)
                if isinstance(why, _Unreadable) and _reads_presence(feature, source):
                    unreadable = ignored[-1]
                    unread.append(unreadable)
                elif isinstance(why, _Unreadable) and feature.aggregate in _NEWEST_FIRST:
                    unread_value = ignored[-1]  # at most one match reaches here for these aggregates
                if isinstance(why, _Bound) and not _reads_presence(feature, source):
                    bound = ignored[-1]
        read = bool(candidates)
        candidates = self._strictly_valid(feature, candidates, ignored)
        if feature.aggregate == "count":
            low, high = _count_span(candidates, unread, self.zone)
            if high > low and unreadable is not None:  # unread results may each be another specimen
                return replace(self._unknown(name, feature, unreadable, ignored), count_range=(low, high))
            if high > low:  # a result written as a date alone may be the specimen of a timed one of its day
                return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                                      reason=f"{low} or {high} results: one written as a date alone may be the "
                                             "specimen of a timed one of its day", count_range=(low, high))
        if candidates:
            return self._aggregate(name, feature, candidates)
        if bound is not None:  # a bound ('>60'): older results must not replace it, nor an add-on's default (see
            # `_newest_usable`)
            return self._newest_stands(name, feature, bound, ignored)
        if read and any(_reads_presence(feature, source) for source in feature.sources):
            unreadable = ignored[-1]  # the value was read but its resource is not valid FHIR R4
        if unreadable is not None:
            return self._unknown(name, feature, unreadable, ignored)
        if read and feature.value in ("quantity", "coded") and feature.aggregate in _NEWEST_FIRST:
            unread_value = ignored[-1]  # read, but not valid FHIR R4
        if unread_value is not None and feature.default is not None:
            return self._newest_stands(name, feature, unread_value, ignored)  # an add-on measured but unreadable
        return self._absent(name, feature, ignored, unread_value)

    def ended(self, name: str, feature: Feature, outcome: FeatureValue | MissingFeature
              ) -> FeatureValue | MissingFeature:
        """A state the record says holds (1), ended by a record dated after the newest of it and at least
        `after_days` before the hook (a pregnancy by a delivery more than six weeks ago): 0, resting on that record.
        Within `after_days`, or with nothing after it, the value stands."""
        ends = feature.ended_by
        if ends is None or not isinstance(outcome, FeatureValue) or outcome.defaulted or outcome.value != 1:
            return outcome
        since = parse_fhir_datetime(outcome.date) if outcome.date else None
        if since is None:
            return outcome
        cutoff = self.at - timedelta(days=ends.after_days)
        found: list[tuple[datetime, SourceRef]] = []
        for source in ends.sources:
            for res in self._matching(source):
                try:
                    _check_status(res, source)
                except _Skip:
                    continue
                ref = self._ref(res, source)
                when = parse_fhir_datetime(ref.date) if ref.date else None
                if when is not None and since < when <= cutoff:
                    found.append((when, ref))
        if not found:
            return outcome
        when, ref = max(found, key=lambda pair: pair[0])
        day, then = _day_in(ref.date, self.zone), _day_in(outcome.date, self.zone)
        note = (f"ended: {ends.label} on {day} ({ref.display or ref.reference}), after the record of {then}, and "
                f"more than {ends.after_days} days ago")
        return FeatureValue(name=name, value=0.0, unit=outcome.unit, label=feature.label,
                            display=feature.display.get("0"), sources=[_with_note(ref, note)], note=note,
                            date=ref.date)

    def _newest_usable(self, name: str, feature: Feature, matches: list[tuple[Resource, Source]]) -> FeatureValue | MissingFeature:
        """For latest-value features read candidates newest first and stop at the first usable one.

        A long record holds years of vitals; only the newest usable value matters, so older ones are never read,
        converted or validated. Reading stops too at the first value older than the look-back window (all after it
        are older still); that one is reported as passed over. A presence read from a value (`above`) is decided by
        the newest reading: when that one cannot be read, the feature is unknown rather than taken from an older one.
        """
        ignored: list[SourceRef] = []
        floor = datetime.min.replace(tzinfo=UTC)
        window_start = self.at - timedelta(days=feature.lookback_days) if feature.lookback_days is not None else None
        # reading stops at the first result older than every source's window (a source may look further back)
        widest = [s.lookback_days if s.lookback_days is not None else feature.lookback_days for s in feature.sources]
        stop_before = self.at - timedelta(days=max(widest)) if widest and None not in widest else None
        # readings ordered by the hour (vital signs): a date written alone could be any time that day
        hourly = feature.lookback_days is not None and feature.lookback_days <= 2
        # results ordered by the day (labs) of one moment: those under the source's `prefer_codes` first (a serum
        # creatinine before a whole-blood one drawn with it)
        keyed = sorted((((*self._sort_key(res, source, window_start, floor, hourly),
                          0 if hourly else self._preferred(res, source), (0, 0.0) if hourly else _supersedes(res)),
                         res, source)
                        for res, source in matches), key=lambda t: t[0], reverse=True)
        # a quantity's newest result that cannot be read, held until the records of the same moment are read: a
        # readable one among them (an interface that sends the value and a comment row) gives the value, whatever
        # the order of the bundle
        held: tuple[tuple[Any, ...], SourceRef] | None = None
        # for `exists`, any record shows the presence: a newer result that cannot be read (an FPG without a unit)
        # leaves it unknown only if no older record shows it (a diabetes diagnosis coded years before)
        unsure: SourceRef | None = None
        for i, (key, res, source) in enumerate(keyed):
            if held is not None and key[:2] < held[0][:2]:
                return self._newest_stands(name, feature, held[1], ignored)
            ref = self._ref(res, source)
            try:
                cands = self._read(res, source, feature, ref)
            except _Skip as why:
                self._pass_over(ignored, ref, why)
                if str(why).startswith("older than"):
                    if stop_before is not None and key[0] < stop_before:
                        break  # all after it are older still
                    continue  # a date alone placed at the latest it can mean: timed readings after it may be newer
                if isinstance(why, _Unreadable) and _reads_presence(feature, source):
                    if feature.aggregate == "exists":
                        unsure = unsure or ignored[-1]
                        continue
                    return self._unknown(name, feature, ignored[-1], ignored)
                if isinstance(why, _Bound) and not _reads_presence(feature, source):
                    # the newest result says the value is below (or above) a limit: an older measurement is not
                    # the current value, so it is not used in its place. An add-on is missing too: it was measured,
                    # and the equations without it are for a patient in whom it was not (a UACR '>300' would be
                    # understated, '<300' may be anything up to it, and even '<3' gives PREVENT-full's sample woman
                    # at most 10.7 % with UACR against 14.7 % without)
                    return self._newest_stands(name, feature, ignored[-1], ignored)
                if isinstance(why, _Unreadable) and feature.value in ("quantity", "coded"):
                    # the newest result was reported but cannot be read (no unit, an unknown unit, text with a
                    # number; a coded answer the model cannot interpret, or none): its value is unknown, so an
                    # older one is not the current value. The input is missing, naming it; an add-on too (it was
                    # measured: the equations without it are not for this patient)
                    held = held or (key, ignored[-1])
                continue
            valid = self._strictly_valid(feature, cands, ignored)
            if valid:
                if hourly:
                    rival, twins = self._rival(feature, valid[0], keyed[i + 1:]), False
                else:
                    rival, twins = self._same_day_rival(feature, valid[0], key, keyed[i + 1:])
                if rival is not None:
                    return self._unplaced(name, feature, valid[0].ref, rival, ignored, twins=twins)
                return self._aggregate(name, feature, valid)
            if _reads_presence(feature, source):
                if feature.aggregate == "exists":
                    unsure = unsure or ignored[-1]
                    continue
                return self._unknown(name, feature, ignored[-1], ignored)
            if feature.value in ("quantity", "coded"):  # read, but not valid FHIR R4: as above, the newest stands
                held = held or (key, ignored[-1])
        if held is not None:
            return self._newest_stands(name, feature, held[1], ignored)
        if unsure is not None:
            return self._unknown(name, feature, unsure, ignored)
        return self._absent(name, feature, ignored)

    def _newest_stands(self, name: str, feature: Feature, bound: SourceRef,
                       ignored: list[SourceRef]) -> FeatureValue | MissingFeature:
        """A newest result that is no usable number (a bound '<3', '>60'; no unit, an unknown unit, text, not valid
        FHIR R4), passed over as `bound`: the feature is missing, naming it, and its date keeps a value derived from
        older results from standing in (`derived_when: newer`). An add-on too: it was measured, so the equations
        without it (for a patient in whom it was not) would misstate the risk. A bound wholly in one band of a
        scored chart (`chart_bands`) is read as that band."""
        banded = self._in_one_band(name, feature, bound)
        if banded is not None:
            return banded
        # an add-on: the equations without it do not apply either
        without = "the equations without it are for a patient in whom it was not measured" \
            if feature.default is not None else None
        reason = self._newest_not_usable(bound, "an older value is not used in its place", without)
        return MissingFeature(name=name, label=feature.label, required=feature.required, ignored=ignored,
                              reason=reason, newest_unusable=bound)

    def _shown_when(self, feature: Feature, latest: datetime | None, written: str | None) -> str | None:
        """When a value was taken, as a card shows it: vital signs read over hours with the local time, labs and
        diagnoses with the date; a date alone as written (that day where the record is: no time, no other day)."""
        if latest is None:
            return None
        short = feature.lookback_days is not None and feature.lookback_days <= 2
        local = latest.astimezone(self.zone)
        if written and "T" not in written:
            return written[:10]
        return local.strftime("%Y-%m-%d %H:%M") + _zone_suffix(local) if short else local.date().isoformat()

    def _in_one_band(self, name: str, feature: Feature, bound: SourceRef) -> FeatureValue | None:
        """A bound whose every value, rounded as the chart is written, falls in one band ('<35 °C': every value scores
        as <=35.0): the band's edge nearest the bound, which the model scores as any value of the band, shown as
        written. None for a bound that spans two bands, or a feature with no bands."""
        if not feature.chart_bands or feature.chart_decimals is None or bound.limit is None:
            return None
        comparator, number = bound.limit
        step = Decimal(1).scaleb(-feature.chart_decimals)

        def charted(value: float) -> float:
            return float(Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP))

        def band(value: float) -> int:
            return next((i for i, edge in enumerate(feature.chart_bands) if value <= edge), len(feature.chart_bands))

        tiny = float(step) / 1000
        if comparator in ("<", "<="):  # every value below: the band of the highest one allowed must be the lowest
            edge = charted(number - tiny if comparator == "<" else number)
            if band(edge) != 0:
                return None
        elif comparator in (">", ">="):  # every value above: the band of the lowest one must be the highest
            edge = charted(number + tiny if comparator == ">" else number)
            if band(edge) != len(feature.chart_bands):
                return None
        else:
            return None
        raw, unit = bound.original_value, bound.original_unit  # the bound as written ('<35 Cel', '<95 [degF]')
        written = f"{comparator}{_as_written(raw)} {_unit_label(unit)}".rstrip() \
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and isinstance(unit, str) else \
            f"{comparator}{quantity(number, feature.unit, 2)}"
        note = f"{BOUND_NOTE} ({written}): every value it allows is scored as {quantity(edge, feature.unit, 1)}"
        when = parse_fhir_datetime(bound.date) if bound.date else None
        return FeatureValue(name=name, value=edge, unit=feature.unit, label=feature.label, display=written,
                            sources=[_with_note(bound, note)], note=note,
                            date=self._shown_when(feature, when, bound.date))

    def _newest_not_usable(self, newest: SourceRef, *clauses: str | None) -> str:
        """'Newest result (2026-12-01) not usable: <why>; <clauses>; newest result: Observation/…' — the one wording
        of a missing input whose newest result cannot be used (the card shows the first clause)."""
        day = _local_day(newest, self.zone)
        parts = [f"Newest result{f' ({day})' if day else ''} not usable: {newest.note}", *filter(None, clauses)]
        if newest.reference:
            parts.append(f"newest result: {newest.reference}")
        return "; ".join(parts)

    def _passed_over(self, ignored: list[SourceRef]) -> str | None:
        """'the newest result, of 2026-11-16, was passed over: older than the 2 years look-back window' — why a
        quantity's default applies although results were on record (a newest one that cannot be read, a bound
        included, leaves the input missing instead: `_newest_stands`)."""
        floor = datetime.min.replace(tzinfo=UTC)
        dated = [r for r in ignored if r.note != "dated in the future"]
        if not dated:
            return None
        # by the day where the record is first: a date alone is that day as written, not its midnight UTC
        newest = max(dated, key=lambda r: (_day_in(r.date, self.zone) or "",
                                           parse_fhir_datetime(r.date) or floor if r.date else floor))
        day = _local_day(newest, self.zone)
        clause = f"the newest result{f', of {day},' if day else ''} was passed over: {newest.note}"
        if len(ignored) > 1:
            clause += f"; {len(ignored)} results passed over"
        return clause

    def _pass_over(self, ignored: list[SourceRef], ref: SourceRef, why: _Skip) -> None:
        noted = _with_note(ref, str(why))
        if isinstance(why, _Bound) and why.limit is not None:
            # the bound as written too ('>30' mg/mmol): a card note categorises it in the unit the laboratory wrote
            written = why.written or (None, None)
            noted = replace(noted, limit=why.limit, original_value=written[0], original_unit=written[1])
        ignored.append(noted)
        if isinstance(why, _Unusable):
            self._unusable.append(noted)

    def _rival(self, feature: Feature, chosen: _Candidate,
               rest: list[tuple[tuple[datetime, int, int], Resource, Source]]) -> SourceRef | None:
        """Among readings ordered by the hour, one that may be newer than `chosen` and says otherwise: `chosen` or
        it is written as a date alone, so which came first is unknown (an SpO2 of 88 % 'on 6 December' against 97 %
        at 15:00 that day), or both were charted for the same moment (the bundle's order is no order). Only values
        of the same kind are compared (quantities, or a presence read from them)."""
        if _open_procedure(chosen.res):
            return None  # placed by its start (`_sort_key`): unknown order keeps a therapy current
        earliest = _earliest_moment(chosen.ref.date)
        if earliest is None:
            return None
        zoneless = _zoneless_time(chosen.ref.date)
        for (moment, *_), res, source in rest:
            if moment < earliest:
                break  # certainly older (sorted by the latest moment each can mean); one of the same moment that
                # says otherwise (two respiration rates charted for one minute) leaves the newest unknown too
            if _open_procedure(res):
                continue
            ref = self._ref(res, source)
            if zoneless and _zoneless_time(ref.date):
                continue  # two times written without a zone in one record share it: the order as written holds
            read, other = self._says_otherwise(feature, chosen, res, source, ref)
            if other is not None:
                return other
            if read and ref.date and _has_zone(ref.date):
                break  # a timed reading agreeing with `chosen`: those after it are older, the newest agrees either way
        return None

    def _preferred(self, res: Resource, source: Source) -> int:
        """1 for a result under one of the source's `prefer_codes`, else 0 (and 0 for all when it names none)."""
        if not source.prefer_codes:
            return 0
        return int(any(f"{system}|{code}" in source.prefer_codes for system, code, _ in codings(res.get("code"))))

    def _same_day_rival(self, feature: Feature, chosen: _Candidate, key: tuple[Any, ...],
                        rest: list[tuple[tuple[Any, ...], Resource, Source]]) -> tuple[SourceRef | None, bool]:
        """For results ordered by the day (labs), one that may stand instead of `chosen` and says otherwise, and
        whether it was charted for the very same moment: a result of that moment as preferred by the source's
        `prefer_codes` (two serum creatinines of one timestamp, 1.4 and 2.0 mg/dL: a searchset's order within one
        moment is no order), unless the record says which replaces which (a `corrected` or `amended` result, else
        the later `issued`); or, beside a result written as a date alone, one of the same day where the record is
        (a date alone may be any time of it), or a date alone of a later day. Readings that agree (`_agree`) are one
        result."""
        mine = _day_in(chosen.ref.date, self.zone)
        dated = bool(chosen.ref.date) and "T" not in str(chosen.ref.date)
        for other_key, res, source in rest:
            same_moment = other_key[:3] == key[:3]
            if not same_moment and (mine is None or other_key[0] < key[0] - timedelta(days=2)):
                break  # sorted newest first: the rest are older (a date alone sorts at its day's start in UTC)
            ref = self._ref(res, source)
            if same_moment and other_key[3] < key[3]:
                continue  # replaced by `chosen`: a final result it corrects, or an earlier report of the moment
            if not same_moment:
                theirs = _day_in(ref.date, self.zone)
                other_dated = bool(ref.date) and "T" not in str(ref.date)
                if other_key[2] != key[2] or theirs is None or dated == other_dated or \
                        not (theirs == mine or (other_dated and theirs > mine)):
                    continue
            try:
                cands = self._read(res, source, feature, ref)
            except _Skip:
                continue
            if any(not _agree(c, chosen) for c in cands):
                return cands[0].ref, same_moment
        return None, False

    def _says_otherwise(self, feature: Feature, chosen: _Candidate, res: Resource, source: Source,
                        ref: SourceRef) -> tuple[bool, SourceRef | None]:
        """(whether `res` could be read, the record itself when it gives a value other than `chosen`'s)."""
        try:
            cands = self._read(res, source, feature, ref)
        except _Skip:
            return False, None
        return True, (cands[0].ref if any(c.value != chosen.value for c in cands) else None)

    def _unplaced(self, name: str, feature: Feature, chosen: SourceRef, rival: SourceRef,
                  ignored: list[SourceRef], twins: bool = False) -> MissingFeature:
        """Two readings either of which may stand; `twins`: two results charted for one moment (labs)."""
        def at(ref: SourceRef) -> str:
            written = ref.date or ""
            return f"on {written[:10]} (no time given)" if "T" not in written else f"at {self._local_text(written)}"

        def shown(ref: SourceRef) -> str:
            return quantity(float(ref.original_value), ref.original_unit, 2) \
                if isinstance(ref.original_value, (int, float)) and not isinstance(ref.original_value, bool) else \
                "a value"

        if twins:
            reason = (f"Two results charted for the same moment disagree: {shown(chosen)} and {shown(rival)} "
                      f"{at(chosen)}; which one stands is not known; results: {chosen.reference}, {rival.reference}")
            return MissingFeature(name=name, label=feature.label, required=feature.required, reason=reason,
                                  ignored=ignored + [chosen, rival])
        dated_alone = "T" not in (chosen.date or "") or "T" not in (rival.date or "")
        why = "a time is needed for the one written as a date alone" if dated_alone else \
            "both are charted for the same moment"
        reason = (f"Which reading is the newest is not known: {shown(chosen)} {at(chosen)} or {shown(rival)} "
                  f"{at(rival)}; {why}; readings: {chosen.reference}, {rival.reference}")
        return MissingFeature(name=name, label=feature.label, required=feature.required, reason=reason,
                              ignored=ignored + [chosen, rival])

    def _sort_key(self, res: Resource, source: Source, window_start: datetime | None,
                  floor: datetime, hourly: bool = False) -> tuple[datetime, int]:
        """Where a record stands among the others, newest first: its date; a procedure still in progress by the
        latest moment its start can mean, never before the look-back window, and ahead of a record of the same moment.

        Such a procedure is current whenever it started (`_read` keeps it in the window), but a record made after it
        started says what is true now: oxygen therapy left open since Monday does not override a FiO2 of 21 % charted
        an hour ago. Only a record certainly made after the start does: a start written as a date alone could be any
        time that day, so it is placed at the day's end (12 h past its UTC end, for the zones west of UTC). Placed no
        earlier than the window's start, the procedure is reached before reading stops at the first record older
        than the window (`_newest_usable`); one with no start cannot be placed before anything, so it stays current.
        """
        if _open_procedure(res):
            begun = _start_text(res)  # placed at the latest moment its start can mean
            start = _latest_moment(begun) if begun is not None else None
            if start is None:
                return self.at, 1
            return min(self.at, start if window_start is None else max(start, window_start)), 1
        written = _resource_date(res)
        if hourly and isinstance(written, str) and "T" not in written:  # a date alone: the latest it can mean
            latest = _latest_moment(written)
            return (min(self.at, latest), 0) if latest is not None else (floor, 0)
        return parse_fhir_datetime(written) or floor, 0

    def _strictly_valid(self, feature: Feature, cands: list[_Candidate], ignored: list[SourceRef]) -> list[_Candidate]:
        """Validate with fhir.resources R4B only what the aggregate uses: the pick, or every value it averages.
        An invalid candidate is passed over as unusable (`_absent` then leaves a binary feature unknown)."""
        def valid(c: _Candidate) -> bool:
            problem = self.validation.problem(c.res) if c.res is not None else None
            if problem:
                self._pass_over(ignored, c.ref, _Unusable(problem))
            return problem is None

        agg = feature.aggregate
        if agg in ("mean", "count"):
            return [c for c in cands if valid(c)]
        floor = self.at - timedelta(days=365_000)
        order = {
            "latest": lambda c: (c.when or floor), "days_since": lambda c: (c.when or floor),
            "earliest": lambda c: -(c.when or floor).timestamp(), "max": lambda c: c.value,
            "min": lambda c: -c.value, "exists": lambda c: (c.when or floor),
        }[agg]
        for cand in sorted(cands, key=order, reverse=True):
            if valid(cand):
                return [cand]
        return []

    def _matching(self, source: Source) -> list[Resource]:
        if source.medication_class:
            return self._medications_of_class(source)
        if source.reason_valueset:  # orders (or statements) given for a reason of the set
            reasons = self.valuesets.get(source.reason_valueset)
            return [res for res in self.index.by_type.get(source.resource, ())
                    if any(reasons.lookup(system, code) for reason in self._view(res).reasons
                           for system, code, _ in reason.codings)]
        if source.codes:
            found = self.index.with_codes(source.resource, source.codes)
        elif not source.valueset:
            found = list(self.index.by_type.get(source.resource, ()))
        else:
            found = []
        if source.valueset:
            vs = self.valuesets.get(source.valueset)
            seen = {id(r) for r in found}
            medication = source.resource.startswith("Medication")
            present = self.index.codes_by_type.get(source.resource, set())
            if vs.match == "exact":
                # look each code up in the index; only medicationReference codes are not indexed, so scan those
                # in code order: a set's order varies between processes, and a tie must pick the same resource
                pool: list[Resource] = [r for s, c in sorted(vs.matching_codes(present))
                                        for r in self.index.by_code[(source.resource, s, c)]]
                if medication:
                    pool += [r for r in self.index.by_type.get(source.resource, ()) if _by_reference_only(r)]
            else:
                # each distinct code of the record is looked up once, not once per resource carrying it; the
                # resources are then taken in record order, as a scan of them would
                hits = {id(r) for s, c in present if vs.lookup(s, c)
                        for r in self.index.by_code[(source.resource, s, c)]}
                pool = [r for r in self.index.by_type.get(source.resource, ())
                        if id(r) in hits or (medication and _by_reference_only(r))]
            for res in pool:
                if id(res) in seen:
                    continue
                seen.add(id(res))
                if medication and _by_reference_only(res):  # its codes are on the Medication it names
                    if not any(vs.lookup(s, c) for s, c, _ in codings(self.index.medication_concept(res))):
                        continue
                found.append(res)  # else taken from the index by a code of the set
        if source.component and source.threshold is not None:
            # a presence read from a component (the oxygen flow of a pulse oximetry reading): a reading without it,
            # or with only its dataAbsentReason, says nothing either way, so it is no candidate (not "passed over",
            # and never the newest "no")
            found = [res for res in found if _has_component(res, source.component)]
        if source.context_encounter:  # the encounter the hook acts on alone, and none when the hook names none
            found = [res for res in found if self.encounter_id and res.get("id") == self.encounter_id]
        if source.where:
            found = [res for res in found if _fhirpath_true(source.where, res)]
        return found

    def _named_encounter(self) -> bool:
        """Whether the hook names an encounter (`encounter_id`) and the record holds it, about this patient."""
        return self.encounter_id is not None and any(
            res.get("id") == self.encounter_id and id(res) not in self.elsewhere
            for res in self.index.by_type.get("Encounter", ()))

    def _medications_of_class(self, source: Source) -> list[Resource]:
        """Medication resources whose drug is recognised as a counted member of the source's class; the others
        are kept so that, when nothing matches, the card can name the active ones that were not recognised."""
        assert source.medication_class is not None
        drug_class = self.valuesets.drug_class(source.medication_class)
        found: list[Resource] = []
        for res in self.index.by_type.get(source.resource, ()):
            view = self._view(res)
            rec = None if view.entered_in_error else drug_class.recognise(view)
            if rec is not None and rec.counted and drug_class.chronic_only and acute_order(res):
                rec = replace(rec, counted=False, not_counted_reason=ACUTE_COURSE)
            if rec is not None and rec.counted:
                self._recognised[id(res)] = rec
                found.append(res)
            else:
                self._other_medications.append((res, source, view, rec))
        if source.where:
            found = [res for res in found if _fhirpath_true(source.where, res)]
        return found

    def _view(self, res: Resource) -> MedicationView:
        """What a medication resource says about its drug, its route and its reasons, read once per call."""
        view = self._views.get(id(res))
        if view is None:
            view = self._views[id(res)] = medication_view(self.index, res)
        return view

    def _unrecognised(self, feature: Feature, counted_only: bool = False) -> tuple[str | None, list[str]]:
        """'2 active medications not recognised as antihypertensive: A; B' for the medications that are current
        (status, intent, period) but were not recognised as the class, or not counted with the reason. With
        `counted_only`, only those recognised and not counted (a semaglutide order beside "no glucose-lowering
        medication" on a population check)."""
        names: list[str] = []
        for res, source, view, rec in self._other_medications:
            if id(res) in self.elsewhere or not _taken(res, source, self.at):
                continue
            name = view.name
            if rec is not None and rec.not_counted_reason:
                name = f"{name}{NOT_COUNTED}{rec.not_counted_reason})"
            elif counted_only:
                continue
            elif rec is None and self._identified_elsewhere(view, feature):
                continue  # a drug of another known class (amlodipine on a diabetes line) is identified, not unknown
            elif rec is None and (problem := self.validation.problem(res)):
                # a current order whose drug cannot be read because the resource is malformed: it may be one
                self._unusable.append(_with_note(self._ref(res, source), problem))
                continue
            elif rec is None and view.unresolved_reference and not (view.codings or view.texts
                                                                     or view.ingredient_codings):
                # a current order for a drug the record never names (its Medication was not sent and could not be
                # read): it may be one, so "No" would be a guess
                why = self.index.unread_medications.get(view.unresolved_reference)
                self._unusable.append(_with_note(
                    self._ref(res, source), f"its drug ({view.unresolved_reference}) could not be retrieved"
                                            f"{f' ({why})' if why else ''}, so what it is is unknown"))
                continue
            if name not in names:
                names.append(name)
        if not names:
            return None, []
        classes = sorted({s.medication_class for s in feature.sources if s.medication_class})
        title = " or ".join(self.valuesets.drug_class(c).title for c in classes)
        shown = "; ".join(names[:4]) + (f"; and {len(names) - 4} more" if len(names) > 4 else "")
        many = len(names) > 1
        if not_counted_only(names):
            return f"{len(names)} active medication{'s' if many else ''} not counted as {title}: {shown}", names
        return (f"{len(names)} active medication{'s' if many else ''} not recognised as {title}: {shown} — "
                f"check {'whether any is' if many else 'whether it is'} {title}"), names

    def _identified_elsewhere(self, view: MedicationView, feature: Feature) -> bool:
        own = {s.medication_class for s in feature.sources if s.medication_class}
        return bool(self._classes_of(view) - own)

    def _classes_of(self, view: MedicationView) -> frozenset[str]:
        """The shipped drug classes that recognise a drug, once per call (every medication feature asks)."""
        found = self._drug_classes.get(id(view))
        if found is None:
            found = self._drug_classes[id(view)] = frozenset(
                c for c in shipped_class_ids() if self.valuesets.drug_class(c).recognise(view) is not None)
        return found

    def _ref(self, res: Resource, source: Source) -> SourceRef:
        if source.medication_class:
            view = self._view(res)
            rec = self._recognised.get(id(res))
            code = next((f"{s}|{c}" for s, c, _ in view.codings), None)
            return SourceRef(reference=self.index.ref(res), resource_type=source.resource,
                             date=_medication_date(res), code=code, display=rec.drug if rec else view.name,
                             note=f"recognised by {rec.how}" if rec else None)
        concept = self.index.medication_concept(res) if source.resource.startswith("Medication") \
            else res.get(main_code_element(source.resource))
        code, display, listed = self._matched_coding(concept, source)
        if not display and isinstance(concept, dict) and isinstance(concept.get("text"), str) and concept["text"]:
            display = concept["text"]
        # a coding without words: the value set's words for its code, else the code itself, name the record
        display = display or listed or (code.rsplit("|", 1)[1] if code is not None else None)
        when = _resource_date(res)
        return SourceRef(reference=self.index.ref(res), resource_type=source.resource, date=when, code=code,
                         display=display)

    def _matched_coding(self, concept: Any, source: Source) -> tuple[str | None, str | None, str | None]:
        """('system|code', its display, the value set's display for it) of the coding the source matched; the first
        coding when none matches (a source filtered otherwise, e.g. by a FHIRPath `where`)."""
        vs = self.valuesets.get(source.valueset) if source.valueset else None
        first: tuple[str | None, str | None, str | None] = (None, None, None)
        for system, c, d in codings(concept):
            entry = vs.lookup(system, c) if vs is not None else None
            if entry is not None or f"{system}|{c}" in source.codes:
                listed = entry.get("display") if entry is not None else None
                return f"{system}|{c}", d, listed if isinstance(listed, str) else None
            if first[0] is None:
                first = (f"{system}|{c}", d, None)
        return first

    def _read(self, res: Resource, source: Source, feature: Feature, ref: SourceRef) -> list[_Candidate]:
        elsewhere = self.elsewhere.get(id(res))
        if elsewhere is not None:
            raise _Skip(elsewhere)
        provisional = _provisional_status(res, source)
        if source.resource.startswith("Medication"):
            _check_medication_period(res, self.at)
        when = parse_fhir_datetime(ref.date) if ref.date else None
        if ref.date and when is None:
            raise _Unusable(f"date '{ref.date}' is not a FHIR date")
        if _open_procedure(res):
            if _in_future(_start_text(res), self.at):
                raise _Skip("in progress from a start in the future")  # it has not begun
            end = _procedure_end(res)
            if end is not None and end <= self.at:
                written = res["performedPeriod"]["end"]
                raise _Skip(f"in progress, but its end ({written[:10]}) has passed")  # it has ended
            when = self.at  # a procedure still in progress (oxygen therapy) is current, whenever it started
        elif when and source.resource != "Condition" and _in_future(ref.date, self.at):
            # (a procedure in progress is current: its date is its start; a Condition's onset written ahead, most
            # often a zone written wrongly, does not undo the diagnosis its clinical status asserts)
            raise _Skip("dated in the future")
        days = source.lookback_days if source.lookback_days is not None else feature.lookback_days
        if days is not None:
            if when is None:
                raise _Skip("has no date, so it cannot be placed in the look-back window")
            if when < self.at - timedelta(days=days):
                raise _Skip(f"older than the {_window(days)} look-back window")
        if source.resource == "Condition" and "resolved" not in source.allowed_statuses() and \
                not _abated_by_status(res, source):
            _check_abatement(res, self.at)  # history-type features (prior stroke, prior MI) keep resolved ones
        holder = res
        if source.component:
            holder = _component(res, source.component, source.text_holds_components)
        if source.threshold is not None:
            limit_value, limit_unit = source.threshold, source.threshold_unit
            assert limit_unit is not None
            target = _unit_label(limit_unit)
            side_word = "above" if source.above is not None else "at or below"
            bound: _Bound | None = None
            try:
                value, original, unit = self._quantity(holder, limit_unit, source.analyte or feature.analyte)
            except _Bound as why:
                # a bound wholly on one side of the threshold decides it ('<4.0 %' is not above 6.49 %); one that
                # straddles it ('<7 %') says nothing about it
                side = _bound_side(why.limit, limit_value)
                usable = source.usable_range
                if side is None or (usable is not None and why.limit is not None
                                    and not usable[0] <= why.limit[1] <= usable[1]):
                    # (a bound whose edge is outside the usable range is the same mistake as a value there)
                    raise _Unreadable(str(why)) from None
                bound, value, original, unit = why, (limit_value + 1 if side else limit_value), None, limit_unit
            except _Skip as why:
                raise _Unreadable(str(why)) from None
            read = f"value {_fmt(round(value, 2))} {target}".rstrip() if bound is None or bound.limit is None else \
                f"value {bound.limit[0]}{_fmt(round(bound.limit[1], 2))} {target} (a bound)".rstrip()
            converted = None if unit == limit_unit or bound is not None else \
                f"converted from {_as_written(original)} {unit}"
            if converted:
                read += f" ({converted})"
            if source.usable_range is not None and not source.usable_range[0] <= value <= source.usable_range[1]:
                low, high = source.usable_range
                raise _Unreadable(f"{read} is outside the usable range {_fmt(low)}–{_fmt(high)} {target}".rstrip())
            if not source.meets(value):
                why = f"{read} is not {side_word} {_fmt(limit_value)} {target}".rstrip()
                if provisional:
                    raise _Skip(f"status is {provisional!r} ({why})")
                if feature.value == "exists" and feature.aggregate == "latest":
                    return [_Candidate(0.0, when, _with(ref, original, unit, f"{why}: read as no"), res)]
                raise _Skip(why)
            if provisional:  # meets the threshold, but not yet final: it may be confirmed, so it is not ignored
                raise _Unreadable(f"{provisional}, not yet final: {read}, {side_word} {_fmt(limit_value)} {target}"
                                  .rstrip())
            if feature.value == "exists":
                note = converted if bound is None else f"{read}, wholly {side_word} {_fmt(limit_value)} {target}"
                return [_Candidate(1.0, when, _with(ref, original, unit, note), res)]
        if feature.value == "exists":
            if provisional:  # a suspected diagnosis: it may be confirmed, so it neither counts nor is passed over
                raise _Unreadable(f"recorded as {provisional}, not confirmed")
            return [_Candidate(1.0, when, ref, res)]
        if feature.value == "quantity":
            assert feature.unit is not None
            value, original, unit = self._quantity(holder, feature.unit, feature.analyte, feature.bare_number_unit)
            note = None if unit == feature.unit else f"converted from {_as_written(original)} {unit}"
            if unit is None:  # a bare number, read in the one unit its code has
                assert feature.bare_number_unit is not None
                note = (f"written without a unit; read as {_as_written(original)} "
                        f"{_unit_label(feature.bare_number_unit)}")
                if self.units.lookup(feature.bare_number_unit) != self.units.lookup(feature.unit):
                    note += f", converted to {_fmt(round(value, 2))} {_unit_label(feature.unit)}"
            if provisional:  # a reading not yet final: neither read nor passed over for an older one
                shown = f"{_as_written(original)} {_unit_label(unit) if unit else ''}".rstrip()
                raise _Unreadable(f"{provisional}, not yet final: value {shown}")
            return [_Candidate(value, when, _with(ref, original, unit, note), res)]
        if feature.value == "boolean":
            flag = holder.get("valueBoolean")
            if not isinstance(flag, bool):
                raise _Skip("has no valueBoolean")
            return [_Candidate(1.0 if flag else 0.0, when, _with(ref, flag, None, None), res)]
        absent = holder.get("dataAbsentReason")
        if "valueCodeableConcept" not in holder and isinstance(absent, dict):
            # no answer, and the record says why (not applicable to a man, asked but unknown): no result was given,
            # as for a quantity without a value; it is passed over, not an answer that cannot be read
            code = next((c for _, c, _ in codings(absent) if c), None) or absent.get("text") or "given"
            raise _Skip(f"has no answer (dataAbsentReason: {code})")
        value, token = self._coded(holder.get("valueCodeableConcept"), feature)
        if provisional:
            concept = holder.get("valueCodeableConcept")
            said = next((d for sy, c, d in codings(concept) if f"{sy}|{c}" == token and d), None) or \
                (concept.get("text") if isinstance(concept, dict) else None) or token.rsplit("|", 1)[-1]
            raise _Unreadable(f"{provisional}, not yet final: answer '{said}'")
        return [_Candidate(value, when, _with(ref, token, None, None), res)]

    def _quantity(self, holder: Resource, target: str, analyte: str | None,
                  bare_unit: str | None = None) -> tuple[float, float, str | None]:
        """The value in `target`, the number as written and its unit; the unit is None for a bare number, which is
        read in `bare_unit` when the feature names one (and is unreadable otherwise)."""
        qty = holder.get("valueQuantity")
        if not isinstance(qty, dict):
            kind = next((k for k in holder if k.startswith("value")), None)
            integer = holder.get("valueInteger")
            if kind == "valueInteger" and bare_unit and isinstance(integer, int) and not isinstance(integer, bool):
                return self._bare(integer, bare_unit, target, analyte), integer, None
            text = holder.get("valueString")
            if kind == "valueString" and isinstance(text, str) and (any(c.isdigit() for c in text)
                                                                    or _QUALITATIVE.fullmatch(text)):
                # a result was reported, as text with a number ('2.2 mg/dL', '>300') or in words ('positive'):
                # present but unreadable, so it is named and an older value does not stand in for it; the text is
                # never parsed. Other text ('see comment', 'TNP', 'hemolyzed') says no result was given: passed over
                shown = text.strip() if len(text.strip()) <= 40 else text.strip()[:39] + "…"
                shown = shown.replace(";", ",")  # a reason's clauses are split at '; ' (a card shows the first)
                if _TEXT_BOUND.fullmatch(text):
                    limit, written = self._text_limit(text, target, analyte, bare_unit)
                    raise _Bound(f"{BOUND_NOTE} (text '{shown}'), not a measurement", limit, written)
                raise _Unreadable(f"the result is text ('{shown}'), not a quantity")
            if kind in ("valueInteger", "valueRatio", "valueRange"):
                # a number was reported in a shape that carries no unit (valueInteger 2) or is not one value
                raise _Unreadable(f"has {kind} instead of a valueQuantity")
            raise _Skip(f"has {kind} instead of a valueQuantity" if kind else "has no value")
        raw = qty.get("value")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _Unreadable("valueQuantity has no numeric value")
        ucum = qty.get("system") == UCUM and isinstance(qty.get("code"), str) and bool(qty.get("code"))
        unit = qty.get("code") if ucum else qty.get("unit") or qty.get("code")
        if qty.get("comparator"):
            written = qty.get("code") if qty.get("system") == UCUM and isinstance(qty.get("code"), str) else \
                qty.get("unit") or qty.get("code")
            shown = f"{_as_written(raw)} {_unit_label(written)}".strip() if isinstance(written, str) else \
                _as_written(raw)
            raise _Bound(f"{BOUND_NOTE} ({qty['comparator']}{shown}), not a measurement",
                         self._limit(qty["comparator"], float(raw), unit, ucum, target, analyte),
                         (raw, unit) if isinstance(unit, str) else None)
        if unit is not None and not isinstance(unit, str):
            raise _Unreadable("valueQuantity unit is not text")
        if unit is None and bare_unit and qty.get("unit") is None and qty.get("code") is None:
            return self._bare(raw, bare_unit, target, analyte), raw, None
        try:
            value = self.units.convert(float(raw), unit, target, analyte, ucum=ucum)
        except UnitError as exc:
            raise _Unreadable(f"unusable unit: {exc}") from exc
        except (OverflowError, ValueError) as exc:
            raise _Skip(f"value {raw!r} cannot be used ({exc})") from exc
        if not isfinite(value):
            raise _Skip("value is not a finite number")
        if unit and self.units.lookup(unit) == self.units.lookup(target):
            unit = target
        return value, raw, unit

    def _text_limit(self, text: str, target: str, analyte: str | None, bare_unit: str | None = None
                    ) -> tuple[tuple[str, float] | None, tuple[float, str] | None]:
        """A bound written as text ('<4.0 %', '≥ 300 mg/g') as its comparator and number in `target`, when its
        unit is written and converts, and its number and unit as written; None otherwise (a bare '<4.0' says
        nothing about its unit), except for a code with one unit (`bare_number_unit`): a bare '>60' eGFR is
        read in it, and its written unit is then None."""
        found = _TEXT_LIMIT.fullmatch(text)
        if found is None or not (found.group(3) or bare_unit):
            return None, None
        comparator = {"≤": "<=", "≥": ">="}.get(found.group(1), found.group(1))
        try:
            raw = float(found.group(2).replace(",", ""))
        except ValueError:
            return None, None
        if not found.group(3):
            return self._limit(comparator, raw, bare_unit, True, target, analyte), None
        return self._limit(comparator, raw, found.group(3), False, target, analyte), (raw, found.group(3))

    def _limit(self, comparator: Any, raw: float, unit: Any, ucum: bool, target: str,
               analyte: str | None) -> tuple[str, float] | None:
        """A bound's comparator and its number in `target`, or None when its unit does not convert."""
        if comparator not in ("<", "<=", ">", ">=") or not isinstance(unit, str):
            return None
        try:
            value = self.units.convert(raw, unit, target, analyte, ucum=ucum)
        except (UnitError, OverflowError, ValueError):
            return None
        return (comparator, value) if isfinite(value) else None

    def _bare(self, raw: float, bare_unit: str, target: str, analyte: str | None) -> float:
        try:
            value = self.units.convert(float(raw), bare_unit, target, analyte, ucum=True)
        except (OverflowError, ValueError) as exc:  # UnitError cannot happen: the spec checked the two units
            raise _Skip(f"value {raw!r} cannot be used ({exc})") from exc
        if not isfinite(value):
            raise _Skip("value is not a finite number")
        return value

    def _coded(self, concept: Any, feature: Feature) -> tuple[float, str]:
        answers = feature.answers
        assert answers is not None
        vs = self.valuesets.get(answers.valueset) if answers.valueset else None
        seen: list[str] = []
        for system, code, _ in codings(concept):
            token = f"{system}|{code}"
            if token in answers.map:
                return answers.map[token], token
            if vs:
                entry = vs.lookup(system, code)
                if entry and entry.get("class") in answers.map:
                    return answers.map[entry["class"]], token
            seen.append(token)
        # present but unusable: the newest answer stands (an older one is not the current answer), as for a number
        if not seen:
            raise _Unreadable("has no coded answer")
        raise _Unreadable(f"answer {', '.join(seen)} is not one the model can interpret")

    def _aggregate(self, name: str, feature: Feature, cands: list[_Candidate]) -> FeatureValue | MissingFeature:
        dated = sorted(cands, key=lambda c: (c.when is not None, c.when or self.at))
        agg = feature.aggregate
        if agg in ("latest", "days_since"):
            chosen = [dated[-1]]
        elif agg == "earliest":
            chosen = [dated[0]]
        elif agg == "min":
            chosen = [min(cands, key=lambda c: c.value)]
        elif agg == "max":
            chosen = [max(cands, key=lambda c: c.value)]
        else:
            chosen = cands
        if agg == "mean":
            value = fmean(c.value for c in chosen)
        elif agg == "count":  # results of one moment are one specimen (an HbA1c sent in % and in mmol/mol)
            value = float(_count_span(chosen, [], self.zone)[0])
        elif agg == "exists":
            value = 1.0
        elif agg == "days_since":
            when = chosen[0].when
            if when is None:  # undated: there is no number of days to count (was int(nan) further down)
                return self._absent(name, feature, [_with_note(chosen[0].ref, "has no date, so the days since it "
                                                                             "cannot be counted")])
            value = float((self.at - when).days)
        else:
            value = chosen[0].value
        if feature.chart_decimals is not None and feature.value == "quantity" and isfinite(value):
            step = Decimal(1).scaleb(-feature.chart_decimals)
            value = float(Decimal(repr(float(value))).quantize(step, rounding=ROUND_HALF_UP))
        latest = max((c.when for c in chosen if c.when), default=None)
        unit = feature.unit if feature.value == "quantity" else None
        display = display_value(feature, value)
        if agg == "days_since":
            unit, display = "d", f"{int(value)} days ago"
        elif agg in ("count", "exists"):
            unit, display = None, display if agg == "exists" else f"{int(value)}"
        ref = chosen[0].ref
        if feature.value == "exists" and ref.resource_type.startswith("Medication") and ref.note:
            display = f"Yes — {ref.display}, {ref.note}"
        when_text = self._shown_when(feature, latest, next((c.ref.date for c in chosen if c.when == latest), None))
        if _open_procedure(chosen[0].res):
            # it stands at the hook's time (current), which is not when anything was charted: say since when it runs
            start = _start_text(chosen[0].res)  # not the period's planned end, which the resource's date would be
            when_text = "in progress" + (f" since {self._local_text(start)}" if start else "")
        return FeatureValue(
            name=name, value=value, unit=unit, label=feature.label,
            display=display, sources=[c.ref for c in chosen], date=when_text,
        )

    def _local_text(self, written: str) -> str:
        """A FHIR date or time as a card shows it: a date as written, a time with a zone in local time, a time
        without one as written (its zone is unknown)."""
        moment = parse_fhir_datetime(written)
        if moment is None or len(written) <= 10:
            return written[:10]
        if not _has_zone(written):
            return written[:16].replace("T", " ")
        local = moment.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M") + _zone_suffix(local)

    def _unknown(self, name: str, feature: Feature, newest: SourceRef, ignored: list[SourceRef]) -> MissingFeature:
        """A presence read from values whose newest result is present but unusable: never the default ("no")."""
        reason = f"Newest result not usable: {newest.note}; absence cannot be assumed"
        if feature.missing_note:
            reason += f"; {feature.missing_note}"
        what = ", ".join(x for x in (newest.reference, newest.display or newest.code, newest.date) if x)
        if what:
            reason += f"; newest result: {what}"
        return MissingFeature(name=name, reason=reason, required=feature.required, label=feature.label,
                              ignored=ignored, newest_unusable=newest)

    def _absent(self, name: str, feature: Feature, ignored: list[SourceRef],
                unreadable: SourceRef | None = None) -> FeatureValue | MissingFeature:
        # the drugs not recognised as the class are named (and unreadable ones make the answer unknown) for what the
        # model reads; an optional feature (one advice reads, CHA2DS2-VASc's `anticoagulated`) only says what it found,
        # and names a drug of the class it did not count (its "No" is about counted drugs)
        unrecognised, names = (self._unrecognised(feature, counted_only=not feature.required)
                               if self._other_medications else (None, []))
        if feature.default is not None and feature.value != "quantity" and self._unusable:
            # a binary default asserts an answer ("Diabetes: No"); a matching record that cannot be read may say
            # otherwise, so the answer is unknown (a quantity's default selects the equations without that term)
            unread = [u for u in self._unusable if u not in ignored]  # current medications that cannot be read
            return MissingFeature(name=name, reason=self._unusable_reason(feature), required=feature.required,
                                  label=feature.label, ignored=ignored + unread)
        if feature.default is not None and feature.mentions:
            named = self._mentioned(feature, ignored)
            if named:  # a record names the condition in words its code does not say: "No" would be a guess
                return MissingFeature(name=name, reason=self._mentioned_reason(feature, named),
                                      required=feature.required, label=feature.label,
                                      ignored=ignored + [ref for ref, _ in named])
        if feature.default is not None:
            note = f"{feature.default_note}; {unrecognised}" if unrecognised and feature.default_note else \
                feature.default_note
            passed = self._passed_over(ignored) if feature.value == "quantity" else _records_passed_over(ignored)
            if passed and note:
                note = f"{note} ({passed})"  # records were there: say which, and why they are not used
            return FeatureValue(
                name=name, value=feature.default, unit=feature.unit if feature.value == "quantity" else None,
                label=feature.label, display=display_value(feature, feature.default), defaulted=True,
                note=note, sources=ignored, unrecognised=names, passed_over=passed,
            )
        if unreadable is not None:  # the newest result is present but its value cannot be read: name it
            reason = self._newest_not_usable(unreadable, feature.missing_note)
        else:
            window = f" in the last {_window(feature.lookback_days)}" if feature.lookback_days else ""
            reason = f"{NOTHING_ON_RECORD}{window}"
            if feature.missing_note:
                reason += f": {feature.missing_note}"
        if ignored:
            reason += f"; {len(ignored)} result{'s' if len(ignored) > 1 else ''} passed over"
        return MissingFeature(name=name, reason=reason, required=feature.required, label=feature.label,
                              ignored=ignored, newest_unusable=unreadable)

    def _mentioned(self, feature: Feature, ignored: list[SourceRef]) -> list[tuple[SourceRef, str]]:
        """Current records of the feature's resource types that no source matched (or that were passed over), whose
        text names the feature's condition (`mentions`): each with the text that names it, and the condition."""
        passed = {ref.reference for ref in ignored if ref.reference}
        found: list[tuple[SourceRef, str]] = []
        seen: set[int] = set()
        for rule in feature.mentions:
            words = rule.rule
            read = rule.resources or MENTION_TYPES
            for rtype in dict.fromkeys(s.resource for s in feature.sources if s.resource in read):
                sources = [s if rule.statuses is None else _with_statuses(s, rule.statuses)
                           for s in feature.sources if s.resource == rtype and not s.medication_class]
                for res in self.index.by_type.get(rtype, ()):
                    if id(res) in seen:
                        continue
                    text = words.first_naming(self._texts(res, rtype))
                    if text is None:
                        continue
                    ref = self._ref(res, sources[0])
                    if ref.reference in passed:
                        continue  # matched a set and passed over for its status or date: named as such already
                    if not any(self._current(res, source, feature, ref) for source in sources):
                        continue
                    seen.add(id(res))
                    codes = ", ".join(f"{system_name(s)} {c}" for s, c, _ in codings(
                        res.get(main_code_element(rtype)))) or "no code"
                    found.append((SourceRef(reference=ref.reference, resource_type=rtype, date=ref.date,
                                            code=ref.code, display=words.excerpt(text),
                                            note=f"names {rule.title}, but its code ({codes}) is not one this "
                                                 f"model recognises"), rule.title))
            if rule.reasons:
                found += [(ref, rule.title) for ref in self._ordered_for(feature, words, rule.title, seen)]
        return found

    def _ordered_for(self, feature: Feature, words: MentionRule, title: str, seen: set[int]) -> list[SourceRef]:
        """Current medication orders and statements whose stated reason (`reasonCode`, or the Condition a
        `reasonReference` names, contained or in the record, or its display) is the condition: a code of one of the
        feature's value sets, or its words."""
        sets = [self.valuesets.get(s.valueset) for s in feature.sources if s.valueset and not s.medication_class]
        found: list[SourceRef] = []
        for rtype in ("MedicationRequest", "MedicationStatement"):
            source = _medication_source(rtype)
            for res in self.index.by_type.get(rtype, ()):
                if id(res) in seen or id(res) in self.elsewhere or not (res.get("reasonCode")
                                                                        or res.get("reasonReference")):
                    continue
                view = self._view(res)
                said = next((text for reason in view.reasons
                             if (text := _reason_names(reason, sets, words)) is not None), None)
                if said is None or not _taken(res, source, self.at):
                    continue
                seen.add(id(res))
                found.append(SourceRef(reference=self.index.ref(res), resource_type=rtype,
                                       date=_medication_date(res), display=f"{view.name}, given for {said}",
                                       note=f"is given for {title} (its stated reason), which no diagnosis on "
                                            f"record shows"))
        return found

    def _texts(self, res: Resource, rtype: str) -> list[str]:
        """A record's main code in words (its text, then each coding's display), read once per call."""
        texts = self._words_of.get(id(res))
        if texts is None:
            texts = self._words_of[id(res)] = concept_texts(res.get(main_code_element(rtype)))
        return texts

    def _current(self, res: Resource, source: Source, feature: Feature, ref: SourceRef) -> bool:
        """Whether the record would count for `source` by its status, dates and abatement (its code aside)."""
        try:
            self._read(res, source, feature, ref)
        except _Skip:
            return False
        return True

    def _mentioned_reason(self, feature: Feature, named: list[tuple[SourceRef, str]]) -> str:
        """'"Chronic diastolic CHF" names heart failure, but its code is not recognised, so "No" is not assumed;
        Condition/7: …' (a card and a refusal show the first clause)."""
        assert feature.default is not None
        default = display_value(feature, feature.default)
        assumed = f'"{default}"' if default else "the default"
        refs = [ref for ref, _ in named]
        title = " or ".join(dict.fromkeys(t for _, t in named))
        if len(refs) == 1 and refs[0].resource_type.startswith("Medication"):
            head = f"{refs[0].display}, but no recognised diagnosis on record shows {title}"
        elif len(refs) == 1:
            head = f'"{refs[0].display}" names {title}, but its code is not recognised'
        else:
            listed = ", ".join(f'"{r.display}"' for r in refs[:3]) + (
                f" and {len(refs) - 3} more" if len(refs) > 3 else "")
            head = f"{len(refs)} records name {title} ({listed}), but their codes are not recognised"
        codes = "; ".join(f"{r.reference or r.resource_type}: {r.note}" for r in refs[:3])
        return f"{head}, so {assumed} is not assumed; {codes}{CHECK_AND_CODE}{title}, and code it if it is"

    def _unusable_reason(self, feature: Feature) -> str:
        """'Condition/7 cannot be read, so "No" is not assumed; <the problem>' (a card shows the first clause)."""
        def named(ref: SourceRef) -> str:
            what = ref.reference or ref.resource_type
            return f"{ref.display} ({what})" if ref.display else what

        refs = self._unusable
        default = display_value(feature, feature.default) if feature.default is not None else None
        assumed = f'"{default}"' if default else "the default"
        if len(refs) == 1:
            return f"{named(refs[0])} cannot be read, so {assumed} is not assumed; {refs[0].note}"
        listed = "; ".join(f"{named(r)}: {r.note}" for r in refs[:3]) + (
            f"; and {len(refs) - 3} more" if len(refs) > 3 else "")
        return f"{len(refs)} matching records cannot be read, so {assumed} is not assumed; {listed}"

    # ---- demographics ---------------------------------------------------------------------------------------
    def age_on_date_of(self, name: str, feature: Feature, spec: FeatureSpec,
                       result: MappingResult) -> FeatureValue | MissingFeature:
        """`on_date_of`: the age on the local day of another feature's value, e.g. when a creatinine was drawn
        (CKD-EPI uses the age at the measurement, not at the hook)."""
        assert feature.on_date_of is not None
        target = result.values.get(feature.on_date_of)
        label = spec.features[feature.on_date_of].label.lower()
        if target is None or not target.date:
            why = f"No {label} to date it by" if target is None else f"The {label} has no date"
            return self._demo_missing(name, feature, why)
        return self._demographic(name, feature, on=date.fromisoformat(target.date[:10]))

    def _demographic(self, name: str, feature: Feature, on: date | None = None) -> FeatureValue | MissingFeature:
        patient = self.index.patient(self.patient_id)
        if patient is None:
            who = f" {self.patient_id}" if self.patient_id else ""
            return self._demo_missing(name, feature, f"The Patient resource{who} was not provided")
        problem = self.validation.problem(patient)
        ref = SourceRef(reference=self.index.ref(patient), resource_type="Patient")
        if problem:
            return self._demo_missing(name, feature, f"Patient record unusable: {problem}")
        kind = feature.demographic
        if kind == "age":
            birth = parse_fhir_date(patient.get("birthDate"))
            if birth is None:
                return self._demo_missing(name, feature, "Date of birth is not recorded")
            day = on or self.at.astimezone(self.zone).date()
            age = float(age_in_years(birth, day))
            written = str(patient.get("birthDate"))
            years = f"{int(age)} years"
            if len(written) < 10:  # a year or a month alone: the birth may be any day of it, parse gives the first
                youngest = float(age_in_years(min(last_day_of(written, birth), day), day))
                if youngest != age:
                    ages = f"{int(youngest)} or {int(age)}"
                    self.age_uncertain = (int(youngest), int(age))
                    if self.partial_birth == "missing":
                        when = f"on {day.isoformat()}" if on else "today"
                        return self._demo_missing(name, feature, f"Date of birth is recorded as '{written}' only, so "
                                                                 f"the age {when} is {ages}; a full date of birth is "
                                                                 "needed")
                    age = youngest if self.partial_birth == "last" else age
                    years = f"{ages} years"  # the result is the same either way (the service checks)
            shown, how = (years, "from date of birth") if on is None else \
                (f"{years} on {day.isoformat()}", f"from date of birth, on {day.isoformat()}")
            return FeatureValue(name=name, value=age, unit="a", label=feature.label, display=shown,
                                sources=[_with(ref, patient.get("birthDate"), None, how)])
        answers = feature.answers
        assert answers is not None
        if kind == "gender":
            gender = patient.get("gender")
            if isinstance(gender, str) and gender in answers.map:
                value = answers.map[gender]
                return FeatureValue(name=name, value=value, label=feature.label,
                                    display=display_value(feature, value) or gender,
                                    sources=[_with(ref, gender, None, "administrative gender")])
            said = f"is '{gender}'" if isinstance(gender, str) else "is not recorded"
            return self._demo_missing(name, feature, f"Administrative gender {said}; the model's equations are sex-specific")
        recorded = recorded_categories(patient, US_CORE_RACE if kind == "race" else US_CORE_ETHNICITY)
        conflict = (f"{kind.capitalize()} extension: {'; '.join(recorded.conflicts)}; only the recorded OMB "
                    "category codes were used") if recorded.conflicts else None
        for token, value in answers.map.items():
            if token in recorded.codes:
                return FeatureValue(name=name, value=value, label=feature.label,
                                    display=display_value(feature, value) or recorded.codes[token], note=conflict,
                                    sources=[_with(ref, recorded.codes[token], None, f"US Core {kind} extension")])
        said = recorded.described()
        if feature.default is not None:
            note = f"{kind.capitalize()} {said}: {feature.default_note}"
            return FeatureValue(name=name, value=feature.default, label=feature.label,
                                display=display_value(feature, feature.default), defaulted=True,
                                note=f"{conflict}. {note}" if conflict else note,
                                sources=[_with(ref, said, None, f"US Core {kind} extension")])
        if not recorded.said and not recorded.text:
            return self._demo_missing(name, feature, f"{kind.capitalize()} is not recorded")
        return self._demo_missing(name, feature, f"{kind.capitalize()} recorded ({said}) is not one the model reads")

    def _demo_missing(self, name: str, feature: Feature, reason: str) -> FeatureValue | MissingFeature:
        return MissingFeature(name=name, reason=reason, required=feature.required, label=feature.label)


# ---- helpers ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    return fhirpathpy.compile(expression)


def _reason_names(reason: StatedReason, sets: list[Any], words: MentionRule) -> str | None:
    """The words of a stated reason that is the condition (a code of the sets, or the rule's words), else None."""
    if any(vs.lookup(s, c) for s, c, _ in reason.codings for vs in sets):
        return reason.texts[0] if reason.texts else next((f"{system_name(s)} {c}" for s, c, _ in reason.codings), "")
    text = words.first_naming(reason.texts)
    return words.excerpt(text, 60) if text is not None else None


@lru_cache(maxsize=2)
def _medication_source(rtype: str) -> Source:
    """A current order or statement of any drug, by the statuses and intents medication sources count."""
    return Source(resource=rtype, where="true")  # type: ignore[arg-type]


@lru_cache(maxsize=1024)
def _with_statuses(source: Source, statuses: tuple[str, ...]) -> Source:
    return source.model_copy(update={"statuses": statuses})


def _fhirpath_true(expression: str, res: Resource) -> bool:
    try:
        return _compiled(expression)(res) == [True]
    except Exception:  # fhirpathpy raises assorted errors on unexpected shapes; such a resource does not match
        return False


def _check_status(res: Resource, source: Source) -> None:
    allowed = source.allowed_statuses()
    rtype = source.resource
    if rtype == "Condition":
        verification = {c for _, c, _ in codings(res.get("verificationStatus"))}
        # only a confirmed diagnosis (or one with no verification status, as most problem lists send) counts
        doubtful = verification & {"entered-in-error", "refuted", "provisional", "differential", "unconfirmed"}
        if doubtful and "confirmed" not in verification:
            raise _Skip(f"verification status is {sorted(doubtful)[0]}")
        clinical = [c for _, c, _ in codings(res.get("clinicalStatus"))]
        if clinical and not any(c in allowed for c in clinical):
            raise _Skip(f"clinical status is {clinical[0]}")
        return
    status = res.get("status")
    if rtype == "Device" and status is None:
        status = "unknown"  # Device.status is optional in R4: a record of an implant without one
    if status == "entered-in-error":
        raise _Skip("entered in error")
    if not status:
        raise _Unusable("has no status")
    if status not in allowed:
        raise _Skip(f"status is {status!r}")
    intent = res.get("intent")
    if rtype == "MedicationRequest" and not isinstance(intent, str):
        raise _Unusable("has no intent" if intent is None else "has an intent that is not a code")
    if rtype == "MedicationRequest" and intent not in _ORDERED_INTENTS:
        raise _Skip("is a proposal, not an order" if intent == "proposal" else
                    "is an option (one choice of a RequestGroup), not an order" if intent == "option" else
                    f"has intent {intent!r}, not an order")
    if res.get("doNotPerform") is True:
        raise _Skip("is an order not to give it (doNotPerform)")


def _provisional_status(res: Resource, source: Source) -> str | None:
    """`_check_status`, except that a status among the source's `provisional_statuses` is returned, not refused: the
    caller reads the result and leaves the feature unknown when it meets the threshold."""
    try:
        _check_status(res, source)
    except _Unusable:
        raise
    except _Skip:
        if source.resource == "Condition":  # a diagnosis recorded as provisional or differential, otherwise current
            verification = {c for _, c, _ in codings(res.get("verificationStatus"))}
            suspected = sorted(verification & set(source.provisional_statuses))
            if suspected and not verification & {"confirmed", "entered-in-error", "refuted"}:
                clinical = [c for _, c, _ in codings(res.get("clinicalStatus"))]
                if not clinical or any(c in source.allowed_statuses() for c in clinical):
                    return suspected[0]
            raise
        status = res.get("status")
        if isinstance(status, str) and status in source.provisional_statuses:
            return status
        raise
    return None


def status_problem(res: Resource, source: Source) -> str | None:
    """Why a resource's status keeps it from counting for `source` (None when it counts): the one status rule that
    features and timelines (fhir_mapping/timeline.py) share — entered-in-error, refuted, doNotPerform never count."""
    try:
        _check_status(res, source)
    except _Skip as why:
        return str(why)
    return None


def _medication_date(res: Resource) -> str | None:
    """When a medication order or statement starts: authoredOn, effective[x] start, or when it was asserted."""
    for key in ("authoredOn", "effectiveDateTime"):
        if isinstance(res.get(key), str):
            return res[key]
    period = res.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return period["start"]
    return res.get("dateAsserted") if isinstance(res.get("dateAsserted"), str) else None


def _taken(res: Resource, source: Source, at: datetime) -> bool:
    """Whether a medication order or statement is current: its status and intent count for `source`, and its
    period has not ended (nor begun in the future)."""
    try:
        _check_status(res, source)
        _check_medication_period(res, at)
    except _Skip:
        return False
    return True


def _check_medication_period(res: Resource, at: datetime) -> None:
    """A statement or order whose period has ended, or starts in the future, is not current."""
    holder = res.get("effectivePeriod")  # an order's dispense validity ending does not mean the drug was stopped
    if isinstance(holder, dict):
        written = holder.get("end")
        end = _latest_moment(written) if isinstance(written, str) else None  # an end date includes its whole day
        if end is not None and end < at:
            raise _Skip(f"ended on {str(written)[:10]}")
        start = parse_fhir_datetime(holder.get("start"))
        if start is not None and _in_future(holder.get("start"), at):
            raise _Skip(f"starts on {start.date().isoformat()}")
    # an order whose every dose is set to start later ("start atorvastatin in 30 days") is not taken yet
    doses = as_list(res.get("dosageInstruction"))
    starts = [_dose_start(d) for d in doses]
    if doses and all(start is not None and _in_future(start, at) for start in starts):
        raise _Skip(f"its doses start on {min(s for s in starts if s)[:10]}")


def _dose_start(dosage: Any) -> str | None:
    """When a dosage's doses begin (Timing.repeat.boundsPeriod.start), as written."""
    timing = dosage.get("timing") if isinstance(dosage, dict) else None
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    start = bounds.get("start") if isinstance(bounds, dict) else None
    return start if isinstance(start, str) else None


def _zone_suffix(local: datetime) -> str:
    offset = local.utcoffset()
    if not offset:
        return " UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"


def _abated_by_status(res: Resource, source: Source) -> bool:
    """A Condition whose status the source counts and keeps after an abatement (`kept_after_abatement`, remission by
    default): its abatement date is the one R4 con-4 asks such a Condition to carry, the start of the remission, not
    an end to it (type 2 diabetes in remission since a date is still diabetes). Otherwise 'inactive' with a past
    abatement date has ended (R4: no longer any evidence of the condition; a steroid-induced diabetes)."""
    clinical = {c for _, c, _ in codings(res.get("clinicalStatus"))}
    return bool(clinical & set(source.kept_after_abatement) & set(source.allowed_statuses()))


def _check_abatement(res: Resource, at: datetime) -> None:
    ended = parse_fhir_datetime(res.get("abatementDateTime"))
    period = res.get("abatementPeriod")
    if ended is None and isinstance(period, dict):
        ended = parse_fhir_datetime(period.get("end") or period.get("start"))
    if ended is not None and ended <= at:
        raise _Skip(f"resolved on {ended.date().isoformat()}")
    # without a clinicalStatus, an abatement given as an age, a range of ages or in words has happened as far as the
    # record says (R4 con-4: a Condition with an abatement is inactive, in remission or resolved); a clinicalStatus,
    # when written, says what holds now, and words that say nothing ended ('unknown', 'ongoing') are no abatement
    if res.get("clinicalStatus") is not None:
        return
    for key, how in (("abatementAge", "at an age"), ("abatementRange", "within an age range"), ("abatementString", "")):
        value = res.get(key)
        if key == "abatementString" and isinstance(value, str) and _NOT_ABATED.fullmatch(value.strip().lower()):
            continue
        if value not in (None, "", {}):
            raise _Skip(f"abated ({how or repr(str(value)[:60])})")


def _open_procedure(res: Resource | None) -> bool:
    """A procedure still in progress (oxygen therapy): current, whenever it started, and placed by its start."""
    return res is not None and res.get("resourceType") == "Procedure" and res.get("status") == "in-progress"


def _start_text(res: Resource) -> str | None:
    """A procedure's start as written: performedDateTime, else performedPeriod.start."""
    period = res.get("performedPeriod")
    start = res.get("performedDateTime")
    if start is None and isinstance(period, dict):
        start = period.get("start")
    return start if isinstance(start, str) else None


def _procedure_end(res: Resource) -> datetime | None:
    """The latest moment a procedure's written end can mean: an end of '2026-12-06' includes that whole day (FHIR
    R4 Period), so therapy ending today has not ended this morning."""
    period = res.get("performedPeriod")
    end = period.get("end") if isinstance(period, dict) else None
    return _latest_moment(end) if isinstance(end, str) else None


def _latest_moment(written: str) -> datetime | None:
    """The latest moment a FHIR date or time can mean: a time with its zone itself; a time without one 12 h after it
    read as UTC; a date, month or year the end of it, 12 h past its UTC end (the zones west of UTC)."""
    when = parse_fhir_datetime(written)
    if when is None:
        return None
    if "T" in written:
        return when if _has_zone(written) else when + _WIDEST_WEST
    return period_after(when, written) + _WIDEST_WEST


def _earliest_moment(written: str | None) -> datetime | None:
    """The earliest moment a FHIR date or time can mean: a time with its zone itself; a time without one or a date
    14 h before it read as UTC (the zones east of UTC)."""
    when = parse_fhir_datetime(written)
    if when is None or written is None:
        return None
    return when if _has_zone(written) else when - _WIDEST_OFFSET


def _in_future(written: Any, at: datetime) -> bool:
    """Whether a FHIR date or time is after `at` whatever it means: a time with its zone from its moment (a few
    minutes allowed for the EHR's clock), a time without one or a date from the earliest moment it can mean (its
    start 14 h ahead of UTC). A start three hours ahead has not begun; today's date written in Tokyo has."""
    earliest = _earliest_moment(written if isinstance(written, str) else None)
    return earliest is not None and earliest > at + _CLOCK_SKEW


def _zoneless_time(written: str | None) -> bool:
    """A FHIR dateTime with a time but no zone ('2026-12-06T20:32:00')."""
    return isinstance(written, str) and "T" in written and not _has_zone(written)


def _has_zone(written: str) -> bool:
    """Whether a FHIR dateTime with a time names its zone ('Z', '+01:00', '-05:00' after the clock)."""
    clock = written.split("T", 1)[1] if "T" in written else ""
    return clock.endswith("Z") or "+" in clock or "-" in clock


def _records_passed_over(ignored: list[SourceRef]) -> str | None:
    """'passed over: Diabetes mellitus type 2 — clinical status is resolved': the matching records a Yes/No default
    did not use, so 'No' is not read as 'nothing on record' when a resolved or refuted entry is there."""
    named = [f"{ref.display or ref.reference} — {ref.note}" for ref in ignored if ref.note]
    if not named:
        return None
    more = f"; and {len(named) - 2} more" if len(named) > 2 else ""
    return "passed over: " + "; ".join(named[:2]) + more


def _reads_presence(feature: Feature, source: Source) -> bool:
    """An `exists` feature whose source reads a value against a threshold (FiO2 above 21 %)."""
    return feature.value == "exists" and source.threshold is not None


def _resource_date(res: Resource) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant", "onsetDateTime", "authoredOn", "performedDateTime"):
        if isinstance(res.get(key), str):
            return res[key]
    for key in ("effectivePeriod", "onsetPeriod", "performedPeriod"):
        period = res.get(key)
        if isinstance(period, dict):
            value = period.get("end") or period.get("start")
            if isinstance(value, str):
                return value
    for key in ("issued", "recordedDate", "dateAsserted"):
        if isinstance(res.get(key), str):
            return res[key]
    return None


def _has_component(res: Resource, tokens: tuple[str, ...]) -> bool:
    """Whether the record carries the component with a value: one with only a dataAbsentReason (FHIR vital signs
    vs-3) says nothing either way."""
    try:
        comp = _component(res, tokens)
    except _Skip:
        return False
    return any(key.startswith("value") for key in comp)


def _component(res: Resource, tokens: tuple[str, ...], text_holds_components: bool = False) -> Resource:
    wanted = {tuple(t.split("|", 1)) for t in tokens}
    for comp in as_list(res.get("component")):
        if isinstance(comp, dict) and any((s, c) in wanted for s, c, _ in codings(comp.get("code"))):
            return comp
    text = res.get("valueString")
    if text_holds_components and isinstance(text, str) and any(c.isdigit() for c in text):
        # a panel whose result is written as text on the panel itself (a blood pressure '85/50'): a reading was
        # charted and cannot be read, so an older one must not stand in for it
        shown = text.strip() if len(text.strip()) <= 40 else text.strip()[:39] + "…"
        raise _Unreadable(f"the panel's result is text ('{shown.replace(';', ',')}'), not a component "
                          f"{', '.join(t.split('|', 1)[-1] for t in tokens)}")
    raise _Skip(f"panel has no component {', '.join(tokens)}")


def _with(ref: SourceRef, original: Any, unit: str | None, note: str | None) -> SourceRef:
    return SourceRef(reference=ref.reference, resource_type=ref.resource_type, date=ref.date, code=ref.code,
                     display=ref.display, original_value=original, original_unit=unit, note=note)


def _with_note(ref: SourceRef, note: str) -> SourceRef:
    return _with(ref, ref.original_value, ref.original_unit, note)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _as_written(value: float) -> str:
    """A number from the record as it was written (0.088 stays 0.088, not '0.09'; 5.0 is '5'), for quoting it."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _window(days: int) -> str:
    if days % 365 == 0:
        years = days // 365
        return f"{years} year{'s' if years > 1 else ''}"
    return f"{days} day{'s' if days > 1 else ''}"


def display_value(feature: Feature, value: float) -> str | None:
    """How a feature value reads on a card: the spec's words for coded values, else the number and its unit."""
    key = _fmt(float(value))
    if key in feature.display:
        return feature.display[key]
    if feature.value == "quantity" and feature.unit:
        return quantity(float(value), feature.unit, 2 if abs(value) < 10 else 1)
    return None


def _unit_label(unit: str) -> str:
    return unit_label(unit)
