"""Feature values with provenance: what the mapper hands to inference and cards.

Every value says where it came from (resource reference, date, original value and unit), and every feature
that could not be filled says why, in words a clinician can read. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


#: How a medication of the class that is recognised but not counted is named in `FeatureValue.unrecognised`:
#: "<drug> (not counted: <why>)"
NOT_COUNTED = " (not counted: "


#: How a reason made by a record that names an input's condition in words (`mentions`) says what to do: its last clause,
#: "; check whether it is <condition>, and code it if it is", is the fix the details page shows
CHECK_AND_CODE = "; check whether it is "


def not_counted_only(names: list[str]) -> bool:
    """Every medication named is recognised as the class but not counted (none is simply unrecognised)."""
    return bool(names) and all(NOT_COUNTED in name for name in names)


@dataclass(frozen=True)
class SourceRef:
    """One FHIR resource (or element of it) that a feature value was read from, or that was passed over."""

    reference: str  # "Observation/123" (or "#contained-id" inside a container), "" if the resource had no id
    resource_type: str
    date: str | None = None  # effective/issued/onset/authoredOn as written in the record
    code: str | None = None  # "system|code" that matched
    display: str | None = None  # the code's display text, as written in the record
    original_value: Any = None  # value as written (number, code, string)
    original_unit: str | None = None
    note: str | None = None  # why it was passed over, or how it was converted
    limit: tuple[str, float] | None = None  # a result written as a bound: its comparator and number (feature's unit)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class FeatureValue:
    """A usable feature value (already in the spec's unit) and its provenance."""

    name: str
    value: float
    unit: str | None = None
    label: str | None = None  # human label of the feature, from the spec
    display: str | None = None  # human rendering of the value ("Current smoker", "213 mg/dL")
    sources: list[SourceRef] = field(default_factory=list)
    defaulted: bool = False  # True when the value is the spec's documented default (no data)
    note: str | None = None  # e.g. "no diabetes diagnosis on record: assumed absent"
    unrecognised: list[str] = field(default_factory=list)  # active medications not recognised as the feature's class
    date: str | None = None  # date of the source the value came from (latest one for aggregates)
    # a default chosen although results were on record: the newest one passed over and why ('… is a bound (<3 mg/g)')
    passed_over: str | None = None
    # prefetch keys this default could not look in (the others were read): a "No" that is not fully checked
    unchecked: list[str] = field(default_factory=list)
    # a derived value as a laboratory reports it (`reported_decimals`: an eGFR of 29.8 is reported 30): what the card
    # shows and a manifest's advice and notes test; the model reads `value`
    reported: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "value": self.value}
        for key in ("unit", "label", "display", "note", "date", "reported"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.defaulted:
            d["defaulted"] = True
        if self.unchecked:
            d["unchecked"] = list(self.unchecked)
        if self.sources:
            d["sources"] = [s.to_dict() for s in self.sources]
        return d


# how the mapper notes a result written as a bound ('<3 mg/g'), and begins the reason of an input whose newest result
# is one: 'Newest result (2026-11-17) not usable: value is a bound (<3 mg/g), not a measurement'
# a derived value whose results are on record but whose age or sex is not (an eGFR for gender 'other'): a new test
# would not give it, so no order is offered for it (card and details page read the stored reason)
FOR_WANT_OF = "Cannot be computed without "
BOUND_NOTE = "value is a bound"
_BOUND_REASON = re.compile(rf"^Newest result \((\d{{4}}-\d{{2}}-\d{{2}})\) not usable: {BOUND_NOTE}\b")


def repeat_not_due(resulted: date | None, lookback_days: int | None, at: datetime) -> bool:
    """Whether a test resulted as a bound (below the lab's detection limit) on `resulted` needs no repeat yet: within
    the first half of its look-back window, a repeat would be written the same way; later it is due again (the
    card's 'stale' point). Offered orders follow this on the card and on the details page alike."""
    if resulted is None:
        return False
    return lookback_days is None or (at.date() - resulted).days < lookback_days / 2


def bound_result_day(reason: str) -> date | None:
    """The day of the newest result a stored missing reason names as a bound, else None."""
    found = _BOUND_REASON.match(reason or "")
    return date.fromisoformat(found.group(1)) if found else None


# how the mapper begins the reason of a feature with nothing readable on record (no result that could not be read):
# the details page tells from a stored reason that a rule read only when recorded had nothing to test
NOTHING_ON_RECORD = "Nothing usable on record"
CUT_SHORT = "Unknown: the EHR's search was cut short"  # results matched that were not sent: absence is not shown
UNRETRIEVED = "Could not be retrieved from the EHR"  # a prefetch key not sent, and no FHIR server to ask


@dataclass
class MissingFeature:
    """A feature the mapper could not fill, with a reason a clinician can read."""

    name: str
    reason: str
    required: bool = True
    label: str | None = None
    ignored: list[SourceRef] = field(default_factory=list)  # candidates passed over (too old, entered-in-error …)
    # the newest result, passed over because it cannot be used (a bound such as '>60', no unit, an unknown unit): a
    # value derived from older results must not stand in for it (`derived_when: newer`)
    newest_unusable: SourceRef | None = None
    # a count some of whose results could not be read: the fewest and the most it can be (a population rule that
    # holds, or fails, at both ends is decided all the same: one unreadable HbA1c cannot make two in the range)
    count_range: tuple[int, int] | None = None
    # a search the EHR did not answer in full ('the Observation search could not be obtained', '… was cut short'):
    # a check read only when recorded is then not made, and the card says so
    unread: str | None = None

    def bound(self) -> dict[str, Any] | None:
        """The newest result, when it was written as a bound that converts ('>300 mg/g'): its comparator, the bound
        in the feature's unit, its number and unit as written, and its date, as a prediction keeps it (`bounds`): a
        card note may categorise it ('>300 mg/g' is A3 whatever its value)."""
        ref = self.newest_unusable
        if ref is None or ref.limit is None:
            return None
        number, unit = ref.original_value, ref.original_unit
        written = [number, unit] if isinstance(number, (int, float)) and not isinstance(number, bool) and \
            isinstance(unit, str) and unit else None
        return {"comparator": ref.limit[0], "limit": ref.limit[1], "written": written, "date": ref.date}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "reason": self.reason, "required": self.required}
        if self.label:
            d["label"] = self.label
        if self.ignored:
            d["ignored"] = [s.to_dict() for s in self.ignored]
        return d


