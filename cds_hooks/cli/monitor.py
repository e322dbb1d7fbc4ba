"""`cds-onnx monitor …` and `cds-onnx store …`: the ML team's commands on the store of a running deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from cds_hooks.cli.apps import monitor_app, store_app
from cds_hooks.cli.common import fail, settings_from


def _store(config: Path | None) -> Any:
    from store.store import Store

    settings = settings_from(config)
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    store.migrate()
    return settings, store


def _when(text: str, option: str) -> datetime:
    """An ISO date/date-time, or a period before now such as 30d or 12w."""
    text = text.strip()
    if text[-1:] in ("d", "w") and text[:-1].isdigit():
        days = int(text[:-1]) * (7 if text.endswith("w") else 1)
        return datetime.now(UTC) - timedelta(days=days)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a date (YYYY-MM-DD), a date-time, or a period like 30d",
                                 param_hint=option) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _repository(settings: Any) -> Any:
    from inference.repository import ModelFolderError, ModelRepository

    try:
        return ModelRepository(settings.path(settings.models.root),
                               tuple(settings.models.remote_backends)).load()
    except ModelFolderError as exc:
        typer.secho(f"warning: model repository not loaded ({exc}); the report has no declared outcomes and measures "
                    "drift against the window's first half", fg="yellow", err=True)
        return None


@monitor_app.command("report")
def report(
    since: str = typer.Option("30d", help="Start of the window: YYYY-MM-DD, ISO date-time, or e.g. 30d"),
    until: str = typer.Option(None, help="End of the window (default: now)"),
    outcomes_through: str = typer.Option(
        None, "--outcomes-through",
        help="Outcomes are complete up to this date (default: the end of the window); a prediction is judged only "
             "once its follow-up window has closed by then"),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML report file"),
    json_out: Path = typer.Option(None, "--json", help="Also write every number of the report as JSON"),
    threshold: float = typer.Option(None, help="Flag rule for the fairness audit: primary output at or above this "
                                               "(default: the manifest's warning/critical categories)"),
    config: Path = typer.Option(None, "--config", "-c"),
) -> None:
    """Write the monitoring report (self-contained HTML, plus JSON with --json)."""
    from monitoring.report import ReportOptions, build_summary
    from monitoring.report_html import render_html

    options = ReportOptions(since=_when(since, "--since"), until=_when(until, "--until") if until else None,
                            outcomes_through=_when(outcomes_through, "--outcomes-through") if outcomes_through
                            else None, threshold=threshold)
    settings, store = _store(config)
    summary = build_summary(store, _repository(settings), options)
    try:
        out.write_text(render_html(summary), encoding="utf-8")
        if json_out:
            json_out.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the report: {exc.strerror}: {exc.filename}; check --out/--json")
    typer.echo(f"wrote {out}" + (f" and {json_out}" if json_out else ""))


@monitor_app.command("import-outcomes")
def import_outcomes_cmd(
    file: Path = typer.Argument(None, help="CSV (patient_id,system,code,observed_at[,label]) or FHIR NDJSON of "
                                           "Condition, Encounter, Procedure, Observation or Patient resources"),
    fhir_server: str = typer.Option(None, "--fhir-server", help="Search this FHIR server instead of reading a file"),
    token: str = typer.Option(None, "--token", envvar="CDS_ONNX_OUTCOMES_TOKEN",
                              help="Bearer token for --fhir-server (or the CDS_ONNX_OUTCOMES_TOKEN variable)"),
    code: list[str] = typer.Option(None, "--code", help="system|code to search for (repeatable; default: every "
                                                        "outcome code the models' manifests declare)"),
    config: Path = typer.Option(None, "--config", "-c"),
) -> None:
    """Import outcomes, pseudonymised like predictions; the report ties each to the models that declare its code."""
    from monitoring.outcomes import OutcomeFileError, OutcomeServerError, fetch_outcomes, import_outcomes

    if (file is None) == (fhir_server is None):
        fail("give either an outcome FILE or --fhir-server URL (not both)", 2)
    settings, store = _store(config)
    try:
        if file is not None:
            batch, new = import_outcomes(store, file)
        else:
            codes = list(code or []) or _declared_codes(settings)
            if not codes:
                fail("no outcome codes to search for: no model declares monitoring.outcome.codes; pass --code "
                     "system|code", 2)
            batch = fetch_outcomes(fhir_server, codes, token)
            new = store.write_outcomes(batch.rows)
    except (OutcomeFileError, OutcomeServerError) as exc:
        fail(f"error: {exc}")
    except OSError as exc:
        fail(f"error: cannot read {exc.filename}: {exc.strerror}")
    skipped = "".join(f"; skipped {n} ({reason})" for reason, n in sorted(batch.skipped.items()))
    typer.echo(f"read {len(batch.rows)} outcomes, {new} new{skipped}")


def _declared_codes(settings: Any) -> list[str]:
    repository = _repository(settings)
    if repository is None:
        return []
    codes: set[str] = set()
    for entry in repository.entries.values():
        for runtime in entry.versions.values():
            outcome = runtime.manifest.monitoring.outcome
            if outcome is not None:
                codes.update(outcome.codes)
    return sorted(codes)


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
