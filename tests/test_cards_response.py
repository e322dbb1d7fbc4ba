"""The service call's answer is written by orjson only where that equals the standard encoder's answer."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import JSONResponse

from cds_hooks.responses import CardsResponse

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def standard(content: Any) -> bytes:
    """What Starlette's JSONResponse writes, spelled out: the standard encoder, compact, UTF-8, no NaN."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


@pytest.mark.parametrize("path", sorted(SNAPSHOTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_snapshot_answer_is_written_as_the_standard_encoder_writes_it(path: Path) -> None:
    content = json.loads(path.read_text())
    assert CardsResponse(content).body == standard(content) == JSONResponse(content).body


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_number_that_is_not_a_number_fails_loudly_instead_of_becoming_null(number: float) -> None:
    content = {"cards": [{"summary": "risk", "extension": {"risk": number}}]}
    with pytest.raises(ValueError, match="JSON compliant"):
        CardsResponse(content)


@pytest.mark.parametrize("content", [
    {"cards": [], "note": None},                       # a real null
    {"cards": [{"summary": "nullable"}]},              # "null" inside a string
    {"cards": [], "count": 2**70},                      # past 64 bits
    {"cards": [], 3: "an integer key"},                 # a key that is not a string
    {"cards": [{"summary": "ünïcödé \u2028 ✓"}]},
], ids=["null", "null-in-text", "big-int", "int-key", "unicode"])
def test_what_orjson_would_write_differently_is_written_by_the_standard_encoder(content: dict[Any, Any]) -> None:
    assert CardsResponse(content).body == standard(content)


def test_the_parsed_request_is_freed_only_after_the_answer_is_sent(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeing a parsed prefetch costs up to a millisecond; the EHR must not wait for it. Events are ordered by
    reference counting, not by time: the prefetch announces its own end."""
    from fastapi.testclient import TestClient

    import cds_hooks.app as app_module
    import fhirfactory as F
    from cds_hooks.bundle_prefetch import prefetch_from_resources
    from cds_hooks.signing import load_local_key
    from conftest import KEYS, SignedClient, make_settings

    events: list[str] = []

    class Announcing(dict):  # type: ignore[type-arg]
        def __del__(self) -> None:
            events.append("prefetch freed")

    real_parse = app_module.parse_hook_request

    def parse(body: bytes) -> Any:
        req = real_parse(body)
        return dataclasses.replace(req, prefetch=Announcing(req.prefetch))

    monkeypatch.setattr(app_module, "parse_hook_request", parse)

    def watching(app: Any) -> Any:
        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            async def noting(message: Any) -> None:
                if message["type"] == "http.response.body" and scope.get("method") == "POST":
                    events.append("answer sent")
                await send(message)
            await app(scope, receive, noting)
        return asgi

    service = "ascvd-pce-10y"
    with TestClient(watching(app_module.create_app(make_settings(tmp_path)))) as client:
        api = SignedClient(client, load_local_key(KEYS / "local"))
        templates = next(s for s in api.get("/cds-services").json()["services"] if s["id"] == service)["prefetch"]
        context = {"userId": "Practitioner/example", "patientId": "p1"}
        body = {"hook": "patient-view", "hookInstance": "0d8e7a62-5a43-4f0e-9b7e-6c1b2f3a4d55", "context": context,
                "prefetch": prefetch_from_resources(templates, F.pce_record(gender="male", race="white"), context)}
        answer = api.post(f"/cds-services/{service}", json=body)
        assert answer.status_code == 200 and answer.json()["cards"]
    assert events == ["answer sent", "prefetch freed"]


@pytest.mark.parametrize("value", [
    datetime.datetime(2026, 12, 6, 12, 0),
    datetime.date(2026, 12, 6),
], ids=["datetime", "date"])
def test_a_python_object_the_standard_encoder_refuses_is_refused_here_too(value: Any) -> None:
    with pytest.raises(TypeError):
        CardsResponse({"cards": [{"when": value}]})
