"""`cds-onnx models list|validate|card|new`: the model repository seen from the command line, and a new model's
skeleton for its author."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cds_hooks.cli.apps import models_app
from cds_hooks.cli.common import fail, models_root, repository_from, settings_from
from inference.problems import shown_path as shown

CONFIG = typer.Option(None, "--config", "-c", help="TOML configuration file (its models.root is the repository)")
ROOT = typer.Option(None, "--root", help="The model repository folder (default: models.root of the configuration)")


@models_app.command("list")
def models_list(config: Path = CONFIG, root: Path = ROOT) -> None:
    """List models with the champion and challenger versions the service serves: those the promotion audit chain in
    the configured store gives (docs/governance.md), else aliases.yaml; a model the service would not serve says why.
    With --root and no --config there is no store, and aliases.yaml is shown."""
    repo = repository_from(config, root)
    governed, problems = _governed(config, root, repo)
    for entry in repo.entries.values():
        champion = entry.champion.version
        challenger = entry.challenger.version if entry.challenger else None
        source = "aliases.yaml"
        if entry.id in governed:
            (champion, challenger), source = governed[entry.id]
        line = f"{entry.id}: champion {champion}" + (f", challenger {challenger}" if challenger else "")
        note = f" [{source}]" if source != "aliases.yaml" else ""
        if entry.id in problems:
            note = f" [NOT SERVED: {problems[entry.id]}]"
        typer.echo(f"{line} — {entry.versions[champion].manifest.title}{note}")


def _governed(config: Path | None, root: Path | None, repo: Any
              ) -> tuple[dict[str, tuple[tuple[str, str | None], str]], dict[str, str]]:
    """What the promotion audit chain says, when a store is configured: {model: ((champion, challenger), source)}."""
    if root is not None and config is None:
        return {}, {}
    from cds_hooks.champion_sync import governed_state
    from store.store import Store

    settings = settings_from(config, need_store=False)
    url = settings.store_url()
    if not settings.store.hmac_secret or (url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file()):
        return {}, {}  # no store yet: nothing was ever promoted (and listing must not create one)
    store = Store(settings.store_url(), settings.store.hmac_secret.encode())
    try:
        store.migrate()
        state = governed_state(store, repo, store.audit_head())
    except Exception as exc:  # the list is still useful without the store; say why it shows aliases.yaml
        typer.secho(f"promotion audit not read ({type(exc).__name__}); showing aliases.yaml", fg="yellow", err=True)
        return {}, {}
    finally:
        store.dispose()
    return ({m: ((a.champion, a.challenger), f"audit record #{seq}") for m, (a, seq) in state.aliases.items()},
            dict(state.problems))


@models_app.command("validate")
def models_validate(config: Path = CONFIG, root: Path = ROOT) -> None:
    """Validate every model folder and list every problem, one per line as `file: field: problem — fix`: manifest,
    feature spec, units and ranges across them, ONNX signature, golden examples, cards rendered from the golden
    examples, model card. Exit code 1 when there is any problem."""
    repo = repository_from(config, root)
    total = sum(len(e.versions) for e in repo.entries.values())
    typer.echo(f"ok: {len(repo.entries)} models, {total} versions valid in {shown(repo.root)}")


@models_app.command("card")
def models_card(model_id: str, config: Path = CONFIG, root: Path = ROOT,
                base_url: str = typer.Option("http://127.0.0.1:8080", "--base-url")) -> None:
    """Print a model's card (JSON)."""
    from cds_hooks.web import model_document

    repo = repository_from(config, root)
    entry = repo.entries.get(model_id)
    if entry is None:
        fail(f"no model '{model_id}' in {shown(repo.root)} (it has {', '.join(repo.entries) or 'none'})")
    typer.echo(json.dumps(model_document(entry, base_url.rstrip("/")), indent=2, ensure_ascii=False))


@models_app.command("new")
def models_new(
    model_id: str = typer.Argument(..., metavar="ID", help="The new model's id, e.g. ldl-risk-10y"),
    kind: str = typer.Option(..., "--kind", help="predictive (learned from data) or evidence-based (a published "
                                                 "equation or score): which HTI-1 attributes the model card holds"),
    root: Path = ROOT,
    config: Path = CONFIG,
) -> None:
    """Write the skeleton of a new model: models/ID/1.0.0/ (manifest.yaml, features.yaml, golden.yaml, build.py)
    and models/ID/aliases.yaml, every field commented. Fill it in, build model.onnx, then `cds-onnx models
    validate`."""
    from inference.authoring import SkeletonError, new_model_folder

    if kind not in ("predictive", "evidence-based"):
        fail(f"--kind '{kind}' is not predictive or evidence-based (predictive: learned from data, 31 HTI-1 "
             "attributes; evidence-based: a published equation or score, 13)", 2)
    folder_root = root if root is not None else models_root(config)[0]
    try:
        folder = new_model_folder(folder_root, model_id, kind)  # type: ignore[arg-type]
    except SkeletonError as exc:
        fail(str(exc), 2)
    typer.echo(f"wrote {shown(folder)}/ (manifest.yaml, features.yaml, golden.yaml, build.py) and "
               f"{shown(folder.parent / 'aliases.yaml')}")
    typer.echo("next: replace every <fill in: …>, build model.onnx with build.py, then run "
               f"`cds-onnx models validate --root {shown(folder_root)}` (docs/model-authoring.md)")
