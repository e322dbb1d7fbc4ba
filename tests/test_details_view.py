"""The details page behind every card's link (issue 13): same number as the card, every input with its source, the
explanation, what-if recomputed with the same ONNX model, and 404 for any link that is not a live one."""

from __future__ import annotations

import html
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import fhirfactory as F
from cards.fhir_resources import format_output
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.details.links import details_token, verify_details_token
from inference.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"test-secret-0123456789"  # conftest.make_settings: store.hmac_secret signs the links
PID = "zq-patient-4711"  # a distinctive patient id: it must appear nowhere on the page
LINK_LABEL = "Full reasoning, sources and what-if"


def pce() -> list[dict[str, Any]]:
    return F.pce_record(smoker=True, sbp=150, pid=PID)


def prevent() -> list[dict[str, Any]]:
    """Khan 2024 profile, but a smoker: 50 y man, SBP 160 treated, TC 200, HDL 45, diabetes, eGFR 90, BMI 35."""
    return [F.patient(PID, 50, "male"), F.quantity_obs("2093-3", 200, "mg/dL", pid=PID),
            F.quantity_obs("2085-9", 45, "mg/dL", pid=PID), F.bp_panel(160, pid=PID),
            F.smoking(F.CURRENT_SMOKER, pid=PID), F.condition("44054006", pid=PID), F.med_request("314076", pid=PID),
            F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}", pid=PID), F.quantity_obs("39156-5", 35, "kg/m2", pid=PID)]


def kfre(egfr: float = 45) -> list[dict[str, Any]]:
    return [F.patient(PID, 55, "female"), F.quantity_obs("98979-8", egfr, "mL/min/{1.73_m2}", pid=PID),
            F.quantity_obs("9318-7", 30, "mg/g", pid=PID)]


def cha2ds2() -> list[dict[str, Any]]:
    return [F.patient(PID, 70, "female"), F.condition("49436004", pid=PID), F.condition("38341003", pid=PID),
            F.condition("44054006", pid=PID)]


def egfr() -> list[dict[str, Any]]:
    return [F.patient(PID, 60, "male"), F.quantity_obs("2160-0", 1.4, "mg/dL", pid=PID)]


def news2() -> list[dict[str, Any]]:
    return [F.patient(PID, 67, "male"), F.encounter("e1", pid=PID),
            F.vital("9279-1", 18, "/min", pid=PID), F.vital("59408-5", 98, "%", pid=PID),
            F.vital("8867-4", 72, "/min", pid=PID), F.vital("8310-5", 36.8, "Cel", pid=PID),
            F.bp_panel(120, days=0, pid=PID), F.coded_obs("67775-7", "248234008", pid=PID, hours=2)]


# service -> (model id, record, encounter, a what-if change of one input, an out-of-range value of that input)
SERVICES: dict[str, tuple[str, Any, str | None, dict[str, float], dict[str, float]]] = {
    "ascvd-pce-10y": ("ascvd-pce-10y", pce, None, {"sbp": 130, "smoker": 0}, {"sbp": 250}),
    "prevent-base": ("prevent-base", prevent, None, {"sbp": 130, "statin": 1}, {"sbp": 200}),
    "prevent-full": ("prevent-full", prevent, None, {"hdl": 60}, {"hdl": 150}),
    "kfre-4var": ("kfre-4var", kfre, None, {"uacr": 300}, {"egfr": 75}),
    "cha2ds2-vasc": ("cha2ds2-vasc", cha2ds2, None, {"age": 80}, {"age": 130}),
    "egfr-ckd-epi-2021": ("egfr-ckd-epi-2021", egfr, None, {"creatinine": 1.0}, {"creatinine": 25}),
    "news2-patient-view": ("news2", news2, "e1", {"resp_rate": 26}, {"temperature": 47}),
}


def fire(api: Any, service: str, resources: list[dict[str, Any]], encounter: str | None = None) -> dict[str, Any]:
    entry = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == service)
    context = {"userId": "Practitioner/example", "patientId": PID}
    if encounter:
        context["encounterId"] = encounter
    body = {"hook": entry["hook"], "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": prefetch_from_resources(entry["prefetch"], resources, context)}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1
    return cards[0]


def details_path(card: dict[str, Any]) -> str:
    links = [link for link in card["links"] if link["label"] == LINK_LABEL]
    assert len(links) == 1 and links[0]["type"] == "absolute", card["links"]
    url = links[0]["url"]
    assert url.startswith("http://testserver/details/")
    return url.removeprefix("http://testserver")


