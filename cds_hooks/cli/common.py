"""What every command shares: one-line failures, finding the configuration, and loading the model repository.

The configuration is found the same way by every command (cds_hooks.settings.find_config): --config, else
CDS_ONNX_CONFIG, else ./cds-onnx.toml, else the source checkout's development configuration, else the built-in
defaults; so a command works from any folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import typer

from cds_hooks.settings import CONFIG_ENV, LOCAL_CONFIG, ConfigChoice, ConfigError, find_config, load_settings

CLI_ISSUER = "cds-onnx-cli"
KEYS_FIX = "run `cds-onnx keys generate --dir {dir}`"


def fail(message: str, code: int = 1) -> NoReturn:
    """An expected failure: one line on stderr that says what went wrong and what to do; no traceback."""
    typer.secho(" ".join(str(message).split()), fg="red", err=True)
    raise typer.Exit(code)


def fail_lines(headline: str, lines: Iterable[str], code: int = 1) -> NoReturn:
    """An expected failure with several problems: a headline, then one problem per line; no traceback."""
    typer.secho(" ".join(headline.split()), fg="red", err=True)
    for line in lines:
        typer.secho(" ".join(str(line).split()), fg="red", err=True)
    raise typer.Exit(code)


def config_choice(config: Path | None) -> ConfigChoice:
    """The configuration file a command uses; a named file that does not exist is a one-line failure."""
    choice = find_config(config)
    if choice.path is not None and not choice.path.is_file():
        how = {"--config": "pass --config with the path of a TOML configuration file",
               CONFIG_ENV: f"set {CONFIG_ENV} to the path of a TOML configuration file, or unset it"}
        fail(f"configuration error: {choice.path} does not exist or is not a file; "
             f"{how.get(choice.origin, 'give --config FILE')} (e.g. config/production.example.toml, or "
             f"{LOCAL_CONFIG} in the working directory)", 2)
    return choice


def settings_from(config: Path | None, *, need_store: bool = True) -> Any:
    """The validated settings of the configuration `config_choice` finds; a bad setting is a one-line failure."""
    choice = config_choice(config)
    try:
        return load_settings(choice.path, need_store=need_store)
    except ConfigError as exc:
        fail(f"configuration error: {exc} (fix the setting in the file or its CDS_ONNX_ environment override)", 2)


def shown(path: Path) -> str:
    return str(path) if str(path) else "."


def models_root(config: Path | None, root: Path | None = None) -> tuple[Path, tuple[str, ...]]:
    """The model repository folder (`--root`, else the configuration's models.root) and the configured remote
    backends a model folder may name."""
    if root is not None:
        settings = settings_from(config, need_store=False) if config is not None else None
        return root, tuple(settings.models.remote_backends) if settings is not None else ()
    settings = settings_from(config, need_store=False)
    return Path(os.path.normpath(settings.path(settings.models.root))), tuple(settings.models.remote_backends)


def repository_from(config: Path | None, root: Path | None = None) -> Any:
    """The loaded model repository; an invalid one prints every problem, one per line, and exits 1."""
    from inference.repository import ModelFolderError, ModelRepository

    folder, backends = models_root(config, root)
    try:
        return ModelRepository(folder, backends).load()
    except ModelFolderError as exc:
        fail_lines(f"invalid: {len(exc.lines)} problem{'s' if len(exc.lines) != 1 else ''} in the model repository "
                   f"{folder}:", exc.lines)
