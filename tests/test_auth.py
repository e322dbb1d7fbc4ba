"""Client JWT verification: every rule in cds_hooks.auth, each with a token that breaks it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from cds_hooks.auth import (
    ANONYMOUS_IDENTITY,
    AuthError,
    AuthSettings,
    ClientAuthenticator,
    ReplayCache,
    TrustedClient,
    fhir_server_allowed,
)

KEYS = Path(__file__).parent / "fixtures" / "keys"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JWKS: dict[str, Any] = json.loads((KEYS / "sandbox" / "jwks.json").read_text())
SANDBOX_KEY = serialization.load_pem_private_key((KEYS / "sandbox" / "ecprivkey.pem").read_bytes(), password=None)
AUD = "https://cds.example.org/cds-services/ascvd-pce"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """An httpx.MockTransport handler that serves a JWK Set and records every request."""

    def __init__(self, jwks: dict[str, Any], status: int = 200) -> None:
        self.jwks = jwks
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.jwks)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def sandbox_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": SANDBOX_ISS, "aud": AUD, "exp": int(NOW) + 300, "iat": int(NOW)}
    claims["jti"] = str(uuid.uuid4())
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sandbox_token(claims: dict[str, Any] | None = None, **header_overrides: Any) -> str:
    """Signed exactly as the sandbox signs: ES384, typ JWT, its kid and its jku."""
    headers: dict[str, Any] = {"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    headers.update(header_overrides)
    headers = {k: v for k, v in headers.items() if v is not None}
    return jwt.encode(claims or sandbox_claims(), SANDBOX_KEY, algorithm="ES384", headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sandbox_client(**overrides: Any) -> TrustedClient:
    values: dict[str, Any] = {"iss": SANDBOX_ISS, "jwks": SANDBOX_JWKS, "jku_allowlist": (SANDBOX_JKU,)}
    values.update(overrides)
    return TrustedClient(**values)


def authenticator(
    *clients: TrustedClient, recorder: Recorder | None = None, clock: Clock | None = None, **settings: Any
) -> ClientAuthenticator:
    return ClientAuthenticator(
        AuthSettings(clients=clients or (sandbox_client(),), **settings),
        http_client=(recorder or Recorder(SANDBOX_JWKS)).client(),
        clock=clock or Clock(),
    )


async def rejected(auth: ClientAuthenticator, token: str | None, audience: str = AUD, header: str | None = None) -> str:
    """Assert the call is refused and that the log message carries no part of the token."""
    with pytest.raises(AuthError) as info:
        await auth.verify(header if header is not None else (f"Bearer {token}" if token else None), audience)
    message = str(info.value)
    if token:
        for segment in token.split("."):
            if len(segment) > 8:
                assert segment not in message
    return message


# ---- accepted tokens -------------------------------------------------------------------------------------------


async def test_sandbox_token_with_static_jwks_is_accepted_without_network() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(recorder=recorder)
    claims = sandbox_claims()
    identity = await auth.verify(f"Bearer {sandbox_token(claims)}", AUD)
    assert (identity.iss, identity.jti, identity.sub, identity.tenant) == (SANDBOX_ISS, claims["jti"], None, None)
    assert identity.client.iss == SANDBOX_ISS
    assert recorder.requests == []


async def test_sandbox_header_is_exactly_what_the_sandbox_sends() -> None:
    header = jwt.get_unverified_header(sandbox_token())
    assert header == {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}


async def test_rs384_token_from_generated_rsa_key_is_accepted() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk["kid"] = "epic-rsa-1"  # no `alg` member, as many EHR JWK Sets publish RSA keys
    client = TrustedClient(iss="https://ehr.example/epic", jwks={"keys": [jwk]})
    auth = authenticator(client)
    claims = sandbox_claims(iss=client.iss)
    token = jwt.encode(claims, private, algorithm="RS384", headers={"kid": "epic-rsa-1", "typ": "JWT"})
    identity = await auth.verify(f"Bearer {token}", AUD)
    assert identity.iss == client.iss


async def test_epic_style_token_with_sub_and_nbf_is_accepted() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "k1", "alg": "RS384", "use": "sig"}
    jku = "https://ehr.example/fhir/api/epic/jwks"
    client = TrustedClient(iss="https://ehr.example/fhir", jku_allowlist=(jku,), algorithms=("RS384",))
    recorder = Recorder({"keys": [jwk]})
    auth = authenticator(client, recorder=recorder)
    claims = sandbox_claims(iss=client.iss, sub="a1b2c3-client-id", nbf=int(NOW) - 5, extra_vendor_claim=[1, 2])
    token = jwt.encode(claims, private, algorithm="RS384", headers={"kid": "k1", "jku": jku, "typ": "JWT"})
    identity = await auth.verify(f"Bearer {token}", AUD)
    assert identity.sub == "a1b2c3-client-id"
    assert [str(r.url) for r in recorder.requests] == [jku]


async def test_aud_list_containing_the_called_url_is_accepted() -> None:
    auth = authenticator()
    token = sandbox_token(sandbox_claims(aud=["https://other.example/x", AUD]))
    assert (await auth.verify(f"Bearer {token}", AUD)).iss == SANDBOX_ISS


async def test_expiry_within_clock_skew_is_accepted() -> None:
    auth = authenticator(clock=Clock(NOW + 330), clock_skew_seconds=60)
    assert (await auth.verify(f"Bearer {sandbox_token()}", AUD)).iss == SANDBOX_ISS


async def test_lowercase_bearer_scheme_is_accepted() -> None:
    auth = authenticator()
    assert (await auth.verify(f"bearer {sandbox_token()}", AUD)).iss == SANDBOX_ISS


async def test_disabled_auth_returns_anonymous_identity() -> None:
    auth = ClientAuthenticator(AuthSettings(enabled=False))
    assert await auth.verify(None, AUD) is ANONYMOUS_IDENTITY
    assert not fhir_server_allowed(ANONYMOUS_IDENTITY.client, "https://ehr.example/fhir")


# ---- the Authorization header ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc.def.ghi"])
async def test_missing_or_non_bearer_header_is_rejected(header: str | None) -> None:
    auth = authenticator()
    with pytest.raises(AuthError):
        await auth.verify(header, AUD)


async def test_bare_token_without_scheme_is_rejected() -> None:
    await rejected(authenticator(), None, header=sandbox_token())


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJFUzM4NCJ9..", "Bearer two tokens"])
async def test_malformed_token_is_rejected(garbage: str) -> None:
    await rejected(authenticator(), garbage)


# ---- algorithm confusion ---------------------------------------------------------------------------------------


async def test_alg_none_is_rejected_before_key_lookup() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder)
    header = {"alg": "none", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(sandbox_claims()).encode())}."
    message = await rejected(auth, token)
    assert "alg" in message
    assert recorder.requests == []


async def test_hs256_signed_with_the_public_key_is_rejected() -> None:
    """The classic confusion attack: HMAC keyed with the verifier's public key bytes."""
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder)
    public_pem = SANDBOX_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(sandbox_claims()).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    message = await rejected(auth, f"{signing_input}.{b64(signature)}")
    assert "alg" in message
    assert recorder.requests == []


