"""`cds-onnx models promote|rollback|history|verify-audit`: governed changes of champion, and their audit chain.

There is deliberately no `--force`: a challenger becomes the champion only when the shadow evidence meets the
champion's acceptance criteria, and every change is appended to the hash-chained audit record (docs/governance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cds_hooks.cli.apps import models_app
from cds_hooks.cli.common import fail, repository_from, settings_from

CONFIG = typer.Option(None, "--config", "-c", help="TOML configuration file (the store and model repository)")
APPROVER = typer.Option(..., "--approver", help="Name of the person approving the change (kept in the audit record)")
REASON = typer.Option(..., "--reason", help="Why the change is made (kept in the audit record)")


def _store(config: Path | None) -> Any:
    from store.store import Store

    settings = settings_from(config)
    try:
        store = Store(settings.store_url(), settings.store.hmac_secret.encode())
        store.migrate()
    except Exception as exc:  # any driver or migration error: say which store could not be opened
        fail(f"cannot open the store {settings.store_url().split('@')[-1]}: {type(exc).__name__}: "
             f"{str(exc).splitlines()[0] if str(exc) else ''} (check store.url and that the database is reachable)")
    return store


def _refused(exc: Any) -> None:
    typer.secho(" ".join(exc.headline.split()), fg="red", err=True)
    for line in exc.lines:
        typer.secho(f"  ✗ {line}", fg="red", err=True)
    raise typer.Exit(1)


@models_app.command("promote")
def models_promote(
    model_id: str = typer.Argument(..., help="Model id, e.g. t2d-onset-5y"),
    version: str = typer.Option(..., "--version", help="The version to make the champion"),
    approver: str = APPROVER,
    reason: str = REASON,
    config: Path = CONFIG,
) -> None:
    """Make VERSION the champion if its shadow evidence meets the acceptance criteria; running services switch
    within seconds."""
    from inference.promotion import PromotionRefused, promote
    from store.audit import AuditConflict

    repository = repository_from(config)
    store = _store(config)
    try:
        done = promote(store, repository, model_id, version, approver=approver, reason=reason)
    except PromotionRefused as exc:
        _refused(exc)
    except AuditConflict as exc:
        fail(f"{exc}; run the command again to judge the evidence against the new chain")
    for result in done.results:
        typer.echo(f"  ✓ {result.line()}")
    rec = done.record
    typer.echo(f"promoted {model_id} {rec['from_version']} -> {rec['to_version']} (audit record #{done.seq}, "
               f"hash {rec['record_hash']}); running services switch within a few seconds, and "
               f"{rec['from_version']} keeps running in shadow")


@models_app.command("rollback")
def models_rollback(
    model_id: str = typer.Argument(..., help="Model id"),
    approver: str = APPROVER,
    reason: str = REASON,
    config: Path = CONFIG,
) -> None:
    """Return to the champion before the latest promotion still in force (audited; no acceptance criteria)."""
    from inference.promotion import PromotionRefused, rollback
    from store.audit import AuditConflict

    repository = repository_from(config)
    store = _store(config)
    try:
        done = rollback(store, repository, model_id, approver=approver, reason=reason)
    except PromotionRefused as exc:
        _refused(exc)
    except AuditConflict as exc:
        fail(f"{exc}; run the command again")
    rec = done.record
    typer.echo(f"rolled back {model_id} {rec['from_version']} -> {rec['to_version']} (audit record #{done.seq}, "
               f"hash {rec['record_hash']}); running services switch within a few seconds")


def _figures(evidence: dict[str, Any]) -> str:
    """The key numbers of a record's evidence, in one line."""
    from inference.model_card import evidence_figures

    return "; ".join(f"{k} {v}" for k, v in evidence_figures(evidence).items())


@models_app.command("history")
def models_history(model_id: str = typer.Argument(..., help="Model id"), config: Path = CONFIG) -> None:
    """The audit chain of a model, oldest first, verified."""
    from store.audit import verify_chain

    store = _store(config)
    records = store.audit_records(model_id)
    if not records:
        typer.echo(f"{model_id}: no promotion or rollback recorded (the champion is the one aliases.yaml names)")
        return
    for rec in records:
        typer.echo(f"#{rec.seq} {rec.recorded_at} {rec.action} {rec.from_version} -> {rec.to_version} "
                   f"by {rec.approver}: {rec.reason}")
        figures = _figures(rec.evidence_doc)
        typer.echo(f"    evidence {rec.evidence_digest}" + (f" ({figures})" if figures else ""))
        typer.echo(f"    files {len(rec.files_doc)}, previous {rec.previous_hash[:16]}…, hash {rec.record_hash}")
    check = verify_chain(model_id, records)
    if not check.ok:
        fail(f"{model_id}: {check.summary()}")
    typer.echo(f"{model_id}: {check.summary()}")


@models_app.command("verify-audit")
def models_verify_audit(config: Path = CONFIG) -> None:
    """Verify the audit chain of every model; non-zero exit when any is broken."""
    from store.audit import verify_chain

    store = _store(config)
    by_model: dict[str, list[Any]] = {}
    for rec in store.audit_records():
        by_model.setdefault(rec.model_id, []).append(rec)
    if not by_model:
        typer.echo("no audit records")
        return
    broken = 0
    for model_id, records in sorted(by_model.items()):
        check = verify_chain(model_id, records)
        broken += not check.ok
        typer.secho(f"{model_id}: {check.summary()}", fg=None if check.ok else "red", err=not check.ok)
    if broken:
        raise typer.Exit(1)
