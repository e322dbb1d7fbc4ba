"""The declarative feature spec: how each model input is read from FHIR R4 resources.

A model folder carries a `features.yaml`; this module loads and validates it, so a broken spec stops start-up with a
message naming the file, the feature and the field. docs/feature-spec.md documents the language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import fhirpathpy
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from fhir_mapping.expressions import Expression, ExpressionError, compiled_expression
from fhir_mapping.units import default_registry
from fhir_mapping.medications import DrugClassError
from fhir_mapping.mentions import MentionRule
from fhir_mapping.valuesets import ValueSetError, ValueSetLibrary

ResourceType = Literal[
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Procedure",
    "Encounter",
    "Device",
]
ValueKind = Literal["quantity", "coded", "exists", "boolean"]
Aggregate = Literal["latest", "earliest", "min", "max", "mean", "count", "exists", "days_since"]
Demographic = Literal["age", "gender", "race", "ethnicity"]

# Statuses that count by default, per resource type. entered-in-error never counts.
DEFAULT_STATUSES: dict[str, tuple[str, ...]] = {
    "Observation": ("final", "amended", "corrected"),
    "Condition": ("active", "recurrence", "relapse"),  # clinicalStatus
    "MedicationRequest": ("active",),
    "MedicationStatement": ("active",),
    "Procedure": ("completed", "in-progress"),
    "Encounter": ("in-progress", "arrived", "triaged", "onleave"),
    # an implant's record: R4's Device.status is optional, and one without it is read as 'unknown' (still in place
    # as far as the record says); 'inactive' is a device no longer in use (explanted)
    "Device": ("active", "unknown"),
}


class SpecError(ValueError):
    """A feature spec is invalid; the message names the file, feature and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_token(token: str) -> str:
    system, sep, code = token.partition("|")
    if not sep or not system or not code:
        raise ValueError(f"'{token}' must be written 'system|code'")
    return token


class OrderCode(_Strict):
    """What to order when the feature is missing (a ServiceRequest code)."""

    system: str
    code: str
    display: str


