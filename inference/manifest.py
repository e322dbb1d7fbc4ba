"""The model manifest: everything the service needs to know about a model folder, validated at load time.

A manifest says what the model is, which hooks it serves, the ordered inputs of its ONNX graph with units and
validated ranges, its outputs, how the primary output maps to a category and card indicator, the intended population,
how its card reads, and its model card (HTI-1 source attributes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

HOOKS = ("patient-view", "order-select", "order-sign", "encounter-start", "encounter-discharge")
Indicator = Literal["info", "warning", "critical"]


class ManifestError(ValueError):
    """A model folder's manifest is invalid; the message names the folder and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Input(_Strict):
    name: str
    label: str
    unit: str | None = None
    range: tuple[float, float] | None = None
    kind: Literal["continuous", "binary", "category", "count"] = "continuous"


class Condition(_Strict):
    """A condition on a feature value (population rules, and when a secondary output applies)."""

    feature: str
    equals: float | None = None
    min: float | None = None
    max: float | None = None
    reason: str

    def holds(self, value: float) -> bool:
        return not (
            (self.equals is not None and value != self.equals)
            or (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        )


class Output(_Strict):
    name: str
    label: str
    kind: Literal["probability", "score", "value"] = "probability"
    unit: str | None = None
    primary: bool = False
    decimals: int = 1
    horizon_years: float | None = None  # prediction horizon (RiskAssessment.prediction.whenRange)
    outcome: dict[str, str] | None = None  # coding of the predicted outcome (RiskAssessment.prediction.outcome)
    # a secondary output is given only when these hold (e.g. PREVENT 30-year risks: ages 30–59), else withheld
    applies_when: tuple[Condition, ...] = ()


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


class PopulationRule(Condition):
    """Who the model is for: a rule on a feature value; failing it gives no number and the card says why.

    Rules are checked before anything else (before a missing-data card or an order is offered)."""

    guidance: str | None = None  # what the guideline says instead, for a patient outside the population


class Explain(_Strict):
    """Per-feature contributions against a reference patient (exact Shapley values over `features`)."""

    features: tuple[str, ...]
    baseline: dict[str, float]
    baseline_label: str = "reference values"
    output: str | None = None

    @model_validator(mode="after")
    def _baseline_complete(self) -> Explain:
        missing = [f for f in self.features if f not in self.baseline]
        if missing:
            raise ValueError(f"baseline has no value for {', '.join(missing)}")
        if len(self.features) > 12:
            raise ValueError("exact Shapley explanations are limited to 12 features")
        return self


class Link(_Strict):
    label: str
    url: str


class CardSpec(_Strict):
    template: str = "risk.md.j2"
    # a measured-value model (e.g. eGFR) offers to save an Observation with this code instead of a RiskAssessment
    observation_code: dict[str, str] | None = None
    short_title: str = Field(max_length=60)  # "10-year ASCVD risk": used in summaries of every card kind
    summary: str  # Python format string with {value} and {category}
    topic: dict[str, str] | None = None
    links: tuple[Link, ...] = ()
    risk_assessment_code: dict[str, str] | None = None  # RiskAssessment.code / prediction outcome coding


class WhatIf(_Strict):
    """A named what-if scenario for the details page: set some inputs to new values and recompute with the same model
    version (an estimate from the equations, not a trial's treatment effect)."""

    label: str = Field(max_length=80)  # "Blood pressure treated to 130 mmHg"
    set: dict[str, float]  # input name -> value (in the input's unit; binary inputs 0/1)
    # offered only when these hold for the patient's current values (e.g. "stop smoking" only for a smoker)
    applies_when: tuple[Condition, ...] = ()
    note: str | None = None  # what the scenario assumes, shown next to its result


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
    population: tuple[PopulationRule, ...] = ()
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

    @model_validator(mode="after")
    def _coherent(self) -> Manifest:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError("input names must be unique")
        if sum(o.primary for o in self.outputs) != 1:
            raise ValueError("exactly one output must be `primary: true`")
        if not self.hooks:
            raise ValueError("hooks must list at least one hook")
        outputs = {o.name for o in self.outputs}
        for i, cat in enumerate(self.categories):
            last = i == len(self.categories) - 1
            conditional = cat.below is not None or cat.at_least is not None
            if last == conditional:
                raise ValueError("every category but the last needs `below` or `at_least`; the last has neither")
            if cat.output is not None and cat.output not in outputs:
                raise ValueError(f"category {cat.label}: output '{cat.output}' is not an output of the model")
        bounds = [c.below for c in self.categories if c.below is not None and c.output is None and c.at_least is None]
        if bounds != sorted(bounds):
            raise ValueError("category `below` bounds must increase")
        for out in self.outputs:
            if out.primary and out.applies_when:
                raise ValueError(f"outputs.{out.name}: the primary output cannot have `applies_when`")
            if out.applies_when and any(c.output == out.name for c in self.categories):
                raise ValueError(f"outputs.{out.name}: an output with `applies_when` cannot set a category")
        if self.explain:
            unknown = [f for f in self.explain.features if f not in names]
            if unknown:
                raise ValueError(f"explain.features not among inputs: {', '.join(unknown)}")
        self._check_what_if()
        return self

    def _check_what_if(self) -> None:
        by_name = {i.name: i for i in self.inputs}
        labels = [w.label for w in self.what_if]
        if len(set(labels)) != len(labels):
            raise ValueError("what_if labels must be unique")
        for w in self.what_if:
            if not w.set:
                raise ValueError(f"what_if '{w.label}': `set` names no input")
            for name, value in w.set.items():
                spec_in = by_name.get(name)
                if spec_in is None:
                    raise ValueError(f"what_if '{w.label}': '{name}' is not an input of the model")
                if spec_in.kind == "binary" and value not in (0, 1):
                    raise ValueError(f"what_if '{w.label}': {name} is binary (0 or 1)")
                if spec_in.range is not None and not spec_in.range[0] <= value <= spec_in.range[1]:
                    raise ValueError(f"what_if '{w.label}': {name} {value} is outside the input's range")
            for cond in w.applies_when:
                if cond.feature not in by_name:
                    raise ValueError(f"what_if '{w.label}': applies_when names '{cond.feature}', not an input")

    @property
    def primary(self) -> Output:
        return next(o for o in self.outputs if o.primary)

    def category_for(self, outputs: dict[str, float]) -> Category:
        for cat in self.categories:
            value = outputs[cat.output or self.primary.name]
            if (cat.below is None or value < cat.below) and (cat.at_least is None or value >= cat.at_least):
                return cat
        return self.categories[-1]


def load_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{folder}: cannot read manifest.yaml: {exc}") from exc
    try:
        return Manifest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(f"{folder}: manifest.yaml: {where}: {first['msg']}") from exc
