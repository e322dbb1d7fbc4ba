"""`serve` builds its app with the collector tuned for requests: start-up objects frozen, young collections rare.

Without it a 1 MB prefetch's parse walks the request's own live objects dozens of times (docs/performance.md).
"""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from cds_hooks.app import SERVING_GC_THRESHOLDS, create_app
from conftest import make_settings


def test_serve_freezes_start_up_objects_and_raises_the_collection_thresholds(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before != SERVING_GC_THRESHOLDS
    try:
        with TestClient(create_app(make_settings(tmp_path), freeze_gc=True)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_threshold() == SERVING_GC_THRESHOLDS
            assert gc.get_freeze_count() > 10_000  # models, value sets, FHIR classes, templates
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_apps_built_for_tests_leave_the_collector_alone(tmp_path: Path) -> None:
    before = gc.get_threshold()
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
