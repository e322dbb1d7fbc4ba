"""Which of a model's `advice` entries fits this patient: guidance that depends on the record.

Exists because a category's guidance is written for the typical patient in it, and a card that offers a statin to a
patient already taking one, or "lifestyle" alone to a diabetic adult the guideline treats whatever the estimate,
states something false. The model folder says, in its manifest, what to say instead (inference/manifest.py
`Advice`); this module only decides which entry applies, from values the record shows. The card (cards/builder.py)
and the details page (cds_hooks/details/view.py, from the stored prediction) ask the same question.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from fhir_mapping.formatting import first_sentence, lower_first, unit_label
from fhir_mapping.result import MappingResult, searches_lacking
from fhir_mapping.units import default_registry
from inference.manifest import Advice, Manifest


def pick(manifest: Manifest, category: str, known: Callable[[str], float | None],
         unchecked: Callable[[str], bool] = lambda name: False,
         written: Callable[[str], tuple[float, str] | None] = lambda name: None) -> Advice | None:
    """The first advice for this category whose conditions all hold on known values (and, for an advice with
    `unchecked`, one of those features is a default that could not be fully checked). For an advice with
    `written_in`, the first condition reads the number as the record wrote it (`written`), in that unit only."""
    for advice in manifest.advice:
        if advice.categories and category not in advice.categories:
            continue
        if advice.unchecked and not any(unchecked(name) for name in advice.unchecked):
            continue
        values = [known(c.feature) for c in advice.when]
        if advice.when and advice.written_in is not None:
            values[0] = _as_written(advice, written(advice.when[0].feature), values[0])
        if all(v is not None and c.holds(v) for c, v in zip(advice.when, values, strict=True)):
            return advice
    return None


def advice_for(manifest: Manifest, category: str, mapping: MappingResult) -> Advice | None:
    """From a call's mapping: a default answered without one of its searches is not known."""
    return pick(manifest, category, lambda name: _known(mapping, name), lambda name: _not_checked(mapping, name),
                lambda name: _written_of(mapping, name))


def _written_of(mapping: MappingResult, name: str) -> tuple[float, str] | None:
    """A measured feature's number and unit as its record wrote them (none for a default)."""
    fv = mapping.values.get(name)
    src = fv.sources[0] if fv is not None and fv.sources and not fv.defaulted else None
    return _written(src.original_value, src.original_unit) if src is not None else None


def _known(mapping: MappingResult, name: str) -> float | None:
    """A feature's value as advice and notes test it: none for a default answered without one of its searches."""
    fv = mapping.values.get(name)
    if fv is None or (fv.defaulted and fv.unchecked):
        return None
    return _number(fv.reported if fv.reported is not None else fv.value)  # a derived value as reported


def _not_checked(mapping: MappingResult, name: str) -> bool:
    fv = mapping.values.get(name)
    return fv is not None and fv.defaulted and bool(fv.unchecked)


def advice_text(advice: Advice, mapping: MappingResult, escape: Callable[[str], str] = str,
                guidance: str | None = None) -> str:
    """The advice's words, with {evidence} replaced by the records its conditions rest on ('apixaban 5 MG Oral
    Tablet'), each passed through `escape` (the card's Markdown escaping: record text is never markup), and
    {unchecked} by the labels of the features not fully checked, {guidance} by the category's own guidance (an
    advice that makes it conditional)."""
    shown = _evidence(advice.when, mapping, escape)
    # the features named, each group followed by the searches it lacked ('diabetes, on blood pressure treatment (the
    # MedicationRequest search could not be obtained)'): the card's "Assumed:" line leaves them to this line
    groups: dict[str, list[str]] = {}
    for n in advice.unchecked:
        if _not_checked(mapping, n):
            groups.setdefault(searches_lacking(mapping.values[n].unchecked), []).append(_label(mapping.values[n].label, n))
    names = [_with_aside(", ".join(labels), why) for why, labels in groups.items()]
    return _with_guidance(_with_unchecked(_with_evidence(advice.guidance, shown), names), guidance)


def _with_aside(text: str, aside: str) -> str:
    """'x (aside)', or 'x (or y; aside)' when x already ends in brackets."""
    return f"{text[:-1]}; {aside})" if text.endswith(")") else f"{text} ({aside})"


