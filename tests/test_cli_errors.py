"""Every expected CLI failure is one line on stderr naming the fix, a non-zero exit code, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "synthea"
BUNDLE = next(p for p in sorted(FIXTURE.glob("patient-*.json")))


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env = {k: v for k, v in env.items() if not k.startswith("CDS_ONNX_")}
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = result.stderr.strip()
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr and "Error:" not in err.split(" ", 1)[0], result.stderr
    assert len(err.splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a copy of the development configuration pointing at the shipped models, and no var/keys."""
    config = tmp_path / "config"
    config.mkdir()
    text = (ROOT / "config" / "development.toml").read_text()
    (config / "development.toml").write_text(text.replace('"../models"', f'"{ROOT / "models"}"'))
    return tmp_path


def test_serve_without_keys_says_to_generate_them(workdir: Path) -> None:
    result = run(["serve", "--dev", "--config", "config/development.toml"], workdir)
    assert_one_line(result, "cds-onnx keys generate", "jwks.json")


def test_missing_config_file(workdir: Path) -> None:
    assert_one_line(run(["serve", "--config", "nope.toml"], workdir), "nope.toml", "--config")
    assert_one_line(run(["models", "list", "--config", "nope.toml"], workdir), "nope.toml")


def test_bad_config_value_names_the_setting(workdir: Path) -> None:
    bad = workdir / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\n[store]\nhmac_secret = "0123456789abcdef0123"\n')
    assert_one_line(run(["serve", "--config", str(bad)], workdir), "server.port")
    broken = workdir / "broken.toml"
    broken.write_text("[server\n")
    assert_one_line(run(["serve", "--config", str(broken)], workdir), "broken.toml")


def test_invoke_with_no_service_running(workdir: Path) -> None:
    result = run(["invoke", "ascvd-pce-10y", "--bundle", str(BUNDLE), "--no-auth", "--url", "http://127.0.0.1:9"],
                 workdir)
    assert_one_line(result, "cannot reach the CDS service at http://127.0.0.1:9", "cds-onnx serve")


def test_invoke_without_a_key(workdir: Path) -> None:
    result = run(["invoke", "ascvd-pce-10y", "--bundle", str(BUNDLE), "--url", "http://127.0.0.1:9"], workdir)
    assert_one_line(result, "cds-onnx keys generate", "--no-auth")


@pytest.mark.parametrize(("content", "needle"), [("{", "not valid JSON"), ('{"resourceType": "Patient"}', "Bundle"),
                                                  ("[1, 2]", "Bundle")])
def test_invoke_with_a_malformed_bundle(workdir: Path, content: str, needle: str) -> None:
    path = workdir / "bundle.json"
    path.write_text(content)
    result = run(["invoke", "ascvd-pce-10y", "--bundle", str(path), "--no-auth", "--url", "http://127.0.0.1:9"],
                 workdir)
    assert_one_line(result, "bundle.json", needle)


def test_invoke_with_a_missing_bundle_file(workdir: Path) -> None:
    result = run(["invoke", "ascvd-pce-10y", "--bundle", "absent.json", "--no-auth"], workdir)
    assert_one_line(result, "absent.json", "--bundle")


def test_invoke_argument_mistakes(workdir: Path) -> None:
    assert_one_line(run(["invoke", "ascvd-pce-10y"], workdir), "--bundle", "--fhir-server")
    assert_one_line(run(["invoke", "ascvd-pce-10y", "--fhir-server", "http://x/fhir"], workdir), "--patient")


def test_keys_generate_into_an_unwritable_place(workdir: Path) -> None:
    blocker = workdir / "file"
    blocker.write_text("x")
    assert_one_line(run(["keys", "generate", "--dir", str(blocker / "keys")], workdir), "--dir")
