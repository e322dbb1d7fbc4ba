"""A sequence model served through the normal CDS Hooks path: the number over HTTP is onnxruntime's on the tokens a
plain reading of the record gives; truncation, unknown codes, concept-group explanations and guards reach the card."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from cds_hooks.bundle_prefetch import bundle_resources, prefetch_from_resources
from cds_hooks.signing import LocalKey
from conftest import SignedClient, make_settings
from test_timeline import plain_timeline

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "t2d-timeline-5y"
FOLDER = MODEL / "1.0.0"
FIXTURES = ROOT / "tests" / "fixtures" / "synthea"
SERVICE = "t2d-timeline-5y"
MAX_LENGTH = yaml.safe_load((FOLDER / "manifest.yaml").read_text())["sequence"]["max_length"]
NO_DIABETES = "patient-0102-7f053ba4.json"  # a man of 57 (in 2025) without diabetes, two years of history


def model_root(tmp_path: Path, **manifest_changes: Any) -> Path:
    """A model repository holding only a copy of the timeline model, its manifest changed as asked."""
    root = tmp_path / "models"
    shutil.copytree(MODEL, root / "t2d-timeline-5y")
    if manifest_changes:
        path = root / "t2d-timeline-5y" / "1.0.0" / "manifest.yaml"
        doc = yaml.safe_load(path.read_text())
        for key, value in manifest_changes.items():
            doc["sequence"][key] = value
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return root


@pytest.fixture
def serve(tmp_path: Path, local_key: LocalKey) -> Iterator[Any]:
    clients: list[TestClient] = []

    def start(root: Path | None = None, **overrides: Any) -> SignedClient:
        from cds_hooks.app import create_app

        models = {"root": str(root or model_root(tmp_path))}
        models.update(overrides.pop("models", {}))
        app = create_app(make_settings(tmp_path, models=models, **overrides))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return SignedClient(client, local_key)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def call(api: SignedClient, resources: list[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == SERVICE)
    context = {"userId": "Practitioner/example", "patientId": patient_id}
    body = {"hook": "patient-view", "hookInstance": "3c6a6a4e-0a56-4b8e-9f2d-6f1f0d8e2b11", "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], resources, context)}
    resp = api.post(f"/cds-services/{SERVICE}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def fixture(name: str = NO_DIABETES) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    bundle = orjson.loads((FIXTURES / name).read_bytes())
    resources = bundle_resources(bundle)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return bundle, resources, patient["id"]


def recorded(api: SignedClient, card: dict[str, Any]) -> dict[str, Any]:
    state = api.app.state.cds
    assert state.recorder.flush(10)
    return state.store.predictions_for_card(card["uuid"])[0]


def plain_inputs(bundle: dict[str, Any], at: datetime, max_length: int, vocab_path: Path = FOLDER / "vocab.json"
                 ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, int, int]:
    """Events, token ids and ages as a plain reading gives them (truncated as documented), with the counts."""
    spec_doc = yaml.safe_load((FOLDER / "timeline.yaml").read_text())
    vocab = json.loads(vocab_path.read_text())
    events = plain_timeline(bundle, at, spec_doc)
    static = [e for e in events if e["static"]]
    coded = [e for e in events if not e["static"]]
    kept = static + coded[-(max_length - len(static)):] if len(coded) > max_length - len(static) else events
    kept.sort(key=lambda e: (e["time"], 0 if e["static"] else 1))
    birth = static[0]["time"]
    ids = np.array([vocab["tokens"].get(e["token"], vocab["special"]["[UNK]"]) for e in kept], dtype=np.int64)
    ages = np.array([(e["time"] - birth).total_seconds() / 86400 / 365.25 for e in kept], dtype=np.float32)
    unknown = sum(1 for e in kept if e["token"] not in vocab["tokens"])
    return kept, ids, ages, len(coded), unknown


def direct(ids: np.ndarray, ages: np.ndarray, mask: np.ndarray | None = None) -> float:
    session = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])
    mask = np.ones((1, len(ids)), dtype=np.float32) if mask is None else mask[np.newaxis, :]
    return float(session.run(["risk_5y"], {"tokens": ids[np.newaxis, :], "ages": ages[np.newaxis, :],
                                           "mask": mask})[0][0, 0])


def test_served_number_equals_onnxruntime_on_the_plainly_read_tokens(serve: Any) -> None:
    api = serve()
    bundle, resources, pid = fixture()
    [card] = call(api, resources, pid)
    assert card["summary"].startswith("NOT FOR CLINICAL USE")
    row = recorded(api, card)
    _, ids, ages, total, _ = plain_inputs(bundle, row["created_at"], MAX_LENGTH)
    assert total <= MAX_LENGTH - 2  # the whole timeline fits: nothing truncated
    expected = direct(ids, ages)
    assert row["outputs"]["risk_5y"] == pytest.approx(expected, abs=1e-6)
    shown = f"{expected * 100:.1f}%"
    assert shown in card["summary"]
    ra = card["suggestions"][0]["actions"][0]["resource"]
    assert ra["resourceType"] == "RiskAssessment"
    assert ra["prediction"][0]["probabilityDecimal"] == pytest.approx(expected, abs=1e-6)
    assert "Timeline truncated" not in card["detail"]


def test_truncation_and_unknown_codes_are_on_the_card_and_the_number_is_the_truncated_ones(
        serve: Any, tmp_path: Path) -> None:
    root = model_root(tmp_path, max_length=40)
    bundle, resources, pid = fixture()
    # codes the model "never saw": the patient's condition codes leave the copy's vocabulary
    vocab_path = root / "t2d-timeline-5y" / "1.0.0" / "vocab.json"
    doc = json.loads(vocab_path.read_text())
    kept, *_ = plain_inputs(bundle, datetime.now().astimezone(), 40)
    # codes of no concept group: an event of a group read as unknown gives no estimate (the next test)
    spec_doc = yaml.safe_load((FOLDER / "timeline.yaml").read_text())
    gone = {e["token"] for e in kept if e["token"].startswith("SNOMED/") and not any(
        _plain_group_members(e, group, spec_doc["code_systems"]) for group in spec_doc["groups"])}
    doc["tokens"] = {t: i for t, i in doc["tokens"].items() if t not in gone}
    vocab_path.write_text(json.dumps(doc))
    api = serve(root)
    [card] = call(api, resources, pid)
    row = recorded(api, card)
    kept, ids, ages, total, unknown = plain_inputs(bundle, row["created_at"], 40, vocab_path)
    assert len(ids) == 40 and total > 38
    assert row["outputs"]["risk_5y"] == pytest.approx(direct(ids, ages), abs=1e-6)
    first = next(e for e in kept if not e["static"])["time"].date().isoformat()
    assert (f"Timeline truncated: the model read the most recent 38 of {total:,} coded events (from {first}); "
            "older events were left out.") in card["detail"]
    assert unknown >= len(gone) > 0
    words = "has a code the model was not trained on and was" if unknown == 1 else \
        "have codes the model was not trained on and were"
    assert f"{unknown:,} of 40 events {words} read as unknown." in card["detail"]


def _plain_group_members(event: dict[str, Any], group: dict[str, Any], systems: dict[str, str]) -> bool:
    if event["code"] in group.get("codes", []):
        return True
    prefix, _, code = event["code"].partition("/")
    for name in group.get("valuesets", []):
        doc = json.loads((ROOT / "fhir_mapping" / "valuesets" / f"{name}.json").read_text())
        for entry in doc["codes"]:
            if entry["system"] != systems.get(prefix):
                continue
            if (doc.get("match") == "prefix" and code.startswith(entry["code"])) or entry["code"] == code:
                return True
    return False


def test_concept_group_contributions_are_the_masked_differences_in_clinical_words(serve: Any) -> None:
    api = serve()
    bundle, resources, pid = fixture()
    [card] = call(api, resources, pid)
    row = recorded(api, card)
    kept, ids, ages, _, _ = plain_inputs(bundle, row["created_at"], MAX_LENGTH)
    spec_doc = yaml.safe_load((FOLDER / "timeline.yaml").read_text())
    full = direct(ids, ages)
    effects = []
    for group in spec_doc["groups"]:
        members = [i for i, e in enumerate(kept) if not e["static"] and
                   _plain_group_members(e, group, spec_doc["code_systems"])]
        if not members:
            continue
        mask = np.ones(len(ids), dtype=np.float32)
        mask[members] = 0.0
        effects.append((group["label"], len(members), full - direct(ids, ages, mask)))
    effects.sort(key=lambda x: -abs(x[2]))
    assert len(effects) >= 3
    parts = [f"{label} ({n} event{'s' if n != 1 else ''}) {'raised' if d > 0 else 'lowered'} it by "
             f"{abs(d) * 100:.1f} percentage points" for label, n, d in effects[:3]]
    expected = "What moved the estimate most (each group of events left out in turn): " + "; ".join(parts) + "."
    assert expected in card["detail"]


def _shift(resources: list[dict[str, Any]], **patient: Any) -> list[dict[str, Any]]:
    out = [dict(r) for r in resources]
    for r in out:
        if r["resourceType"] == "Patient":
            r.update(patient)
    return out


def test_guards_deceased_first_then_population_then_too_few_events(serve: Any) -> None:
    api = serve()
    _, resources, pid = fixture()
    dead = _shift(resources, deceasedDateTime="2024-12-01")
    assert call(api, dead, pid) == []
    _, diabetic, did = fixture("patient-0066-cea543a6.json")
    assert call(api, _shift(diabetic, deceasedDateTime="2024-12-01"), did) == []  # deceased before population
    [card] = call(api, diabetic, did)
    assert "%" not in card["summary"] and "the record shows diabetes (a diagnosis" in card["detail"]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    obs = [r for r in resources if r["resourceType"] == "Observation"
           and r["code"]["coding"][0]["code"] == "4548-4"][:1]
    [card] = call(api, [patient, *obs], pid)
    assert card["indicator"] == "info" and "%" not in card["summary"]
    assert "only 1 coded event in the last 10 years is on record; the model needs at least 5" in card["detail"]
    state = api.app.state.cds
    assert state.recorder.flush(10)
    rows = state.store.predictions(model_id=SERVICE)
    assert any("only 1 coded event" in " ".join(r["guard_reasons"]) for r in rows)


def test_age_outside_the_validated_range_gives_no_number(serve: Any) -> None:
    api = serve()
    _, resources, pid = fixture()
    young = _shift(resources, birthDate=(datetime.now().date() - timedelta(days=365 * 25)).isoformat())
    [card] = call(api, young, pid)
    assert "%" not in card["summary"] and "outside the range the model was validated for" in card["detail"]


def test_a_broken_sequence_folder_is_named_at_start_up(tmp_path: Path) -> None:
    from inference.repository import ModelFolderError, ModelRepository

    root = model_root(tmp_path, inputs={"tokens": "tokens", "time": "times", "mask": "mask"})
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root).load()
    assert "the graph's inputs are [ages, mask, tokens]; the manifest's sequence.inputs are [mask, times, tokens]" \
        in str(err.value)
    root = model_root(tmp_path / "b")
    vocab_path = root / "t2d-timeline-5y" / "1.0.0" / "vocab.json"
    doc = json.loads(vocab_path.read_text())
    doc["tokens"]["SNOMED/000"] = 100000  # an id past the embedding
    vocab_path.write_text(json.dumps(doc))
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root).load()
    assert "vocab.json: tokens: the graph cannot read token id 100000" in str(err.value)
    root = model_root(tmp_path / "c")
    golden = root / "t2d-timeline-5y" / "1.0.0" / "golden.yaml"
    doc = yaml.safe_load(golden.read_text())
    doc["examples"][0]["outputs"]["risk_5y"] += 0.01
    golden.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root).load()
    assert "golden.yaml: examples[0].outputs.risk_5y: not reproduced" in str(err.value)


def test_the_shipped_folder_reproduces_its_golden_examples_and_is_a_probability() -> None:
    from inference.repository import ModelRepository

    runtime = ModelRepository(ROOT / "models").load().entries[SERVICE].champion
    assert type(runtime).__name__ == "SequenceRuntime"
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, runtime.vocabulary.size, size=(16, 30))
    ages = np.sort(rng.uniform(30, 79, size=(16, 30)), axis=1).astype(np.float32)
    p = runtime.run_sequences(tokens, ages, np.ones((16, 30), dtype=np.float32))["risk_5y"]
    assert p.shape == (16,) and np.all((p > 0) & (p < 1)) and not np.any(np.isnan(p))
    attrs = runtime.manifest.model_card["attributes"]
    assert "AUROC" in attrs["internal_validity"] and "calibration" in attrs["internal_validity"]
    evaluation = json.loads((FOLDER / "evaluation.json").read_text())
    assert evaluation["test"]["events"] > 0 and math.isfinite(evaluation["test"]["auroc"])


def test_details_page_shows_the_prediction_and_offers_no_what_if(serve: Any) -> None:
    api = serve()
    _, resources, pid = fixture()
    [card] = call(api, resources, pid)
    link = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning"))
    path = link.removeprefix("http://testserver")
    page = api.client.get(path)
    assert page.status_code == 200 and "T2D risk (timeline demo)" in page.text
    assert 'id="what-if"' not in page.text  # no what-if section for a model without an input row
    answer = api.client.post(f"{path}/what-if", json={"set": {"age": 50}})
    assert answer.status_code == 422
    assert "reads the patient's whole timeline, not a row of inputs" in answer.text


def test_a_timeline_search_not_obtained_gives_no_number_and_one_cut_short_is_noted(serve: Any) -> None:
    api = serve()
    _, resources, pid = fixture()
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == SERVICE)
    context = {"userId": "Practitioner/example", "patientId": pid}
    prefetch = prefetch_from_resources(entry["prefetch"], resources, context)
    body = {"hook": "patient-view", "hookInstance": "3c6a6a4e-0a56-4b8e-9f2d-6f1f0d8e2b11", "context": context,
            "prefetch": {k: v for k, v in prefetch.items() if k != "timeline-observation"}}
    [card] = api.post(f"/cds-services/{SERVICE}", json=body).json()["cards"]
    assert "%" not in card["summary"]
    assert "part of the record could not be obtained (timeline-observation: " in card["detail"]
    assert "so the timeline would be incomplete" in card["detail"]
    paged = dict(prefetch["timeline-encounter"])
    paged["link"] = [{"relation": "next", "url": "https://ehr.example/fhir/Encounter?page=2"}]
    body["prefetch"] = {**prefetch, "timeline-encounter": paged}
    [card] = api.post(f"/cds-services/{SERVICE}", json=body).json()["cards"]
    assert "%" in card["summary"]
    assert ("The EHR's search (timeline-encounter) had more results than were read; older events may be missing "
            "from the timeline.") in card["detail"]


def test_the_prediction_and_its_explanation_are_one_batched_graph_call() -> None:
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.mapper import map_features
    from fhir_mapping.timeline import with_record
    from inference.repository import load_version

    runtime: Any = load_version(FOLDER)
    calls: list[dict[str, np.ndarray]] = []
    real = runtime.graph.run

    def counting(feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        calls.append(feeds)
        return real(feeds, outputs)

    runtime.graph.run = counting
    bundle, _, pid = fixture()
    index = ResourceIndex.from_prefetch({"record": bundle}, runtime.spec.resource_types())
    at = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    mapping = map_features(runtime.spec, index, at=at, valuesets=runtime.valuesets, patient_id=pid)
    pred = runtime.predict(with_record(mapping, index, at, pid))
    assert pred.outputs is not None and len(pred.contributions) >= 3
    assert len(calls) == 1
    assert calls[0]["tokens"].shape[0] == 1 + len(pred.contributions)  # the patient and one masked row per group
    assert np.all(calls[0]["mask"][0] == 1) and all(np.any(row == 0) for row in calls[0]["mask"][1:])


def test_a_tabular_folder_cannot_name_a_remote_backend(tmp_path: Path) -> None:
    from inference.repository import ModelFolderError, ModelRepository

    root = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "t2d-onset-5y", root / "t2d-onset-5y")
    path = root / "t2d-onset-5y" / "1.0.0" / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["backend"] = {"type": "oip-v2", "url": "http://127.0.0.1:9", "model_name": "t2d"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    with pytest.raises(ModelFolderError) as err:
        ModelRepository(root, ("http://127.0.0.1:9",)).load()
    assert "manifest.yaml: backend: a remote backend serves sequence models only" in str(err.value)


def test_a_birth_year_alone_gives_the_timeline_model_no_age(serve: Any) -> None:
    """The timeline reads the birth date itself (every event's age counts from it), so a birth date written as a
    year alone, which gives two ages, is not scored as if the patient were born on 1 January: no number, naming both."""
    api = serve()
    _, resources, pid = fixture()
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    born = int(patient["birthDate"][:4])
    patient["birthDate"] = str(born)
    today = datetime.now(UTC).date()
    if (today.month, today.day) == (12, 31):
        pytest.skip("on 31 December a birth year alone gives one age")
    [card] = call(api, resources, pid)
    assert "missing Age" in card["summary"], card["summary"]
    assert f"{today.year - born - 1} or {today.year - born}" in card["detail"]
