"""The shared JWK Set cache: processes and replicas sharing one store fetch a client's keys once per refresh.

Each "process" here is its own JwksCache (its own memory, its own rate limit) sharing one store — the store's
database (SQLite and a real PostgreSQL) or a real Redis server — and one counting key server (httpx.MockTransport).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from postgres_fixture import postgres_url  # noqa: F401  (pytest fixture)
from redis_fixture import redis_url  # noqa: F401  (pytest fixture)
from sqlalchemy import text

from cds_hooks.jwks import JwksCache, JwksError
from cds_hooks.jwks_shared import JwksStoreError, RedisJwksStore, SharedDocument, SqlJwksStore, open_jwks_store
from store.store import Store

URL = "https://ehr.example/.well-known/jwks.json"
SECRET = b"deployment-secret-0123456789"


def jwk(kid: str) -> dict[str, Any]:
    key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    return {**key, "kid": kid, "alg": "ES384", "use": "sig"}


class KeyServer:
    """Serves the current JWK Set and counts requests."""

    def __init__(self, *kids: str) -> None:
        self.keys = [jwk(k) for k in kids]
        self.requests = 0

    def rotate(self, kid: str) -> None:
        self.keys.append(jwk(kid))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, json={"keys": self.keys})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store = RedisJwksStore(url, SECRET)
        store._client.flushdb()
        yield store
        return
    url = (f"sqlite:///{tmp_path / 'store.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    db = Store(url, b"test-secret-0123456789")
    db.migrate()  # the table comes from the store's Alembic migrations
    yield SqlJwksStore(db.engine, SECRET)
    if request.param == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM jwks_documents"))
    db.dispose()


def process(shared: Any, server: KeyServer, clock: Clock) -> JwksCache:
    return JwksCache(cache_seconds=3600, min_refresh_seconds=30, http_client=server.client(), clock=clock,
                     shared=shared)


async def test_a_document_one_process_fetched_is_used_by_the_others(shared: Any) -> None:
    server, clock = KeyServer("k1"), Clock()
    one, two, three = (process(shared, server, clock) for _ in range(3))
    assert await one.get_key(URL, "k1", "ES384") is not None
    assert await two.get_key(URL, "k1", "ES384") is not None
    assert await three.get_key(URL, "k1", "ES384") is not None
    assert server.requests == 1


async def test_a_rotated_key_fetched_by_one_replica_reaches_the_others_without_a_fetch(shared: Any) -> None:
    server, clock = KeyServer("k1"), Clock()
    one, two = process(shared, server, clock), process(shared, server, clock)
    await one.get_key(URL, "k1", "ES384")
    await two.get_key(URL, "k1", "ES384")
    server.rotate("k2")
    clock.now += 60  # past the refresh rate limit, within the cache lifetime
    assert await two.get_key(URL, "k2", "ES384") is not None  # two sees a new kid: fetches once
    clock.now += 2
    assert await one.get_key(URL, "k2", "ES384") is not None  # one adopts two's fetch
    assert server.requests == 2


async def test_unknown_kids_make_at_most_one_fetch_per_refresh_window_across_the_fleet(shared: Any) -> None:
    server, clock = KeyServer("k1"), Clock()
    fleet = [process(shared, server, clock) for _ in range(4)]
    for cache in fleet:
        await cache.get_key(URL, "k1", "ES384")
    clock.now += 60
    for i, cache in enumerate(fleet):
        clock.now += 2
        assert await cache.get_key(URL, f"forged-{i}", "ES384") is None
    assert server.requests == 2  # the first load, then one refresh for the whole fleet


async def test_a_stale_shared_document_is_not_adopted(shared: Any) -> None:
    server, clock = KeyServer("k1"), Clock()
    one = process(shared, server, clock)
    await one.get_key(URL, "k1", "ES384")
    clock.now += 4000  # past cache_seconds
    two = process(shared, server, clock)
    assert await two.get_key(URL, "k1", "ES384") is not None
    assert server.requests == 2


async def test_a_malformed_shared_entry_is_ignored_and_the_key_fetched(shared: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    server, clock = KeyServer("k1"), Clock()
    shared.save(URL, json.dumps({"keys": "not a list"}), clock.now, 3600)
    with caplog.at_level(logging.WARNING, logger="cds_hooks.jwks"):
        assert await process(shared, server, clock).get_key(URL, "k1", "ES384") is not None
    assert server.requests == 1
    assert "ignored" in caplog.text


async def test_an_entry_planted_without_the_deployment_secret_is_ignored(shared: Any,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Write access to the database or Redis alone cannot make the service trust a key."""
    server, clock = KeyServer("k1"), Clock()
    attacker = (RedisJwksStore("redis://unused", b"guessed", client=shared._client)
                if isinstance(shared, RedisJwksStore) else SqlJwksStore(shared._engine, b"guessed"))
    attacker.save(URL, json.dumps({"keys": [jwk("planted")]}), clock.now, 3600)
    with caplog.at_level(logging.WARNING, logger="cds_hooks.jwks"):
        assert await process(shared, server, clock).get_key(URL, "planted", "ES384") is None
    assert "integrity check" in caplog.text
    assert server.requests == 1  # it went to the client's key server instead, which has no such key


