"""The model manifest: everything the service needs to know about a model folder, validated at load time.

A manifest says what the model is, which hooks it serves, the ordered inputs of its ONNX graph with units and
validated ranges, its outputs, how the primary output maps to a category and card indicator, the intended population,
how its card reads, and its model card (HTI-1 source attributes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fhir_mapping.formatting import rounded
from inference.sequence_manifest import BackendSpec, SequenceSpec

HOOKS = ("patient-view", "order-select", "order-sign", "encounter-start", "encounter-discharge")
Indicator = Literal["info", "warning", "critical"]


class ManifestError(ValueError):
    """A model folder's manifest is invalid; the message names the file and every field that is wrong."""

    def __init__(self, message: str, problems: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems  # inference.problems.Problem, one per thing wrong


class CoherenceError(ValueError):
    """Parts of a manifest disagree; `found` holds every disagreement as (field, problem, fix), the field relative to
    the model that raised it, so a validation error can be reported field by field in plain words."""

    def __init__(self, found: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem, _ in found))
        self.found = found


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Input(_Strict):
    name: str
    label: str
    unit: str | None = None
    range: tuple[float, float] | None = None
    kind: Literal["continuous", "binary", "category", "count"] = "continuous"


class When(_Strict):
    """A condition on a feature value (advice: the advice's text says why it applies)."""

    feature: str
    equals: float | None = None
    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        return not (
            (self.equals is not None and value != self.equals)
            or (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        )


class Condition(When):
    """A condition with the reason shown when it fails (population rules, and when a secondary output applies)."""

    reason: str


class Output(_Strict):
    name: str
    label: str
    kind: Literal["probability", "score", "value"] = "probability"
    unit: str | None = None
    primary: bool = False
    decimals: int = 1
    horizon_years: float | None = None  # prediction horizon (RiskAssessment.prediction.whenPeriod)
    outcome: dict[str, str] | None = None  # coding of the predicted outcome (RiskAssessment.prediction.outcome)
    # a secondary output is given only when these hold (e.g. PREVENT 30-year risks: ages 30–59), else withheld
    applies_when: tuple[Condition, ...] = ()

    def shown(self, value: float) -> Decimal:
        """The number a person reads for this output (a probability in percent), rounded to `decimals`."""
        return rounded(value * display_scale(self.kind), self.decimals)

    def shown_value(self, value: float) -> float:
        """The output as shown, back in the output's own units: what a chart record of the shown number holds."""
        return float(self.shown(value) / display_scale(self.kind))

    def reads_below(self, value: float, bound: float) -> bool:
        """Whether the value as shown is below a category bound (written in the output's units): categories are
        chosen on the number the card shows, so the card never shows 7.5% beside a band "<7.5%"."""
        if math.isnan(value):
            return False  # as a float comparison: NaN is below nothing
        return self.shown(value) < Decimal(repr(float(bound))) * display_scale(self.kind)


def display_scale(kind: str) -> int:
    """How an output of this kind is read: a probability as a percentage, anything else as it is."""
    return 100 if kind == "probability" else 1


class FollowUp(_Strict):
    """A follow-up the guideline supports for a category, offered as a draft ServiceRequest suggestion."""

    label: str  # button text, e.g. "Refer to nephrology"
    text: str  # what is ordered, in words
    code: dict[str, str] | None = None  # a coding for the ServiceRequest, when there is a standard one
    recommended: bool = False  # isRecommended: only when the guideline recommends it for this category
    guideline: str  # which guideline statement supports it


class Category(_Strict):
    """A band of an output. The first category whose conditions hold applies; the last has none (the rest)."""

    label: str
    indicator: Indicator
    below: float | None = None  # the output is strictly below this value
    at_least: float | None = None  # the output is at least this value
    output: str | None = None  # which output the conditions test (default: the primary output)
    description: str | None = None
    guidance: str | None = None  # what the guideline suggests for this category (options, not directives)
    follow_ups: tuple[FollowUp, ...] = ()


class Advice(_Strict):
    """What the card says instead of its category's guidance when the record shows something the guidance does not
    allow for: a patient already on the treatment the guidance offers (a statin, an anticoagulant), or one the
    guideline treats whatever the estimate (diabetes at 40-75 and a statin). The first advice whose conditions all
    hold, on inputs that are known (never a default standing for an unchecked search), applies. `unchecked`: it
    applies only when one of these features is such a default (a "No" the record could not be fully checked for),
    where the category's guidance would rest on a "No" nobody could confirm."""

    when: tuple[When, ...] = ()
    unchecked: tuple[str, ...] = ()  # {unchecked} in the guidance names those that were not fully checked
    categories: tuple[str, ...] = ()  # the category labels it applies to (default: every category)
    guidance: str  # shown as the card's action line and on the details page; {evidence}: the record it rests on
    follow_ups: Literal["keep", "drop"] = "keep"  # drop: the category's draft orders do not fit this patient
    # a unit (UCUM), as for a card note: the first condition holds only for a value the record wrote in this unit (or
    # a power of ten of it), read as written: KDIGO's A3 is 30 mg/mmol or 300 mg/g, rounded equivalents
    written_in: str | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> Advice:
        if not self.when and not self.unchecked:
            raise ValueError("an advice needs `when` conditions, `unchecked` features, or both")
        return self


class PopulationRule(Condition):
    """Who the model is for: a rule on a feature value; failing it gives no number and the card says why.

    Rules are checked before anything else (before a missing-data card or an order is offered)."""

    guidance: str | None = None  # what the guideline says instead, for a patient outside the population
    # the rule tests a value only when the record has one: an optional feature nothing was recorded for does not
    # refuse (the PCE's LDL-C >= 190 mg/dL exclusion: most records hold an LDL-C, but its absence proves nothing)
    if_recorded: bool = False
    # the rule tests a value only when it is known: an unknown one (an input that cannot be read) does not refuse,
    # for a check whose inputs the model needs anyway (KFRE's acute creatinine rise: an unreadable newest creatinine
    # already leaves the eGFR missing, and the card says so)
    if_known: bool = False
    # said instead of `reason` when the feature cannot be read (a search cut short, an unreadable record), for a reason
    # that states what the record shows ("…, and the record shows a mechanical heart valve"), which would then be
    # false; the rule's guidance, written for a patient who is outside the population, is not shown either
    unconfirmed: str | None = None
    # the guidance is given only when no other population rule refuses: it speaks of what follows once the patient
    # is inside the population (the PCE's "with diabetes at 40–75, a moderate-intensity statin"), which another
    # refusal's guidance (established ASCVD: a high-intensity statin) overrides
    guidance_alone: bool = False
    # the guidance speaks of the estimate that follows once the rule holds (PREVENT's "with diabetes recorded the
    # estimate follows"): it is given only when every input is known, a missing one barring the estimate too
    guidance_needs_inputs: bool = False
    # the rule applies only to patients these conditions hold for, on known values (a pregnancy check for women:
    # `[{feature: female, equals: 1}]`); where one fails the rule is not checked and not said to be unchecked, and
    # where its feature is unknown the rule applies
    only_if: tuple[When, ...] = ()

    def applies(self, value_of: Callable[[str], float | None]) -> bool:
        """Whether the rule is checked for this patient (`value_of`: a feature's known value, or None)."""
        return all((v := value_of(c.feature)) is None or c.holds(v) for c in self.only_if)


class Explain(_Strict):
    """Per-feature contributions against a reference patient (exact Shapley values over `features`)."""

    features: tuple[str, ...]
    baseline: dict[str, float]
    baseline_label: str = "reference values"
    output: str | None = None

    @model_validator(mode="after")
    def _baseline_complete(self) -> Explain:
        found: list[tuple[str, str, str]] = []
        missing = [f for f in self.features if f not in self.baseline]
        if missing:
            found.append(("baseline", f"has no value for {', '.join(missing)}",
                          f"add {', '.join(f'{m}: <reference value>' for m in missing)}"))
        if len(self.features) > 12:
            found.append(("features", f"lists {len(self.features)} features; exact Shapley explanations are limited "
                          "to 12", "explain the 12 that matter most"))
        if found:
            raise CoherenceError(found)
        return self


class Link(_Strict):
    label: str
    url: str


class NoteWhen(When):
    """A note's condition, which may also hold for a result written as a bound ('<3 mg/g' is A1 whatever its
    value): `below` is an exclusive upper limit, as guidelines write a category ('A1: below 30 mg/g'), so a bound
    '<30' falls wholly inside it where `max: 29.999` would leave it out."""

    below: float | None = None

    def holds(self, value: float) -> bool:
        return super().holds(value) and (self.below is None or value < self.below)

    def holds_for_bound(self, comparator: str, number: float) -> bool:
        """Whether every value a result written '<number' (or '<=', '>', '>=') allows meets the condition."""
        if self.equals is not None:
            return False
        if comparator in ("<", "<="):
            if self.min is not None:
                return False
            return (self.below is not None and (number <= self.below if comparator == "<" else number < self.below)) \
                or (self.max is not None and number <= self.max)
        if comparator in (">", ">="):
            return self.max is None and self.below is None and (self.min is None or number >= self.min)
        return False


class CardNote(_Strict):
    """A statement the card adds when the record shows something its number rests on and a reader must be able to
    check: NEWS2 scored SpO2 on Scale 2 because hypercapnic respiratory failure is coded (the RCP asks that the scale
    used be recorded, and a SpO2 of 90 % scoring 0 reads as an error without it)."""

    # all hold (a default not fully checked never matches); the first may hold for a result written as a bound
    when: tuple[NoteWhen, ...] = Field(min_length=1)
    # {evidence}: the records the conditions rest on; {value} and {date}: the first condition's value as the record
    # wrote it ('3 mg/mmol', '29.96 mg/g') and the day it was measured
    text: str = Field(max_length=240)
    # a unit (UCUM): the note holds only for a first condition's value the record wrote in this unit, and that
    # condition reads the number as written: KDIGO's albuminuria limits in mg/mmol (3, 30) are rounded equivalents
    # of those in mg/g (30, 300), not conversions, so each unit is categorised by its own
    written_in: str | None = None


class CardSpec(_Strict):
    template: str = "risk.md.j2"
    # a measured-value model (e.g. eGFR) offers to save an Observation with this code instead of a RiskAssessment
    observation_code: dict[str, str] | None = None
    short_title: str = Field(max_length=60)  # "10-year ASCVD risk": used in summaries of every card kind
    summary: str  # Python format string with {value} and {category}
    topic: dict[str, str] | None = None
    links: tuple[Link, ...] = ()
    risk_assessment_code: dict[str, str] | None = None  # RiskAssessment.code: the kind of assessment
    # how many recorded inputs the card lists (largest contributions first); a points score whose components a
    # clinician checks one by one (CHA2DS2-VASc) lists them all
    inputs_shown: int = Field(default=3, ge=1, le=12)
    notes: tuple[CardNote, ...] = ()  # statements shown when their conditions hold (cards/advice.py card_notes)


class WhatIf(_Strict):
    """A named what-if scenario for the details page: set some inputs to new values and recompute with the same model
    version (an estimate from the equations, not a trial's treatment effect)."""

    label: str = Field(max_length=80)  # "Blood pressure treated to 130 mmHg"
    set: dict[str, float]  # input name -> value (in the input's unit; binary inputs 0/1)
    # offered only when these hold for the patient's current values (e.g. "stop smoking" only for a smoker)
    applies_when: tuple[Condition, ...] = ()
    note: str | None = None  # what the scenario assumes, shown next to its result


ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")


class MonitoredOutcome(_Strict):
    """The clinical outcome a model predicts, coded as imported outcomes are (monitoring joins them by these codes).

    Each code is "system|code". SNOMED CT and other codes match exactly; ICD-10 codes also match their subcodes
    (I21 matches I21.4 and I214), because ICD-10 is hierarchical by prefix."""

    label: str = Field(max_length=120)  # "ASCVD event (MI, stroke)": how the report names the outcome
    codes: tuple[str, ...] = Field(min_length=1)
    horizon_days: int | None = Field(default=None, gt=0)  # follow-up window; default the primary output's horizon

    @model_validator(mode="after")
    def _codes_well_formed(self) -> MonitoredOutcome:
        for code in self.codes:
            system, _, value = code.partition("|")
            if not system or not value or "|" in value:
                raise ValueError(f"outcome code '{code}' must be 'system|code', e.g. 'http://snomed.info/sct|22298006'")
        return self


class ReferenceBins(_Strict):
    """One input's (or `__score__`'s) reference distribution for drift: bin edges and the proportion in each bin."""

    edges: tuple[float, ...] = Field(min_length=2)
    proportions: tuple[float, ...]

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceBins:
        if len(self.proportions) != len(self.edges) - 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) - 1} proportions, not {len(self.proportions)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("edges must increase")
        if any(p < 0 for p in self.proportions) or abs(sum(self.proportions) - 1.0) > 1e-3:
            raise ValueError("proportions must be non-negative and add up to 1")
        return self


class Monitoring(_Strict):
    """How the monitoring report and promotion evidence judge this model in real use (all optional)."""

    outcome: MonitoredOutcome | None = None  # None: the model predicts no coded outcome (drift only)
    min_events: int = Field(default=20, ge=1)  # no statistic is shown from fewer events than this
    per: Literal["patient", "prediction"] = "patient"  # one (the first) prediction per patient, or every prediction
    risk_direction: Literal["higher", "lower"] = "higher"  # which way of the primary output means more risk
    reference: dict[str, ReferenceBins] | None = None  # drift reference; default model_card.reference_distribution


class Acceptance(_Strict):
    """What real-world shadow evidence a challenger needs before `cds-onnx models promote` makes it the champion.

    The champion's block sets the bar (a challenger cannot lower it for itself). Calibration criteria apply only to a
    probability output; a score or a measured value is judged on events, discrimination and fairness."""

    min_events: int = Field(default=20, ge=1)  # outcome events among the paired predictions
    non_inferiority_margin: float = Field(default=0.02, ge=0, le=0.5)  # AUROC: CI lower bound of the difference >= -m
    calibration_slope: tuple[float, float] | None = None  # default [0.8, 1.2] for a probability output
    calibration_intercept: tuple[float, float] | None = None  # logit scale; default [-0.2, 0.2] for a probability
    fairness_ratio: tuple[float, float] = (0.8, 1.25)  # every group's ratio to the reference group
    window_days: int | None = Field(default=None, gt=0)  # only shadow predictions this recent (default: all)

    @model_validator(mode="after")
    def _bounds(self) -> Acceptance:
        for name, must_hold in (("calibration_slope", 1.0), ("calibration_intercept", 0.0), ("fairness_ratio", 1.0)):
            bounds = getattr(self, name)
            if bounds is not None and not bounds[0] <= must_hold <= bounds[1]:
                raise ValueError(f"acceptance.{name} [{bounds[0]}, {bounds[1]}] must be increasing and contain "
                                 f"{must_hold:g} (a perfect model must pass)")
        return self


class Manifest(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    version: str = Field(pattern=r"^[0-9A-Za-z.+-]{1,32}$")
    title: str = Field(max_length=120)
    kind: Literal["evidence-based", "predictive"]
    hooks: tuple[Literal[HOOKS], ...]  # type: ignore[valid-type]
    description: str
    features: str = "features.yaml"
    model_file: str = "model.onnx"
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    categories: tuple[Category, ...]
    # which way the outputs the categories test are worse: "higher" (a risk, a score) or "lower" (an eGFR, where G5
    # is the most severe band); `by_severity` and `cards.min_category` rank the categories by it
    worse: Literal["higher", "lower"] = "higher"
    population: tuple[PopulationRule, ...] = ()
    advice: tuple[Advice, ...] = ()  # guidance that depends on the record, in order (cards/builder.py)
    explain: Explain | None = None
    card: CardSpec
    limitations: tuple[str, ...] = ()
    # services answering the same clinical question (e.g. PREVENT base and with add-ons) share a `question`; discovery
    # lists only the one with the lowest `question_rank` per hook unless the deployment lists more (services.listed)
    question: str | None = None
    question_rank: int = 0
    intended_population: str
    citation: str
    citation_url: str | None = None
    model_card: dict[str, Any]
    what_if: tuple[WhatIf, ...] = ()  # scenarios offered on the details page
    monitoring: Monitoring = Field(default_factory=Monitoring)  # outcome, event minimum, drift reference
    acceptance: Acceptance = Field(default_factory=Acceptance)  # evidence a challenger needs to replace it
    # a sequence model reads the patient's timeline (inference/sequence_manifest.py, docs/timeline-models.md)
    sequence: SequenceSpec | None = None
    backend: BackendSpec | None = None  # graph served by an OIP v2 endpoint instead of in process

    @model_validator(mode="after")
    def _coherent(self) -> Manifest:
        found = self.coherence_problems()
        if found:
            raise CoherenceError(found)
        return self

    def coherence_problems(self) -> list[tuple[str, str, str]]:
        """Every way the manifest's parts disagree with each other, as (field, problem, fix)."""
        found: list[tuple[str, str, str]] = []
        names = [i.name for i in self.inputs]
        for j, name in enumerate(names):
            if name in names[:j]:
                found.append((f"inputs[{j}].name", f"'{name}' is also the name of inputs[{names.index(name)}]",
                              "give every input its own name"))
        primaries = [o.name for o in self.outputs if o.primary]
        if len(primaries) != 1:
            found.append(("outputs", f"{len(primaries)} outputs are `primary: true`" if primaries
                          else "no output is `primary: true`", "mark exactly one output `primary: true`"))
        if not self.hooks:
            found.append(("hooks", "lists no hook", f"list at least one of {', '.join(HOOKS)}"))
        outputs = [o.name for o in self.outputs]
        for i, cat in enumerate(self.categories):
            last = i == len(self.categories) - 1
            conditional = cat.below is not None or cat.at_least is not None
            if last and conditional:
                found.append((f"categories[{i}]", "the last category has `below` or `at_least`",
                              "remove them: the last category takes every value the others do not"))
            elif not last and not conditional:
                found.append((f"categories[{i}]", "has neither `below` nor `at_least`",
                              "give it a bound (only the last category has none)"))
            if cat.output is not None and cat.output not in outputs:
                found.append((f"categories[{i}].output", f"'{cat.output}' is not an output of the model",
                              f"use one of {', '.join(outputs)}"))
        bounds = [c.below for c in self.categories if c.below is not None and c.output is None and c.at_least is None]
        if bounds != sorted(bounds):
            found.append(("categories", "the `below` bounds do not increase",
                          "list the categories from the lowest band to the highest"))
        for i, out in enumerate(self.outputs):
            if out.primary and out.applies_when:
                found.append((f"outputs[{i}].applies_when", "the primary output cannot have `applies_when`",
                              "remove it, or make another output primary"))
            if out.applies_when and any(c.output == out.name for c in self.categories):
                found.append((f"outputs[{i}].applies_when", "an output with `applies_when` cannot set a category",
                              "remove `applies_when`, or base the categories on another output"))
        if self.explain:
            for j, name in enumerate(self.explain.features):
                if name not in names:
                    found.append((f"explain.features[{j}]", f"'{name}' is not an input of the model",
                                  f"use one of {', '.join(names)}"))
        return found + self._what_if_problems()

    def _what_if_problems(self) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        by_name = {i.name: i for i in self.inputs}
        labels = [w.label for w in self.what_if]
        for i, w in enumerate(self.what_if):
            where = f"what_if[{i}]"
            if w.label in labels[:i]:
                found.append((f"{where}.label", f"'{w.label}' is used by another scenario", "give each its own label"))
            if not w.set:
                found.append((f"{where}.set", "names no input", "set at least one input to a value"))
            for name, value in w.set.items():
                spec_in = by_name.get(name)
                if spec_in is None:
                    found.append((f"{where}.set.{name}", f"'{name}' is not an input of the model",
                                  f"use one of {', '.join(by_name)}"))
                elif spec_in.kind == "binary" and value not in (0, 1):
                    found.append((f"{where}.set.{name}", f"{value:g} for a binary input", "use 0 or 1"))
                elif spec_in.range is not None and not spec_in.range[0] <= value <= spec_in.range[1]:
                    found.append((f"{where}.set.{name}", f"{value:g} is outside the input's range "
                                  f"[{spec_in.range[0]:g}, {spec_in.range[1]:g}]", "use a value inside the range"))
            for j, cond in enumerate(w.applies_when):
                if cond.feature not in by_name:
                    found.append((f"{where}.applies_when[{j}].feature", f"'{cond.feature}' is not an input",
                                  f"use one of {', '.join(by_name)}"))
        return found

    @model_validator(mode="after")
    def _monitoring_horizon(self) -> Manifest:
        outcome = self.monitoring.outcome
        if outcome is not None and outcome.horizon_days is None and self.primary.horizon_years is None:
            raise ValueError("monitoring.outcome.horizon_days is needed: the primary output has no horizon_years")
        return self

    @model_validator(mode="after")
    def _acceptance_fits_output(self) -> Manifest:
        acc = self.acceptance
        if self.primary.kind != "probability" and (acc.calibration_slope or acc.calibration_intercept):
            raise ValueError(f"acceptance: calibration criteria apply to a probability output; the primary output "
                             f"'{self.primary.name}' is a {self.primary.kind} (remove calibration_slope and "
                             "calibration_intercept)")
        return self

    @property
    def outcome_horizon_days(self) -> int | None:
        """The declared outcome's follow-up window in days (None without a declared outcome)."""
        outcome = self.monitoring.outcome
        if outcome is None:
            return None
        if outcome.horizon_days is not None:
            return outcome.horizon_days
        return int(round(float(self.primary.horizon_years or 0) * 365.25))

    @property
    def primary(self) -> Output:
        return next(o for o in self.outputs if o.primary)

    def by_severity(self) -> list[Category]:
        """The categories from the lowest risk to the highest. They are listed in the order they are tested: a
        category with `below` is lower than those after it, one with `at_least` higher (KFRE's 'very high' on the
        2-year risk comes first; NEWS2 lists its bands from high to low), and the last takes the rest between them."""
        rising = [c for c in self.categories[:-1] if c.below is not None]
        falling = [c for c in self.categories[:-1] if c.below is None]
        ascending = rising + [self.categories[-1]] + falling[::-1]  # by the value the categories test
        return ascending if self.worse == "higher" else ascending[::-1]

    def category_for(self, outputs: dict[str, float]) -> Category:
        """The first category whose bounds hold for the outputs as shown (rounded to each output's `decimals`), so
        the category always agrees with the number on the card and in the chart (docs/cards.md)."""
        by_name = {o.name: o for o in self.outputs}
        for cat in self.categories:
            out = by_name[cat.output or self.primary.name]
            value = outputs[out.name]
            if (cat.below is None or out.reads_below(value, cat.below)) and (
                    cat.at_least is None or not out.reads_below(value, cat.at_least)):
                return cat
        return self.categories[-1]


def load_manifest(folder: Path) -> Manifest:
    """Read and validate `folder/manifest.yaml`; ManifestError lists every problem, one per line."""
    from inference.problems import join_problems, manifest_problems

    manifest, problems = manifest_problems(folder / "manifest.yaml")
    if manifest is None or problems:
        raise ManifestError(join_problems(problems), tuple(problems))
    return manifest
