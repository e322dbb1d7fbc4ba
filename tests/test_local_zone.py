"""The record's local zone (ages are counted on the local date, vitals shown in local time) read as a plain reading
of the record says: the offset of the newest timestamp that carries a non-zero one; of two naming one instant, the
first read; UTC when none does."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.index import ResourceIndex, iter_resources
from fhir_mapping.mapper import local_zone_of

SYNTHEA = sorted((Path(__file__).parent / "fixtures" / "synthea").glob("patient-*.json"))
ORDER = ("Observation", "Encounter", "MedicationRequest", "Condition")
DATE_KEYS = ("effectiveDateTime", "effectiveInstant", "onsetDateTime", "authoredOn", "performedDateTime")


def plain_zone(resources: list[dict[str, Any]]) -> tzinfo:
    """Every timestamp of the four types parsed, in reading order; the newest with a non-zero offset wins."""
    best: datetime | None = None
    for rtype in ORDER:
        for res in resources:
            if res.get("resourceType") != rtype:
                continue
            text = next((res[k] for k in DATE_KEYS if isinstance(res.get(k), str)), None)
            if text is None and isinstance(res.get("effectivePeriod"), dict):
                text = res["effectivePeriod"].get("end") or res["effectivePeriod"].get("start")
            if text is None:
                text = next((res[k] for k in ("issued", "recordedDate") if isinstance(res.get(k), str)), None)
            if not isinstance(text, str):
                continue
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                continue
            offset = when.utcoffset()
            if offset is not None and offset != timedelta(0) and (best is None or when > best):
                best = when
    return best.tzinfo if best is not None and best.tzinfo is not None else UTC


def index_of(resources: list[dict[str, Any]]) -> ResourceIndex:
    return ResourceIndex([(r, None) for r in resources])


def obs(i: int, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final", "effectiveDateTime": when}


@pytest.mark.parametrize(("dates", "offset_hours"), [
    (["2026-05-20T08:00:00-05:00", "2026-05-21T09:00:00+00:00"], -5),   # newer, but written in UTC
    (["2026-05-20T08:00:00-05:00", "2026-05-21T09:00:00Z"], -5),
    (["2026-05-20T08:00:00-05:00", "2026-05-21T09:00:00-00:00"], -5),
    (["2026-05-20T15:00:00-05:00", "2026-05-21T01:00:00+05:00"], -5),   # one instant: the first read gives it
    (["2026-05-21T01:00:00+05:00", "2026-05-20T15:00:00-05:00"], 5),
    (["2026-05-20T08:00:00-05:00", "2026-05-20T08:00:00-05:00", "2026-05-19T08:00:00+09:00"], -5),  # repeated
    (["2026-05-20T08:00:00-05:00", "2026-13-45T10:00:00+09:00", "last Tuesday", "2026-05-30"], -5),  # unusable
    (["2026-05-20 08:00:00-04:00"], -4),                                 # odd, but a timestamp Python reads
    (["2026-05-20T08:00:00-05:00", "2026-05-21T09:00:00+00:00:00"], -5),  # UTC with seconds in the offset
    (["2026-05-20T08:00:00+00:00", "2026-05-21T08:00:00Z", "2026-05-22"], 0),
])
def test_the_zone_of_hand_written_records(dates: list[str], offset_hours: int) -> None:
    record = [obs(i, d) for i, d in enumerate(dates)]
    zone = local_zone_of(index_of(record))
    assert zone.utcoffset(None) == timedelta(hours=offset_hours)
    assert zone.utcoffset(None) == plain_zone(record).utcoffset(None)


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.stem)
def test_the_zone_of_synthea_records_with_offsets_rewritten(path: Path) -> None:
    record = [res for res, _ in iter_resources(json.loads(path.read_text()))]
    rng = random.Random(path.stem)
    offsets = ["+00:00", "Z", "-05:00", "-04:00", "+09:30", "-00:00", "+05:45"]
    for _ in range(5):  # each timestamp's offset replaced at random: the newest local one must win
        def rewrite(match: re.Match[str]) -> str:
            return match.group(1) + rng.choice(offsets) + '"'
        text = re.sub(r'("\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(?:Z|[+-]\d\d:\d\d)"', rewrite,
                      json.dumps(record))
        rewritten = json.loads(text)
        expected = plain_zone(rewritten).utcoffset(None)
        assert local_zone_of(index_of(rewritten)).utcoffset(None) == expected
        assert expected != timedelta(0)  # the rewrite left local offsets to find


def test_an_explicit_zone_object_is_returned_as_written() -> None:
    zone = local_zone_of(index_of([obs(0, "2026-05-20T08:00:00+09:30")]))
    assert zone == timezone(timedelta(hours=9, minutes=30))


def test_another_patients_timestamps_do_not_set_the_zone() -> None:
    mine = dict(obs(0, "2026-05-20T08:00:00-05:00"), subject={"reference": "Patient/p1"})
    theirs = dict(obs(1, "2026-05-21T08:00:00+09:00"), subject={"reference": "Patient/p2"})  # newer, Tokyo
    assert local_zone_of(index_of([mine, theirs]), "p1").utcoffset(None) == timedelta(hours=-5)