@pytest.mark.parametrize("alg", ["none", "HS256", "HS384", "RS1", "ES384 "])
def test_unsafe_algorithms_cannot_be_configured(alg: str) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        TrustedClient(iss=SANDBOX_ISS, algorithms=(alg,))


async def test_algorithm_not_allowed_for_this_client_is_rejected() -> None:
    message = await rejected(authenticator(sandbox_client(algorithms=("RS384",))), sandbox_token())
    assert "alg" in message


async def test_key_of_the_wrong_type_for_alg_is_not_used() -> None:
    """An RS384 header pointing at the sandbox's EC kid finds no usable key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(sandbox_claims(), private, algorithm="RS384", headers={"kid": SANDBOX_KID, "typ": "JWT"})
    message = await rejected(authenticator(), token)
    assert "kid" in message


@pytest.mark.parametrize("restriction", [{"alg": "RS256"}, {"use": "enc"}, {"key_ops": ["encrypt"]}])
async def test_jwk_restricted_to_other_uses_is_not_used(restriction: dict[str, Any]) -> None:
    """A JWK published for RS256 only (or for encryption) cannot verify an RS384 token."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "r1"} | restriction
    auth = authenticator(TrustedClient(iss="https://ehr.example", jwks={"keys": [jwk]}))
    token = jwt.encode(sandbox_claims(iss="https://ehr.example"), private, algorithm="RS384", headers={"kid": "r1"})
    assert "kid" in await rejected(auth, token)