@dataclass
class MappingResult:
    """Outcome of mapping one patient's resources through one feature spec."""

    values: dict[str, FeatureValue] = field(default_factory=dict)
    missing: dict[str, MissingFeature] = field(default_factory=dict)
    deceased: str | None = None  # "on 2026-10-01" / "recorded as deceased" when Patient.deceased[x] says so
    # a birth date written as a year or month alone that gives two ages (youngest, oldest): the ages read from it
    # are missing, or (when mapped with `partial_birth` 'first'/'last') read from that end of it
    age_uncertain: tuple[int, int] | None = None

    @property
    def missing_required(self) -> list[MissingFeature]:
        return [m for m in self.missing.values() if m.required]

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": {k: v.to_dict() for k, v in self.values.items()},
            "missing": {k: m.to_dict() for k, m in self.missing.items()},
        }


def searches_named(keys: Iterable[str]) -> str:
    """'the MedicationRequest search', 'the Condition and Device searches': the resource types prefetch keys ask for
    ('medicationRequest-…' -> MedicationRequest)."""
    kinds = list(dict.fromkeys(k[:1].upper() + k[1:] for k in (key.split("-", 1)[0] for key in keys)))
    return f"the {' and '.join(kinds)} {'search' if len(kinds) == 1 else 'searches'}"


def searches_lacking(keys: Iterable[str]) -> str:
    """'the MedicationRequest search could not be obtained': what a "No" (its `unchecked` prefetch keys) was answered
    without (the EHR did not send that prefetch key, and there was no FHIR server to ask). The card names what was
    searched for (a key is named after the first feature that reads it, so 'Diabetes … (medicationRequest-
    hypertension-3 …)' misreads); the details page names the keys."""
    return f"{searches_named(keys)} could not be obtained"
