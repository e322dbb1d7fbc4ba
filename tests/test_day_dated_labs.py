"""Lab results written as a date alone, beside timed ones, read where the record is (its time zone): which result of
a day is the newest, how many specimens a count holds, and which day a value is shown and compared on; and when
two whole numbers of one moment are one reading.

A FHIR R4 date carries no zone: a result dated "2026-12-04" is that day where the record was made. Read at
midnight UTC, a day in Sydney (+11:00) or New York (-05:00) lands on the wrong side of a timed result of the same
day. Mapper-level, with a fixed hook time, so the zones give the same answer on any day the suite runs.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone


import itertools
from pathlib import Path
from typing import Any

import fhirfactory as F
from fhir_mapping.index import ResourceIndex
from fhir_mapping.mapper import map_features
from fhir_mapping.result import MappingResult
from fhir_mapping.spec import load_feature_spec
from fhir_mapping.valuesets import ValueSetLibrary

MODELS = Path(__file__).resolve().parent.parent / "models"
_ids = itertools.count(1)


def run(model: str, resources: list[dict[str, Any]], at: datetime) -> MappingResult:
    folder = MODELS / model / "1.0.0"
    lib = ValueSetLibrary([folder / "valuesets"]) if (folder / "valuesets").exists() else ValueSetLibrary()
    spec = load_feature_spec(folder / "features.yaml", lib)
    index = ResourceIndex.from_prefetch({"all": F.bundle(resources, "searchset")})
    return map_features(spec, index, at=at, valuesets=lib, patient_id="p1")


def obs(code: str, value: Any, unit: str, when: str, id_: str | None = None) -> dict[str, Any]:
    o = F.quantity_obs(code, value, unit)
    o["effectiveDateTime"] = when
    o["id"] = id_ or f"day-obs-{next(_ids)}"
    return o


MAN = F.patient("p1", 60, "male")


def test_an_out_of_window_result_never_hides_a_day_dated_one_inside_it() -> None:
    """Record in Sydney (+11:00), creatinine look-back 365 days, hook at 2026-12-07T20:00Z (window from
    2025-12-07T20:00Z). A creatinine of 1.2 mg/dL dated '2025-12-08' is inside the window by the mapper's own test
    (`_read`), and alone it gives the creatinine. Add an older creatinine of the same 1.2 mg/dL at 2025-12-07T19:00Z
    (written 06:00+11:00), outside the window, must not change that.

    The rule: the window test and the stop-reading test use the same moment for a date alone (or do not break on a key
    that can be earlier than the value's window moment); the creatinine is 1.2 mg/dL with or without the old one."""
    at = datetime(2026, 12, 7, 20, 0, tzinfo=timezone.utc)
    inside = obs("2160-0", 1.2, "mg/dL", "2025-12-08", "cr-day")
    outside = obs("2160-0", 1.2, "mg/dL", "2025-12-08T06:00:00+11:00", "cr-old")
    alone = run("egfr-ckd-epi-2021", [MAN, inside, obs("2093-3", 200, "mg/dL", "2026-01-01T09:00:00+11:00")], at)
    assert alone.values["creatinine"].value == 1.2, alone.missing.get("creatinine")
    both = run("egfr-ckd-epi-2021", [MAN, inside, outside], at)
    assert "creatinine" in both.values, both.missing["creatinine"].reason
    assert both.values["creatinine"].value == 1.2


def test_a_day_dated_result_of_the_same_local_day_is_a_rival_of_one_written_in_utc() -> None:
    """Record in Sydney (+11:00, from its other times). Creatinine 1.0 mg/dL at 2026-12-03T22:00Z (a lab writing
    UTC: 09:00 on 4 December in Sydney) and 2.0 mg/dL dated '2026-12-04' (Inker 2021, man of 60: eGFR 86, G2, or
    38, G3b). The day-dated one may be the later of the two (feature-spec: 'when the two disagree either may be the
    later, and the input is missing').

    The rule: compare the timed result's local day in `self.zone`
    (2026-12-04): the creatinine is missing, 'Which reading is the newest is not known'."""
    at = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    record = [MAN, obs("2160-0", 1.0, "mg/dL", "2026-06-01T09:00:00+11:00", "old"),
              obs("2160-0", 1.0, "mg/dL", "2026-12-03T22:00:00Z", "timed-utc"),
              obs("2160-0", 2.0, "mg/dL", "2026-12-04", "day-dated")]
    result = run("egfr-ckd-epi-2021", record, at)
    assert "creatinine" not in result.values, result.values["creatinine"]
    assert "Which reading is the newest is not known" in result.missing["creatinine"].reason


def test_a_day_dated_result_of_the_previous_local_day_is_older_than_a_timed_one() -> None:
    """Same record in Sydney: creatinine 1.0 mg/dL at 2026-12-03T22:00Z (09:00 on 4 December in Sydney) and 2.0
    mg/dL dated '2026-12-03'. In the record's zone the date alone is the whole of 3 December, which ended before 09:00
    on the 4th: the timed result is certainly the newer and stands (eGFR 86, G2).

    The rule: compare
    local days in the record's zone, as `_sort_key` does; the creatinine is 1.0 mg/dL."""
    at = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    record = [MAN, obs("2160-0", 1.0, "mg/dL", "2026-06-01T09:00:00+11:00", "old"),
              obs("2160-0", 1.0, "mg/dL", "2026-12-03T22:00:00Z", "timed-utc"),
              obs("2160-0", 2.0, "mg/dL", "2026-12-03", "day-dated")]
    result = run("egfr-ckd-epi-2021", record, at)
    assert "creatinine" in result.values, result.missing["creatinine"].reason
    assert result.values["creatinine"].value == 1.0


def test_a_reported_egfr_dated_by_the_day_west_of_utc_keeps_its_own_day() -> None:
    """Record in New York (-05:00). KFRE/PREVENT `egfr` (derived_when: newer): a reported eGFR of 80 dated
    '2026-12-05' and a serum creatinine of 2.0 mg/dL at 08:00-05:00 on 2026-12-05 (the same local day). The spec
    (features.yaml, feature-spec.md): 'a creatinine from a later day than the reported eGFR replaces it, on the same
    day the reported eGFR stands'.

    The rule: a date alone keeps
    the date as written (the card shows a date alone as written, `_local_text`); the reported eGFR 80 of 2026-12-05
    stands."""
    at = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    record = [MAN, obs("98979-8", 80, "mL/min/{1.73_m2}", "2026-12-05", "egfr-day"),
              obs("2160-0", 2.0, "mg/dL", "2026-12-05T08:00:00-05:00", "cr-timed")]
    result = run("kfre-4var", record, at)
    egfr = result.values["egfr"]
    assert egfr.value == 80, egfr.note
    assert egfr.date == "2026-12-05", egfr.date


AT = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)  # counts


