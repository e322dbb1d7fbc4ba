"""Forged, broken and replayed client JWTs through HTTP: every one a bare 401, nothing fetched (issue #11).

Also: the audience comes from configuration only (never the Host or X-Forwarded-* headers), and the replay cache is
shared and durable — it holds across an app restart and between app instances sharing one database (SQLite here,
PostgreSQL and Redis when their servers are installed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

import fhirfactory as F
from tests.service_process import free_port
from cds_hooks.app import create_app
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.replay import MemoryReplayStore, RedisReplayStore, ReplayStoreError, SqlReplayStore
from cds_hooks.settings import ConfigError
from conftest import KEYS, ROOT, make_settings
from redis_fixture import redis_url  # noqa: F401  (pytest fixture)
from postgres_fixture import postgres_url  # noqa: F401  (pytest fixture)
from store.schema import AuthReplay
from store.store import Store

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_JWKS = json.loads((KEYS / "sandbox" / "jwks.json").read_text())
SANDBOX_KEY = serialization.load_pem_private_key((KEYS / "sandbox" / "ecprivkey.pem").read_bytes(), password=None)
PUBLIC_PEM = SANDBOX_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_ISS = "https://epic.example/interconnect"
BASE = "http://testserver"  # server.public_base_url in make_settings
PATHS = ["/cds-services", "/cds-services/ascvd-pce-10y", "/cds-services/ascvd-pce-10y/feedback"]


def clients_config() -> list[dict[str, Any]]:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    rsa_jwk.update(kid="rsa-1", alg="RS384", use="sig")
    return [
        {"iss": SANDBOX_ISS, "jwks": SANDBOX_JWKS, "development_only": True, "jku_allowlist": [SANDBOX_JKU]},
        {"iss": RSA_ISS, "jwks": {"keys": [rsa_jwk]}, "algorithms": ["RS384"]},
    ]


# ---- minting ----------------------------------------------------------------------------------------------------


def claims(aud: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": SANDBOX_ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def es384(aud: str, headers: dict[str, Any] | None = None, **over: Any) -> str:
    """Signed exactly as the sandbox signs (its published key): ES384, typ JWT, its kid and jku."""
    head = {"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    head.update(headers or {})
    return jwt.encode(claims(aud, **over), SANDBOX_KEY, algorithm="ES384",
                      headers={k: v for k, v in head.items() if v is not None})


def rs384(aud: str, **over: Any) -> str:
    return jwt.encode(claims(aud, iss=RSA_ISS, **over), RSA_KEY, algorithm="RS384",
                      headers={"kid": "rsa-1", "typ": "JWT"})


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(alg: str, payload: dict[str, Any]) -> str:
    """Algorithm confusion: HMAC keyed with the verifier's public key bytes (PyJWT refuses to do it, so by hand)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    signing_input = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': SANDBOX_KID})}.{b64(payload)}"
    return f"{signing_input}.{b64(hmac.new(PUBLIC_PEM, signing_input.encode(), digest).digest())}"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def call(client: TestClient, path: str, headers: list[tuple[str, str]]) -> Any:
    if path == "/cds-services":
        return client.get(path, headers=headers)
    body = {"feedback": []} if path.endswith("feedback") else F.hook_request({})
    return client.post(path, content=json.dumps(body), headers=[*headers, ("Content-Type", "application/json")])


def assert_bare_401(resp: Any, case: str) -> None:
    assert resp.status_code == 401, f"{case}: {resp.status_code} {resp.text[:200]}"
    assert resp.content == b"", case


# ---- the app ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outbound() -> Iterator[respx.MockRouter]:
    """Every request the service makes to the outside world is answered (a JWK Set) and counted."""
    with respx.mock(assert_all_called=False) as router:
        router.route(host="testserver").pass_through()
        router.get(SANDBOX_JKU, name="allowlisted").respond(200, json=SANDBOX_JWKS)
        router.route(name="outside").respond(200, json=SANDBOX_JWKS)
        yield router


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, outbound: respx.MockRouter) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("battery"), auth={"clients": clients_config()})
    with TestClient(create_app(settings)) as c:
        yield c


TWO = "more than one Authorization header"


