"""The service call's answer is written by orjson only where that equals the standard encoder's answer."""

from __future__ import annotations

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