def _t2d_record(ifcc_date: str) -> list[dict]:
    # the record's zone is Sydney (+11:00), read from its times; the lab writes its timed results in UTC
    return [F.patient("p1", 50, "male"), obs("2345-7", 90, "mg/dL", "2026-06-01T09:00:00+11:00", "glu"),
            obs("4548-4", 7.0, "%", "2026-11-03T22:00:00Z", "pct"),
            obs("59261-8", 53, "mmol/mol", ifcc_date, "ifcc")]


def test_a_day_dated_copy_of_the_same_local_day_may_be_the_same_specimen() -> None:
    """t2d-onset-5y `diabetes_confirmed_by_tests` (ADA 2025: two results in the diabetes range confirm diabetes; the
    population rule max 1 refuses with 'two results in the diabetes range are on record'). HbA1c 7.0 % at
    2026-11-03T22:00Z (09:00 on 4 November in Sydney, the record's zone) and its IFCC row, 53 mmol/mol, dated
    '2026-11-04'. A day-dated copy beside a timed result of its day 'may be the specimen of a
    timed one of its day': the count is 1 or 2 and diabetes can be neither confirmed nor ruled out.

    The rule:     the timed result's local day in the record's zone; count_range (1, 2)."""
    result = run("t2d-onset-5y", _t2d_record("2026-11-04"), AT)
    missing = result.missing.get("diabetes_confirmed_by_tests")
    assert missing is not None and missing.count_range == (1, 2), result.values.get("diabetes_confirmed_by_tests")


def test_a_day_dated_result_of_an_earlier_local_day_is_another_specimen() -> None:
    """Same record: HbA1c 7.0 % at 2026-11-03T22:00Z (4 November in Sydney) and 53 mmol/mol dated '2026-11-03'
    (3 November in Sydney: a different day, so a different specimen). Two results of 6.5 % or more are on record and
    diabetes is confirmed (ADA 2025).

    The rule: local days; count 2."""
    result = run("t2d-onset-5y", _t2d_record("2026-11-03"), AT)
    assert "diabetes_confirmed_by_tests" in result.values, result.missing["diabetes_confirmed_by_tests"].reason
    assert result.values["diabetes_confirmed_by_tests"].value == 2


