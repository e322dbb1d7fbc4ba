"""`cds-onnx keys`: the local signing key a developer calls the service with."""

from __future__ import annotations

from pathlib import Path

import typer

from cds_hooks.cli.apps import keys_app
from cds_hooks.cli.common import fail
from cds_hooks.signing import generate_keypair

@keys_app.command("generate")
def keys_generate(
    directory: Path = typer.Option(Path("var/keys"), "--dir", help="Folder for private.pem and jwks.json"),
    kid: str = typer.Option(None, help="Key id (default: RFC 7638 thumbprint)"),
    overwrite: bool = typer.Option(False, help="Replace an existing key"),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when a key already exists"),
) -> None:
    """Make a local ES384 key pair and its JWK Set."""
    if if_missing and (directory / "private.pem").is_file():
        typer.echo(f"key exists in {directory}")
        return
    try:
        key = generate_keypair(directory, kid, overwrite=overwrite)
    except FileExistsError as exc:
        fail(f"{exc} (use --overwrite to replace it, or --if-missing to keep it)")
    except (OSError, ValueError) as exc:
        fail(f"cannot write the key to {directory}: {exc} (choose a writable --dir)")
    typer.echo(f"wrote {directory / 'private.pem'} (0600) and {directory / 'jwks.json'} (kid {key.kid})")
