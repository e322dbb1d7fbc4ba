"""/metrics, /healthz and /readyz scraped while requests run."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import fhirfactory as F
from test_pce_endpoint import call


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_while_requests_run(api: Any) -> None:
    before = samples(api.client.get("/metrics").text)
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            for _ in range(3):
                assert call(api, F.pce_record(gender="male", race="white", sbp=150)).status_code == 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(3)]
    for t in threads:
        t.start()
    mid = api.client.get("/metrics")  # scraped while requests run
    assert mid.status_code == 200 and mid.headers["content-type"].startswith("text/plain")
    for t in threads:
        t.join()
    assert not errors
    assert api.post("/cds-services/ascvd-pce-10y", json={"hook": "patient-view"}).status_code == 400
    after = samples(api.client.get("/metrics").text)
    service = "ascvd-pce-10y"
    assert value(after, "cds_requests_total", service=service, status="200") - \
        value(before, "cds_requests_total", service=service, status="200") == 9
    assert value(after, "cds_requests_total", service=service, status="400") == 1
    assert value(after, "cds_cards_total", service=service, indicator="warning") >= 9
    for stage in ("prefetch", "mapping", "inference", "rendering"):
        assert value(after, "cds_stage_seconds_count", service=service, stage=stage) >= 9
    assert value(after, "cds_request_seconds_count", service=service) >= 9
    assert value(after, "cds_predictions_total", model=service, version="1.0.0", alias="champion",
                 result="scored") >= 9
    assert value(after, "cds_model_validated", model=service, version="1.0.0", alias="champion") == 1


def test_feedback_and_fetch_failures_are_counted(api: Any) -> None:
    card = call(api, F.pce_record()).json()["cards"][0]
    api.post("/cds-services/ascvd-pce-10y/feedback", json={"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T12:00:00Z"}]})
    # a prefetch without the medication keys and no fhirServer: those keys cannot be obtained
    resp = api.post("/cds-services/ascvd-pce-10y", json=F.hook_request({"patient": F.patient("p1")}))
    assert resp.status_code == 412
    m = samples(api.client.get("/metrics").text)
    assert value(m, "cds_feedback_total", service="ascvd-pce-10y", outcome="overridden") == 1
    assert value(m, "cds_requests_total", service="ascvd-pce-10y", status="412") == 1


def test_probes(api: Any) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    assert "ascvd-pce-10y" in ready.json()["models"]
