"""Governed promotion: a challenger becomes the champion only on real-world evidence, approved, and on the record.

`promote` checks the champion manifest's acceptance criteria (inference/acceptance.py) on the paired shadow evidence
(monitoring/evidence.py) and appends a hash-chained audit record (store/audit.py) naming who approved it, when, why,
from which version to which, the evidence and its digest, and the SHA-256 of every file of the promoted version
folder. `rollback` returns to the champion before the latest promotion still in force, also on the record. Serving
processes read the chain (`governed_aliases`) and switch without a restart (cds_hooks/champion_sync.py).

The chain, not `aliases.yaml`, names the champion once a model has a record: `aliases.yaml` gives the starting
champion, and its challenger keeps naming the shadow version unless it is the governed champion, in which case the
champion that was replaced runs in shadow (and stays servable for review and rollback).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inference.acceptance import CriterionResult, evaluate, failures
from inference.repository import ModelEntry, ModelRepository
from store.audit import AuditRecord, ChainCheck, new_record, verify_chain
from store.store import Store

SKIPPED_DIRS = ("__pycache__",)


class PromotionRefused(RuntimeError):
    """The change of champion is not allowed; `lines` name every reason (one per failing criterion)."""

    def __init__(self, headline: str, lines: list[str] | None = None) -> None:
        super().__init__(headline)
        self.headline = headline
        self.lines = list(lines or [])


@dataclass(frozen=True)
class Aliases:
    champion: str
    challenger: str | None


@dataclass
class ChangeRecorded:
    """What `promote` or `rollback` appended."""

    seq: int
    record: dict[str, Any]
    results: list[CriterionResult] = field(default_factory=list)


def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in a version folder, by POSIX path relative to it (bytecode caches left out)."""
    digests: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part in SKIPPED_DIRS for part in rel.parts):
            digests[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def digest_mismatch(folder: Path, recorded: dict[str, str]) -> str | None:
    """How the folder's files differ from those recorded when the version was approved (None when identical)."""
    current = folder_digests(folder)
    changed = sorted(p for p in recorded.keys() & current.keys() if recorded[p] != current[p])
    missing = sorted(recorded.keys() - current.keys())
    added = sorted(current.keys() - recorded.keys())
    parts = ([f"changed: {', '.join(changed)}"] if changed else []) + \
            ([f"missing: {', '.join(missing)}"] if missing else []) + ([f"added: {', '.join(added)}"] if added else [])
    return "; ".join(parts) or None


def governed_aliases(entry: ModelEntry, records: list[AuditRecord]) -> Aliases:
    """The champion and shadow challenger the chain and aliases.yaml give together (see the module docstring)."""
    if not records:
        return Aliases(entry.configured_champion, entry.configured_challenger)
    last = records[-1]
    champion = last.to_version
    challenger = entry.configured_challenger
    if challenger is None or challenger == champion:
        challenger = last.from_version
    return Aliases(champion, None if challenger == champion else challenger)


def rollback_target(records: list[AuditRecord]) -> AuditRecord | None:
    """The latest promotion still in force (each rollback undoes one promotion), whose from_version a rollback
    returns to; None when there is nothing to roll back."""
    in_force: list[AuditRecord] = []
    for rec in records:
        if rec.action == "promote":
            in_force.append(rec)
        elif in_force:
            in_force.pop()
    return in_force[-1] if in_force else None


def _checked_chain(store: Store, model_id: str) -> list[AuditRecord]:
    records = store.audit_records(model_id)
    check: ChainCheck = verify_chain(model_id, records)
    if not check.ok:
        raise PromotionRefused(f"refused: the audit chain of {model_id} does not verify ({check.problem}); no change "
                               "of champion is recorded on a broken chain: investigate it with `cds-onnx models "
                               f"history {model_id}`")
    return records


def _entry(repository: ModelRepository, model_id: str) -> ModelEntry:
    entry = repository.entries.get(model_id)
    if entry is None:
        raise PromotionRefused(f"refused: no model '{model_id}' in {repository.root} "
                               f"(models: {', '.join(sorted(repository.entries)) or 'none'})")
    return entry


def _who_and_why(approver: str, reason: str) -> tuple[str, str]:
    approver, reason = approver.strip(), reason.strip()
    if not approver:
        raise PromotionRefused("refused: --approver is empty; give the name of the person approving the change")
    if len(approver) > 200:
        raise PromotionRefused("refused: --approver is longer than 200 characters; give a name")
    if not reason:
        raise PromotionRefused("refused: --reason is empty; say why the change is made (it is kept in the audit "
                               "record)")
    return approver, reason


def promote(store: Store, repository: ModelRepository, model_id: str, version: str, *, approver: str, reason: str,
            now: datetime | None = None, evidence_of: Callable[..., Any] | None = None) -> ChangeRecorded:
    """Make `version` the champion of `model_id` if the evidence meets the champion's acceptance criteria; raise
    PromotionRefused naming every failing criterion otherwise. Nothing is written unless it is accepted."""
    approver, reason = _who_and_why(approver, reason)
    entry = _entry(repository, model_id)
    if version not in entry.versions:
        raise PromotionRefused(f"refused: {version} is not a loaded, valid version folder of {model_id} (loaded "
                               f"versions: {', '.join(sorted(entry.versions))}); add models/{model_id}/{version}/ "
                               "and check it with `cds-onnx models validate`")
    records = _checked_chain(store, model_id)
    current = governed_aliases(entry, records).champion
    if version == current:
        raise PromotionRefused(f"refused: {version} is already the champion of {model_id}")
    champion = entry.versions.get(current)
    if champion is None:
        raise PromotionRefused(f"refused: the champion of {model_id}, {current}, is not loaded from "
                               f"{repository.root}; restore its folder first")
    challenger = entry.versions[version]
    if tuple(challenger.manifest.hooks) != tuple(champion.manifest.hooks):
        raise PromotionRefused(f"refused: {version} serves hooks {', '.join(challenger.manifest.hooks)} but the "
                               f"champion {current} serves {', '.join(champion.manifest.hooks)}; a change of hooks "
                               "changes the CDS services EHRs call: release it as a new model instead")
    if [i.name for i in challenger.manifest.inputs] != [i.name for i in champion.manifest.inputs]:
        raise PromotionRefused(f"refused: {version}'s inputs differ from the champion {current}'s; only a version "
                               "that ran in shadow on the champion's features can be judged and promoted")
    acceptance = champion.manifest.acceptance
    now = now or datetime.now(UTC)
    since = now - timedelta(days=acceptance.window_days) if acceptance.window_days else None
    if evidence_of is None:
        from monitoring.evidence import paired_evidence as evidence_of
    evidence = evidence_of(store, repository, model_id, current, version, since=since, now=now)
    results = evaluate(evidence, acceptance)
    failed = failures(results)
    if failed:
        why = getattr(evidence, "message", None)
        raise PromotionRefused(
            f"refused: {model_id} {version} does not meet {len(failed)} of the {len(results)} acceptance criteria of "
            f"the champion {current} ({evidence.pairs} paired predictions with closed follow-up, {evidence.events} "
            f"events{'; ' + why if why else ''}); record more shadow evidence or fix the challenger:",
            [r.line() for r in failed])
    doc = {"kind": "acceptance", "criteria_applied": True, "acceptance": acceptance.model_dump(mode="json"),
           "criteria": [r.to_json() for r in results], "paired_evidence": evidence.to_json(),
           "paired_evidence_digest": evidence.digest()}
    return _append(store, records, model_id, "promote", current, version, approver, reason, doc,
                   folder_digests(repository.root / model_id / version), now, results)


def rollback(store: Store, repository: ModelRepository, model_id: str, *, approver: str, reason: str,
             now: datetime | None = None, evidence_of: Callable[..., Any] | None = None) -> ChangeRecorded:
    """Return `model_id` to the champion before its latest promotion still in force. No acceptance criteria apply
    (a rollback restores an approved version), but the shadow evidence of the moment is recorded when there is any."""
    approver, reason = _who_and_why(approver, reason)
    entry = _entry(repository, model_id)
    records = _checked_chain(store, model_id)
    target = rollback_target(records)
    if target is None:
        raise PromotionRefused(f"refused: {model_id} has no promotion to roll back (its champion "
                               f"{governed_aliases(entry, records).champion} comes from aliases.yaml)")
    current = records[-1].to_version
    back_to = target.from_version
    if back_to not in entry.versions:
        raise PromotionRefused(f"refused: the previous champion of {model_id}, {back_to}, is not a loaded version "
                               f"(loaded: {', '.join(sorted(entry.versions))}); restore models/{model_id}/{back_to}/")
    now = now or datetime.now(UTC)
    if evidence_of is None:
        from monitoring.evidence import paired_evidence as evidence_of
    doc: dict[str, Any] = {"kind": "rollback", "criteria_applied": False, "undoes_record": target.seq}
    try:
        evidence = evidence_of(store, repository, model_id, current, back_to, now=now)
        doc.update(paired_evidence=evidence.to_json(), paired_evidence_digest=evidence.digest())
    except (ValueError, LookupError) as exc:  # no shadow evidence to speak of: the rollback stands on its own
        doc.update(paired_evidence=None, note=f"no paired evidence: {exc}")
    return _append(store, records, model_id, "rollback", current, back_to, approver, reason, doc,
                   folder_digests(repository.root / model_id / back_to), now, [])


def _append(store: Store, records: list[AuditRecord], model_id: str, action: str, from_version: str,
            to_version: str, approver: str, reason: str, evidence: dict[str, Any], files: dict[str, str],
            now: datetime, results: list[CriterionResult]) -> ChangeRecorded:
    fields = new_record(records[-1] if records else None, model_id=model_id, action=action,
                        from_version=from_version, to_version=to_version, approver=approver, reason=reason,
                        evidence=evidence, files=files, now=now)
    return ChangeRecorded(store.append_audit(fields), fields, results)
