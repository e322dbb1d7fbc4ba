"""How numbers and units read wherever a person reads them: cards, refusals, model cards, reports.

One module so that a clinician never meets raw UCUM ("mL/min/{1.73_m2}", "mm[Hg]"), float noise
("0.0038208961486816406") or a summary cut in the middle of a word or unit.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

# UCUM codes as a clinician writes them
_UNITS = {
    "mm[Hg]": "mmHg", "Cel": "°C", "[degF]": "°F", "mL/min/{1.73_m2}": "mL/min/1.73 m²", "kg/m2": "kg/m²",
    "/min": "/min", "a": "years", "%": "%", "mg/dL": "mg/dL", "mmol/L": "mmol/L", "umol/L": "µmol/L", "mg/g": "mg/g",
    "mg/mmol": "mg/mmol", "L/min": "L/min", "kg": "kg", "cm": "cm", "1": "", "{score}": "", "d": "days",
}


def unit_label(unit: str | None) -> str:
    """A UCUM code as people write it: braces and brackets gone, superscripts where they belong."""
    if not unit:
        return ""
    if unit in _UNITS:
        return _UNITS[unit]
    text = unit.replace("[", "").replace("]", "")
    while "{" in text and "}" in text:  # UCUM annotations are comments: drop them
        start = text.index("{")
        end = text.index("}", start)
        text = (text[:start] + text[end + 1:]).strip()
    return text.replace("m2", "m²").replace("/ ", "/")


def number(value: float, decimals: int = 1) -> str:
    """At most `decimals` decimals, trailing zeros dropped: 99.15 -> '99.2', 40.0 -> '40', 0.05 -> '0.05' (decimals=2)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    text = f"{value:.{max(decimals, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: float, unit: str | None, decimals: int = 1) -> str:
    """'145 mmHg', '1.2 mg/dL', '37 °C', '62 years'."""
    label = unit_label(unit)
    shown = number(value, decimals)
    return f"{shown} {label}" if label else shown


def quantity_inside(value: float, unit: str | None, decimals: int, low: float, high: float) -> str:
    """`quantity(value, unit, decimals)`, with up to three more decimals when fewer would show a value inside
    [low, high] on or past its edge: KFRE scores an eGFR of 59.99 (validated to 59.999), never shown as '60'."""
    text = quantity(value, unit, decimals)
    if not low <= value <= high:
        return text
    for more in range(decimals, decimals + 4):
        text = quantity(value, unit, more)
        if low <= float(number(value, more)) <= high:
            return text
    return text


def kept_inside(text: str, value: float, unit: str | None, low: float, high: float) -> str:
    """`text` (a value as shown), unless it shows a value inside [low, high] on or past its edge ('60' for 59.99):
    then the value with the decimals that keep it inside."""
    shown = re.match(r"[−-]?\d+(?:\.\d+)?", text)
    if shown is None or not low <= value <= high or low <= float(shown.group(0).replace("−", "-")) <= high:
        return text
    return quantity_inside(value, unit, 1, low, high)


def value_range(low: float, high: float, unit: str | None, decimals: int = 1) -> str:
    """'10–60 mL/min/1.73 m²', '40–79 years'."""
    label = unit_label(unit)
    text = f"{number(low, decimals)}–{number(high, decimals)}"
    return f"{text} {label}" if label else text


def rounded(value: float, decimals: int) -> Decimal:
    """`value` exactly as `decimals` digits show it (Python's fixed-point rounding, as every card number is
    written), so what a person reads can be compared with a threshold free of binary noise: 59.58 -> 60."""
    return Decimal(f"{value:.{max(decimals, 0)}f}")


def lower_first(text: str) -> str:
    """'Date of birth …' -> 'date of birth …' within a sentence; acronyms ('SpO2', 'ACVPU') stay as written."""
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def unmeasured(passed_over: bool) -> str:
    """How a quantity input left at its default reads (card and details page): "not recorded" only when nothing was
    on record; results that were passed over (a bound such as '<3 mg/g', too old) were recorded, just not usable."""
    return "no usable value" if passed_over else "not recorded"


def outside_range(value: float, low: float, high: float, unit: str | None, decimals: int,
                  bound: bool = False) -> tuple[str, str]:
    """A value outside [low, high] and that range as text, with as many decimals as it takes (from `decimals` up) for
    the value to read outside the range as shown: creatinine 0.05 against 0.1–20 reads '0.05 mg/dL', never
    '0.1 mg/dL'; eGFR 60 against 10–59.999 shows the bound as 59.999, not 60. `bound`: the value is a result's
    limit ('<0.1', '>60'), outside by its comparator, which may sit on the range's edge: quoted as written."""
    places = max(decimals, 0)
    while not bound and math.isfinite(value) and places < 20 and (
            Decimal(number(low, places)) <= Decimal(number(value, places)) <= Decimal(number(high, places))):
        places += 1
    shown = places
    # and never misquoted: an SpO2 of 0.97 (a fraction written without its unit) is '0.97 %', not '1 %'
    while math.isfinite(value) and value and shown < 20 and \
            abs(float(Decimal(number(value, shown))) - value) > 0.01 * abs(value):
        shown += 1
    return quantity(value, unit, shown), value_range(low, high, unit, places)


def clip_words(text: str, limit: int) -> str:
    """Text of at most `limit` characters that never ends inside a word or unit: cut at a space and add '…'."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:—-(") + "…"


def first_sentence(text: str | None) -> str | None:
    """The first sentence (for a one-line recommended action on a card)."""
    if not text:
        return None
    text = " ".join(text.split())
    for i, ch in enumerate(text):
        if ch != "." or i < 20:
            continue
        if i + 1 == len(text):
            return text
        rest = text[i + 1:]
        word = text[: i + 1].rsplit(" ", 1)[-1].lstrip("(").lower()
        if rest.startswith(" ") and rest[1:2].isupper() and word not in ("e.g.", "i.e.", "etc.", "vs.", "approx."):
            return text[: i + 1]
    return text


_SYSTEM_NAMES = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
}


def system_name(system: str) -> str:
    """A code system as a clinician names it ("SNOMED CT"); a system without a common name as written."""
    return _SYSTEM_NAMES.get(system, system)


def first_clause(text: str, *, at_parenthesis: bool = False) -> str:
    """The text up to its first '; ' (and, with `at_parenthesis`, its first ' ('), never inside a quoted passage: a
    record's own words quoted in a reason ('"ESRD on HD; MWF" names dialysis, …') may hold either."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and (text.startswith("; ", i) or (at_parenthesis and text.startswith(" (", i))):
            return text[:i]
    return text