def what_if(api: Any, card: dict[str, Any], body: dict[str, Any]) -> Any:
    """The answer of the card's details page to a what-if body."""
    return api.client.post(f"{details_path(card)}/what-if", json=body)


def diagnostics(resp: Any) -> str:
    """The first issue's words of an OperationOutcome answer."""
    return resp.json()["issue"][0]["diagnostics"]


def prediction_of(api: Any, path: str) -> dict[str, Any]:
    token = path.rsplit("/", 1)[1]
    prediction_id = verify_details_token(token, SECRET, datetime.now(UTC))
    assert prediction_id is not None
    state = api.app.state.cds
    assert state.recorder.flush(10)
    pred = state.store.prediction(prediction_id)
    assert pred is not None
    return pred


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'<[a-z0-9]+ id="{element_id}"[^>]*>(.*?)</[a-z0-9]+>', page, re.DOTALL)
    assert match, f"no #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def onnx_outputs(model_id: str, inputs: dict[str, float]) -> dict[str, float]:
    """The model file run directly: one [1, k] float64 row in manifest input order, input named "features"."""
    folder = ROOT / "models" / model_id / "1.0.0"
    manifest = load_manifest(folder)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    row = np.array([[inputs[i.name] for i in manifest.inputs]], dtype=np.float64)
    names = [o.name for o in manifest.outputs]
    return {n: float(np.asarray(v).reshape(-1)[0]) for n, v in zip(names, session.run(names, {"features": row}))}


@pytest.mark.parametrize("service", list(SERVICES))
def test_details_page_shows_the_cards_number_and_what_if_equals_onnx(api: Any, service: str) -> None:
    model_id, record, encounter, change, out_of_range = SERVICES[service]
    card = fire(api, service, record(), encounter)
    path = details_path(card)
    assert PID not in path
    resp = api.client.get(path)  # no JWT: the token is the capability
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["cache-control"] == "no-store"
    page = resp.text

    # the same number and category as the card, formatted as the card formats it
    pred = prediction_of(api, path)
    manifest = load_manifest(ROOT / "models" / model_id / "1.0.0")
    primary = manifest.primary
    value = format_output(primary.kind, pred["outputs"][primary.name], primary.decimals)
    assert value in card["summary"]
    assert text_of(page, "value").startswith(value)
    assert text_of(page, "category") == f"({pred['category']})"
    assert pred["category"] in card["summary"]

    # no patient identifier anywhere; the title names the model only
    assert PID not in page and pred["patient_key"] not in page
    assert re.search(r"<title>([^<]*)</title>", page).group(1) == f"{manifest.card.short_title}: details"
    # inputs with readable units, no UCUM braces or brackets; a link to the model card
    for ucum in ("{1.73_m2}", "mm[Hg]", ">Cel<"):
        assert ucum not in page
    assert f'href="../models/{model_id}/card"' in page
    for limitation in manifest.limitations:
        assert html.escape(limitation, quote=False) in page

    # what-if: the recomputed outputs equal onnxruntime on the model file for the changed inputs
    result = api.client.post(f"{path}/what-if", json={"set": change})
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["estimate"] is True and "Estimate" in body["note"]
    assert body["model"] == {"id": model_id, "version": "1.0.0"}
    features = {name: fv["value"] for name, fv in pred["features"].items()}
    expected_inputs = {i.name: change.get(i.name, features[i.name]) for i in manifest.inputs}
    assert body["inputs"] == expected_inputs
    direct = onnx_outputs(model_id, expected_inputs)
    for out in body["outputs"]:
        assert abs(out["value"] - direct[out["name"]]) <= 1e-12, (out["name"], out["value"], direct[out["name"]])
    assert body["primary"]["text"] == format_output(primary.kind, direct[primary.name], primary.decimals) + (
        " mL/min/1.73 m²" if primary.kind == "value" and primary.unit else "")

    # out of range: 422 naming the input and the validated range
    bad = api.client.post(f"{path}/what-if", json={"set": out_of_range})
    assert bad.status_code == 422, bad.text
    (name,) = out_of_range
    spec_in = next(i for i in manifest.inputs if i.name == name)
    diagnostics = bad.json()["issue"][0]["diagnostics"]
    low, high = (f"{v:g}" for v in spec_in.range)
    assert name in diagnostics and spec_in.label in diagnostics and f"{low}–" in diagnostics, diagnostics