# ---- header fields ---------------------------------------------------------------------------------------------


async def test_typ_other_than_jwt_is_rejected() -> None:
    message = await rejected(authenticator(), sandbox_token(typ="at+jwt"))
    assert "typ" in message


async def test_missing_typ_is_tolerated() -> None:
    # PyJWT adds typ=JWT by default, so build a token without it by hand.
    header = {"alg": "ES384", "kid": SANDBOX_KID}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(sandbox_claims()).encode())}"
    raw = jwt.get_algorithm_by_name("ES384").sign(signing_input.encode(), SANDBOX_KEY)
    assert (await authenticator().verify(f"Bearer {signing_input}.{b64(raw)}", AUD)).iss == SANDBOX_ISS


async def test_missing_kid_is_rejected() -> None:
    token = jwt.encode(sandbox_claims(), SANDBOX_KEY, algorithm="ES384", headers={"typ": "JWT"})
    assert "kid" in await rejected(authenticator(), token)


async def test_unknown_kid_is_rejected() -> None:
    auth = authenticator(sandbox_client(jku_allowlist=()))
    assert "kid" in await rejected(auth, sandbox_token(kid="other", jku=None))


# ---- claims ----------------------------------------------------------------------------------------------------


async def test_wrong_audience_is_rejected() -> None:
    auth = authenticator()
    assert "aud" in await rejected(auth, sandbox_token(sandbox_claims(aud="https://cds.example.org/cds-services/other")))
    assert "aud" in await rejected(auth, sandbox_token(sandbox_claims(aud=AUD + "/")))
    assert "aud" in await rejected(auth, sandbox_token(sandbox_claims(aud=["https://x.example/"])))


async def test_untrusted_issuer_is_rejected() -> None:
    assert "iss" in await rejected(authenticator(), sandbox_token(sandbox_claims(iss="https://evil.example")))


async def test_expired_token_is_rejected() -> None:
    auth = authenticator(clock=Clock(NOW + 300 + 61), clock_skew_seconds=60)
    assert "exp" in await rejected(auth, sandbox_token())


async def test_nbf_in_the_future_is_rejected() -> None:
    token = sandbox_token(sandbox_claims(nbf=int(NOW) + 120))
    assert "nbf" in await rejected(authenticator(clock_skew_seconds=60), token)


async def test_iat_in_the_future_beyond_skew_is_rejected() -> None:
    token = sandbox_token(sandbox_claims(iat=int(NOW) + 120, exp=int(NOW) + 400))
    assert "iat" in await rejected(authenticator(clock_skew_seconds=60), token)


async def test_iat_in_the_future_within_skew_is_accepted() -> None:
    token = sandbox_token(sandbox_claims(iat=int(NOW) + 30, exp=int(NOW) + 330))
    assert (await authenticator(clock_skew_seconds=60).verify(f"Bearer {token}", AUD)).iss == SANDBOX_ISS


async def test_lifetime_longer_than_allowed_is_rejected() -> None:
    token = sandbox_token(sandbox_claims(exp=int(NOW) + 7200))
    assert "lifetime" in await rejected(authenticator(max_token_lifetime_seconds=3600), token)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat"])
