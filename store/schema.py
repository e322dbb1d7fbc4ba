"""Tables for predictions, their features and cards, clinician feedback, and outcomes imported later.

Patients and encounters appear only as keyed hashes (HMAC-SHA256 with a deployment secret), never as raw ids or names.
Feedback is stored even when the card it names is unknown (it may arrive before the prediction is written), and a
hash of its content makes repeated submissions idempotent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Prediction(Base):
    __tablename__ = "predictions"

    prediction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hook_instance: Mapped[str] = mapped_column(String(64), index=True)
    hook: Mapped[str] = mapped_column(String(40))
    service_id: Mapped[str] = mapped_column(String(80), index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str] = mapped_column(String(16))
    patient_key: Mapped[str] = mapped_column(String(64), index=True)
    encounter_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float)
    category: Mapped[str | None] = mapped_column(String(40))
    guard_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # what each guard reason came from ("population:<feature>", "range:<input>"); None before migration 0007
    refused_by: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    missing: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # a missing feature's newest result written as a bound (store/records.py); None before migration 0009
    bounds: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cohort: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tenant: Mapped[str | None] = mapped_column(String(120))
    client_id: Mapped[str | None] = mapped_column(String(300))


class FeatureValueRow(Base):
    __tablename__ = "feature_values"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.prediction_id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(40))
    defaulted: Mapped[bool] = mapped_column(Boolean, default=False)
    source_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    display: Mapped[str | None] = mapped_column(Text, nullable=True)  # the value in words, as on the card
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # how it was read or assumed (drug recognition)
    # the prefetch keys a default could not look in (a "No" not fully checked); None before migration 0007
    unchecked: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # a derived value as reported (`reported_decimals`: an eGFR of 29.8 as 30); None when not rounded, or before 0008
    reported: Mapped[float | None] = mapped_column(Float, nullable=True)


class CardRow(Base):
    __tablename__ = "cards"

    card_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.prediction_id", ondelete="CASCADE"), index=True)
    summary: Mapped[str] = mapped_column(String(200))
    indicator: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CardSuggestion(Base):
    __tablename__ = "card_suggestions"

    suggestion_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_uuid: Mapped[str] = mapped_column(ForeignKey("cards.card_uuid", ondelete="CASCADE"), index=True)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("dedupe_key", name="uq_feedback_dedupe"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    card_uuid: Mapped[str] = mapped_column(String(36), index=True)
    service_id: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON, default=list)
    override_reason_system: Mapped[str | None] = mapped_column(String(200))
    override_reason_code: Mapped[str | None] = mapped_column(String(80))
    override_reason_display: Mapped[str | None] = mapped_column(String(300))
    override_comment: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Outcome(Base):
    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("patient_key", "system", "code", "observed_at", name="uq_outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_key: Mapped[str] = mapped_column(String(64), index=True)
    system: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(80))
    label: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(300))


Index("ix_predictions_model_time", Prediction.model_id, Prediction.created_at)


class AuthReplay(Base):
    """Client JWTs already accepted, by (iss, jti), kept until the token could no longer be accepted (replay
    protection shared by every process using this database; see cds_hooks/replay.py)."""

    __tablename__ = "auth_replay"

    iss: Mapped[str] = mapped_column(String(1024), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # seconds since epoch: exp + clock skew


class JwksDocument(Base):
    """JWK Set documents fetched from allowlisted `jku` URLs, shared by every process using this database so a fleet
    fetches each client's keys once per refresh (see cds_hooks/jwks_shared.py). A cache, never an authority."""

    __tablename__ = "jwks_documents"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[float] = mapped_column(Float)  # seconds since epoch
    mac: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 over url, fetched_at, document (store.hmac_secret)


class PromotionAudit(Base):
    """The append-only, hash-chained record of every change of a model's champion (store/audit.py, docs/governance.md).

    One chain per model: `position` counts from 1 and `previous_hash` is the record_hash of the record before it (64
    zeros for the first). Evidence and file digests are kept as the exact canonical JSON text that was hashed. The code
    never updates or deletes a row; the migration adds triggers that refuse both, and `store purge` leaves it alone."""

    __tablename__ = "promotion_audit"
    __table_args__ = (UniqueConstraint("model_id", "position", name="uq_promotion_audit_position"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    from_version: Mapped[str] = mapped_column(String(32))
    to_version: Mapped[str] = mapped_column(String(32))
    approver: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, the exact text that was hashed
    evidence: Mapped[str] = mapped_column(Text)  # canonical JSON
    evidence_digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[str] = mapped_column(Text)  # canonical JSON: path in the version folder -> sha256
    previous_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)


class StoreSync(Base):
    """One row whose counter `Store.sync_predictions` increments in a synchronous=FULL commit: SQLite syncs the
    write-ahead log at that commit, which makes every earlier commit durable (migration 0006)."""

    __tablename__ = "store_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    syncs: Mapped[int] = mapped_column(BigInteger)
