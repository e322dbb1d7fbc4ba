"""The promotion audit chain: records hash as documented, link to the one before, cannot be updated or deleted
through the database's own triggers, survive retention purges, and any change made behind the triggers' back is found
and named by `verify_chain`, `cds-onnx models history` and `cds-onnx models verify-audit`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from postgres_fixture import postgres_url  # noqa: F401  (pytest fixture)
from sqlalchemy import text

from inference.promotion import Aliases, governed_aliases, rollback_target
from store.audit import GENESIS_HASH, AuditConflict, new_record, verify_chain
from store.store import Store

ROOT = Path(__file__).resolve().parent.parent
SECRET = "development-only-pseudonymisation-key"
MODEL = "t2d-onset-5y"
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def plain_hash(row: dict[str, Any]) -> str:
    """The documented record hash, written out independently: SHA-256 of the sorted, compact JSON of the fields."""
    fields = {k: row[k] for k in ("model_id", "position", "action", "from_version", "to_version", "approver",
                                  "reason", "recorded_at", "evidence", "evidence_digest", "files", "previous_hash")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def append(store: Store, action: str, old: str, new: str, *, model: str = MODEL, minutes: int = 0) -> int:
    records = store.audit_records(model)
    fields = new_record(records[-1] if records else None, model_id=model, action=action, from_version=old,
                        to_version=new, approver="Dr Ada Example", reason=f"{action} {old}→{new} — réviewed",
                        evidence={"events": 41, "auroc_difference": {"estimate": 0.05}}, files={"model.onnx": "ab"},
                        now=T0 + timedelta(minutes=minutes))
    return store.append_audit(fields)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", SECRET.encode())
    s.migrate()
    return s


def chain_of_three(store: Store) -> None:
    append(store, "promote", "1.0.0", "1.1.0")
    append(store, "rollback", "1.1.0", "1.0.0", minutes=5)
    append(store, "promote", "1.0.0", "1.1.0", minutes=9)


def test_records_hash_as_documented_and_link_to_the_one_before(store: Store) -> None:
    chain_of_three(store)
    records = store.audit_records(MODEL)
    assert [r.position for r in records] == [1, 2, 3]
    assert records[0].previous_hash == GENESIS_HASH == "0" * 64
    for before, rec in zip([None, *records], records):
        row = rec.as_dict()
        assert rec.record_hash == plain_hash(row)
        assert rec.evidence_digest == hashlib.sha256(rec.evidence.encode()).hexdigest()
        assert rec.previous_hash == (before.record_hash if before else GENESIS_HASH)
    assert records[0].recorded_at == "2025-03-01T09:30:00.000000+00:00"
    assert json.loads(records[0].evidence) == {"events": 41, "auroc_difference": {"estimate": 0.05}}
    assert verify_chain(MODEL, records).summary() == "chain verified (3 records)"
    assert store.audit_head() == records[-1].seq


def test_the_database_refuses_updates_and_deletes(store: Store) -> None:
    append(store, "promote", "1.0.0", "1.1.0")
    for statement in ("UPDATE promotion_audit SET reason = 'nothing to see'", "DELETE FROM promotion_audit"):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(store.audit_records(MODEL)) == 1 and verify_chain(MODEL, store.audit_records(MODEL)).ok


def test_retention_purge_keeps_every_audit_record(store: Store) -> None:
    append(store, "promote", "1.0.0", "1.1.0")
    counts = store.purge(1, now=datetime.now(UTC) + timedelta(days=3650))
    assert "promotion_audit" not in counts
    assert len(store.audit_records(MODEL)) == 1


def test_a_record_for_a_position_already_taken_is_refused(store: Store) -> None:
    fields = new_record(None, model_id=MODEL, action="promote", from_version="1.0.0", to_version="1.1.0",
                        approver="a", reason="r", evidence={}, files={}, now=T0)
    store.append_audit(fields)
    racing = new_record(None, model_id=MODEL, action="promote", from_version="1.0.0", to_version="1.1.0",
                        approver="b", reason="r", evidence={}, files={}, now=T0 + timedelta(seconds=1))
    with pytest.raises(AuditConflict, match="at the same time"):
        store.append_audit(racing)
    assert [r.approver for r in store.audit_records(MODEL)] == ["a"]


def drop_triggers(store: Store) -> None:
    """What someone with write access to the database could do before editing history."""
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER promotion_audit_no_update"))
        conn.execute(text("DROP TRIGGER promotion_audit_no_delete"))


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDS_ONNX_STORE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
           "CDS_ONNX_STORE__SPOOL_DIR": str(tmp_path / "spool")}
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", *args, "--config", "config/development.toml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_changed_field_is_found_and_the_record_named(store: Store, tmp_path: Path) -> None:
    chain_of_three(store)
    second = store.audit_records(MODEL)[1]
    ok = cli(tmp_path, "models", "history", MODEL)
    assert ok.returncode == 0, ok.stderr
    assert f"{MODEL}: chain verified (3 records)" in ok.stdout
    assert "rollback 1.1.0 -> 1.0.0 by Dr Ada Example" in ok.stdout

    drop_triggers(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE promotion_audit SET approver = 'Someone Else' WHERE seq = :seq"),
                     {"seq": second.seq})
    check = verify_chain(MODEL, store.audit_records(MODEL))
    assert not check.ok and check.broken_seq == second.seq
    assert f"record #{second.seq} (position 2 of {MODEL})" in check.problem and "content does not match" in check.problem

    history = cli(tmp_path, "models", "history", MODEL)
    assert history.returncode == 1
    assert f"chain BROKEN: record #{second.seq} (position 2 of {MODEL})" in history.stderr
    assert "Traceback" not in history.stderr
    verify = cli(tmp_path, "models", "verify-audit")
    assert verify.returncode == 1 and f"record #{second.seq}" in verify.stderr


def test_changed_evidence_a_removed_record_and_a_relinked_record_are_found(store: Store) -> None:
    chain_of_three(store)
    drop_triggers(store)
    first, second, third = store.audit_records(MODEL)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE promotion_audit SET evidence = :e WHERE seq = :s"),
                     {"e": '{"events":410}', "s": first.seq})
    check = verify_chain(MODEL, store.audit_records(MODEL))
    assert check.broken_seq == first.seq and "evidence does not match its evidence digest" in check.problem

    with store.engine.begin() as conn:  # put it back, then remove the middle record
        conn.execute(text("UPDATE promotion_audit SET evidence = :e WHERE seq = :s"),
                     {"e": first.evidence, "s": first.seq})
        conn.execute(text("DELETE FROM promotion_audit WHERE seq = :s"), {"s": second.seq})
    check = verify_chain(MODEL, store.audit_records(MODEL))
    assert check.broken_seq == third.seq and "expected position 2" in check.problem

    with store.engine.begin() as conn:  # renumber the third so positions look whole again: the link still breaks
        conn.execute(text("UPDATE promotion_audit SET position = 2 WHERE seq = :s"), {"s": third.seq})
    check = verify_chain(MODEL, store.audit_records(MODEL))
    assert check.broken_seq == third.seq and "does not link to the record before it" in check.problem


class _Entry:
    def __init__(self, champion: str, challenger: str | None) -> None:
        self.configured_champion, self.configured_challenger = champion, challenger


def test_the_chain_names_the_champion_and_each_rollback_undoes_one_promotion(store: Store) -> None:
    entry: Any = _Entry("1.0.0", "1.1.0")
    assert governed_aliases(entry, []) == Aliases("1.0.0", "1.1.0")
    append(store, "promote", "1.0.0", "1.1.0")
    records = store.audit_records(MODEL)
    # the configured challenger is now the champion: the replaced champion runs in shadow
    assert governed_aliases(entry, records) == Aliases("1.1.0", "1.0.0")
    # a newer challenger named in aliases.yaml keeps its shadow place
    assert governed_aliases(_Entry("1.0.0", "1.2.0"), records) == Aliases("1.1.0", "1.2.0")  # type: ignore[arg-type]
    append(store, "promote", "1.1.0", "1.2.0", minutes=1)
    records = store.audit_records(MODEL)
    assert rollback_target(records).to_version == "1.2.0"  # type: ignore[union-attr]
    append(store, "rollback", "1.2.0", "1.1.0", minutes=2)
    records = store.audit_records(MODEL)
    target = rollback_target(records)
    assert target is not None and (target.from_version, target.to_version) == ("1.0.0", "1.1.0")
    append(store, "rollback", "1.1.0", "1.0.0", minutes=3)
    assert rollback_target(store.audit_records(MODEL)) is None
    assert governed_aliases(entry, store.audit_records(MODEL)) == Aliases("1.0.0", "1.1.0")


def test_postgresql_refuses_updates_deletes_and_truncation(postgres_url: str) -> None:  # noqa: F811
    store = Store(postgres_url, SECRET.encode())
    store.migrate()
    model = f"pg-audit-{os.getpid()}-{datetime.now(UTC).timestamp():.0f}"  # the shared server outlives this test
    append(store, "promote", "1.0.0", "1.1.0", model=model)
    for statement in (f"UPDATE promotion_audit SET reason = 'nothing to see' WHERE model_id = '{model}'",
                      f"DELETE FROM promotion_audit WHERE model_id = '{model}'", "TRUNCATE promotion_audit"):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    records = store.audit_records(model)
    assert len(records) == 1 and verify_chain(model, records).ok
    store.dispose()