def card_notes(manifest: Manifest, mapping: MappingResult, escape: Callable[[str], str] = str) -> list[str]:
    """The manifest's `card.notes` whose conditions all hold on values the record shows, {evidence} filled (NEWS2:
    'SpO2 scored on Scale 2 …: Chronic respiratory failure with hypercapnia on record')."""
    notes = []
    for note in manifest.card.notes:
        fv = mapping.values.get(note.when[0].feature)
        if fv is None:  # the newest result may be a bound that lies wholly in the note's range ('<3 mg/g': A1)
            missing = mapping.missing.get(note.when[0].feature)
            text = _bound_note(note, missing.bound() if missing is not None else None, escape)
            if text is not None and all(
                    (v := _known(mapping, c.feature)) is not None and c.holds(v) for c in note.when[1:]):
                notes.append(_with_evidence(text, _evidence(note.when, mapping, escape)))
            continue
        src = fv.sources[0] if fv.sources and not fv.defaulted else None
        written = _written_of(mapping, note.when[0].feature)
        first = _as_written(note, written, _known(mapping, note.when[0].feature))
        if first is None or not note.when[0].holds(first) or not all(
                (v := _known(mapping, c.feature)) is not None and c.holds(v) for c in note.when[1:]):
            continue
        assert fv is not None
        shown = _written_text(written) if written is not None else fv.display or _plain(fv.value)
        text = _with_value(note.text, escape(shown), _day(fv.date) or _day(src.date if src is not None else None))
        notes.append(_with_evidence(text, _evidence(note.when, mapping, escape)))
    return notes


def _bound_note(note: Any, bound: Any, escape: Callable[[str], str] = str) -> str | None:
    """The note's text, {value} and {date} filled with the bound ('>300 mg/g' as written, or in the feature's unit
    when the unit written is not kept), when every value the bound allows meets the note's first condition: read in
    the note's `written_in` unit as written (a bound written in another unit does not match), else in the feature's
    unit. None otherwise."""
    if not isinstance(bound, Mapping):
        return None
    comparator, limit = bound.get("comparator"), _number(bound.get("limit"))
    written = _kept_written(bound.get("written"))
    if not isinstance(comparator, str) or limit is None:
        return None
    number = _as_written(note, written, limit)
    if number is None or not note.when[0].holds_for_bound(comparator, number):
        return None
    shown = f"{comparator}{_written_text(written) if written is not None else _plain(limit)}"
    return _with_value(note.text, escape(shown), _day(bound.get("date")))


def _kept_written(pair: Any) -> tuple[float, str] | None:
    """A number and unit as written, as the store keeps them ([number, unit]); None when not kept."""
    return _written(*pair) if isinstance(pair, list) and len(pair) == 2 else None


def stored_notes(manifest: Manifest, features: Mapping[str, Any],
                 bounds: Mapping[str, Any] | None = None) -> list[str]:
    """The same notes from a stored prediction's features (and the bounds of its missing ones), for the details
    page."""
    notes = []
    for note in manifest.card.notes:
        if note.when[0].feature not in features:
            text = _bound_note(note, (bounds or {}).get(note.when[0].feature))
            if text is not None and all(
                    isinstance(fv := features.get(c.feature), Mapping) and not (fv.get("defaulted")
                                                                               and _stored_unchecked(fv))
                    and (v := _number(_as_reported(fv))) is not None and c.holds(v) for c in note.when[1:]):
                notes.append(_with_evidence(text, _stored_evidence([features.get(c.feature) for c in note.when])))
            continue
        stored = [features.get(c.feature) for c in note.when]
        usable = [fv if isinstance(fv, Mapping) and not (fv.get("defaulted") and _stored_unchecked(fv)) else None
                  for fv in stored]
        first = usable[0]
        sources = [s for s in (first.get("sources") or ()) if isinstance(s, Mapping)] if first is not None else []
        written = _stored_written(first)
        value = _as_written(note, written, _number(_as_reported(first)) if first is not None else None)
        if value is None or not note.when[0].holds(value) or not all(
                fv is not None and (v := _number(_as_reported(fv))) is not None and c.holds(v)
                for c, fv in zip(note.when[1:], usable[1:], strict=True)):
            continue
        assert first is not None
        shown = _written_text(written) if written is not None else \
            first.get("display") if isinstance(first.get("display"), str) else _plain(first.get("value"))
        text = _with_value(note.text, str(shown), _day(sources[0].get("date") if sources else None))
        notes.append(_with_evidence(text, _stored_evidence(stored)))
    return notes


