"""Model cards: JSON documents, the HTML page a card links to, the source icon, and the `models` CLI."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inference.model_card import required_attributes

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "cds-onnx")


def test_models_list_and_document(api: Any) -> None:
    listing = api.client.get("/models").json()["models"]
    ids = {m["id"] for m in listing}
    assert "ascvd-pce-10y" in ids
    for model in listing:
        doc = api.client.get(f"/models/{model['id']}").json()
        attrs = doc["model_card"]["attributes"]
        missing = [k for k in required_attributes(doc["kind"]) if k not in attrs]
        assert not missing, f"{model['id']} lacks {missing}"
        assert doc["card_url"] == f"http://testserver/models/{model['id']}/card"


def test_html_model_card_renders_every_attribute(api: Any) -> None:
    resp = api.client.get("/models/ascvd-pce-10y/card")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<h1>10-year ASCVD risk (2013 ACC/AHA Pooled Cohort Equations)</h1>" in page
    for title in required_attributes("evidence-based").values():
        assert title.replace("&", "&amp;") in page
    assert "Total cholesterol" in page and "130" in page and "320" in page
    assert api.client.get("/models/nope/card").status_code == 404


def test_card_links_point_at_the_model_card(api: Any) -> None:
    from test_pce_endpoint import call

    import fhirfactory as F

    card = call(api, F.pce_record()).json()["cards"][0]
    assert card["source"]["url"] == "http://testserver/models/ascvd-pce-10y/card"
    assert {"label": "Model card and validation", "type": "absolute",
            "url": "http://testserver/models/ascvd-pce-10y/card"} in card["links"]
    assert card["links"][0]["label"] == "Full reasoning, sources and what-if"  # the details page comes first
    assert api.client.get(card["source"]["url"].replace("http://testserver", "")).status_code == 200


def test_source_icon_is_a_100_pixel_png(api: Any) -> None:
    png = api.client.get("/static/icon.png")
    assert png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.content[16:24])
    assert (width, height) == (100, 100)


def test_models_cli() -> None:
    listed = subprocess.run([CLI, "models", "list", "--config", "config/development.toml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "ascvd-pce-10y: champion 1.0.0" in listed.stdout
    valid = subprocess.run([CLI, "models", "validate", "--config", "config/development.toml"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert valid.returncode == 0 and valid.stdout.startswith("ok:")
    card = subprocess.run([CLI, "models", "card", "ascvd-pce-10y", "--config", "config/development.toml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert '"id": "ascvd-pce-10y"' in card.stdout


@pytest.mark.parametrize("model_id", ["ascvd-pce-10y", "prevent-full", "news2", "egfr-ckd-epi-2021", "kfre-4var"])
def test_model_card_numbers_and_units_read_as_a_clinician_writes_them(api: Any, model_id: str) -> None:
    import re

    page = api.get(f"/models/{model_id}/card").text
    assert not re.search(r"\d\.0–|–\d+\.0\b", page)  # "40–79", never "40.0–79.0"
    assert "mm[Hg]" not in page and "{1.73_m2}" not in page
    assert not re.search(r"below 0\.\d", page)  # probability bounds as percentages


def _update_processes() -> list[tuple[str, str]]:
    """(model/version, its 'process of updates' text) for every shipped manifest that writes one."""
    import yaml

    found = []
    for manifest in sorted(ROOT.glob("models/*/*/manifest.yaml")):
        attrs = (yaml.safe_load(manifest.read_text()).get("model_card") or {}).get("attributes") or {}
        if isinstance(attrs.get("update_process"), str):
            found.append((f"{manifest.parent.parent.name}-{manifest.parent.name}", attrs["update_process"]))
    return found


@pytest.mark.parametrize(("model", "text"), _update_processes(), ids=[m for m, _ in _update_processes()])
def test_the_update_process_attribute_names_the_governed_promotion(model: str, text: str) -> None:
    """HTI-1 source attribute 'process of updates' must say how a version really reaches patients: only
    `cds-onnx models promote` (acceptance criteria and the audit chain, docs/governance.md) makes a champion; editing
    aliases.yaml does not. The T2D demonstrations had said 'promoted by aliases.yaml after review'."""
    assert "aliases.yaml" not in text, (model, text)