def test_pce_page_lists_every_input_with_source_date_and_the_explanation(api: Any) -> None:
    card = fire(api, "ascvd-pce-10y", pce())
    page = api.client.get(details_path(card)).text
    for text in ("150 mmHg", "213 mg/dL", "50 mg/dL", "Current smoker", "55 years", "Female"):
        assert text in page
    assert re.search(r"<td class=\"ref\">Observation/bp-\d+</td>", page)  # the FHIR source of the SBP
    assert re.search(r"<td class=\"date\">\d{4}-\d\d-\d\d</td><td class=\"ref\">Observation/", page)
    assert "no active medication recognised as antihypertensive" in page  # assumed, with its reason
    assert "<svg" in page and 'class="raises"' in page  # the explanation chart, server-rendered
    assert "Smoking status: Current smoker" in page
    # scenarios from the manifest, both applicable for a smoker with SBP 150
    assert 'data-scenario="Blood pressure treated to 130 mmHg"' in page and 'data-scenario="Stop smoking"' in page
    # the page's script is served from this origin; no inline script; the CSP allows scripts from 'self' only
    assert '<script src="../static/details/details.js" defer></script>' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert " style=" not in page
    resp = api.client.get(details_path(card))
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    js = api.client.get("/static/details/details.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/static/details/details.css").status_code == 200
    assert api.client.get("/static/details/..%2Fpreview%2Fapp.js").status_code == 404


def test_kfre_page_names_the_older_egfr_a_newer_creatinine_replaced(api: Any) -> None:
    record = [F.patient(PID, 55, "female"), F.quantity_obs("98979-8", 45, "mL/min/{1.73_m2}", pid=PID, days=300),
              F.quantity_obs("2160-0", 2.2, "mg/dL", pid=PID, days=5),
              F.quantity_obs("9318-7", 30, "mg/g", pid=PID, days=5)]
    page = html.unescape(api.client.get(details_path(fire(api, "kfre-4var", record))).text)
    assert "25.8 mL/min/1.73 m²" in page  # CKD-EPI 2021 from the creatinine of 5 days ago
    assert f"newer than the recorded eGFR 45 mL/min/1.73 m² of {F.days_ago(300)[:10]}" in page


def test_prevent_page_shows_secondary_outputs_and_scenarios_match_onnx(api: Any) -> None:
    card = fire(api, "prevent-full", prevent())
    path = details_path(card)
    page = api.client.get(path).text
    pred = prediction_of(api, path)
    manifest = load_manifest(ROOT / "models" / "prevent-full" / "1.0.0")
    for out in manifest.outputs:
        if not out.primary:
            assert f"{out.label}: <b>{format_output(out.kind, pred['outputs'][out.name], out.decimals)}</b>" in page
    assert "not recorded" in page  # UACR and HbA1c add-ons not measured: never shown as data
    features = {name: fv["value"] for name, fv in pred["features"].items()}
    for scenario in manifest.what_if:
        assert f'data-scenario="{html.escape(scenario.label)}"' in page
        resp = api.client.post(f"{path}/what-if", json={"scenario": scenario.label})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["scenario"] == scenario.label and body["estimate"] is True
        direct = onnx_outputs("prevent-full", {i.name: scenario.set.get(i.name, features[i.name])
                                               for i in manifest.inputs})
        for out in body["outputs"]:
            assert abs(out["value"] - direct[out["name"]]) <= 1e-12
    # stopping smoking lowers the estimate; the answer sits next to the current value
    stop = api.client.post(f"{path}/what-if", json={"scenario": "Stop smoking"}).json()
    assert stop["primary"]["value"] < pred["outputs"]["cvd_10y"]
    assert stop["current"]["text"] == format_output("probability", pred["outputs"]["cvd_10y"], 1)


def test_what_if_refuses_what_the_model_cannot_answer(api: Any) -> None:
    card = fire(api, "ascvd-pce-10y", F.pce_record(smoker=False, sbp=120, pid=PID))
    path = details_path(card)
    page = api.client.get(path).text
    # neither scenario applies (not a smoker; SBP already below 130): not offered, and refused if asked for
    assert "data-scenario=" not in page and "Not offered for this patient" in page
    cases = [
        ({"scenario": "Stop smoking"}, "not a current smoker", "scenario"),
        ({"scenario": "Fly to the moon"}, "no what-if scenario named", "scenario"),
        ({"set": {"ldl": 100}}, "'ldl' is not an input", "set.ldl"),
        ({"set": {"age": 85}}, "Age (age) 85 years is outside the range the model was validated for (40–79 years)",
         "set.age"),
        # the value reads outside the range it is refused for (not "200 mmHg … (90–200 mmHg)")
        ({"set": {"sbp": 200.04}}, "Systolic blood pressure (sbp) 200.04 mmHg is outside the range the model was "
         "validated for (90–200 mmHg)", "set.sbp"),
        ({"set": {"smoker": 2}}, "yes/no", "set.smoker"),
        ({"set": {"sbp": "high"}}, "must be a number", "sbp"),
        ({"set": {}}, "at least one input", "set"),
        ({"sbp": 130}, "the body must be", None),
        ([1, 2], "the body must be", None),
    ]
    for body, message, field in cases:
        resp = api.client.post(f"{path}/what-if", json=body)
        assert resp.status_code == 422, (body, resp.text)
        issue = resp.json()["issue"][0]
        assert message in issue["diagnostics"], (body, issue)
        assert issue.get("expression", [None])[0] == field, (body, issue)
    assert api.client.post(f"{path}/what-if", content=b"{", headers={"content-type": "application/json"}
                           ).status_code == 400
    assert api.client.post(f"{path}/what-if", content=b"[" * 5000,
                           headers={"content-type": "application/json"}).status_code == 400
    assert api.client.post(f"{path}/what-if", content=b'{"set": {"sbp": 130}}',
                           headers={"content-type": "text/plain"}).status_code == 415  # no cross-site form posts