def test_the_newer_document_wins_whatever_order_writers_finish(shared: Any) -> None:
    shared.save(URL, '{"keys":[1]}', 200.0, 3600)
    shared.save(URL, '{"keys":[0]}', 100.0, 3600)  # a slow writer with an older fetch
    loaded = shared.load(URL)
    if isinstance(shared, RedisJwksStore):  # Redis keeps the last write; each write is a fresh fetch in practice
        assert loaded == SharedDocument('{"keys":[0]}', 100.0)
    else:
        assert loaded == SharedDocument('{"keys":[1]}', 200.0)
    assert shared.load("https://other.example/jwks") is None


class DownStore:
    def load(self, url: str) -> SharedDocument | None:
        raise JwksStoreError("shared JWK Set table unavailable (OperationalError)")

    def save(self, url: str, document: str, fetched_at: float, ttl_seconds: float) -> None:
        raise JwksStoreError("shared JWK Set table unavailable (OperationalError)")


async def test_a_store_that_cannot_answer_is_logged_and_the_process_fetches_itself(
        caplog: pytest.LogCaptureFixture) -> None:
    server, clock = KeyServer("k1"), Clock()
    cache = process(DownStore(), server, clock)
    with caplog.at_level(logging.WARNING, logger="cds_hooks.jwks"):
        assert await cache.get_key(URL, "k1", "ES384") is not None
    assert server.requests == 1
    assert "shared JWK Set cache skipped" in caplog.text and "not updated" in caplog.text
    assert await cache.get_key(URL, "k1", "ES384") is not None  # its own memory still serves
    assert server.requests == 1


async def test_without_any_document_and_a_failing_key_server_the_error_names_the_url(shared: Any) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    cache = JwksCache(http_client=httpx.AsyncClient(transport=httpx.MockTransport(broken)), clock=Clock(),
                      shared=shared)
    with pytest.raises(JwksError, match="ehr.example.*HTTP 503"):
        await cache.get_key(URL, "k1", "ES384")


def test_the_store_refuses_oversized_or_timeless_documents(tmp_path: Path) -> None:
    db = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", b"test-secret-0123456789")
    db.migrate()
    store = open_jwks_store(None, db, SECRET)
    with pytest.raises(JwksStoreError, match="at most"):
        store.save(URL, "x" * (300 * 1024), 1.0, 60)
    with pytest.raises(JwksStoreError, match="fetch time"):
        store.save(URL, "{}", float("nan"), 60)
    db.dispose()


def test_two_service_replicas_sharing_a_database_fetch_a_clients_jku_keys_once(tmp_path: Path) -> None:
    import time
    import uuid

    import jwt
    import respx
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from conftest import make_settings

    private = ec.generate_private_key(ec.SECP384R1())
    public = {**json.loads(ECAlgorithm.to_jwk(private.public_key())), "kid": "epic-1", "alg": "ES384", "use": "sig"}
    iss, jku = "https://ehr.example/interconnect", "https://ehr.example/interconnect/jwks.json"
    store = {"url": f"sqlite:///{tmp_path / 'shared.sqlite3'}"}
    auth = {"clients": [{"iss": iss, "jku_allowlist": [jku], "algorithms": ["ES384"]}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    def token() -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": iss, "aud": "http://testserver/cds-services", "exp": now + 300, "iat": now,
                  "jti": str(uuid.uuid4())}
        signed = jwt.encode(claims, private, algorithm="ES384", headers={"kid": "epic-1", "jku": jku, "typ": "JWT"})
        return {"Authorization": f"Bearer {signed}"}

    with respx.mock(assert_all_called=False) as router:
        router.route(host="testserver").pass_through()
        key_server = router.get(jku).respond(200, json={"keys": [public]})
        replica_a = create_app(make_settings(tmp_path / "a", store=store, auth=auth))
        replica_b = create_app(make_settings(tmp_path / "b", store=store, auth=auth))
        with TestClient(replica_a) as a, TestClient(replica_b) as b:
            assert a.get("/cds-services", headers=token()).status_code == 200
            assert b.get("/cds-services", headers=token()).status_code == 200
            assert b.get("/cds-services", headers=token()).status_code == 200
    assert key_server.call_count == 1