class Source(_Strict):
    """Where a feature's value can come from: one resource type filtered by codes or a value set."""

    resource: ResourceType
    codes: tuple[str, ...] = ()
    valueset: str | None = None
    component: tuple[str, ...] = ()  # Observation component codes (BP panels)
    # with `component`: a panel whose own value is text holds its components written together (a blood pressure
    # '85/50', one OBX of an HL7 v2 feed): a reading that cannot be read, never one to pass over for an older one
    text_holds_components: bool = False
    statuses: tuple[str, ...] | None = None
    where: str | None = None  # FHIRPath boolean on each resource, for what codes cannot express
    # MedicationRequest/MedicationStatement: a drug class (drugclasses/<id>.yaml), recognised by RxNorm code at any
    # term type or by ingredient or brand name, following medicationReference (fhir_mapping/medications.py)
    medication_class: str | None = None
    # MedicationRequest/MedicationStatement: a current order or statement given for a reason in this value set (its
    # reasonCode, or the Condition a reasonReference names) is a record of that reason: metformin ordered for
    # prediabetes records prediabetes
    reason_valueset: str | None = None
    # Observation: count only values strictly above this threshold (converted to `above_unit`), e.g. FiO2 above 21 %.
    # For an `exists` feature read newest first (aggregate `latest`), a value at or below it is a recorded "no" (0):
    # the newest reading decides, so an older oxygen flow never overrides a newer reading of room air.
    above: float | None = None
    above_unit: str | None = None
    # Observation, the other way: count only values at or below this threshold (converted to `at_most_unit`), e.g. a
    # left ventricular ejection fraction of 40 % or less is LV dysfunction. Read as `above` is, mirrored.
    at_most: float | None = None
    at_most_unit: str | None = None
    # the analyte whose molar mass converts this source's values (a fasting glucose in mmol/L beside HbA1c sources
    # of one feature): the feature's `analyte` otherwise
    analyte: str | None = None
    # statuses (beyond the counted ones) of a result not yet final ('preliminary'). With `above`, one above the
    # threshold leaves the feature unknown, since it may yet be confirmed (an HbA1c of 8.4 % reported preliminary
    # cannot rule diabetes out); one at or below it is passed over, as any result of an uncounted status. Without
    # `above` (a quantity or coded feature), a newest result not yet final leaves the feature unknown and is named:
    # an unvalidated SpO2 of 88 % is neither scored nor silently replaced by an older final reading
    provisional_statuses: tuple[str, ...] = ()
    # with `above`: values outside this range (in `above_unit`) are unusable, never read as "no" (FiO2 0.4 written
    # as %); for an `exists` feature an unusable newest reading leaves the feature unknown, never at its default
    usable_range: tuple[float, float] | None = None
    # Condition: the clinical statuses (among `statuses`) whose abatement date does not end the condition. Remission
    # by default (R4 con-4 has its start written there); AF 'inactive' after an ablation is still AF for the
    # stroke-risk decision, while a steroid-induced diabetes 'inactive' since a date has ended
    kept_after_abatement: tuple[str, ...] = ("remission",)
    # a look-back window for this source only (the feature's applies to the others): a prediabetes read from the
    # problem list whenever it was coded, or from an HbA1c of the last year
    lookback_days: int | None = Field(default=None, gt=0)
    # Encounter: the source reads only the encounter the hook acts on (encounter-start's context.encounterId); a
    # feature whose sources all say so has no value when no encounter is named or the record does not hold it
    context_encounter: bool = False
    # of results charted for the same moment (labs), one under these codes (among `codes`) stands before one under
    # the others: a serum creatinine before a whole-blood one drawn with it. Results of one moment and the same
    # preference that disagree leave the input missing
    prefer_codes: tuple[str, ...] = ()

    @field_validator("where")
    @classmethod
    def _fhirpath(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                fhirpathpy.compile(value)
            except Exception as exc:  # fhirpathpy raises several parser exception types
                raise ValueError(f"FHIRPath '{value}' does not parse: {exc}") from exc
        return value

    @field_validator("codes", "component", "prefer_codes")
    @classmethod
    def _tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_token(t) for t in value)

    @model_validator(mode="after")
    def _one_filter(self) -> Source:
        if not self.codes and not self.valueset and not self.where and not self.medication_class \
                and not self.reason_valueset:
            raise ValueError("a source needs `codes`, `valueset`, `medication_class`, `reason_valueset` or `where`")
        if self.reason_valueset and self.resource not in ("MedicationRequest", "MedicationStatement"):
            raise ValueError("`reason_valueset` only applies to MedicationRequest and MedicationStatement sources")
        if self.component and self.resource != "Observation":
            raise ValueError("`component` only applies to Observation sources")
        if self.text_holds_components and not self.component:
            raise ValueError("`text_holds_components` needs `component`")
        if self.medication_class and self.resource not in ("MedicationRequest", "MedicationStatement"):
            raise ValueError("`medication_class` only applies to MedicationRequest and MedicationStatement sources")
        if (self.above is None) != (self.above_unit is None):
            raise ValueError("`above` and `above_unit` go together")
        if (self.at_most is None) != (self.at_most_unit is None):
            raise ValueError("`at_most` and `at_most_unit` go together")
        if self.above is not None and self.at_most is not None:
            raise ValueError("a source takes `above` or `at_most`, not both (two sources read both sides)")
        if set(self.prefer_codes) - set(self.codes):
            raise ValueError(f"`prefer_codes` must be among the source's `codes`: "
                             f"{', '.join(sorted(set(self.prefer_codes) - set(self.codes)))} is not")
        if set(self.provisional_statuses) & set(self.allowed_statuses()):
            raise ValueError(f"`provisional_statuses` must not repeat a counted status: "
                             f"{', '.join(sorted(set(self.provisional_statuses) & set(self.allowed_statuses())))}")
        if self.usable_range is not None and self.threshold is None:
            raise ValueError("a source's `usable_range` needs `above` and `above_unit` (its unit)")
        if self.threshold_unit is not None and default_registry().lookup(self.threshold_unit) is None:
            raise ValueError(f"unit '{self.threshold_unit}' is not in the unit registry")
        return self

    @property
    def threshold(self) -> float | None:
        """The value a reading is tested against: `above`, or `at_most`."""
        return self.above if self.above is not None else self.at_most

    @property
    def threshold_unit(self) -> str | None:
        return self.above_unit if self.above is not None else self.at_most_unit

    def meets(self, value: float) -> bool:
        """Whether a reading (in `threshold_unit`) counts: above `above`, or at or below `at_most`."""
        return value > self.above if self.above is not None else self.at_most is not None and value <= self.at_most

    def allowed_statuses(self) -> tuple[str, ...]:
        return self.statuses if self.statuses is not None else DEFAULT_STATUSES[self.resource]