async def test_missing_required_claim_is_rejected(claim: str) -> None:
    claims = sandbox_claims()
    del claims[claim]
    assert claim in await rejected(authenticator(), sandbox_token(claims))


@pytest.mark.parametrize(("claim", "value"), [("exp", "tomorrow"), ("iat", True), ("jti", 42), ("sub", 7)])
async def test_claim_of_the_wrong_type_is_rejected(claim: str, value: Any) -> None:
    assert claim in await rejected(authenticator(), sandbox_token(sandbox_claims(**{claim: value})))


async def test_replayed_jti_is_rejected() -> None:
    clock = Clock()
    auth = authenticator(clock=clock, clock_skew_seconds=60)
    token = sandbox_token()
    await auth.verify(f"Bearer {token}", AUD)
    assert "replay" in await rejected(auth, token)
    # At the last instant the token is still accepted (exp + skew), the replay is still refused.
    clock.now = NOW + 300 + 60
    assert "replay" in await rejected(auth, token)
    clock.now = NOW
    # A fresh token reusing the jti is a replay too.
    again = sandbox_token(sandbox_claims(jti=jwt.decode(token, options={"verify_signature": False})["jti"]))
    assert "replay" in await rejected(auth, again)


async def test_concurrent_replays_admit_exactly_one() -> None:
    auth = authenticator()
    header = f"Bearer {sandbox_token()}"
    results = await asyncio.gather(*(auth.verify(header, AUD) for _ in range(20)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, AuthError) for r in results if isinstance(r, Exception))


def test_replay_cache_is_thread_safe_and_bounded() -> None:
    clock = Clock()
    cache = ReplayCache(max_entries=3, clock=clock)
    outcomes: list[bool] = []

    def attempt() -> None:
        try:
            cache.check_and_remember("iss", "same", NOW + 10)
            outcomes.append(True)
        except AuthError:
            outcomes.append(False)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 1
    cache.check_and_remember("iss", "b", NOW + 10)
    cache.check_and_remember("iss", "c", NOW + 100)
    with pytest.raises(AuthError, match="full"):
        cache.check_and_remember("iss", "d", NOW + 10)
    clock.now = NOW + 11  # "same" and "b" expire and are purged to make room
    cache.check_and_remember("iss", "d", NOW + 20)
    cache.check_and_remember("iss", "same", NOW + 20)
    assert len(cache) == 3


async def test_tampered_payload_is_rejected() -> None:
    header, _, signature = sandbox_token().split(".")
    forged = b64(json.dumps(sandbox_claims(sub="admin")).encode())
    assert "signature" in await rejected(authenticator(), f"{header}.{forged}.{signature}")


async def test_tenant_must_be_allowlisted_when_the_client_has_tenants() -> None:
    auth = authenticator(sandbox_client(tenants=("hospital-a",)))
    assert "tenant" in await rejected(auth, sandbox_token(sandbox_claims(tenant="hospital-b")))
    assert "tenant" in await rejected(auth, sandbox_token(sandbox_claims()))
    identity = await auth.verify(f"Bearer {sandbox_token(sandbox_claims(tenant='hospital-a'))}", AUD)
    assert identity.tenant == "hospital-a"


# ---- jku and the JWKS cache ------------------------------------------------------------------------------------


async def test_jku_not_on_allowlist_is_rejected_without_any_request() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder)
    message = await rejected(auth, sandbox_token(jku="https://evil.example/.well-known/jwks.json"))
    assert "jku" in message
    # Near misses of the allowlisted URL are not on the list either.
    await rejected(auth, sandbox_token(jku=SANDBOX_JKU + "?x=1"))
    await rejected(auth, sandbox_token(jku="https://sandbox.cds-hooks.org.evil.example/.well-known/jwks.json"))
    assert recorder.requests == []


async def test_unlisted_jku_is_rejected_even_when_the_static_jwks_has_the_key() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(sandbox_client(jku_allowlist=()), recorder=recorder)
    assert "jku" in await rejected(auth, sandbox_token())
    assert recorder.requests == []


