"""Memoise the Synthea engine's lookup-table row matching, without changing a single output byte.

Why: generating a patient spends about a third of its time in ``LookupTableTransition._matching_row``, which scans a
table of up to ~500 rows on every lookup, every timestep. The row it returns depends only on what the table's selector
columns read from the patient: whole-year age, the gender, and the patient attributes the table names (tables with a
``time`` column read the clock as well, and are left alone). So the first row matching those values can be cached per
(table, target columns, those values); the cached row is the very same dict object the scan would have returned.

``install()`` wraps the engine's method once per process; tests/test_lookup_memo.py checks that bundles generated with
and without it are byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

_MISSING = object()
_original: Callable[..., dict[str, str] | None] | None = None
#: Lookups answered from the memo and by a scan, since install (tests read it to see the memo is used).
counts = {"memo": 0, "scan": 0}


def _selector_plan(compiled: list[tuple]) -> tuple[bool, bool, tuple[tuple[str, str], ...]] | None:
    """(reads age, reads gender, attribute columns) for a compiled table; None when a row reads the clock."""
    from synthea.engine import transition  # type: ignore[import-untyped]

    reads_age = reads_gender = False
    columns: dict[tuple[str, str], None] = {}
    for selectors, _row in compiled:
        for kind, column, key, *_rest in selectors:
            if kind == transition._TIME:
                return None
            if kind == transition._AGE:
                reads_age = True
            elif kind == transition._GENDER:
                reads_gender = True
            elif kind == transition._ATTRIBUTE:
                columns[(column, key)] = None
    return reads_age, reads_gender, tuple(columns)


def _attribute(attributes: dict[str, Any], column: str, key: str) -> object:
    """What the engine compares for an attribute column: the normalised text, or a marker when absent."""
    actual = attributes.get(column)
    if actual is None:
        actual = attributes.get(key)
    if actual is None:
        return _MISSING
    return str(actual).strip().lower()


def install() -> None:
    """Wrap ``LookupTableTransition._matching_row`` with the memo (idempotent)."""
    global _original
    if _original is not None:
        return
    from synthea.engine.transition import LookupTableTransition  # type: ignore[import-untyped]

    original: Callable[..., dict[str, str] | None] = LookupTableTransition._matching_row
    _original = original
    plans: dict[tuple[str, frozenset[str]], tuple[bool, bool, tuple[tuple[str, str], ...]] | None] = {}
    rows_by_key: dict[tuple[Any, ...], dict[str, str] | None] = {}

    def matching_row(self: Any, name: str, rows: list[dict[str, str]], person: Any, time: datetime,
                     targets: set[str]) -> dict[str, str] | None:
        table = (name, frozenset(targets))
        if table not in plans:
            plans[table] = _selector_plan(type(self)._compiled(name, rows, targets))
        plan = plans[table]
        if plan is None:
            counts["scan"] += 1
            return original(self, name, rows, person, time, targets)
        reads_age, reads_gender, columns = plan
        attributes = person.attributes
        key = (
            table,
            person.age_in_years(time) if reads_age else None,
            attributes.get("gender", "") if reads_gender else None,
            tuple(_attribute(attributes, column, low) for column, low in columns),
        )
        try:
            row = rows_by_key[key]
            counts["memo"] += 1
            return row
        except KeyError:
            counts["scan"] += 1
            row = original(self, name, rows, person, time, targets)
            rows_by_key[key] = row
            return row

    LookupTableTransition._matching_row = matching_row


def uninstall() -> None:
    """Put the engine's own method back (tests compare output with and without the memo)."""
    global _original
    if _original is None:
        return
    from synthea.engine.transition import LookupTableTransition  # type: ignore[import-untyped]

    LookupTableTransition._matching_row = _original
    _original = None