class EndedBy(_Strict):
    """What ends a recorded state (a pregnancy ends at a delivery): records of it dated after the newest record of
    the state, and at least `after_days` before the hook, turn a 1 into 0; within `after_days` the state stands (an
    obstetric early warning score applies up to six weeks after a birth)."""

    label: str  # what the records are, in words: "a delivery"
    after_days: int = Field(default=0, ge=0)
    sources: tuple[Source, ...] = Field(min_length=1)


class Answers(_Strict):
    """How a coded answer (valueCodeableConcept, or a demographic code) becomes a number."""

    valueset: str | None = None  # entries' `class` are the keys of `map`
    map: dict[str, float]  # "system|code" (or valueset class, or gender code) -> value

    @field_validator("map")
    @classmethod
    def _non_empty(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("map must not be empty")
        return value


#: resource types whose records a `mentions` rule reads (their main code's text and displays)
MENTION_TYPES = frozenset({"Condition", "Procedure", "Device"})


class Mentions(_Strict):
    """Words naming the feature's condition in a record no value set matched (fhir_mapping/mentions.py): such a
    record leaves an `exists` feature unknown, naming it, instead of at its default."""

    title: str  # the condition as a clinician reads it: "heart failure"
    words: tuple[str, ...] = Field(min_length=1)
    unless: tuple[str, ...] = ()  # phrases that make a text about something else ("family history", "without")
    # which of the feature's source types are read (default: all of Condition, Procedure, Device among them), and
    # which statuses make a record current (default: those of the feature's sources of its type). A transplant is a
    # fact at any status and in a Procedure; "dialysis" counts only as a current diagnosis
    resources: tuple[ResourceType, ...] | None = None
    statuses: tuple[str, ...] | None = None
    # also the reasons current medication orders and statements give (reasonCode, by a code of the feature's value
    # sets or in these words): metoprolol ordered "for heart failure" says what the problem list may not
    reasons: bool = False
    _rule: MentionRule = PrivateAttr()

    @model_validator(mode="after")
    def _phrases(self) -> Mentions:
        try:
            self._rule = MentionRule(self.words, self.unless)
        except ValueError as exc:
            raise ValueError(f"mentions: {exc}") from exc
        if self.resources is not None and not set(self.resources) <= MENTION_TYPES:
            raise ValueError(f"mentions.resources: only {', '.join(sorted(MENTION_TYPES))} are read")
        return self

    @property
    def rule(self) -> MentionRule:
        """The words compiled once, when the spec is loaded."""
        return self._rule


class Feature(_Strict):
    """One model input."""

    label: str
    required: bool = True
    demographic: Demographic | None = None
    sources: tuple[Source, ...] = ()
    derived: str | None = None  # expression over other features, used when no source gives a value
    # with `sources`: "missing" uses `derived` only when no source gives a value; "newer" uses it too when it rests on
    # results from a later day than the source value (the newest evidence wins; on the same day the recorded value)
    derived_when: Literal["missing", "newer"] = "missing"
    # with `derived`: the input whose date dates the derived value (a BMI by its weight: an adult's height measured
    # years ago still holds); by default the oldest of its dated inputs
    derived_dated_by: str | None = None
    # with `derived`: an expression over other features that must hold for the derivation to apply (an equation's own
    # population: CKD-EPI 2021 is for adults), and what the card says when it does not
    derived_only_if: str | None = None
    derived_only_if_note: str | None = None
    # with `derived`: the decimals a laboratory reports the value to (an eGFR is reported as a whole number, and
    # KDIGO's categories are read on it): a derived value is shown at these decimals, and a manifest's advice and
    # notes test it as shown, so a card never lists "29.8" beside advice that reads it as 30 (the eGFR card's "30,
    # G3b"); the model reads the unrounded value. A recorded value is shown and tested as the laboratory wrote it
    reported_decimals: int | None = Field(default=None, ge=0, le=6)
    # `demographic: age` on the date of the named feature's value (age when a creatinine was drawn), not at the hook
    on_date_of: str | None = None
    value: ValueKind = "quantity"
    unit: str | None = None
    # a result written as a bare number (valueInteger, or a valueQuantity with a value and neither unit nor code) is
    # read in this unit; only for codes whose results have one unit (heart rate /min, systolic pressure mm[Hg],
    # SpO2 %), never where the unit decides the number (temperature, creatinine). Without it a bare number is unreadable
    bare_number_unit: str | None = None
    # a score's chart written at this precision (NEWS2's temperature bands: <=35.0 | 35.1-36.0): the value is rounded
    # half up to these decimals before the model reads it, so a card shows the number it was scored on (35.05 -> 35.1)
    chart_decimals: int | None = Field(default=None, ge=0, le=6)
    # with `chart_decimals`: the upper edges (inclusive) of the chart's bands, in ascending order (NEWS2's temperature:
    # 35.0, 36.0, 38.0, 39.0). A newest result written as a bound that every value it allows scores in one band
    # ('<35 °C': all of them <=35.0) is read as that band, and shown as written; one that spans two is unknown
    chart_bands: tuple[float, ...] = ()
    analyte: str | None = None
    answers: Answers | None = None
    lookback_days: int | None = Field(default=None, gt=0)
    aggregate: Aggregate = "latest"
    default: float | None = None
    default_note: str | None = None
    missing_note: str | None = None  # what a clinician should know when the feature is absent
    display: dict[str, str] = Field(default_factory=dict)  # rendered value ("1") -> words ("Current smoker")
    order: OrderCode | None = None
    # 1 when the named feature has a usable recorded value (not a default), else `default`: "UACR measured"
    present_of: str | None = None
    # with `value: exists` or `coded`: records that end the state the value 1 says (a delivery after the newest
    # "Pregnant" answer), read as the feature's own sources are (prefetch keys of their own)
    ended_by: EndedBy | None = None
    # with `value: exists` and a `default`: words naming the condition in a record whose code matched no source (one
    # rule, or several with their own resources and statuses)
    mentions: tuple[Mentions, ...] = ()

    @field_validator("mentions", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _coherent(self) -> Feature:
        if self.mentions:
            if self.value != "exists" or self.default is None:
                raise ValueError("`mentions` applies to an `exists` feature with a `default`")
            read = {s.resource for s in self.sources if s.resource in MENTION_TYPES and not s.medication_class}
            for rule in self.mentions:
                if not read or (rule.resources is not None and not set(rule.resources) <= read):
                    raise ValueError("`mentions` reads the feature's own Condition, Procedure or Device sources")
        if self.ended_by is not None and (self.value not in ("exists", "coded") or not self.sources
                                          or self.derived or self.aggregate != "latest"):
            raise ValueError("`ended_by` applies to an `exists` or `coded` feature read from `sources` (latest)")
        if self.present_of is not None:
            if self.sources or self.derived or self.demographic:
                raise ValueError("`present_of` takes no `sources`, `derived` or `demographic`")
            if self.default is None:
                raise ValueError("`present_of` needs a `default` (the value when the feature is not present)")
            return self
        if self.chart_bands and (self.chart_decimals is None or list(self.chart_bands) != sorted(set(self.chart_bands))):
            raise ValueError("`chart_bands` needs `chart_decimals`, and its edges in ascending order")
        if self.reported_decimals is not None and (self.derived is None or self.value != "quantity"):
            raise ValueError("`reported_decimals` applies to a derived quantity")
        if self.derived_when == "newer" and not (self.sources and self.derived):
            raise ValueError("`derived_when: newer` needs both `sources` and `derived` (they compete by date)")
        if self.on_date_of is not None and self.demographic != "age":
            raise ValueError("`on_date_of` only applies to `demographic: age`")
        if self.demographic:
            if self.sources:
                raise ValueError("a demographic feature takes no `sources`")
            if self.demographic in ("gender", "race", "ethnicity") and self.answers is None:
                raise ValueError(f"demographic '{self.demographic}' needs `answers.map`")
        elif not self.sources and not self.derived:
            raise ValueError("a feature needs `sources`, `derived` or `demographic`")
        if self.derived is not None:
            try:
                Expression(self.derived)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from exc
        if (self.derived_only_if is None) != (self.derived_only_if_note is None):
            raise ValueError("`derived_only_if` and `derived_only_if_note` go together")
        if self.derived_only_if is not None:
            if self.derived is None:
                raise ValueError("`derived_only_if` needs `derived`")
            try:
                Expression(self.derived_only_if)
            except ExpressionError as exc:
                raise ValueError(f"derived_only_if: {exc}") from exc
        if self.value == "quantity" and not self.demographic:
            if not self.unit:
                raise ValueError("a quantity feature needs `unit`")
            if default_registry().lookup(self.unit) is None:
                raise ValueError(f"unit '{self.unit}' is not in the unit registry")
        if self.bare_number_unit is not None:
            if self.value != "quantity" or not self.sources:
                raise ValueError("`bare_number_unit` applies to a quantity feature read from sources")
            bare, unit = default_registry().lookup(self.bare_number_unit), default_registry().lookup(self.unit or "")
            if bare is None:
                raise ValueError(f"unit '{self.bare_number_unit}' is not in the unit registry")
            if unit is not None and bare.dimension != unit.dimension:
                raise ValueError(f"`bare_number_unit` '{self.bare_number_unit}' does not measure what `unit` "
                                 f"'{self.unit}' measures")
        if self.value == "coded" and self.answers is None:
            raise ValueError("a coded feature needs `answers`")
        if any(src.provisional_statuses and src.threshold is None
               and not (src.resource == "Condition" and self.value == "exists") for src in self.sources) and \
                (self.value not in ("quantity", "coded") or self.aggregate != "latest"):
            raise ValueError("`provisional_statuses` needs `above` and `above_unit` (the threshold a result not yet "
                             "final must meet to leave the feature unknown), except on a quantity or coded feature "
                             "read as its latest value, or a Condition source of an `exists` feature (verification "
                             "statuses: provisional, differential)")
        if self.default is not None and not self.default_note:
            raise ValueError("a `default` needs a `default_note` saying what it means for the patient")
        if self.required and self.default is not None and self.value != "exists":
            raise ValueError("a required feature cannot have a `default` (make it optional, or remove the default)")
        return self


class FeatureSpec(_Strict):
    """A whole features.yaml."""

    spec_version: Literal[1] = 1
    # Add `date=ge{{today() - N days}}` to Observation templates from each feature's look-back window. The token is
    # CDS Hooks 3.0 (STU); 2.0 clients do not render it, so it is opt-in.
    prefetch_date_limits: bool = False
    features: dict[str, Feature]

    @model_validator(mode="after")
    def _derivations(self) -> FeatureSpec:
        for name in self.derivation_order():
            unknown = self.derived_inputs(name) - set(self.features)
            if unknown:
                raise ValueError(f"features.{name}.derived uses unknown feature(s) {', '.join(sorted(unknown))}")
        for name, feature in self.features.items():
            if feature.present_of is not None and feature.present_of not in self.features:
                raise ValueError(f"features.{name}.present_of names unknown feature '{feature.present_of}'")
            if feature.derived_dated_by is not None and feature.derived_dated_by not in self.derived_inputs(name):
                raise ValueError(f"features.{name}.derived_dated_by must name an input of its `derived` expression "
                                 f"('{feature.derived_dated_by}' is not one)")
            target = self.features.get(feature.on_date_of) if feature.on_date_of else None
            if feature.on_date_of is not None and (target is None or not target.sources):
                raise ValueError(f"features.{name}.on_date_of must name a feature read from `sources` "
                                 f"('{feature.on_date_of}' is not one)")
        return self

    def resource_types(self) -> frozenset[str]:
        """The resource types the features read (the index need not look at any other)."""
        return frozenset(src.resource for f in self.features.values()
                         for src in (*f.sources, *(f.ended_by.sources if f.ended_by else ())))

    def presence_flags(self) -> dict[str, str]:
        """The 'measured' flags (`present_of`) and the input each follows ({'has_uacr': 'uacr'}): that input's default
        is a stand-in for no value, never the patient's."""
        return {n: f.present_of for n, f in self.features.items() if f.present_of is not None}

    def derived_inputs(self, name: str) -> set[str]:
        feature = self.features[name]
        names = compiled_expression(feature.derived).names if feature.derived else set()
        if feature.derived_only_if:
            names = names | compiled_expression(feature.derived_only_if).names
        return names

    def derivation_order(self) -> list[str]:
        """Derived features in an order where each comes after the derived features it uses."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order or name not in self.features or not self.features[name].derived:
                return
            if name in visiting:
                raise ValueError(f"features.{name}.derived: circular derivation")
            visiting.add(name)
            for dep in sorted(self.derived_inputs(name)):
                visit(dep)
            visiting.discard(name)
            order.append(name)

        for feature_name in self.features:
            visit(feature_name)
        return order

    def prefetch_plan(self, valuesets: ValueSetLibrary) -> dict[str, PrefetchKey]:
        """FHIR query templates asking for exactly what the features use (one per resource type and code set),
        each with the features it feeds, so a key that cannot be fetched marks exactly those features unknown."""
        plan: dict[str, PrefetchKey] = {}
        by_template: dict[str, str] = {}

        def add(key: str, template: str, feature: str | None) -> None:
            existing = by_template.setdefault(template, key)
            entry = plan.get(existing)
            plan[existing] = PrefetchKey(template=template, features=(entry.features if entry else ())
                                         + ((feature,) if feature else ()))

        for name, feature in self.features.items():
            if feature.demographic:
                add("patient", "Patient/{{context.patientId}}", name)
            for i, source in enumerate(feature.sources):
                own = source.lookback_days if source.lookback_days is not None else feature.lookback_days
                window = own if self.prefetch_date_limits else None
                add(_prefetch_key(source.resource, name, i, len(feature.sources)),
                    _template_for(source, valuesets, window), name)
            # what ends a state can only turn its 1 into 0: a search of it that cannot be obtained leaves the value
            # as read (a pregnancy stands), so the key feeds no feature's "not fully checked"
            ends = feature.ended_by.sources if feature.ended_by else ()
            for i, source in enumerate(ends):
                add(_prefetch_key(source.resource, f"{name}-ended", i, len(ends)), _template_for(source, valuesets),
                    None)
        if "patient" not in plan:
            plan = {"patient": PrefetchKey(template="Patient/{{context.patientId}}", features=()), **plan}
        return plan


class PrefetchKey(BaseModel):
    """One prefetch template and the features that read from it."""

    model_config = ConfigDict(frozen=True)
    template: str
    features: tuple[str, ...]


def _prefetch_key(resource: str, feature: str, index: int, count: int) -> str:
    suffix = f"-{index + 1}" if count > 1 else ""
    return f"{resource[0].lower()}{resource[1:]}-{feature}{suffix}".replace("_", "-")


def _template_for(source: Source, valuesets: ValueSetLibrary, lookback_days: int | None = None) -> str:
    patient = "patient={{context.patientId}}"
    codes = list(source.codes)
    if source.valueset:
        vs = valuesets.get(source.valueset)
        if vs.match == "exact" and len(vs.entries) <= 40:
            codes.extend(vs.systems_codes())
        else:  # long or prefix sets: ask for the patient's resources of the type and filter here
            codes = []
    code_param = f"&code={','.join(codes)}" if codes else ""
    if source.resource == "Observation":
        since = f"&date=ge{{{{today() - {lookback_days} days}}}}" if lookback_days else ""
        return f"Observation?{patient}{code_param}{since}&_sort=-date&_count=100"
    if source.resource == "Condition":
        return f"Condition?{patient}{code_param}"
    if source.resource in ("MedicationRequest", "MedicationStatement"):
        # _include brings the Medication resources that medicationReference points to in the same answer
        return f"{source.resource}?{patient}&status=active&_include={source.resource}:medication"
    if source.resource == "Procedure":
        return f"Procedure?{patient}{code_param}"
    if source.resource == "Device":  # R4 Device has `type`, not `code`; its search parameter is `type`
        return f"Device?{patient}{code_param.replace('&code=', '&type=')}"
    # patient-view carries no encounterId (it is optional there and the sandbox never sends it): search instead;
    # planned too, as the encounter encounter-start is fired for may still be (CDS Hooks encounter-start)
    return f"Encounter?{patient}&status=planned,arrived,triaged,in-progress,onleave"


def validation_summary(exc: ValidationError) -> str:
    """Every error of a validation on one line, `field.path: message; …` — all at once, not the first alone."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def load_feature_spec(path: Path, valuesets: ValueSetLibrary | None = None) -> FeatureSpec:
    """Load and validate a features.yaml; raise SpecError naming file, feature and field."""
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read feature spec: {exc}") from exc
    try:
        spec = FeatureSpec.model_validate(doc)
    except ValidationError as exc:
        raise SpecError(f"{path}: {validation_summary(exc)}") from exc
    library = valuesets or ValueSetLibrary([path.parent / "valuesets"])
    for name, feature in spec.features.items():
        names = [s.valueset for s in feature.sources if s.valueset]
        names += [s.reason_valueset for s in feature.sources if s.reason_valueset]
        if feature.answers and feature.answers.valueset:
            names.append(feature.answers.valueset)
        for vs_name in names:
            try:
                library.get(vs_name)
            except ValueSetError as exc:
                raise SpecError(f"{path}: features.{name}: {exc}") from exc
        for source in feature.sources:
            if source.medication_class:
                try:
                    library.drug_class(source.medication_class)
                except (DrugClassError, ValueSetError) as exc:
                    raise SpecError(f"{path}: features.{name}: {exc}") from exc
    return spec
