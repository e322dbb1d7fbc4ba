"""`cds-onnx models list` shows the champion the service serves: the promotion audit chain's, not aliases.yaml's."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from cds_hooks.cli import app
from conftest import MODELS
from inference.promotion import folder_digests
from store.audit import new_record
from store.store import Store

MODEL = "t2d-onset-5y"
SECRET = "list-test-secret-0123456789"


def test_models_list_follows_the_audit_chain_and_names_a_model_not_served(tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(MODELS / MODEL, root / MODEL)
    db = tmp_path / "store.sqlite3"
    config = tmp_path / "cds-onnx.toml"
    config.write_text(f'[models]\nroot = "{root}"\n[store]\nurl = "sqlite:///{db}"\nhmac_secret = "{SECRET}"\n')
    runner = CliRunner()

    before = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert before.exit_code == 0, before.output
    assert f"{MODEL}: champion 1.0.0, challenger 1.1.0 — " in before.output
    assert not db.exists()  # listing never creates a store

    store = Store(f"sqlite:///{db}", SECRET.encode())
    store.migrate()
    store.append_audit(new_record(None, model_id=MODEL, action="promote", from_version="1.0.0", to_version="1.1.0",
                                  approver="Dr A", reason="evidence met", evidence={},
                                  files=folder_digests(root / MODEL / "1.1.0")))
    after = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert f"{MODEL}: champion 1.1.0, challenger 1.0.0 — " in after.output
    assert after.output.rstrip().endswith("[audit record #1]")

    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER promotion_audit_no_update"))
        conn.execute(text("UPDATE promotion_audit SET approver = 'someone else'"))
    store.dispose()
    broken = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert "[NOT SERVED: its promotion audit chain does not verify" in broken.output
