"""A challenger runs in shadow on the same features: its prediction is recorded and never shown."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.app import create_app
from conftest import MODELS, SignedClient, make_settings
from test_pce_endpoint import call


def test_challenger_is_recorded_and_not_shown(tmp_path: Path, local_key: Any) -> None:
    root = tmp_path / "models"
    shutil.copytree(MODELS / "ascvd-pce-10y", root / "ascvd-pce-10y")
    challenger = root / "ascvd-pce-10y" / "1.1.0"
    shutil.copytree(root / "ascvd-pce-10y" / "1.0.0", challenger)
    manifest = yaml.safe_load((challenger / "manifest.yaml").read_text())
    manifest["version"] = "1.1.0"
    manifest["card"]["summary"] = "CHALLENGER {value} ({category})"
    (challenger / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False))
    (root / "ascvd-pce-10y" / "aliases.yaml").write_text('champion: "1.0.0"\nchallenger: "1.1.0"\n')

    with TestClient(create_app(make_settings(tmp_path, models={"root": str(root)}))) as client:
        api = SignedClient(client, local_key)
        resp = call(api, F.pce_record(gender="male", race="white"))
        assert resp.status_code == 200
        cards = resp.json()["cards"]
        assert len(cards) == 1 and "CHALLENGER" not in resp.text
        state = client.app.state.cds
        assert state.recorder.flush(10)
        rows = state.store.predictions(model_id="ascvd-pce-10y")
        assert {(r["alias"], r["model_version"]) for r in rows} == {("champion", "1.0.0"), ("challenger", "1.1.0")}
        champion = next(r for r in rows if r["alias"] == "champion")
        shadow = next(r for r in rows if r["alias"] == "challenger")
        assert champion["hook_instance"] == shadow["hook_instance"]
        assert champion["card_uuids"] == [cards[0]["uuid"]] and shadow["card_uuids"] == []
        assert shadow["features"] == champion["features"]  # the same features, in shadow
        model = client.get("/models/ascvd-pce-10y").json()
        assert model["champion"] == "1.0.0" and model["challenger"] == "1.1.0"


def test_champion_and_shadow_predictions_are_made_durable_in_one_sync(tmp_path: Path, local_key: Any,
                                                                       monkeypatch: Any) -> None:
    import os

    import store.journal as journal_module

    root = tmp_path / "models"
    shutil.copytree(MODELS / "ascvd-pce-10y", root / "ascvd-pce-10y")
    shutil.copytree(root / "ascvd-pce-10y" / "1.0.0", root / "ascvd-pce-10y" / "1.1.0")
    manifest_path = root / "ascvd-pce-10y" / "1.1.0" / "manifest.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["version"] = "1.1.0"
    manifest_path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False))
    (root / "ascvd-pce-10y" / "aliases.yaml").write_text('champion: "1.0.0"\nchallenger: "1.1.0"\n')
    syncs: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(journal_module.os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])

    with TestClient(create_app(make_settings(tmp_path, models={"root": str(root)}))) as client:
        resp = call(SignedClient(client, local_key), F.pce_record(gender="male", race="white"))
        assert resp.status_code == 200
        journal = client.app.state.cds.recorder.journal
        lines = journal.path.read_text().splitlines()
        assert len(syncs) == 1 and len(lines) == 2  # one write, one sync, both predictions
        assert {'"alias":"champion"' in lines[0], '"alias":"challenger"' in lines[1]} == {True}
