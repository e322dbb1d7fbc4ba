"""The lookup-table memo used to generate training patients changes no byte of the output, and is actually used."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from synthetic import lookup_memo  # noqa: E402
from synthetic.bundle_tools import serialise  # noqa: E402
from synthetic.generate_patients import PatientFactory, Settings  # noqa: E402

SETTINGS = Settings(seed=20261130, reference_date=date(2025, 1, 1), min_age=35, max_age=85, state=None,
                    history_years=None, exclude_types=("Claim", "ExplanationOfBenefit"), validate=False)


def _living(factory: PatientFactory, start: int) -> tuple[int, bytes]:
    for index in range(start, start + 20):
        bundle = factory.bundle(index)
        if bundle is not None:
            return index, serialise(bundle)
    raise AssertionError("no living patient in 20 indices")


def test_bundles_with_and_without_the_memo_are_byte_identical() -> None:
    factory = PatientFactory(SETTINGS)  # installs the memo
    try:
        before = dict(lookup_memo.counts)
        index, with_memo = _living(factory, 40)
        assert lookup_memo.counts["memo"] > before["memo"]  # the memo answered lookups for this patient
        lookup_memo.uninstall()
        scans_before = dict(lookup_memo.counts)
        plain = factory.bundle(index)
        assert plain is not None
        assert lookup_memo.counts == scans_before  # the engine's own scan ran, not the memo
        assert serialise(plain) == with_memo
    finally:
        lookup_memo.install()


def test_install_is_idempotent() -> None:
    lookup_memo.install()
    from synthea.engine.transition import LookupTableTransition  # type: ignore[import-untyped]

    wrapped = LookupTableTransition._matching_row
    lookup_memo.install()
    assert LookupTableTransition._matching_row is wrapped
