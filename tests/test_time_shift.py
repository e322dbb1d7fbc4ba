"""Moving a record in time (`cds_hooks.time_shift`, used by the preview and `cds-onnx invoke --shift-to-today`)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_hooks.preview_examples import example_bundle, list_examples
from cds_hooks.time_shift import (
    newest_clinical_date,
    newest_clinical_instant,
    shift_date,
    shift_days,
    shift_to_today,
)

SYNTHEA = Path(__file__).resolve().parent / "fixtures" / "synthea"
FIXTURES = sorted(p.name for p in SYNTHEA.glob("patient-*.json"))
TODAY = date(2026, 3, 15)
FULL = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


def load(name: str) -> dict[str, Any]:
    return json.loads((SYNTHEA / name).read_text())


def patient(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def age_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(v, k)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def obs(when: Any, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "status": "final", "effectiveDateTime": when, **extra}


def bundle_of(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


@pytest.mark.parametrize("name", FIXTURES)
def test_the_newest_clinical_entry_is_today_and_every_date_moves_by_the_same_days(name: str) -> None:
    original = load(name)
    before = copy.deepcopy(original)
    shifted, days = shift_to_today(original, TODAY)
    assert original == before  # the input is never modified
    assert newest_clinical_date(shifted) == TODAY
    assert days == (TODAY - newest_clinical_date(original)).days  # type: ignore[operator]
    pairs = list(zip(strings(original), strings(shifted), strict=True))
    moved = 0
    for (key, old), (_, new) in pairs:
        m_old, m_new = FULL.match(old), FULL.match(new)
        if m_old and key not in ("id", "reference", "fullUrl", "value", "display", "text"):
            assert m_new, (key, old, new)
            assert (date.fromisoformat(m_new[1]) - date.fromisoformat(m_old[1])).days == days, (key, old, new)
            assert m_new[2] == m_old[2], (key, old, new)  # time of day and offset exactly as written
            moved += 1
        else:
            assert new == old, (key, old, new)
    assert moved > 100


@pytest.mark.parametrize("name", FIXTURES)
def test_ages_are_kept(name: str) -> None:
    original = load(name)
    shifted, days = shift_to_today(original, TODAY)
    birth, birth_after = (date.fromisoformat(patient(b)["birthDate"]) for b in (original, shifted))
    assert (birth_after - birth).days == days
    newest = newest_clinical_date(original)
    assert newest is not None
    assert (TODAY - birth_after).days == (newest - birth).days  # age in days today = age at the newest entry
    assert age_years(birth_after, TODAY) == age_years(birth, newest)
    index = {p["file"]: p for p in json.loads((SYNTHEA / "index.json").read_text())["patients"]}
    assert abs(age_years(birth_after, TODAY) - index[name]["age"]) <= 1  # the index's age: when it was generated


@pytest.mark.parametrize(("written", "days", "expected"), [
    ("2024-07-13T13:09:47.463761+00:00", 10, "2024-07-23T13:09:47.463761+00:00"),
    ("2024-03-09T01:30:00-05:00", 1, "2024-03-10T01:30:00-05:00"),  # across a DST change: offset as written
    ("2024-12-31T23:59:59Z", 1, "2025-01-01T23:59:59Z"),
    ("2024-01-01T00:00:00+14:00", -1, "2023-12-31T00:00:00+14:00"),
    ("2024-02-29", 365, "2025-02-28"),
    ("2023-02-28", 1, "2023-03-01"),
    ("2019-06-01T08:30", 3, "2019-06-04T08:30"),
    ("2024-05-01T10:00:00.5+05:30", -31, "2024-03-31T10:00:00.5+05:30"),
])
def test_time_of_day_and_offsets_are_kept(written: str, days: int, expected: str) -> None:
    assert shift_date(written, days) == expected


@pytest.mark.parametrize(("written", "days", "expected"), [
    ("2019", 100, "2019"),      # 2 July + 100 days is still 2019
    ("2019", 200, "2020"),      # ... + 200 days is 2020
    ("2019", -190, "2018"),
    ("2019", 0, "2019"),
    ("2019-04", 20, "2019-05"),  # 15 April + 20 days
    ("2019-04", 10, "2019-04"),
    ("2019-04", -20, "2019-03"),
    ("2019-12", 30, "2020-01"),
    ("2019-04", 3650, "2029-04"),
])
def test_partial_dates_keep_their_precision(written: str, days: int, expected: str) -> None:
    assert shift_date(written, days) == expected


def test_partial_dates_move_only_where_the_element_is_a_date() -> None:
    pat = {"resourceType": "Patient", "id": "p", "birthDate": "1960",
           "identifier": [{"system": "urn:x", "value": "2019-04-01"}],
           "extension": [{"url": "urn:x", "valueDate": "2019-04"}, {"url": "urn:y", "valueString": "2019-04-01"},
                         {"url": "urn:z", "valueInteger": 2019}]}
    cond = {"resourceType": "Condition", "id": "c", "onsetDateTime": "2019", "recordedDate": "2019-04",
            "code": {"coding": [{"system": "urn:codes", "code": "2019"}], "text": "2019-04-01"},
            "subject": {"reference": "Patient/2019-04-01"}, "note": [{"text": "seen 2019-04-01", "time": "2019-04"}]}
    out = shift_days(bundle_of(pat, cond), 400)
    p, c = (e["resource"] for e in out["entry"])
    assert p["birthDate"] == "1961" and p["extension"][0]["valueDate"] == "2020-05"
    assert p["identifier"][0]["value"] == "2019-04-01"  # identifiers, strings, codes, references, text: never dates
    assert p["extension"][1]["valueString"] == "2019-04-01" and p["extension"][2]["valueInteger"] == 2019
    assert c["onsetDateTime"] == "2020" and c["recordedDate"] == "2020-05"
    assert c["code"] == cond["code"] and c["subject"] == cond["subject"] and c["note"][0]["text"] == "seen 2019-04-01"
    assert c["note"][0]["time"] == "2019-04"  # "time" is not a date element by name: a partial value there stays


def test_impossible_or_foreign_values_are_left_alone() -> None:
    for value in ("2019-02-30", "2019-13", "20190401", "2019-04-01 10:00", "T10:00", "abc", ""):
        assert shift_date(value, 1) == value
    assert shift_date("9999-12-31", 1) == "9999-12-31"  # beyond the calendar: unchanged, not an error
    assert shift_date("2019", 200, partial=False) == "2019"


def test_the_newest_entry_is_clinical_and_nothing_moves_past_today() -> None:
    pat = {"resourceType": "Patient", "id": "p", "birthDate": "2025-01-01"}  # not an entry
    plan = {"resourceType": "CarePlan", "id": "cp", "period": {"start": "2020-01-01", "end": "2030-01-01"}}
    goal = {"resourceType": "Goal", "id": "g", "target": [{"dueDate": "2031-01-01"}]}
    claim = {"resourceType": "Claim", "id": "cl", "created": "2029-01-01"}
    enc = {"resourceType": "Encounter", "id": "e", "period": {"start": "2020-05-01T10:00:00Z",
                                                              "end": "2020-05-03T10:00:00Z"}}
    rx = {"resourceType": "MedicationRequest", "id": "m", "authoredOn": "2020-04-01",
          "dispenseRequest": {"validityPeriod": {"end": "2027-01-01"}}}
    record = bundle_of(pat, obs("2020-02-01T08:00:00+01:00"), plan, goal, claim, enc, rx)
    assert newest_clinical_date(record) == date(2020, 5, 3)  # the encounter's end
    shifted, days = shift_to_today(record, TODAY)
    assert days == (TODAY - date(2020, 5, 3)).days
    resources = {e["resource"]["id"]: e["resource"] for e in shifted["entry"]}
    assert resources["e"]["period"]["end"] == f"{TODAY.isoformat()}T10:00:00Z"
    assert resources["cp"]["period"]["end"] > TODAY.isoformat()  # plans still point past today, moved alike
    # a partial date counts as the last day it covers: the newest entry lands on today, not in the future
    partial = bundle_of(obs("2020-03"), obs("2020-02-10"))
    assert newest_clinical_date(partial) == date(2020, 3, 31)
    out, _ = shift_to_today(partial, TODAY)
    assert all(e["resource"]["effectiveDateTime"] <= TODAY.isoformat() for e in out["entry"])


def test_a_record_without_clinical_dates_is_not_moved() -> None:
    record = bundle_of({"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"})
    assert shift_to_today(record, TODAY) == (record, 0)
    assert newest_clinical_date({"resourceType": "Bundle", "type": "collection"}) is None
    assert newest_clinical_date(obs("2021-01-01")) == date(2021, 1, 1)  # a single resource is a record too


def test_the_preview_uses_the_same_shift() -> None:
    now = datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    synthetic = [e["id"] for e in list_examples() if e["id"].startswith("synthea-")]
    assert synthetic
    for example in synthetic:
        shown = example_bundle(example, now)
        assert shown is not None
        newest = newest_clinical_date(shown)
        assert newest is not None and (now.date() - newest).days in (0, 1)
        latest = newest_clinical_instant(shown)
        assert latest is None or latest <= now  # no timed entry in the preview's future
        name = next(p for p in FIXTURES if p.split("-")[1] == example.split("-")[1])
        assert shown == shift_to_today(load(name), now=now)[0]


# A record whose newest entry was timed 23:50 on 1 March 2020 (UTC), and an older one at 10:00 on 1 February.
LATE = bundle_of(obs("2020-02-01T10:00:00Z"), {**obs("2020-03-01T23:50:00Z"), "id": "late"})


@pytest.mark.parametrize("now, lands_on", [
    (datetime(2026, 3, 15, 23, 55, tzinfo=UTC), date(2026, 3, 15)),  # late in the day: the entry is 5 min old
    (datetime(2026, 3, 15, 0, 5, tzinfo=UTC), date(2026, 3, 14)),  # just after midnight: 23:50 today is to come
    (datetime(2026, 3, 15, 23, 50, tzinfo=UTC), date(2026, 3, 15)),  # the very moment is not in the future
])
def test_no_timed_entry_is_moved_past_the_moment_of_the_call(now: datetime, lands_on: date) -> None:
    shifted, days = shift_to_today(LATE, now=now)
    assert days == (lands_on - date(2020, 3, 1)).days
    late = next(e["resource"] for e in shifted["entry"] if e["resource"]["id"] == "late")
    assert late["effectiveDateTime"] == f"{lands_on.isoformat()}T23:50:00Z"
    assert datetime.fromisoformat(late["effectiveDateTime"]) <= now


def test_the_time_check_reads_the_offset_as_written() -> None:
    """18:30 at -05:00 is 23:30 UTC: at 20:00 UTC it is still to come; an untimed date is never in the future."""
    record = bundle_of(obs("2020-03-01T18:30:00-05:00"))
    now = datetime(2026, 3, 15, 20, 0, tzinfo=UTC)
    assert shift_to_today(record, now=now)[1] == (date(2026, 3, 14) - date(2020, 3, 1)).days
    assert shift_to_today(bundle_of(obs("2020-03-01")), now=now)[1] == (date(2026, 3, 15) - date(2020, 3, 1)).days
    assert newest_clinical_instant(bundle_of(obs("2020-03-01"))) is None
    # an explicit day without a moment keeps the calendar-day shift (the tests above that give TODAY)
    assert shift_to_today(LATE, date(2026, 3, 15))[1] == (date(2026, 3, 15) - date(2020, 3, 1)).days
