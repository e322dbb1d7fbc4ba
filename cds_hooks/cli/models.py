"""`cds-onnx models list|validate|card`: the model repository seen from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cds_hooks.cli.apps import models_app
from cds_hooks.cli.common import repository_from

@models_app.command("list")
def models_list(config: Path = typer.Option(None, "--config", "-c")) -> None:
    """List models with their champion and challenger versions."""
    repo = repository_from(config)
    for entry in repo.entries.values():
        challenger = f", challenger {entry.challenger.version}" if entry.challenger else ""
        typer.echo(f"{entry.id}: champion {entry.champion.version}{challenger} — {entry.champion.manifest.title}")


@models_app.command("validate")
def models_validate(config: Path = typer.Option(None, "--config", "-c")) -> None:
    """Validate every model folder (manifest, spec, ONNX signature, golden examples, model card)."""
    repo = repository_from(config)
    total = sum(len(e.versions) for e in repo.entries.values())
    typer.echo(f"ok: {len(repo.entries)} models, {total} versions valid")


@models_app.command("card")
def models_card(model_id: str, config: Path = typer.Option(None, "--config", "-c"),
                base_url: str = typer.Option("http://127.0.0.1:8080", "--base-url")) -> None:
    """Print a model's card (JSON)."""
    from cds_hooks.web import model_document

    repo = repository_from(config)
    entry = repo.entries.get(model_id)
    if entry is None:
        typer.secho(f"no model '{model_id}'", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(model_document(entry, base_url.rstrip("/")), indent=2, ensure_ascii=False))
