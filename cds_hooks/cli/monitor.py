"""`cds-onnx monitor …` and `cds-onnx store …`: the ML team's commands on the store of a running deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from cds_hooks.cli.common import settings_from
from cds_hooks.cli.apps import monitor_app, store_app


def _store(config: Path | None) -> Any:
    from store.store import Store

    settings = settings_from(config)
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    store.migrate()
    return settings, store


def _since(text: str) -> datetime:
    """An ISO date/date-time, or a relative period such as 30d or 12w."""
    text = text.strip()
    if text[-1:] in ("d", "w") and text[:-1].isdigit():
        days = int(text[:-1]) * (7 if text.endswith("w") else 1)
        return datetime.now(UTC) - timedelta(days=days)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a date (YYYY-MM-DD), a date-time, or a period like 30d") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@monitor_app.command("report")
def report(
    since: str = typer.Option("30d", help="Start of the window: YYYY-MM-DD, ISO date-time, or e.g. 30d"),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML report file"),
    json_out: Path = typer.Option(None, "--json", help="Also write the numbers as JSON"),
    outcome: str = typer.Option(None, "--outcome", help="Only outcomes with this system|code count as events"),
    horizon_days: int = typer.Option(None, help="Event window after a prediction (default: the model's horizon)"),
    threshold: float = typer.Option(None, help="Score that counts as flagged in the fairness audit"),
    config: Path = typer.Option(None, "--config", "-c"),
) -> None:
    """Write the monitoring report (self-contained HTML, plus JSON with --json)."""
    from inference.repository import ModelFolderError, ModelRepository
    from monitoring.report import ReportOptions, build_summary, render_html

    settings, store = _store(config)
    try:
        repository = ModelRepository(settings.path(settings.models.root)).load()
    except ModelFolderError as exc:
        typer.secho(f"model repository not loaded ({exc}); drift uses the window's first half", fg="yellow", err=True)
        repository = None
    summary = build_summary(store, repository, ReportOptions(since=_since(since), outcome_code=outcome,
                                                              horizon_days=horizon_days, threshold=threshold))
    out.write_text(render_html(summary), encoding="utf-8")
    if json_out:
        json_out.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    typer.echo(f"wrote {out}" + (f" and {json_out}" if json_out else ""))


@monitor_app.command("import-outcomes")
def import_outcomes_cmd(file: Path, config: Path = typer.Option(None, "--config", "-c")) -> None:
    """Import outcomes (CSV: patient_id,system,code,observed_at[,label]; or FHIR NDJSON Conditions/Observations)."""
    from monitoring.outcomes import OutcomeFileError, import_outcomes

    _, store = _store(config)
    try:
        read, new = import_outcomes(store, file)
    except (OutcomeFileError, OSError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"read {read} outcomes, {new} new")


@monitor_app.command("export")
def export(out: Path = typer.Option(Path("seismometer"), "--out", help="Folder for the Parquet files"),
           config: Path = typer.Option(None, "--config", "-c")) -> None:
    """Write predictions.parquet and events.parquet for Epic's seismometer."""
    from monitoring.export import export_seismometer

    _, store = _store(config)
    preds, events = export_seismometer(store, out)
    typer.echo(f"wrote {preds} and {events}")


@store_app.command("purge")
def purge(older_than_days: int = typer.Option(None, help="Retention in days (default: store.retention_days)"),
          config: Path = typer.Option(None, "--config", "-c")) -> None:
    """Delete predictions, cards, feedback and outcomes older than the retention period."""
    settings, store = _store(config)
    counts = store.purge(older_than_days or settings.store.retention_days)
    typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))
