"""What every command shares: one-line failures and finding the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer

from cds_hooks.settings import ConfigError, load_settings

DEFAULT_CONFIG = Path("config/development.toml")
CLI_ISSUER = "cds-onnx-cli"
KEYS_FIX = "run `cds-onnx keys generate --dir {dir}`"


def fail(message: str, code: int = 1) -> NoReturn:
    """An expected failure: one line on stderr that says what went wrong and what to do; no traceback."""
    typer.secho(" ".join(str(message).split()), fg="red", err=True)
    raise typer.Exit(code)


def settings_from(config: Path | None) -> Any:
    if config is not None and not config.is_file():
        fail(f"configuration error: {config} does not exist or is not a file; pass --config with the path of a "
             f"TOML configuration file (e.g. {DEFAULT_CONFIG})", 2)
    try:
        return load_settings(config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
    except ConfigError as exc:
        fail(f"configuration error: {exc} (fix the setting in the file or its CDS_ONNX_ environment override)", 2)


def shown(path: Path) -> str:
    return str(path) if str(path) else "."


def repository_from(config: Path | None) -> Any:
    from inference.repository import ModelFolderError, ModelRepository

    settings = settings_from(config)
    try:
        return ModelRepository(settings.path(settings.models.root)).load()
    except ModelFolderError as exc:
        typer.secho(f"invalid: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