def test_tampered_expired_random_and_unknown_links_are_404(api: Any) -> None:
    card = fire(api, "ascvd-pce-10y", pce())
    path = details_path(card)
    token = path.rsplit("/", 1)[1]
    prediction_id = prediction_of(api, path)["prediction_id"]
    assert api.client.get(path).status_code == 200

    i = len(token) // 2
    tampered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
    expired = details_token(prediction_id, SECRET, datetime.now(UTC) - timedelta(days=2), 3600)
    other_secret = details_token(prediction_id, b"another-secret-0123456789", datetime.now(UTC), 3600)
    unknown = details_token(str(uuid.uuid4()), SECRET, datetime.now(UTC), 3600)
    for bad in (tampered, expired, other_secret, unknown, "not-a-token", "x" * 48, token + "A", token[:-1]):
        for resp in (api.client.get(f"/details/{bad}"),
                     api.client.post(f"/details/{bad}/what-if", json={"set": {"sbp": 130}})):
            assert resp.status_code == 404, bad
            assert resp.text == "Not found\n"  # plain: never says why
            assert resp.headers["content-type"].startswith("text/plain")


def test_page_waits_for_the_recorder(api: Any) -> None:
    """Opened right after the card, the prediction may not be in the database yet: the page waits for it."""
    store = api.app.state.cds.store
    write = store.write_predictions  # what the recorder's thread calls

    def slow_write(records: Any, **kw: Any) -> int:
        time.sleep(1.0)
        return write(records, **kw)

    store.write_predictions = slow_write
    try:
        card = fire(api, "kfre-4var", kfre())
        path = details_path(card)
        assert store.prediction(prediction_of_token(path)) is None  # not written yet
        resp = api.client.get(path)
        assert resp.status_code == 200
        shown = text_of(resp.text, "value")
        assert shown.endswith("%") and shown in card["summary"]
    finally:
        store.write_predictions = write


def prediction_of_token(path: str) -> str:
    prediction_id = verify_details_token(path.rsplit("/", 1)[1], SECRET, datetime.now(UTC))
    assert prediction_id is not None
    return prediction_id


def test_missing_data_and_refused_cards_link_to_a_page_that_says_how_to_fix_it(api: Any) -> None:
    lipids = ("2093-3", "2085-9")
    record = [r for r in pce() if r["resourceType"] != "Observation" or r["code"]["coding"][0]["code"] not in lipids]
    card = fire(api, "ascvd-pce-10y", record)
    assert "not calculated" in card["summary"]
    path = details_path(card)
    page = api.client.get(path).text
    assert "not calculated: required data missing" in text_of(page, "headline")
    assert "Missing data and how to fix it" in page and "Lipid panel (LOINC 24331-1)" in page
    # what-if with the missing values typed in gives an estimate; without them, a 422 naming what is unknown
    resp = api.client.post(f"{path}/what-if", json={"set": {"sbp": 140}})
    assert resp.status_code == 422 and "Total cholesterol (total_cholesterol)" in resp.json()["issue"][0]["diagnostics"]
    resp = api.client.post(f"{path}/what-if", json={"set": {"total_cholesterol": 213, "hdl": 50}})
    assert resp.status_code == 200 and resp.json()["current"] is None

    refused = fire(api, "kfre-4var", kfre(egfr=75))
    page = api.client.get(details_path(refused)).text
    assert text_of(page, "headline").startswith("No ") and "estimate for this patient" in text_of(page, "headline")
    assert "Why there is no number" in page and "eGFR" in page
