"""Cards for every shipped model: spec limits, valid Markdown, size budget, suggestions, links, and snapshots."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

import fhirfactory as F
from cards.builder import CardContext, build_cards
from fhir_mapping.result import FeatureValue, MappingResult, MissingFeature, SourceRef
from inference.repository import ModelRepository
from inference.runtime import ModelRuntime

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REPO = ModelRepository(ROOT / "models").load()
RUNTIMES = {e.id: e.champion for e in REPO.entries.values()}
DETAIL_BUDGET = 4500  # characters: a card must stay readable in a narrow sidebar


def mapping_for(runtime: ModelRuntime, how: str) -> MappingResult:
    """Inputs at the top, bottom or middle of every validated range; or all missing; or all out of range."""
    result = MappingResult()
    for spec_in in runtime.manifest.inputs:
        feature = runtime.spec.features[spec_in.name]
        if how == "missing":
            result.missing[spec_in.name] = MissingFeature(spec_in.name, "Nothing usable on record in the last 2 "
                                                          "years: a much longer explanation of why " * 2,
                                                          required=True, label=feature.label)
            continue
        low, high = spec_in.range or (0.0, 1.0)
        value = {"max": high, "min": low, "mid": (low + high) / 2, "out": high * 10 + 1}[how]
        if spec_in.kind == "binary":
            value = 1.0 if how in ("max", "out") else 0.0
        if how == "mid" and spec_in.kind != "binary":
            value = round(value, 1)
        result.values[spec_in.name] = FeatureValue(
            name=spec_in.name, value=float(value), unit=feature.unit, label=feature.label,
            sources=[SourceRef(reference=f"Observation/{spec_in.name}-1", resource_type="Observation",
                               date="2026-11-01")], date="2026-11-01")
    if how != "missing":
        for rule in runtime.manifest.population:  # members of the intended population
            value = rule.equals if rule.equals is not None else (rule.min if rule.min is not None else 0.0)
            result.values[rule.feature] = FeatureValue(rule.feature, float(value),
                                                       label=runtime.spec.features[rule.feature].label)
    return result


def cards_for(model_id: str, how: str, **ctx: Any) -> list[dict[str, Any]]:
    runtime = RUNTIMES[model_id]
    mapping = mapping_for(runtime, how)
    prediction = runtime.predict(mapping)
    context = CardContext(model_id, "p1", ctx.get("encounter"), AT, "https://cds.example.org",
                          ctx.get("smart_app_url"))
    return build_cards(runtime.manifest, runtime.spec, prediction, mapping, context)


CASES = [(m, how) for m in sorted(RUNTIMES) for how in ("max", "min", "mid", "missing", "out")]


@pytest.mark.parametrize(("model_id", "how"), CASES)
def test_card_fits_the_spec_for_extreme_inputs(model_id: str, how: str) -> None:
    for card in cards_for(model_id, how):
        assert 0 < len(card["summary"]) < 140, card["summary"]
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"] and card["source"]["url"].startswith("https://")
        for key, value in card.items():
            assert value not in (None, "", [], {}), f"{key} is empty"
        if card.get("suggestions"):
            expected = "any" if len(card["suggestions"]) > 1 else "at-most-one"
            assert card["selectionBehavior"] == expected
        else:
            assert "selectionBehavior" not in card
        assert len(card["detail"]) < DETAIL_BUDGET, f"{model_id}/{how}: {len(card['detail'])} characters"
        assert not re.search(r"\\\d", card["detail"]), "a number was escaped as if it started a list"
        assert all(r["display"] for r in card["overrideReasons"])
        tokens = MarkdownIt("commonmark").enable("table").parse(card["detail"])
        html = [t for t in tokens if t.type in ("html_block", "html_inline")]
        html += [c for t in tokens for c in (t.children or []) if c.type == "html_inline"]
        assert not html, f"raw HTML in {model_id}/{how}"


@pytest.mark.parametrize("model_id", sorted(RUNTIMES))
def test_no_number_outside_validated_ranges(model_id: str) -> None:
    card = cards_for(model_id, "out")[0]
    assert "outside the range the model was validated for" in card["detail"] or "is for" in card["detail"]
    assert "suggestions" not in card


def test_indicators_are_never_critical_for_risk_estimates() -> None:
    for model_id, runtime in RUNTIMES.items():
        critical = [c.label for c in runtime.manifest.categories if c.indicator == "critical"]
        if model_id != "news2":  # NEWS2 ≥7 calls for an emergency response (RCP), not an estimate to read later
            assert not critical, (model_id, critical)


def test_guideline_follow_ups_are_recommended_only_when_the_guideline_says_so() -> None:
    runtime = RUNTIMES["kfre-4var"]
    mapping = mapping_for(runtime, "mid")
    mapping.values["egfr"].value, mapping.values["uacr"].value, mapping.values["age"].value = 20.0, 1500.0, 60.0
    card = build_cards(runtime.manifest, runtime.spec, runtime.predict(mapping), mapping,
                       CardContext("kfre-4var", "p1", None, AT, "https://cds.example.org"))[0]
    assert "(high)" in card["summary"]
    labels = {s["label"]: s for s in card["suggestions"]}
    assert labels["Refer to nephrology"]["isRecommended"] is True
    assert labels["Save Kidney failure risk (KFRE) to the chart"]["isRecommended"] is False
    referral = labels["Refer to nephrology"]["actions"][0]["resource"]
    assert referral["resourceType"] == "ServiceRequest" and referral["status"] == "draft"
    assert card["selectionBehavior"] == "any"


def test_smart_app_link_when_configured() -> None:
    card = cards_for("ascvd-pce-10y", "mid", smart_app_url="https://apps.example.org/launch")[0]
    smart = [link for link in card["links"] if link["type"] == "smart"]
    assert smart == [{"label": "Open in risk app", "url": "https://apps.example.org/launch", "type": "smart",
                      "appContext": "model=ascvd-pce-10y"}]
    assert all(link["type"] == "absolute" for link in cards_for("ascvd-pce-10y", "mid")[0]["links"])


def test_a_card_reads_no_template_file_once_its_templates_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    first = cards_for("ascvd-pce-10y", "mid")  # loads the template and its partials
    touched: list[str] = []

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        touched.append(str(path))
        return real_stat(path, *args, **kwargs)

    real_stat = os.stat
    monkeypatch.setattr(os, "stat", stat)  # Jinja's auto-reload checks each template's mtime through os.stat
    again = cards_for("ascvd-pce-10y", "mid")
    monkeypatch.undo()
    assert [p for p in touched if p.endswith(".j2")] == []
    assert [c["detail"] for c in again] == [c["detail"] for c in first]


def test_stale_inputs_are_flagged() -> None:
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.mapper import map_features

    runtime = RUNTIMES["ascvd-pce-10y"]
    record = [r for r in F.pce_record() if r.get("code", {}).get("coding", [{}])[0].get("code") != "2093-3"]
    record.append(F.quantity_obs("2093-3", 213, "mg/dL", days=500))
    mapping = map_features(runtime.spec, ResourceIndex.from_prefetch({"b": F.bundle(record)}), at=F.NOW,
                           valuesets=runtime.valuesets, patient_id="p1")
    card = build_cards(runtime.manifest, runtime.spec, runtime.predict(mapping), mapping,
                       CardContext("ascvd-pce-10y", "p1", None, F.NOW, "https://cds.example.org"))[0]
    line = next(ln for ln in card["detail"].splitlines() if ln.startswith("- Total cholesterol"))
    assert "stale: 16 months old" in line
    hdl = next(ln for ln in card["detail"].splitlines() if ln.startswith("- HDL"))
    assert "stale" not in hdl


def _normalise(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = json.dumps(cards, sort_keys=True, ensure_ascii=False)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return json.loads(text)


@pytest.mark.parametrize("model_id", sorted(RUNTIMES))
def test_card_snapshot(model_id: str) -> None:
    """The whole card JSON for fixed inputs; regenerate deliberately with UPDATE_SNAPSHOTS=1 and review the diff."""
    cards = _normalise(cards_for(model_id, "mid", encounter="e1"))
    path = SNAPSHOTS / f"{model_id}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            pytest.fail(f"missing snapshot {path.name}")
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(cards, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert cards == json.loads(path.read_text())


