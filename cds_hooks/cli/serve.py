"""`cds-onnx serve`: run the service, in one process or several sharing the port.

Before anything binds a port, `serve` refuses a configuration that trusts a public signing key (the CDS Hooks
sandbox's, whose private half is published) unless `--dev` says this is local development, and refuses a model
repository with problems, listing every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cds_hooks.cli.apps import app
from cds_hooks.cli.common import KEYS_FIX, config_choice, fail, fail_lines, settings_from, shown
from cds_hooks.settings import ConfigError, ServerSettings, load_settings, public_key_clients

WORKER_CONFIG_ENV = "CDS_ONNX_SERVE_CONFIG"  # the configuration file `serve --workers N` hands to its worker processes


@app.command()
def serve(
    config: Path = typer.Option(None, "--config", "-c", help="TOML configuration file"),
    host: str = typer.Option(None, help="Listen address (default from configuration)"),
    port: int = typer.Option(None, help="Listen port (default from configuration)"),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64,
                                help="Worker processes sharing the port (one per CPU core is a good start)"),
    dev: bool = typer.Option(False, "--dev", help="Local development: allow a configuration that trusts a public "
                                                  "signing key (the CDS Hooks sandbox); never in production"),
) -> None:
    """Run the CDS Hooks service (configuration: --config, else CDS_ONNX_CONFIG, else ./cds-onnx.toml, else the
    source checkout's development configuration)."""
    import os

    import uvicorn

    from cds_hooks.app import create_app
    from cds_hooks.logging_setup import configure_logging
    from inference.repository import ModelFolderError

    if workers > 1:  # the workers read the same file and the same overrides, as environment (inherited on spawn)
        if host:
            os.environ["CDS_ONNX_SERVER__HOST"] = host
        if port:
            os.environ["CDS_ONNX_SERVER__PORT"] = str(port)
    choice = config_choice(config)
    settings = settings_from(choice.path)
    public = public_key_clients(settings)
    if public and not dev:
        fail(f"cannot start: the configuration {choice.describe()} trusts a public signing key: {public[0]}, so "
             "anyone can sign calls as it — pass --dev for local development, or remove that client from "
             "auth.clients", 3)
    if host or port:  # the listen address is configuration too (the JWT audience and preview origin follow it)
        server = settings.server.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v})
        settings = settings.model_copy(update={"server": server})
    for client in settings.auth.clients:
        jwks_path = settings.path(client.jwks_file) if client.jwks_file is not None else None
        if jwks_path is not None and not jwks_path.is_file():
            fail(f"cannot start: {jwks_path.resolve()} (jwks_file of auth client {client.iss}) does not exist; "
                 f"{KEYS_FIX.format(dir=shown(jwks_path.resolve().parent))} to create the local signing key, "
                 "or fix jwks_file in the configuration", 3)
    try:
        settings.auth_settings()  # reads every client's jwks_file now, not in the middle of start-up
    except ConfigError as exc:
        fail(f"cannot start: {exc}", 3)
    configure_logging()
    try:
        application = create_app(settings, freeze_gc=True)  # with workers: a check that fails fast, then dropped
    except ModelFolderError as exc:
        fail_lines(f"cannot start: {len(exc.lines)} problem{'s' if len(exc.lines) != 1 else ''} in the model "
                   "repository (fix them, or point models.root at a valid repository; `cds-onnx models validate` "
                   "lists them too):", exc.lines, 3)
    except (ConfigError, OSError, ValueError) as exc:
        fail(f"cannot start: {exc}", 3)
    typer.echo(f"configuration: {choice.describe()}" + (" — development mode (--dev): trusting "
                                                        f"{'; '.join(public)}" if public else ""), err=True)
    if workers == 1:
        uvicorn.run(application, host=settings.server.host, port=settings.server.port,
                    **uvicorn_options(settings.server))
        return
    del application
    os.environ[WORKER_CONFIG_ENV] = str(choice.path.resolve()) if choice.path is not None else ""
    run_workers(workers, settings.server)


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """What every `serve` passes to uvicorn, with one worker or many: our logging configuration, no access log, the
    protocol that writes an answer's head together with its body (cds_hooks/http_protocol.py), and X-Forwarded-*
    applied only from the proxies `server.forwarded_allow_ips` names (uvicorn's own default trusts 127.0.0.1: any
    local process, or a same-host proxy that passes a client's header through, could set the peer address that the
    preview token endpoint's loopback check reads)."""
    from cds_hooks.http_protocol import OneWriteHttpToolsProtocol

    proxies = {"proxy_headers": True, "forwarded_allow_ips": ",".join(server.forwarded_allow_ips)} \
        if server.forwarded_allow_ips else {"proxy_headers": False}
    return {"log_config": None, "access_log": False, "http": OneWriteHttpToolsProtocol, **proxies}


def run_workers(workers: int, server: ServerSettings) -> None:
    """uvicorn's supervisor (restarts a worker that dies, stops all on SIGTERM), one SO_REUSEPORT socket per worker."""
    import shutil

    import uvicorn

    from cds_hooks.cli.worker_sockets import ReusePortSupervisor, WorkerSockets, bind_reuseport, new_slot_dir

    host, port = server.host, server.port
    config = uvicorn.Config("cds_hooks.cli.serve:worker_app", factory=True, workers=workers, host=host, port=port,
                            **uvicorn_options(server))
    try:
        sockets = bind_reuseport(host, port, workers, config.backlog)
    except OSError as exc:
        fail(f"cannot start: cannot listen on {host}:{port} ({exc.strerror or exc})", 3)
    slot_dir = new_slot_dir()
    try:
        ReusePortSupervisor(config, sockets=WorkerSockets(sockets, slot_dir)).run()
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(slot_dir, ignore_errors=True)


def worker_app() -> Any:
    """The app of one `serve --workers N` worker process: the configuration the parent checked, read again here."""
    import os

    from cds_hooks.app import create_app
    from cds_hooks.logging_setup import configure_logging

    configure_logging()
    raw = os.environ.get(WORKER_CONFIG_ENV, "")
    return create_app(load_settings(Path(raw) if raw else None), freeze_gc=True)
