"""Property-based HTTP fuzzing: schemathesis over the app's OpenAPI document, and hostile feedback bodies.

Schemathesis generates requests for every operation in /openapi.json (positive and negative data, run in-process
against the ASGI app); each call carries a JWT signed for the exact URL (the app verifies it first on CDS routes).
The feedback fuzzer sends well-formed and hostile feedback items (out-of-range and malformed timestamps, wrong
types, NUL characters, over-long codes). Every response must be below 500. Together with
tests/test_fuzz_prefetch.py more than 5,000 cases run; derandomized, so a failure reproduces exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import KEYS, SignedClient, make_settings

SCHEMATHESIS_EXAMPLES = 120  # per operation and generation mode
FEEDBACK_EXAMPLES = 1500
COUNTS: dict[str, int] = {"schemathesis": 0, "feedback": 0}
STATUSES: dict[str, int] = {}  # "METHOD status" -> count, to see that calls get past authentication


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cds_hooks.app import create_app

    app = create_app(make_settings(tmp_path_factory.mktemp("openapi"),
                                   preview={"enabled": True, "key_dir": str(KEYS / "local")}))
    with TestClient(app, raise_server_exceptions=False):  # runs the lifespan: store, recorder, authenticator
        yield app


@pytest.fixture(scope="module")
def fuzz_api(fuzz_app: Any, local_key: Any) -> Iterator[SignedClient]:
    with TestClient(fuzz_app, raise_server_exceptions=False) as client:
        yield SignedClient(client, local_key)


# ---- schemathesis over /openapi.json ---------------------------------------------------------------------------
def test_openapi_document_describes_the_json_bodies(fuzz_api: SignedClient) -> None:
    doc = fuzz_api.client.get("/openapi.json").json()
    op = doc["paths"]["/cds-services/{service_id}"]["post"]
    assert {"application/json", "application/fhir+json"} <= set(op["requestBody"]["content"])
    assert {"413", "415"} <= set(op["responses"])


def test_schemathesis_finds_no_server_error(fuzz_app: Any, fuzz_api: SignedClient) -> None:
    import schemathesis
    from schemathesis import GenerationMode
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def check(case: Any) -> None:
                COUNTS["schemathesis"] += 1
                path = case.formatted_path
                headers = {**(case.headers or {}), **fuzz_api.headers(path)}
                response = case.call(headers=headers)
                key = f"{case.method} {response.status_code}"
                STATUSES[key] = STATUSES.get(key, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {path} -> {response.status_code}: {response.text[:300]} "
                                    f"body={json.dumps(case.body, default=str)[:500]}")
                case.validate_response(response, checks=[not_a_server_error], headers=headers)

            try:
                check()
            except Unsatisfiable:
                continue  # nothing negative to generate (no parameters, no body): the positive run covered it
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:800]}")
    assert not failures, "\n".join(failures)
    print(f"schemathesis: {COUNTS['schemathesis']} cases over {len(operations)} operations: {sorted(STATUSES.items())}")
    assert COUNTS["schemathesis"] >= 1000, COUNTS


# ---- feedback: hostile items ------------------------------------------------------------------------------------
TIMESTAMPS = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-01-01T00:00:00Z",
              "2024-01-01T00:00:00+05:30", "2024-02-30T00:00:00Z", "2024-01-01", "2024-01-01T00:00:00",
              "2024-01-01T25:00:00Z", "2024-01-01T00:00:00+99:00", "9999-12-31T23:59:59Z", "", "T", "now",
              "2024-01-01T00:00:00.1234567891234Z", "+275760-09-13T00:00:00Z", "2024-01-01T00:00:00Z\x00"]
CARD = "9d1c9a1e-3b0f-4c1e-9a43-6d7f7f8a2b10"
junk = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=300),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                                      max_size=2))
feedback_item = st.fixed_dictionaries(
    {"card": st.one_of(st.just(CARD), st.just(CARD.upper()), st.just("urn:uuid:" + CARD), junk),
     "outcome": st.one_of(st.sampled_from(["accepted", "overridden"]), junk),
     "outcomeTimestamp": st.one_of(st.sampled_from(TIMESTAMPS), junk)},
    optional={"acceptedSuggestions": st.one_of(st.lists(st.fixed_dictionaries({"id": junk}), max_size=3), junk),
              "overrideReason": st.one_of(st.fixed_dictionaries({}, optional={
                  "reason": st.one_of(st.fixed_dictionaries({"system": junk, "code": junk, "display": junk}), junk),
                  "userComment": junk}), junk)},
)


def test_hostile_feedback_never_gives_a_5xx(fuzz_api: SignedClient) -> None:
    path = "/cds-services/ascvd-pce-10y/feedback"

    @settings(max_examples=FEEDBACK_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(feedback_item, min_size=1, max_size=3), st.booleans())
    def check(items: list[dict[str, Any]], bare: bool) -> None:
        COUNTS["feedback"] += 1
        body = items[0] if bare else {"feedback": items}
        resp = fuzz_api.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert resp.status_code < 500, (resp.status_code, resp.text[:300], body)
        assert resp.status_code in (200, 400), (resp.status_code, resp.text[:300], body)

    check()
    assert COUNTS["feedback"] >= FEEDBACK_EXAMPLES * 0.9, COUNTS


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-13-01T00:00:00Z",
                                   "2024-01-01T00:00:00+15:00"])
def test_out_of_range_feedback_timestamp_is_400_naming_the_field(fuzz_api: SignedClient, stamp: str) -> None:
    body = {"feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": stamp}]}
    resp = fuzz_api.post("/cds-services/ascvd-pce-10y/feedback", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == ["feedback[0].outcomeTimestamp"]


def test_total_fuzz_budget() -> None:
    """The cases this module and tests/test_fuzz_prefetch.py run (>= 5,000 in CI)."""
    from test_fuzz_prefetch import EXAMPLES_PER_SERVICE, SERVICE_IDS

    assert len(SERVICE_IDS) * EXAMPLES_PER_SERVICE + FEEDBACK_EXAMPLES + 1000 >= 5000
