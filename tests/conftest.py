"""Shared fixtures: a configured app on an in-memory transport, signed calls, and the shipped model repository."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_hooks.settings import Settings, load_settings, merge_dicts
from cds_hooks.signing import LocalKey, load_local_key, mint_token

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("CDS_ONNX_TEST_MODELS", ROOT / "models"))  # another model repository to test
KEYS = Path(__file__).resolve().parent / "fixtures" / "keys"
TEST_ISSUER = "https://ehr.test/cds-client"


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """FastAPI keeps every route function it has classified in process-wide LRU caches (4096 entries each, in
    fastapi.dependencies.models). A service runs one app per process, so that costs nothing there; a test run builds
    hundreds, and each route closure held its app's models, value sets and store alive: about 80 MB per app, 8 GB per
    test worker by the end of a run. After each test the caches are emptied (they refill on the next call)."""
    yield
    import fastapi.dependencies.models as classified

    for name in ("_is_gen_callable_cached", "_is_async_gen_callable_cached", "_is_coroutine_callable_cached"):
        cached = getattr(classified, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


@pytest.fixture(scope="session")
def local_key() -> LocalKey:
    return load_local_key(KEYS / "local")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: shipped models, SQLite in tmp_path, JWT auth trusting the test key."""
    jwks = json.loads((KEYS / "local" / "jwks.json").read_text())
    base: dict[str, Any] = {
        "server": {"public_base_url": "http://testserver"},  # TestClient's URL: the configured JWT audience base
        # tests reach every service through discovery; one-per-question listing is tested on its own
        "services": {"one_per_question": False},
        # a loaded CI machine must not turn an in-process FHIR answer into a missed deadline (deadline tests set theirs)
        "prefetch": {"deadline_seconds": 5.0},
        "models": {"root": str(MODELS)},
        "store": {"url": f"sqlite:///{tmp_path / 'store.sqlite3'}", "hmac_secret": "test-secret-0123456789",
                  "spool_dir": str(tmp_path / "spool")},
        "auth": {"enabled": True, "clients": [{"iss": TEST_ISSUER, "jwks": jwks,
                                                "fhir_servers": ["http://127.0.0.1:1/fhir"]}]},
    }
    merge_dicts(base, overrides)
    return load_settings(None, **base)


class SignedClient:
    """A TestClient that signs every call as a CDS client would (aud = the exact URL called)."""

    def __init__(self, client: TestClient, key: LocalKey, issuer: str = TEST_ISSUER) -> None:
        self.client, self.key, self.issuer = client, key, issuer

    def headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.key, self.issuer, f'http://testserver{path}')}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.headers(path), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.headers(path), **kw.pop("headers", {})}, **kw)

    @property
    def app(self) -> Any:
        return self.client.app


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


@pytest.fixture
def api(tmp_path: Path, local_key: LocalKey) -> Iterator[SignedClient]:
    """The app with the shipped models, started (lifespan) and stopped around the test."""
    from cds_hooks.app import create_app

    app = create_app(make_settings(tmp_path))
    with TestClient(app) as client:
        yield SignedClient(client, local_key)


def running_where() -> str:
    """"loop" when called on a thread running an asyncio event loop, else "thread" (where a call's stages ran)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "thread"
    return "loop"


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until `condition()` holds, for interleavings a test sets up with threads; fails naming `what` after
    `limit` seconds (a bound against hanging, never a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.005)