async def test_allowlisted_jku_is_fetched_once_and_cached() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    clock = Clock()
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder, clock=clock, jku_cache_seconds=3600)
    for _ in range(3):
        await auth.verify(f"Bearer {sandbox_token()}", AUD)
    assert [str(r.url) for r in recorder.requests] == [SANDBOX_JKU]
    clock.now = NOW + 3601  # cache expired: fetched again
    await auth.verify(f"Bearer {sandbox_token(sandbox_claims(iat=int(clock.now), exp=int(clock.now) + 300))}", AUD)
    assert len(recorder.requests) == 2


async def test_unknown_kid_triggers_one_rate_limited_refresh() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    other_jwk = jwt.algorithms.ECAlgorithm.to_jwk(other.public_key(), as_dict=True) | {"kid": "rotated"}
    recorder = Recorder(SANDBOX_JWKS)
    clock = Clock()
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder, clock=clock, jku_min_refresh_seconds=30)

    def rotated_token() -> str:
        claims = sandbox_claims(iat=int(clock.now), exp=int(clock.now) + 300)
        headers = {"typ": "JWT", "kid": "rotated", "jku": SANDBOX_JKU}
        return jwt.encode(claims, other, algorithm="ES384", headers=headers)

    await auth.verify(f"Bearer {sandbox_token()}", AUD)
    assert len(recorder.requests) == 1
    # Unknown kid right after a fetch: the refresh budget is spent, so no request.
    await rejected(auth, rotated_token())
    assert len(recorder.requests) == 1
    clock.now = NOW + 31
    await rejected(auth, rotated_token())  # one refresh, key still absent
    await rejected(auth, rotated_token())  # rate-limited again
    await rejected(auth, rotated_token())
    assert len(recorder.requests) == 2
    recorder.jwks = {"keys": [*SANDBOX_JWKS["keys"], other_jwk]}  # the client rotates its keys
    clock.now = NOW + 62
    assert (await auth.verify(f"Bearer {rotated_token()}", AUD)).iss == SANDBOX_ISS
    assert len(recorder.requests) == 3


class CountingPyJWK(jwt.PyJWK):
    built = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(*args, **kwargs)


async def test_a_static_key_is_built_once_and_unknown_kids_add_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cds_hooks.jwks.PyJWK", CountingPyJWK)
    CountingPyJWK.built = 0
    auth = authenticator()
    for _ in range(3):
        await auth.verify(f"Bearer {sandbox_token()}", AUD)
    assert CountingPyJWK.built == 1
    for kid in ("unknown-1", "unknown-2"):
        await rejected(auth, sandbox_token(kid=kid))
    assert CountingPyJWK.built == 1
    assert len(auth._static[SANDBOX_ISS]._keys) == 1  # only keys found are kept


async def test_a_key_replaced_under_its_kid_in_a_refetched_jwks_is_not_served_from_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cds_hooks.jwks.PyJWK", CountingPyJWK)
    CountingPyJWK.built = 0
    new_key = ec.generate_private_key(ec.SECP384R1())
    new_jwk = jwt.algorithms.ECAlgorithm.to_jwk(new_key.public_key(), as_dict=True) | {"kid": SANDBOX_KID}
    recorder = Recorder(SANDBOX_JWKS)
    clock = Clock()
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder, clock=clock, jku_cache_seconds=3600)
    for _ in range(2):
        await auth.verify(f"Bearer {sandbox_token()}", AUD)
    assert CountingPyJWK.built == 1
    recorder.jwks = {"keys": [new_jwk]}  # the client replaces the key behind the same kid
    clock.now = NOW + 3601  # the cached document expires: fetched again, its keys built again
    claims = sandbox_claims(iat=int(clock.now), exp=int(clock.now) + 300)
    assert "signature verification failed" in await rejected(auth, sandbox_token(claims))
    headers = {"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    fresh = sandbox_claims(iat=int(clock.now), exp=int(clock.now) + 300)
    assert (await auth.verify(f"Bearer {jwt.encode(fresh, new_key, algorithm='ES384', headers=headers)}", AUD)).iss
    assert len(recorder.requests) == 2 and CountingPyJWK.built == 2


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    recorder = Recorder(SANDBOX_JWKS)
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder)
    tokens = [sandbox_token() for _ in range(10)]
    results = await asyncio.gather(*(auth.verify(f"Bearer {t}", AUD) for t in tokens))
    assert len(results) == 10
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, SANDBOX_JWKS), (302, SANDBOX_JWKS), (200, {"keys": "nope"}), (200, ["not", "an", "object"])],
)
async def test_jwks_fetch_failures_are_auth_errors(status: int, body: Any) -> None:
    recorder = Recorder(body, status=status)
    auth = authenticator(sandbox_client(jwks=None), recorder=recorder)
    assert "JWK Set" in await rejected(auth, sandbox_token())
    assert len(recorder.requests) == 1