def battery(path: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Case name -> (the reason the service must log, the request's headers)."""
    aud = f"{BASE}{path}"
    now = int(time.time())
    good = es384(aud)
    head, payload, sig = good.split(".")
    forged_payload = b64(claims(aud, sub="admin"))
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    return {
        "no Authorization header": ("missing", []),
        "not a Bearer token": ("Bearer", [("Authorization", f"Basic {good}")]),
        "bare token without scheme": ("Bearer", [("Authorization", good)]),
        "alg none": ("'alg'", bearer(f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': SANDBOX_KID})}.{b64(claims(aud))}.")),
        "alg none without kid": ("'alg'", bearer(f"{b64({'alg': 'none'})}.{b64(claims(aud))}.")),
        "HS256 with the public key": ("'alg'", bearer(hmac_signed("HS256", claims(aud)))),
        "HS384 with the public key": ("'alg'", bearer(hmac_signed("HS384", claims(aud)))),
        "wrong aud (another path)": ("'aud'", bearer(es384(f"{BASE}/cds-services/other"))),
        "wrong aud (trailing slash)": ("'aud'", bearer(es384(aud + "/"))),
        "wrong aud (another host)": ("'aud'", bearer(es384(f"http://evil.example{path}"))),
        "aud list without this URL": ("'aud'", bearer(es384(["http://evil.example/x", f"{BASE}/other"]))),
        "wrong iss": ("'iss'", bearer(es384(aud, iss="https://evil.example"))),
        "RS384 client signing ES384": ("'alg'", bearer(es384(aud, iss=RSA_ISS))),
        "expired": ("expired", bearer(es384(aud, exp=now - 600, iat=now - 900))),
        "nbf in the future": ("'nbf'", bearer(es384(aud, nbf=now + 900))),
        "iat in the future": ("'iat' is in the future", bearer(es384(aud, iat=now + 900, exp=now + 1000))),
        "lifetime over the maximum": ("lifetime", bearer(es384(aud, exp=now + 7200))),
        "unknown kid": ("'kid'", bearer(es384(aud, headers={"kid": "nope", "jku": None}))),
        "unknown kid at the allowlisted jku": ("'kid'", bearer(es384(aud, headers={"kid": "nope"}))),
        "jku off the allowlist": ("'jku'", bearer(es384(aud, headers={
            "kid": "other", "jku": "https://evil.example/.well-known/jwks.json"}))),
        "jku near miss": ("'jku'", bearer(es384(aud, headers={"kid": "other", "jku": SANDBOX_JKU + "?x=1"}))),
        "jku on loopback": ("'jku'", bearer(es384(aud, headers={"kid": "other",
                                                                "jku": "http://127.0.0.1:9/jwks.json"}))),
        "tampered payload": ("signature", bearer(f"{head}.{forged_payload}.{sig}")),
        "tampered signature": ("signature", bearer(f"{head}.{payload}.{flipped}")),
        "signature stripped": ("signature", bearer(f"{head}.{payload}.")),
        "missing jti": ("'jti'", bearer(es384(aud, jti=None))),
        "empty jti": ("'jti'", bearer(es384(aud, jti=""))),
        "jti longer than 255": ("'jti'", bearer(es384(aud, jti="j" * 256))),
        "missing exp": ("'exp'", bearer(es384(aud, exp=None))),
        "missing iat": ("'iat'", bearer(es384(aud, iat=None))),
        "oversized token": ("too long", bearer(es384(aud, padding="x" * 20_000))),
        "exp NaN": ("'exp' must be a finite", bearer(es384(aud, exp=math.nan))),
        "exp Infinity": ("'exp' must be a finite", bearer(es384(aud, exp=math.inf))),
        "exp -Infinity": ("'exp' must be a finite", bearer(es384(aud, exp=-math.inf))),
        "exp too big for a float": ("'exp' is out of range", bearer(es384(aud, exp=10**400))),
        "exp boolean": ("'exp' must be a number", bearer(es384(aud, exp=True))),
        "exp string": ("'exp' must be a number", bearer(es384(aud, exp=str(now + 300)))),
        "iat NaN": ("'iat' must be a finite", bearer(es384(aud, iat=math.nan))),
        "iat Infinity": ("'iat' must be a finite", bearer(es384(aud, iat=math.inf))),
        "iat -Infinity (lifetime cap bypass)": ("'iat' must be a finite", bearer(es384(aud, iat=-math.inf))),
        "iat boolean": ("'iat' must be a number", bearer(es384(aud, iat=False))),
        "nbf NaN": ("'nbf' must be a finite", bearer(es384(aud, nbf=math.nan))),
        "nbf Infinity": ("'nbf' must be a finite", bearer(es384(aud, nbf=math.inf))),
        "nbf boolean": ("'nbf' must be a number", bearer(es384(aud, nbf=True))),
        "two headers: valid then garbage": (TWO, [*bearer(es384(aud)), ("Authorization", "Bearer garbage")]),
        "two headers: garbage then valid": (TWO, [("Authorization", "Bearer garbage"), *bearer(es384(aud))]),
        "two headers: both valid": (TWO, [*bearer(es384(aud)), *bearer(es384(aud))]),
        "two headers: the same token twice": (TWO, [*bearer(good), *bearer(good)]),
        "two headers: valid then empty": (TWO, [*bearer(es384(aud)), ("Authorization", "")]),
        "Host header audience forgery": ("'aud'", [*bearer(es384(f"http://evil.example{path}")),
                                                   ("Host", "evil.example")]),
        "X-Forwarded audience forgery": ("'aud'", [*bearer(es384(f"https://evil.example{path}")),
                                                   ("X-Forwarded-Host", "evil.example"),
                                                   ("X-Forwarded-Proto", "https")]),
    }


def test_the_battery_covers_the_issue() -> None:
    names = " ".join(battery("/cds-services")).lower()
    for needed in ("alg none", "hs256", "hs384", "wrong aud", "wrong iss", "expired", "nbf in", "iat in",
                   "unknown kid", "jku off", "tampered payload", "tampered signature", "missing jti", "oversized",
                   "exp nan", "iat nan", "nbf nan", "infinity", "two headers", "host header"):
        assert needed in names, needed


@pytest.mark.parametrize("path", PATHS)
def test_every_forged_or_broken_token_is_a_bare_401_and_nothing_is_fetched(
        client: TestClient, outbound: respx.MockRouter, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cds_hooks")
    for case, (reason, headers) in battery(path).items():
        caplog.clear()
        assert_bare_401(call(client, path, headers), case)
        logged = [r.getMessage() for r in caplog.records if "rejected client authentication" in r.getMessage()]
        assert len(logged) == 1 and reason in logged[0], (case, logged)  # refused by the rule the case is about
    # No unlisted jku was ever fetched. The allowlisted one may be, once: an unknown kid there triggers one
    # rate-limited refresh (at most one per 30 s, whatever the number of tokens).
    assert outbound["outside"].call_count == 0
    assert outbound["allowlisted"].call_count <= 1


@pytest.mark.parametrize("path", PATHS)
def test_a_replayed_token_is_a_bare_401(client: TestClient, path: str) -> None:
    token = es384(f"{BASE}{path}")
    assert call(client, path, bearer(token)).status_code != 401
    assert_bare_401(call(client, path, bearer(token)), "replay")
    # a new token reusing the jti is a replay too
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert_bare_401(call(client, path, bearer(es384(f"{BASE}{path}", jti=jti))), "replayed jti, new token")


def test_es384_sandbox_and_rs384_tokens_are_accepted(client: TestClient) -> None:
    path = "/cds-services"
    assert call(client, path, bearer(es384(f"{BASE}{path}"))).status_code == 200
    now = int(time.time())
    assert call(client, path, bearer(rs384(f"{BASE}{path}", sub="epic-client", nbf=now))).status_code == 200
    # an aud list that contains the URL called is fine
    assert call(client, path, bearer(es384(["http://other.example/", f"{BASE}{path}"]))).status_code == 200


def test_refused_non_finite_tokens_never_reach_the_replay_table(client: TestClient) -> None:
    path = "/cds-services"
    jti = str(uuid.uuid4())
    for bad in ({"exp": math.nan}, {"iat": math.nan}, {"nbf": math.nan}, {"exp": math.inf}):
        assert_bare_401(call(client, path, bearer(es384(f"{BASE}{path}", jti=jti, **bad))), str(bad))
    store: Store = client.app.state.cds.store
    with store.replay_engine().connect() as conn:  # beside the embedded store: a SQLite file of its own
        rows = conn.execute(select(AuthReplay.__table__)).all()
    assert rows, "accepted tokens are remembered in the store's replay database"
    assert all(math.isfinite(r.expires_at) for r in rows)
    assert jti not in {r.jti for r in rows}
    # the jti was never remembered, so a well-formed token carrying it is accepted (once)
    assert call(client, path, bearer(es384(f"{BASE}{path}", jti=jti))).status_code == 200


# ---- the audience comes from configuration only -----------------------------------------------------------------


def test_the_development_audience_is_the_configured_listen_address_not_the_host_header(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"public_base_url": None, "host": "127.0.0.1", "port": 8080},
                             auth={"clients": clients_config()})
    with TestClient(create_app(settings)) as c:  # requests carry Host: testserver
        for aud in ("http://127.0.0.1:8080/cds-services", "http://localhost:8080/cds-services"):
            assert c.get("/cds-services", headers=bearer(es384(aud))).status_code == 200, aud
        assert_bare_401(c.get("/cds-services", headers=bearer(es384("http://testserver/cds-services"))),
                        "aud from the Host header")
        forged = es384("http://attacker.example/cds-services")
        assert_bare_401(c.get("/cds-services", headers=[*bearer(forged), ("Host", "attacker.example")]),
                        "Host header forgery")
        assert_bare_401(c.get("/cds-services", headers=[*bearer(es384("http://attacker.example/cds-services")),
                                                        ("X-Forwarded-Host", "attacker.example")]),
                        "X-Forwarded-Host forgery")


def test_accepted_audiences_are_a_configured_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"public_base_url": None},
                             auth={"clients": clients_config(),
                                   "accepted_audiences": ["https://cds.example.org/base/", "https://cds.internal"]})
    with TestClient(create_app(settings)) as c:
        for aud in ("https://cds.example.org/base/cds-services", "https://cds.internal/cds-services"):
            assert c.get("/cds-services", headers=bearer(es384(aud))).status_code == 200, aud
        for aud in ("http://testserver/cds-services", "http://127.0.0.1:8080/cds-services",
                    "https://cds.example.org/cds-services"):
            assert_bare_401(c.get("/cds-services", headers=bearer(es384(aud))), aud)


def test_card_links_use_the_configured_base_whatever_the_host_header(tmp_path: Path) -> None:
    base = "https://cds.example.org/base"
    settings = make_settings(tmp_path, server={"public_base_url": base}, auth={"clients": clients_config()})
    path = "/cds-services/ascvd-pce-10y"
    evil = [("Host", "evil.example"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")]
    with TestClient(create_app(settings)) as c:
        services = c.get("/cds-services", headers=[*bearer(es384(f"{base}/cds-services")), *evil]).json()
        templates = next(s for s in services["services"] if s["id"] == "ascvd-pce-10y")["prefetch"]
        prefetch = prefetch_from_resources(templates, F.pce_record(),
                                           {"userId": "Practitioner/example", "patientId": "p1"})
        resp = c.post(path, json=F.hook_request(prefetch), headers=[*bearer(es384(f"{base}{path}")), *evil])
        assert resp.status_code == 200, resp.text
        cards = resp.json()["cards"]
        assert cards
        urls = [card["source"]["url"] for card in cards] + [link["url"] for card in cards for link in card["links"]
                                                             if link["type"] == "absolute"]
        assert urls and all(u.startswith(f"{base}/") for u in urls if "/models/" in u), urls
        assert "evil.example" not in resp.text
        assert c.get("/models/ascvd-pce-10y", headers=evil).json()["card_url"].startswith(f"{base}/models/")


@pytest.mark.parametrize(("override", "message"), [
    ({"auth": {"accepted_audiences": ["cds.example.org"]}}, "auth.accepted_audiences"),
    ({"auth": {"accepted_audiences": ["https://cds.example.org/?x=1"]}}, "auth.accepted_audiences"),
    ({"server": {"public_base_url": "https://cds.example.org/#frag"}}, "server.public_base_url"),
    ({"auth": {"replay_cache_url": "memcached://127.0.0.1"}}, "auth.replay_cache_url"),
])
def test_audience_and_replay_settings_are_validated(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_settings(tmp_path, **override)


# ---- replay protection is shared and durable --------------------------------------------------------------------


def test_a_token_replayed_after_a_restart_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"clients": clients_config()})
    token = es384(f"{BASE}/cds-services")
    with TestClient(create_app(settings)) as first:
        assert first.get("/cds-services", headers=bearer(token)).status_code == 200
    with TestClient(create_app(settings)) as restarted:  # a new app on the same SQLite file
        assert_bare_401(restarted.get("/cds-services", headers=bearer(token)), "replay after restart")
        assert restarted.get("/cds-services", headers=bearer(es384(f"{BASE}/cds-services"))).status_code == 200


def test_two_app_instances_sharing_a_store_refuse_each_others_tokens(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"clients": clients_config()})
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        for first, second in ((one, two), (two, one)):
            token = es384(f"{BASE}/cds-services")
            assert first.get("/cds-services", headers=bearer(token)).status_code == 200
            assert_bare_401(second.get("/cds-services", headers=bearer(token)), "replay on the other instance")
            assert_bare_401(first.get("/cds-services", headers=bearer(token)), "replay on the same instance")


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sqlalchemy import create_engine
    from cds_hooks.replay import SqlReplayStore
    url, go, now = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    store = SqlReplayStore(create_engine(url, connect_args={"timeout": 30}))
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    print("won" if store.remember("https://ehr.example", "racing-jti", now + 300, now) else "lost", flush=True)
""")


def test_processes_racing_with_one_jti_admit_exactly_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    Store(url, b"test-secret-0123456789").migrate()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, url, str(go), str(time.time())], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    results = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert sorted(results) == ["lost", "lost", "lost", "won"]


def test_sql_store_refuses_non_finite_expiry_and_purges_expired_entries(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'replay.sqlite3'}", b"test-secret-0123456789")
    store.migrate()
    replay = SqlReplayStore(store.engine, purge_interval_seconds=3600)
    check_store_contract(replay, lambda: _sql_rows(store))


def _sql_rows(store: Store) -> int:
    with store.session() as session:
        return len(session.execute(select(AuthReplay)).scalars().all())


def check_store_contract(replay: Any, rows: Any = None, iss: str | None = None) -> None:
    """The ReplayStore contract every implementation must meet."""
    iss = iss or f"https://ehr.example/{uuid.uuid4()}"
    now = 1_700_000_000.0
    for bad in (math.nan, math.inf, -math.inf, True, "1700000300", None):
        with pytest.raises(ValueError):
            replay.remember(iss, "bad-expiry", bad, now)
    assert replay.remember(iss, "a", now + 10, now) is True
    assert replay.remember(iss, "a", now + 10, now) is False
    assert replay.remember(iss, "a", now + 10, now + 10) is False  # still live at the last instant
    assert replay.remember(f"{iss}/other", "a", now + 10, now) is True  # (iss, jti) pairs, not jti alone
    assert replay.remember(iss, "b", now + 100, now) is True
    if rows is not None:
        assert rows() == 3
        assert replay.purge(now + 11) == 2  # "a" of both issuers expired; "b" stays
        assert rows() == 1
        assert replay.remember(iss, "b", now + 100, now + 50) is False
    # an expired entry can be taken over by a new token with the same jti
    assert replay.remember(iss, "a", now + 200, now + 150) is True
    assert replay.remember(iss, "a", now + 200, now + 150) is False


def test_memory_store_refuses_non_finite_expiry_and_purges() -> None:
    replay = MemoryReplayStore(max_entries=10)
    check_store_contract(replay, lambda: len(replay))
    full = MemoryReplayStore(max_entries=1)
    assert full.remember("i", "x", 20.0, 10.0)
    with pytest.raises(ReplayStoreError, match="full"):
        full.remember("i", "y", 20.0, 10.0)
    assert full.remember("i", "y", 40.0, 21.0)  # "x" expired and was purged to make room


def test_sql_store_purges_as_it_writes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'replay.sqlite3'}", b"test-secret-0123456789")
    store.migrate()
    replay = SqlReplayStore(store.engine, purge_interval_seconds=60)
    now = 1_700_000_000.0
    for i in range(5):
        replay.remember("iss", f"old-{i}", now + 10, now)
    assert _sql_rows(store) == 5
    replay.remember("iss", "later", now + 400, now + 30)  # within the purge interval: nothing purged
    assert _sql_rows(store) == 6
    replay.remember("iss", "much-later", now + 400, now + 61)
    assert _sql_rows(store) == 2


def test_replay_store_failure_refuses_the_call(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"clients": clients_config()})
    with TestClient(create_app(settings)) as c:
        with c.app.state.cds.store.replay_engine().begin() as conn:
            conn.exec_driver_sql("DROP TABLE auth_replay")
        assert_bare_401(c.get("/cds-services", headers=bearer(es384(f"{BASE}/cds-services"))), "store down")


def test_postgres_replay_store(postgres_url: str) -> None:  # noqa: F811
    store = Store(postgres_url, b"test-secret-0123456789")
    try:
        store.migrate()
        check_store_contract(SqlReplayStore(store.engine, purge_interval_seconds=3600))
        # concurrent writers on the same (iss, jti): exactly one wins
        from concurrent.futures import ThreadPoolExecutor

        replay = SqlReplayStore(store.engine, purge_interval_seconds=3600)
        iss, now = f"https://ehr.example/{uuid.uuid4()}", time.time()
        with ThreadPoolExecutor(8) as pool:
            wins = list(pool.map(lambda _: replay.remember(iss, "same", now + 60, now), range(8)))
        assert wins.count(True) == 1
    finally:
        store.dispose()


def test_postgres_backed_apps_refuse_each_others_tokens(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    settings = make_settings(tmp_path, store={"url": postgres_url}, auth={"clients": clients_config()})
    token = es384(f"{BASE}/cds-services")
    with TestClient(create_app(settings)) as one:
        assert one.get("/cds-services", headers=bearer(token)).status_code == 200
    with TestClient(create_app(settings)) as two:
        assert_bare_401(two.get("/cds-services", headers=bearer(token)), "replay on PostgreSQL after restart")


# ---- Redis ------------------------------------------------------------------------------------------------------




def test_redis_store_contract_and_expiry(redis_url: str) -> None:
    replay = RedisReplayStore(redis_url)
    try:
        check_store_contract(_RedisAtFixedTime(replay))
        now = time.time()
        iss = f"https://ehr.example/{uuid.uuid4()}"
        assert replay.remember(iss, "ttl", now + 120, now)
        ttl = replay._client.ttl(replay.key(iss, "ttl"))
        assert 100 <= ttl <= 120  # Redis forgets the entry when the token could no longer be accepted
        assert not replay.remember(iss, "ttl", now + 120, now)
    finally:
        replay.close()


class _RedisAtFixedTime:
    """Redis keeps real time, so the contract's simulated clock is mapped onto short real TTLs where it matters."""

    def __init__(self, inner: RedisReplayStore) -> None:
        self.inner = inner
        self.expired = False

    def remember(self, iss: str, jti: str, forget_after: Any, now: float) -> bool:
        if jti == "a" and now == 1_700_000_150 and not self.expired:
            self.expired = True
            self.inner._client.delete(self.inner.key(iss, "a"))  # the 10 s entry has expired by then
        return self.inner.remember(iss, jti, forget_after, now)


def test_redis_backed_apps_share_the_replay_cache(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one_settings = make_settings(tmp_path / "one", auth={"clients": clients_config(), "replay_cache_url": redis_url})
    two_settings = make_settings(tmp_path / "two", auth={"clients": clients_config(), "replay_cache_url": redis_url})
    with TestClient(create_app(one_settings)) as one, TestClient(create_app(two_settings)) as two:
        token = es384(f"{BASE}/cds-services")  # two apps with different SQLite files: only Redis is shared
        assert one.get("/cds-services", headers=bearer(token)).status_code == 200
        assert_bare_401(two.get("/cds-services", headers=bearer(token)), "replay through Redis")
        assert _sql_rows(one.app.state.cds.store) == 0  # nothing went to the database


def test_unreachable_redis_refuses_calls(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"clients": clients_config(),
                                             "replay_cache_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(settings)) as c:
        assert_bare_401(c.get("/cds-services", headers=bearer(es384(f"{BASE}/cds-services"))), "Redis down")