def test_two_whole_number_creatinines_of_one_moment_never_depend_on_the_bundle_order() -> None:
    """Two serum creatinines charted for the same moment, written as JSON integers 1 and 2 mg/dL (FHIR decimals are
    often serialised without a trailing '.0'). Inker 2021, man of 60: eGFR 86 (G2) or 38 (G3b). The feature spec:
    'Two results of one moment ... that disagree ... leave the input missing, whichever the bundle lists first'.

    The rule: two same-moment values that give different numbers never depend on the bundle order: missing ('Two
    results charted for the same moment disagree'); a whole number's half step is at most 2.5 % of it."""
    a = obs("2160-0", 1, "mg/dL", "2026-12-04T09:00:00Z", "cr-a")
    b = obs("2160-0", 2, "mg/dL", "2026-12-04T09:00:00Z", "cr-b")
    got = []
    for x, y in ((a, b), (b, a)):
        result = run("egfr-ckd-epi-2021", [F.patient("p1", 60, "male"), copy.deepcopy(x), copy.deepcopy(y)], AT)
        got.append(result.values["creatinine"].value if "creatinine" in result.values else None)
    assert got[0] == got[1], f"creatinine by bundle order: {got}"


def _unitless(code: str, value: float, when: str, id_: str) -> dict[str, Any]:
    o = obs(code, value, "mg/dL", when, id_)
    o["valueQuantity"] = {"value": value}
    return o


def test_an_unusable_day_dated_creatinine_west_of_utc_is_of_its_own_day_against_a_reported_egfr() -> None:
    """Record in New York (-05:00). KFRE `egfr` (derived_when: newer): a reported eGFR of 80 at 09:00-05:00 on
    2026-12-05, and a serum creatinine written without a unit dated '2026-12-06'. The creatinine is of the later
    local day, so the eGFR it would give is newer than the reported one and cannot be computed: the feature is
    missing, naming the creatinine (feature-spec.md: 'when that side is the newer one the feature is missing').
    Read at midnight UTC, '2026-12-06' is 19:00 on 5 December in New York, the same day as the reported eGFR, and
    the reported 80 would stand in for a newer result."""
    record = [MAN, obs("98979-8", 80, "mL/min/{1.73_m2}", "2026-12-05T09:00:00-05:00", "egfr-timed"),
              _unitless("2160-0", 2.0, "2026-12-06", "cr-day-nounit")]
    result = run("kfre-4var", record, AT)
    assert "egfr" not in result.values, result.values["egfr"]
    assert "2026-12-06" in result.missing["egfr"].reason, result.missing["egfr"].reason


def test_the_reason_names_a_day_dated_unusable_result_by_the_day_written() -> None:
    """Record in New York (-05:00, from a timed cholesterol). The only creatinine is written without a unit and
    dated '2026-12-06': the eGFR card's reason says 'Newest result (2026-12-06) not usable', the day as written,
    not 5 December (its midnight UTC in New York)."""
    record = [MAN, obs("2093-3", 200, "mg/dL", "2026-11-01T09:00:00-05:00", "chol"),
              _unitless("2160-0", 1.0, "2026-12-06", "cr-only")]
    result = run("egfr-ckd-epi-2021", record, AT)
    reason = result.missing["creatinine"].reason
    assert "(2026-12-06)" in reason and "2026-12-05" not in reason, reason


def test_the_newest_passed_over_result_is_chosen_by_its_day_where_the_record_is() -> None:
    """Record in New York (-05:00). Two preliminary HbA1c results (passed over): 6.0 % at 20:00 on 5 December and
    6.1 % dated '2026-12-06'. Any moment of 6 December in New York is later than 20:00 on the 5th, so the newest
    passed over is that of the 6th (read at midnight UTC it would be 19:00 on the 5th, an hour earlier)."""
    at = datetime(2026, 12, 7, 20, 0, tzinfo=timezone.utc)
    timed = obs("4548-4", 6.0, "%", "2026-12-05T20:00:00-05:00", "a1c-timed")
    day = obs("4548-4", 6.1, "%", "2026-12-06", "a1c-day")
    timed["status"] = day["status"] = "preliminary"
    chol = obs("2093-3", 200, "mg/dL", "2026-11-01T09:00:00-05:00", "chol-ny")
    result = run("prevent-full", [F.patient("p1", 60, "male"), timed, day, chol], at)
    note = result.values["hba1c"].note or ""
    assert "of 2026-12-06" in note, note