async def test_oversized_jwks_is_refused() -> None:
    big = {"keys": SANDBOX_JWKS["keys"], "padding": "x" * 300_000}
    auth = authenticator(sandbox_client(jwks=None), recorder=Recorder(big))
    assert "larger" in await rejected(auth, sandbox_token())


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[str]]]:
    """A real JWK Set endpoint on 127.0.0.1, recording request paths."""
    paths: list[str] = []
    body = json.dumps(SANDBOX_JWKS).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_jku_fetched_over_loopback_with_the_default_http_client(jwks_server: tuple[str, list[str]]) -> None:
    url, paths = jwks_server
    auth = ClientAuthenticator(
        AuthSettings(clients=(sandbox_client(jwks=None, jku_allowlist=(url,)),)), clock=Clock()
    )
    await auth.verify(f"Bearer {sandbox_token(jku=url)}", AUD)
    await auth.verify(f"Bearer {sandbox_token(jku=url)}", AUD)
    assert paths == ["/.well-known/jwks.json"]


# ---- configuration ---------------------------------------------------------------------------------------------


def test_duplicate_issuers_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        AuthSettings(clients=(sandbox_client(), sandbox_client()))


def test_malformed_static_jwks_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="keys"):
        TrustedClient(iss=SANDBOX_ISS, jwks={"keys": {"kid": "x"}})


def test_lists_from_a_settings_file_become_tuples() -> None:
    client = TrustedClient(iss="x", fhir_servers=["https://a.example/fhir"], algorithms=["ES384"])  # type: ignore[arg-type]
    assert client.fhir_servers == ("https://a.example/fhir",)
    assert hash(client) == hash(TrustedClient(iss="x", fhir_servers=("https://a.example/fhir",), algorithms=("ES384",)))


# ---- fhir_server_allowed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://ehr.example/fhir", True),
        ("https://ehr.example/fhir/", True),
        ("HTTPS://EHR.example/fhir", True),
        ("https://ehr.example/r4", True),
        ("https://ehr.example/fhir.evil.com", False),
        ("https://ehr.example/fhir/Patient", False),
        ("https://ehr.example/fhirx", False),
        ("https://ehr.example", False),
        ("https://ehr.example.evil.com/fhir", False),
        ("https://ehr.example@evil.com/fhir", False),
        ("http://ehr.example/fhir", False),
        ("https://ehr.example:8443/fhir", False),
        ("https://ehr.example/fhir?x=1", False),
        ("https://ehr.example/FHIR", False),
        ("", False),
        ("not a url", False),
    ],
)
def test_fhir_server_allowed(url: str, allowed: bool) -> None:
    client = TrustedClient(iss="https://ehr.example", fhir_servers=("https://ehr.example/fhir", "https://ehr.example/r4/"))
    assert fhir_server_allowed(client, url) is allowed


def test_client_without_fhir_servers_allows_none() -> None:
    assert not fhir_server_allowed(TrustedClient(iss="x"), "https://ehr.example/fhir")


# ---- non-finite claims, header lists, audience lists (issue #11) -----------------------------------------------


