"""Back-testing at a past date: what the record held at the as-of instant, before any mapping reads it.

An export is a snapshot of today. Evaluated `--as-of` a past date, a resource that happened or was recorded after
that instant did not exist yet, so it is removed; and a change dated after it (a condition resolved, a statement or
encounter ended, a death) had not happened yet, so it is undone. The mapper, guards and RiskAssessment then run with
"now" = the as-of instant. What a snapshot cannot tell (a status changed without a date, e.g. a MedicationRequest
stopped later) stays as exported; docs/population.md lists these limits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.fhirdates import parse_fhir_datetime

Resource = dict[str, Any]

# When a resource happened or entered the record: any of these after the as-of instant removes it.
_WHEN_FIELDS = ("effectiveDateTime", "effectiveInstant", "issued", "onsetDateTime", "recordedDate", "authoredOn",
                "performedDateTime", "dateAsserted", "occurrenceDateTime")
_WHEN_PERIOD_STARTS = ("effectivePeriod", "onsetPeriod", "performedPeriod", "period")
# A statement or encounter ended after the as-of instant was still going on then: (ended statuses, status then).
_ENDED = {"MedicationStatement": (("completed", "stopped"), "active"), "Encounter": (("finished",), "in-progress")}


def when_recorded(resource: Resource) -> datetime | None:
    """The latest of the dates at which the resource happened or was recorded (None when it carries none)."""
    found: list[datetime] = []
    for key in _WHEN_FIELDS:
        when = parse_fhir_datetime(resource.get(key))
        if when is not None:
            found.append(when)
    for key in _WHEN_PERIOD_STARTS:
        period = resource.get(key)
        if isinstance(period, dict):
            when = parse_fhir_datetime(period.get("start"))
            if when is not None:
                found.append(when)
    return max(found) if found else None


def as_of_view(resource: Resource, as_of: datetime) -> tuple[Resource | None, str | None]:
    """The resource as it stood at `as_of`: (None, why) when it did not exist yet, (resource, what was undone) when
    a later change was undone (a copy; the input is never modified), else (resource, None)."""
    when = when_recorded(resource)
    if when is not None and when > as_of:
        return None, "dated after the as-of date"
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        died = parse_fhir_datetime(resource.get("deceasedDateTime"))
        if died is not None and died > as_of:
            alive = {k: v for k, v in resource.items() if k != "deceasedDateTime"}
            return alive, "death dated after the as-of date"
        return resource, None
    if rtype == "Condition":
        ended = _abatement(resource)
        if ended is not None and ended > as_of:
            active = {k: v for k, v in resource.items() if not k.startswith("abatement")}
            active["clinicalStatus"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
            return active, "resolution dated after the as-of date"
        return resource, None
    if rtype in ("MedicationStatement", "Encounter"):
        key = "effectivePeriod" if rtype == "MedicationStatement" else "period"
        period = resource.get(key)
        ended = parse_fhir_datetime(period.get("end")) if isinstance(period, dict) else None
        ended_statuses, current_status = _ENDED[rtype]
        if ended is not None and ended > as_of and resource.get("status") in ended_statuses:
            assert isinstance(period, dict)
            current = dict(resource)
            current[key] = {k: v for k, v in period.items() if k != "end"}
            current["status"] = current_status
            return current, "end dated after the as-of date"
    return resource, None


def _abatement(resource: Resource) -> datetime | None:
    ended = parse_fhir_datetime(resource.get("abatementDateTime"))
    period = resource.get("abatementPeriod")
    if ended is None and isinstance(period, dict):
        ended = parse_fhir_datetime(period.get("start") or period.get("end"))
    return ended
