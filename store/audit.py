"""The promotion audit chain: how a record is hashed, linked to the one before it, and verified.

Every change of a model's champion is one record in a per-model chain. A record's hash is the SHA-256 of the canonical
JSON (sorted keys, no spaces, UTF-8) of its fields, the previous record's hash among them; so changing, removing or
re-ordering any record breaks every hash after it, and `verify_chain` names the first record that does not hold.
Pure functions: the Store keeps the rows (store/store.py), `inference/promotion.py` decides what to append.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
ACTIONS = ("promote", "rollback")
HASHED_FIELDS = ("model_id", "position", "action", "from_version", "to_version", "approver", "reason",
                 "recorded_at", "evidence", "evidence_digest", "files", "previous_hash")


class AuditConflict(RuntimeError):
    """Another record was appended to the same model's chain at the same time; nothing was written."""


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """The one text a JSON value hashes as: sorted keys, no insignificant whitespace, non-ASCII kept as UTF-8."""
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_fields(fields: Mapping[str, Any]) -> str:
    """The record hash: SHA-256 over the canonical JSON of HASHED_FIELDS (the previous hash included)."""
    return sha256_hex(canonical_json({name: fields[name] for name in HASHED_FIELDS}))


@dataclass(frozen=True)
class AuditRecord:
    """One stored record, as the Store returns it."""

    seq: int
    model_id: str
    position: int
    action: str
    from_version: str
    to_version: str
    approver: str
    reason: str
    recorded_at: str
    evidence: str
    evidence_digest: str
    files: str
    previous_hash: str
    record_hash: str

    @property
    def evidence_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.evidence)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def files_doc(self) -> dict[str, str]:
        try:
            doc = json.loads(self.files)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("seq", *HASHED_FIELDS, "record_hash")}


def new_record(previous: AuditRecord | None, *, model_id: str, action: str, from_version: str, to_version: str,
               approver: str, reason: str, evidence: Mapping[str, Any], files: Mapping[str, str],
               now: datetime | None = None) -> dict[str, Any]:
    """The fields of the record that follows `previous` in `model_id`'s chain, hashed (seq is the Store's)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not '{action}'")
    if previous is not None and previous.model_id != model_id:
        raise ValueError(f"the previous record belongs to {previous.model_id}, not {model_id}")
    evidence_text = canonical_json(evidence)
    fields: dict[str, Any] = {
        "model_id": model_id,
        "position": 1 if previous is None else previous.position + 1,
        "action": action,
        "from_version": from_version,
        "to_version": to_version,
        "approver": approver,
        "reason": reason,
        "recorded_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds"),
        "evidence": evidence_text,
        "evidence_digest": sha256_hex(evidence_text),
        "files": canonical_json(dict(files)),
        "previous_hash": GENESIS_HASH if previous is None else previous.record_hash,
    }
    fields["record_hash"] = hash_fields(fields)
    return fields


@dataclass(frozen=True)
class ChainCheck:
    """The result of verifying one model's chain: ok, or the first record that does not hold and why."""

    model_id: str
    records: int
    problem: str | None = None
    broken_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.ok:
            return f"chain verified ({self.records} record{'s' if self.records != 1 else ''})"
        return f"chain BROKEN: {self.problem}"


def verify_chain(model_id: str, records: list[AuditRecord]) -> ChainCheck:
    """Check one model's records (in position order): positions 1..n without gaps, each linked to the hash of the
    one before, each hash matching its content, each evidence digest matching its evidence."""
    previous_hash = GENESIS_HASH
    for expected_position, rec in enumerate(records, start=1):
        where = f"record #{rec.seq} (position {rec.position} of {model_id})"
        if rec.model_id != model_id:
            return ChainCheck(model_id, len(records), f"{where} belongs to {rec.model_id}", rec.seq)
        if rec.position != expected_position:
            return ChainCheck(model_id, len(records), f"{where}: expected position {expected_position}; a record "
                              "before it is missing", rec.seq)
        if rec.previous_hash != previous_hash:
            return ChainCheck(model_id, len(records), f"{where} does not link to the record before it (previous_hash "
                              f"{rec.previous_hash[:12]}…, expected {previous_hash[:12]}…)", rec.seq)
        if sha256_hex(rec.evidence) != rec.evidence_digest:
            return ChainCheck(model_id, len(records), f"{where}: its evidence does not match its evidence digest "
                              "(the evidence was changed)", rec.seq)
        if hash_fields(rec.as_dict()) != rec.record_hash:
            return ChainCheck(model_id, len(records), f"{where}: its content does not match its hash (a field was "
                              "changed after it was recorded)", rec.seq)
        previous_hash = rec.record_hash
    return ChainCheck(model_id, len(records))