class RecordingReplayStore:
    """A replay store that records what it is asked to remember."""

    blocking = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def remember(self, iss: str, jti: str, forget_after: float, now: float) -> bool:
        self.calls.append((iss, jti, forget_after))
        return True

    def purge(self, now: float | None = None) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10**400, True])
async def test_non_finite_time_claims_are_rejected_before_the_replay_store(claim: str, value: Any) -> None:
    store = RecordingReplayStore()
    auth = ClientAuthenticator(AuthSettings(clients=(sandbox_client(),)), http_client=Recorder(SANDBOX_JWKS).client(),
                               clock=Clock(), replay_store=store)
    token = sandbox_token(sandbox_claims(**{claim: value}))
    assert claim in await rejected(auth, token)
    assert store.calls == []
    await auth.verify(f"Bearer {sandbox_token()}", AUD)  # a good token reaches the store, with a finite expiry
    assert len(store.calls) == 1 and store.calls[0][2] == NOW + 300 + 60


def test_replay_cache_refuses_a_nan_expiry() -> None:
    cache = ReplayCache(clock=Clock())
    with pytest.raises(AuthError, match="finite"):
        cache.check_and_remember("iss", "nan", float("nan"))
    assert len(cache) == 0


@pytest.mark.parametrize("headers", [
    ["Bearer a.b.c", "Bearer a.b.c"], ["", "Bearer x"], ["Bearer x", "garbage"], ["Bearer x", "Bearer y", "Bearer z"],
])
async def test_more_than_one_authorization_header_is_rejected(headers: list[str]) -> None:
    valid = f"Bearer {sandbox_token()}"
    assert "more than one" in await rejected(authenticator(), None, header=[valid, *headers[1:]])  # type: ignore[arg-type]
    assert "more than one" in await rejected(authenticator(), None, header=headers)  # type: ignore[arg-type]


async def test_a_single_header_in_a_list_and_an_audience_list_are_accepted() -> None:
    auth = authenticator()
    token = sandbox_token()
    identity = await auth.verify([f"Bearer {token}"], ["https://other.example/cds-services/ascvd-pce", AUD])
    assert identity.iss == SANDBOX_ISS
    assert "missing" in await rejected(auth, None, header=[])  # type: ignore[arg-type]
    assert "audience" in await rejected(auth, sandbox_token(), audience=[])  # type: ignore[arg-type]


async def test_jti_longer_than_the_replay_table_allows_is_rejected() -> None:
    assert "jti" in await rejected(authenticator(), sandbox_token(sandbox_claims(jti="j" * 256)))


def _ec_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, alg="ES384", use="sig")
    return private, jwk


def test_a_key_rotated_under_the_same_kid_verifies_only_its_own_tokens() -> None:
    from cds_hooks.jwks import parse_jwks, select_key

    old_private, old_jwk = _ec_jwk("k1")
    old = select_key(parse_jwks({"keys": [old_jwk]}, "t"), "k1", "ES384")
    new_private, new_jwk = _ec_jwk("k1")  # the client rotated its key and kept the kid
    rotated = select_key(parse_jwks({"keys": [new_jwk]}, "t"), "k1", "ES384")
    assert old is not None and rotated is not None
    token = jwt.encode({"x": 1}, new_private, algorithm="ES384")
    assert jwt.decode(token, rotated, algorithms=["ES384"]) == {"x": 1}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, old, algorithms=["ES384"])


def test_a_jwk_with_private_parameters_yields_only_its_public_key() -> None:
    from cds_hooks.jwks import parse_jwks, select_key

    private, jwk = _ec_jwk("k2")
    full = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private))
    full.update(kid="k2", alg="ES384", use="sig")
    key = select_key(parse_jwks({"keys": [full]}, "t"), "k2", "ES384")
    assert key is not None and isinstance(key.key, ec.EllipticCurvePublicKey)
    public = select_key(parse_jwks({"keys": [jwk]}, "t"), "k2", "ES384")
    assert public is not None and key.key.public_numbers() == public.key.public_numbers()
