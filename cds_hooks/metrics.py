"""Prometheus metrics: what an operator watches — request rates and latency by stage, cards, feedback, fetch failures.

One registry per app (tests create several apps in one process). Stage latencies come from the service call's own
timings, so they measure exactly prefetch fetch, mapping, inference and rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from cds_hooks.service_call import CallResult

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cds_requests_total", "CDS service calls by service and HTTP status",
                                ["service", "status"], registry=r)
        self.latency = Histogram("cds_request_seconds", "Service call latency (whole request)", ["service"],
                                 buckets=STAGE_BUCKETS, registry=r)
        self.stage = Histogram("cds_stage_seconds", "Service call latency by stage", ["service", "stage"],
                               buckets=STAGE_BUCKETS, registry=r)
        self.cards = Counter("cds_cards_total", "Cards returned by service and indicator", ["service", "indicator"],
                             registry=r)
        self.feedback = Counter("cds_feedback_total", "Feedback items stored by service and outcome",
                                ["service", "outcome"], registry=r)
        self.prefetch_failures = Counter("cds_prefetch_fetch_failures_total",
                                         "Prefetch keys that could not be obtained", ["service"], registry=r)
        self.predictions = Counter("cds_predictions_total", "Predictions by model, version, alias and result",
                                   ["model", "version", "alias", "result"], registry=r)
        self.model_valid = Gauge("cds_model_validated", "1 when a model version passed start-up validation",
                                 ["model", "version", "alias"], registry=r)
        self.recorder = Gauge("cds_recorder_records", "Recorder counters", ["state"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def observe_call(metrics: Metrics, service_id: str, result: CallResult, seconds: float) -> None:
    """Record one successful service call: status, latency by stage, cards, fetch failures, prediction result."""
    metrics.requests.labels(service_id, "200").inc()
    metrics.latency.labels(service_id).observe(seconds)
    for stage, ms in result.timings_ms.items():
        metrics.stage.labels(service_id, stage).observe(ms / 1000.0)
    for card in result.body.get("cards", []):
        metrics.cards.labels(service_id, card.get("indicator", "unknown")).inc()
    if result.prefetch.failed:
        metrics.prefetch_failures.labels(service_id).inc(len(result.prefetch.failed))
    pred = result.prediction
    outcome = ("missing-data" if pred.missing_required else "refused" if pred.refusals or pred.outputs is None
               else "scored")
    metrics.predictions.labels(pred.model_id, pred.model_version, pred.alias, outcome).inc()