def _stored_written(fv: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """A stored measured value's number and unit as written (kept since sources keep them), else, for an older row,
    the value in the feature's unit; none for a default."""
    if fv is None or fv.get("defaulted"):
        return None
    sources = [s for s in (fv.get("sources") or ()) if isinstance(s, Mapping)]
    written = _kept_written(sources[0].get("written")) if sources else None
    return written if written is not None else _written(fv.get("value"), fv.get("unit"))


def _written(value: Any, unit: Any) -> tuple[float, str] | None:
    """A reading's number and unit as the record wrote them, when it wrote both."""
    number = _number(value)
    return (number, unit) if number is not None and not isinstance(value, bool) and isinstance(unit, str) and unit \
        else None


def _as_written(note: Any, written: tuple[float, str] | None, value: float | None) -> float | None:
    """The number a note's (or advice's) first condition reads: as written, in its `written_in` unit (None when the
    record wrote another); the value in the feature's unit otherwise. A unit that differs from `written_in` only by
    a power of ten (g/g for mg/g) is the same unit written another way, and its number is scaled; one that differs
    by any other factor (mg/mmol for mg/g: creatinine's molar mass) is another unit."""
    if note.written_in is None:
        return value
    if written is None or value is None:
        return None
    registry = default_registry()
    mine, wanted = registry.lookup(written[1]), registry.lookup(note.written_in)
    if mine is None or wanted is None or mine.dimension != wanted.dimension or mine.offset or wanted.offset:
        return None
    if mine.code == wanted.code:
        return written[0]
    scale = mine.factor / wanted.factor
    exponent = round(math.log10(scale)) if scale > 0 else None
    return written[0] * 10.0 ** exponent if exponent is not None and math.isclose(scale, 10.0 ** exponent) else None


def _written_text(written: tuple[float, str]) -> str:
    return f"{_plain(written[0])} {unit_label(written[1])}".strip()


def _evidence(conditions: Any, mapping: MappingResult, escape: Callable[[str], str]) -> list[str]:
    """The displays of the records the conditions' features rest on, each once."""
    shown: list[str] = []
    for cond in conditions:
        fv = mapping.values.get(cond.feature)
        for ref in fv.sources if fv is not None and not fv.defaulted else ():
            if ref.display and escape(ref.display) not in shown:
                shown.append(escape(ref.display))
    return shown


def _stored_unchecked(fv: Mapping[str, Any]) -> bool:
    """Whether a stored default could not look in all its searches: the keys it missed (kept since migration 0007),
    else, for older rows, its note ('…; could not check <keys> (…)')."""
    if fv.get("unchecked") is not None:
        return bool(fv["unchecked"])
    return "could not check " in str(fv.get("note") or "")


def _stored_evidence(stored: list[Any]) -> list[str]:
    """The records stored values rest on: each source's display (kept since the store keeps them), else the part of
    the value's display after ' — ' ('Yes — apixaban 5 MG Oral Tablet')."""
    shown: list[str] = []
    for fv in stored:
        if not isinstance(fv, Mapping) or fv.get("defaulted"):
            continue
        said = [s["display"] for s in fv.get("sources") or () if isinstance(s, Mapping) and s.get("display")]
        display = fv.get("display")
        if not said and isinstance(display, str) and " — " in display:
            said = [display.split(" — ", 1)[1].split(", recognised by", 1)[0]]
        shown.extend(str(s) for s in said if s not in shown)
    return shown


def stored_advice(manifest: Manifest, category: str, features: Mapping[str, Any],
                  labels: Mapping[str, str] | None = None, guidance: str | None = None) -> str | None:
    """The same choice from a stored prediction's features ({"value", "defaulted", "display"}), for the details
    page; a stored default whose searches were not all read is unknown, as on the card (`_known`)."""
    def not_checked(name: str) -> bool:
        fv = features.get(name)
        return isinstance(fv, Mapping) and bool(fv.get("defaulted")) and _stored_unchecked(fv)

    def known(name: str) -> float | None:
        fv = features.get(name)
        return _number(_as_reported(fv)) if isinstance(fv, Mapping) and not not_checked(name) else None
    def written(name: str) -> tuple[float, str] | None:
        fv = features.get(name)
        return _stored_written(fv) if isinstance(fv, Mapping) and not not_checked(name) else None
    advice = pick(manifest, category, known, not_checked, written)
    if advice is None:
        return None
    shown = _stored_evidence([features.get(cond.feature) for cond in advice.when])
    names = [_label((labels or {}).get(n), n) for n in advice.unchecked if not_checked(n)]
    return _with_guidance(_with_unchecked(_with_evidence(advice.guidance, shown), names), guidance)


def _as_reported(fv: Mapping[str, Any]) -> Any:
    """A stored value as the card tested it: a derived value as reported (kept since `reported_decimals`)."""
    return fv["reported"] if fv.get("reported") is not None else fv.get("value")


def _label(label: Any, name: str) -> str:
    return lower_first(label if isinstance(label, str) and label else name)


def _with_guidance(text: str, guidance: str | None) -> str:
    """{guidance}: the category's guidance as the card's action line gives it (its first sentence when long)."""
    said = " ".join((guidance or "").split())
    return text.replace("{guidance}", said if len(said) <= 140 else first_sentence(said))


def _with_unchecked(text: str, names: list[str]) -> str:
    return text.replace("{unchecked}", ", ".join(names) or "some inputs")


def _with_evidence(text: str, shown: list[str]) -> str:
    return text.replace("{evidence}", "; ".join(shown[:2]) or "on record")


def _with_value(text: str, value: str, date: str | None) -> str:
    return text.replace("{value}", value).replace("{date}", date or "date not recorded")


def _day(written: Any) -> str | None:
    return written[:10] if isinstance(written, str) and written else None


def _plain(value: Any) -> str:
    number = _number(value)
    return "" if number is None else f"{number:g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None
