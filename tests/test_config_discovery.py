"""Every command finds its configuration the same way (--config > CDS_ONNX_CONFIG > ./cds-onnx.toml > the source
checkout's development configuration > built-in defaults), works from any folder, never says "Field required", and
`serve` refuses a configuration trusting the public CDS Hooks sandbox key unless --dev is given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import cds_hooks.settings as settings_module
from cds_hooks.settings import ConfigError, find_config, load_settings, public_key_clients
from conftest import ROOT
from service_process import free_port, stop_process

PCE = ROOT / "models" / "ascvd-pce-10y"
SECRET = 'hmac_secret = "a-test-secret-0123456789"\n'


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_ONNX_")}
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**base, "NO_COLOR": "1", "COLUMNS": "300", **env})


def config_with_models(folder: Path, name: str = "cds-onnx.toml") -> Path:
    """A configuration in `folder` whose models.root is relative to it (models/ beside it, a copy of PCE)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PCE, folder / "models" / "ascvd-pce-10y")
    path = folder / name
    path.write_text(f'[models]\nroot = "models"\n[store]\n{SECRET}')
    return path


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, named, local = tmp_path / "explicit.toml", tmp_path / "named.toml", tmp_path / "cds-onnx.toml"
    for path in (explicit, named, local):
        path.write_text("")
    env = {"CDS_ONNX_CONFIG": str(named)}
    assert find_config(explicit, cwd=tmp_path, environ=env).path == explicit
    assert find_config(None, cwd=tmp_path, environ=env).path == named
    assert find_config(None, cwd=tmp_path, environ={}).path == local
    local.unlink()
    checkout = find_config(None, cwd=tmp_path, environ={})
    assert checkout.path == ROOT / "config" / "development.toml" and "source checkout" in checkout.origin
    monkeypatch.setattr(settings_module, "SOURCE_ROOT", tmp_path / "site-packages")  # an installed package
    none = find_config(None, cwd=tmp_path, environ={})
    assert none.path is None and "built-in defaults" in none.describe()


def test_built_in_defaults_are_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDS_ONNX_"):
            monkeypatch.delenv(name)
    settings = load_settings(None, need_store=False)
    assert settings.models.root == Path("models") and settings.store.url.startswith("sqlite:///")
    with pytest.raises(ConfigError) as exc:
        load_settings(None)  # opening the store needs the pseudonymisation secret: said in plain words
    assert str(exc.value).startswith("configuration: store.hmac_secret: not set — set hmac_secret in the [store] table "
                                     "or CDS_ONNX_STORE__HMAC_SECRET")
    monkeypatch.setenv("CDS_ONNX_STORE__HMAC_SECRET", "a-test-secret-0123456789")
    assert load_settings(None).store.hmac_secret == "a-test-secret-0123456789"


def test_commands_work_from_a_folder_outside_the_repository(tmp_path: Path) -> None:
    config = config_with_models(tmp_path / "deployment")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    by_env = cli(["models", "list"], elsewhere, CDS_ONNX_CONFIG=str(config))
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.startswith("ascvd-pce-10y: champion 1.0.0")  # models.root resolved against the file's folder
    local = cli(["models", "validate"], tmp_path / "deployment")  # ./cds-onnx.toml
    assert local.returncode == 0, local.stderr
    assert local.stdout.strip() == "ok: 1 models, 1 versions valid in models"


def test_precedence_through_the_command(tmp_path: Path) -> None:
    good = config_with_models(tmp_path / "good", "good.toml")
    here = tmp_path / "work"
    here.mkdir()
    (here / "cds-onnx.toml").write_text(f'[models]\nroot = "no-such-models"\n[store]\n{SECRET}')
    local = cli(["models", "list"], here)
    assert local.returncode == 1 and "no-such-models: model repository folder not found" in local.stderr
    assert cli(["models", "list"], here, CDS_ONNX_CONFIG=str(good)).returncode == 0  # the environment beats ./
    missing = cli(["models", "list"], here, CDS_ONNX_CONFIG=str(tmp_path / "gone.toml"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'gone.toml'} does not exist" in missing.stderr and "CDS_ONNX_CONFIG" in missing.stderr
    explicit = cli(["models", "list", "--config", str(good)], here, CDS_ONNX_CONFIG=str(tmp_path / "gone.toml"))
    assert explicit.returncode == 0, explicit.stderr  # --config beats the environment


def test_no_pydantic_wording_for_a_configuration_without_a_store_table(tmp_path: Path) -> None:
    (tmp_path / "cds-onnx.toml").write_text('[server]\nport = 8081\n[modles]\nroot = "models"\n')
    result = cli(["monitor", "report"], tmp_path)
    assert result.returncode == 2
    assert "Field required" not in result.stderr and "type=" not in result.stderr
    assert "modles: 'modles' is not a known field — did you mean 'models'?" in result.stderr
    (tmp_path / "cds-onnx.toml").write_text('[server]\nport = 8081\n')
    result = cli(["store", "purge"], tmp_path)
    assert result.returncode == 2 and "store.hmac_secret: not set" in result.stderr
    assert "Field required" not in result.stderr


def sandbox_workdir(tmp_path: Path) -> Path:
    """A copy of the development configuration using a copy of the PCE model, a store and keys in tmp_path."""
    config = tmp_path / "config" / "development.toml"
    config.parent.mkdir()
    shutil.copytree(PCE, tmp_path / "models" / "ascvd-pce-10y")
    config.write_text((ROOT / "config" / "development.toml").read_text())
    assert cli(["keys", "generate", "--dir", "var/keys"], tmp_path).returncode == 0
    return config


def test_public_key_clients_are_named() -> None:
    settings = load_settings(ROOT / "config" / "development.toml")
    found = public_key_clients(settings)
    assert len(found) == 1 and found[0].startswith("auth.clients[1] (iss https://sandbox.cds-hooks.org)")
    production = load_settings(ROOT / "config" / "production.example.toml", need_store=False)
    assert public_key_clients(production) == []


def test_serve_refuses_the_sandbox_key_without_dev(tmp_path: Path) -> None:
    config = sandbox_workdir(tmp_path)
    port = free_port()
    result = cli(["serve", "--config", "config/development.toml", "--port", str(port)], tmp_path)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cannot start: the configuration config/development.toml (from --config) trusts a "
                               "public signing key: auth.clients[1] (iss https://sandbox.cds-hooks.org)")
    assert "pass --dev for local development, or remove that client from auth.clients" in lines[0]
    assert "Uvicorn running" not in result.stderr and config.is_file()
    # found without --config too (./cds-onnx.toml), and the message names that file
    (tmp_path / "cds-onnx.toml").write_text(config.read_text().replace('"../', '"'))
    found = cli(["serve", "--port", str(port)], tmp_path)
    assert found.returncode == 3 and "cds-onnx.toml (from ./cds-onnx.toml) trusts a public signing key" in found.stderr


def test_serve_starts_with_dev(tmp_path: Path) -> None:
    sandbox_workdir(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_ONNX_")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cds_hooks.cli", "serve", "--dev", "--config",
                                 "config/development.toml", "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        ready = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.3)
        assert ready, log.read_text()
        services = httpx.get(f"http://127.0.0.1:{port}/cds-services", timeout=10)
        assert services.status_code in (200, 401)  # up; discovery may need a token under this configuration
    finally:
        stop_process(proc)
    assert "development mode (--dev): trusting auth.clients[1] (iss https://sandbox.cds-hooks.org)" in log.read_text()
