"""Plain records the service hands to the store: one prediction, one feedback item.

The service builds these on the request path; the store persists them (off the request path for predictions,
synchronously for feedback). Nothing here holds a patient name, a token or a JWT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class CardRecord:
    uuid: str
    summary: str
    indicator: str
    suggestion_uuids: list[str] = field(default_factory=list)


@dataclass
class PredictionRecord:
    """One model run for one hook call (champion or challenger)."""

    prediction_id: str  # uuid4, made by the service
    hook_instance: str
    hook: str
    service_id: str
    model_id: str
    model_version: str
    alias: str  # "champion" | "challenger"
    patient_id: str  # raw FHIR id: the store keeps only HMAC(patient_id) — never this value
    encounter_id: str | None
    created_at: datetime  # timezone-aware UTC
    # name -> {"value", "unit", "defaulted", "sources": [{"reference", "date", "note"?}], "display", "note",
    # "unchecked": the prefetch keys a default could not look in}
    features: dict[str, Any]
    missing: dict[str, str]  # name -> reason
    outputs: dict[str, float] | None  # None when guards refused to give a number
    category: str | None
    guard_reasons: list[str] = field(default_factory=list)
    # what each guard reason came from ("population:<feature>", "range:<input>", "" otherwise), in the same order;
    # None in a journal or spool line written before migration 0007 (unknown, not "nothing refused")
    refused_by: list[str] | None = None
    cards: list[CardRecord] = field(default_factory=list)  # empty for challengers (never shown)
    tenant: str | None = None
    client_id: str | None = None  # JWT iss
    primary_output: str = ""  # which of `outputs` is the model's primary score
    cohort: dict[str, str] = field(default_factory=dict)  # group labels for fairness audits: sex, age band, race
    # set when the record is pseudonymised for the journal and spool: the HMAC keys, with patient_id emptied
    patient_key: str | None = None
    encounter_key: str | None = None
    # name -> the newest result of a missing feature written as a bound ('>300 mg/g'): {"comparator", "limit" (in
    # the feature's unit), "written": [number, unit] or None, "date"}; the details page's notes categorise it
    bounds: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeedbackRecord:
    """One CDS Hooks feedback item, joined to its prediction by card uuid."""

    service_id: str
    card_uuid: str
    outcome: str  # "accepted" | "overridden"
    outcome_timestamp: datetime
    accepted_suggestions: list[str] = field(default_factory=list)
    override_reason_system: str | None = None
    override_reason_code: str | None = None
    override_reason_display: str | None = None
    override_comment: str | None = None
    client_id: str | None = None
