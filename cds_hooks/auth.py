"""Verification of the CDS client's JWT (CDS Hooks security, spec items 18-22).

Every call from an EHR carries `Authorization: Bearer <JWT>` signed with the client's asymmetric key. This module
decides whether to trust that call: the issuer must be configured, the algorithm allowed for it, the key found in its
static JWK Set or at an allowlisted `jku`, the audience the exact URL called, the token current and not replayed, and
the tenant allowlisted. Any failure raises AuthError, whose message is for logs and never contains the token; the
HTTP layer answers a bare 401.

Numeric claims must be finite JSON numbers (Python's JSON parser accepts `NaN` and `Infinity`; they are refused, as
are booleans). Replays are refused through a ReplayStore (cds_hooks/replay.py): in the service it is shared and
durable (the store's database, or Redis), so a token is accepted once across restarts, workers and replicas.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
from jwt import PyJWK
from jwt.exceptions import (
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidJTIError,
    InvalidSignatureError,
    InvalidSubjectError,
    MissingRequiredClaimError,
    PyJWTError,
)

if TYPE_CHECKING:
    from cds_hooks.jwks_shared import JwksStore

from cds_hooks.jwks import SUPPORTED_ALGORITHMS, JwksCache, JwksError, KeyRing, parse_jwks
from cds_hooks.replay import (
    MAX_ISS_LENGTH,
    MAX_JTI_LENGTH,
    MemoryReplayStore,
    ReplayStore,
    ReplayStoreError,
)

MAX_AUTHORIZATION_LENGTH = 16 * 1024
MAX_TENANT_LENGTH = 120  # the predictions.tenant column (store/schema.py)
DEFAULT_REPLAY_CACHE_SIZE = 100_000


class AuthError(Exception):
    """The call is not authenticated. The message says why, for logs; it never contains the token."""


def _as_tuple(value: object, field_name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise ValueError(f"TrustedClient.{field_name} must be a list of strings")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"TrustedClient.{field_name} must contain only non-empty strings")
    return tuple(value)


@dataclass(frozen=True)
class TrustedClient:
    """One CDS client (EHR or test tool) this service trusts, identified by its `iss`."""

    iss: str
    jwks: dict[str, Any] | None = field(default=None, hash=False)
    jku_allowlist: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("ES384", "RS384")

    def __post_init__(self) -> None:
        if not isinstance(self.iss, str) or not self.iss:
            raise ValueError("TrustedClient.iss must be a non-empty string")
        if len(self.iss) > MAX_ISS_LENGTH:
            raise ValueError(f"TrustedClient.iss must be at most {MAX_ISS_LENGTH} characters")
        for name in ("jku_allowlist", "fhir_servers", "tenants", "algorithms"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name), name))
        if not self.algorithms:
            raise ValueError(f"TrustedClient.algorithms for {self.iss} must not be empty")
        for alg in self.algorithms:
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(
                    f"TrustedClient.algorithms for {self.iss}: {alg!r} is not allowed "
                    f"(choose from {', '.join(SUPPORTED_ALGORITHMS)}; never 'none' or HMAC)"
                )
        if self.jwks is not None:
            parse_jwks(self.jwks, f"TrustedClient.jwks for {self.iss}")


@dataclass(frozen=True)
class AuthSettings:
    """Client-authentication settings; built by the settings loader."""

    enabled: bool = True
    clients: tuple[TrustedClient, ...] = ()
    clock_skew_seconds: int = 60
    max_token_lifetime_seconds: int = 3600
    jku_cache_seconds: int = 3600
    jku_min_refresh_seconds: int = 30
    jku_timeout_seconds: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", tuple(self.clients))
        seen: set[str] = set()
        for client in self.clients:
            if not isinstance(client, TrustedClient):
                raise ValueError("AuthSettings.clients must contain TrustedClient entries")
            if client.iss in seen:
                raise ValueError(f"AuthSettings.clients: iss {client.iss!r} is configured twice")
            seen.add(client.iss)
        for name in (
            "clock_skew_seconds",
            "max_token_lifetime_seconds",
            "jku_cache_seconds",
            "jku_min_refresh_seconds",
            "jku_timeout_seconds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"AuthSettings.{name} must be a non-negative number")
        if self.max_token_lifetime_seconds <= 0 or self.jku_timeout_seconds <= 0:
            raise ValueError("AuthSettings.max_token_lifetime_seconds and jku_timeout_seconds must be positive")


@dataclass(frozen=True)
class ClientIdentity:
    """Who made a verified call. `tenant`/`sub` are None when the token has none; `jti` is None only when
    authentication is disabled."""

    iss: str
    sub: str | None
    tenant: str | None
    jti: str | None
    client: TrustedClient


# What verify() returns when AuthSettings.enabled is False: a client with no keys and no FHIR servers.
ANONYMOUS_CLIENT = TrustedClient(iss="anonymous")
ANONYMOUS_IDENTITY = ClientIdentity(iss="anonymous", sub=None, tenant=None, jti=None, client=ANONYMOUS_CLIENT)


def _normalise_base_url(url: str) -> str | None:
    if url != url.strip() or not url.isprintable():
        # a value with surrounding or non-printing whitespace (U+00A0, U+2028, a tab) is not the URL the fetch would
        # use: refused, never compared after trimming
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        return None
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def fhir_server_allowed(client: TrustedClient, url: str) -> bool:
    """Whether `url` is one of the client's configured FHIR base URLs.

    Exact match after lower-casing scheme and host and dropping trailing slashes; no prefix matching, so
    `https://ehr.example/fhir.evil.com` or `https://ehr.example/fhir/../x` do not match `https://ehr.example/fhir`.
    A client with no configured FHIR servers allows none.
    """
    if not isinstance(url, str):
        return False
    wanted = _normalise_base_url(url)
    if wanted is None:
        return False
    return any(_normalise_base_url(allowed) == wanted for allowed in client.fhir_servers)


class ReplayCache(MemoryReplayStore):
    """The in-process replay store with its own clock: remembers (iss, jti) pairs until their token expires.

    Thread-safe and bounded: when full after purging expired entries, new tokens are refused rather than old entries
    forgotten, which would reopen the replay window. One process only; the service uses a shared store.
    """

    def __init__(self, max_entries: int = DEFAULT_REPLAY_CACHE_SIZE, clock: Callable[[], float] = time.time) -> None:
        if max_entries <= 0:
            raise ValueError("ReplayCache.max_entries must be positive")
        super().__init__(max_entries)
        self._clock = clock

    def check_and_remember(self, iss: str, jti: str, forget_after: float) -> None:
        """Record the pair, or raise AuthError if it is still remembered, the expiry is not finite or the cache full."""
        try:
            fresh = self.remember(iss, jti, forget_after, self._clock())
        except (ValueError, ReplayStoreError) as exc:
            raise AuthError(str(exc)) from None
        if not fresh:
            raise AuthError("jti has already been used (replay)")


def _number(claims: Mapping[str, Any], name: str) -> float:
    """A time claim as a finite float. Booleans, strings, NaN, ±Infinity and integers too big for a float are refused:
    NaN compares false with everything, so it would pass every time check and never expire."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"claim '{name}' must be a number (seconds since epoch)")
    try:
        number = float(value)
    except OverflowError:
        raise AuthError(f"claim '{name}' is out of range") from None
    if not math.isfinite(number):
        raise AuthError(f"claim '{name}' must be a finite number")
    return number


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuthError(f"claim '{name}' must be a string")
    return value


def _single_header(authorization: str | Sequence[str] | None) -> str | None:
    """The one Authorization header value. Several headers (any combination) are refused: a proxy or framework may
    read a different one than this service did."""
    if authorization is None or isinstance(authorization, str):
        return authorization
    values = list(authorization)
    if len(values) > 1:
        raise AuthError("more than one Authorization header")
    return values[0] if values else None


def _bearer_token(authorization: str | Sequence[str] | None) -> str:
    authorization_header = _single_header(authorization)
    if authorization_header is None or not authorization_header.strip():
        raise AuthError("Authorization header is missing")
    if len(authorization_header) > MAX_AUTHORIZATION_LENGTH:
        raise AuthError("Authorization header is too long")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("Authorization header must use the Bearer scheme")
    token = token.strip()
    if not token or " " in token:
        raise AuthError("Authorization header must be 'Bearer <jwt>'")
    return token


class ClientAuthenticator:
    """Verifies CDS client JWTs against AuthSettings. One instance per process: it owns the jku cache and uses a
    replay store (shared and durable when one is given; an in-process ReplayCache otherwise)."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
        replay_store: ReplayStore | None = None,
        jwks_store: JwksStore | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._clients: dict[str, TrustedClient] = {c.iss: c for c in settings.clients}
        self._static: dict[str, KeyRing] = {
            c.iss: KeyRing(parse_jwks(c.jwks, f"TrustedClient.jwks for {c.iss}")) for c in settings.clients if c.jwks
        }
        self._jwks_cache = JwksCache(
            cache_seconds=settings.jku_cache_seconds,
            min_refresh_seconds=settings.jku_min_refresh_seconds,
            timeout_seconds=settings.jku_timeout_seconds,
            http_client=http_client,
            clock=clock,
            shared=jwks_store,
        )
        self._replay: ReplayStore = replay_store if replay_store is not None else ReplayCache(replay_cache_size, clock)

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def close(self) -> None:
        self._replay.close()

    def replay_store_ok(self) -> bool:
        """Whether the replay store can answer now (for /readyz: calls are refused while it cannot). Blocking."""
        if not self._settings.enabled:
            return True  # tokens are not checked, so the replay store is not needed
        ping = getattr(self._replay, "ping", None)
        return True if ping is None else bool(ping())

    async def verify(
        self, authorization_header: str | Sequence[str] | None, audience: str | Sequence[str]
    ) -> ClientIdentity:
        """Authenticate one call. Raises AuthError on any failure.

        `authorization_header` is the header's value, or the list of every Authorization header the request carried
        (more than one is refused). `audience` is the exact URL called, or the list of URLs that name this call
        (configured base URLs + the path); the token's `aud` must contain one of them. When authentication is
        disabled in settings, returns ANONYMOUS_IDENTITY without looking at the header.
        """
        if not self._settings.enabled:
            return ANONYMOUS_IDENTITY
        token = _bearer_token(authorization_header)
        header, unverified = self._unverified_parts(token)

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise AuthError("header 'alg' is missing or not an allowed asymmetric algorithm")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthError("header 'typ' must be 'JWT' when present")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("header 'kid' is required")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self._clients:
            raise AuthError("claim 'iss' is missing or not a trusted client")
        client = self._clients[iss]
        if alg not in client.algorithms:
            raise AuthError("header 'alg' is not allowed for this client")

        key = await self._find_key(client, header, kid, alg)
        claims = self._decode(token, key, alg, audience, client)
        exp = self._check_times(claims)

        tenant = _optional_string(claims, "tenant")
        if tenant is not None and len(tenant) > MAX_TENANT_LENGTH:
            # the store keeps a tenant in MAX_TENANT_LENGTH characters: a card is never answered whose prediction
            # could not be stored
            raise AuthError(f"claim 'tenant' is longer than {MAX_TENANT_LENGTH} characters")
        if client.tenants and tenant not in client.tenants:
            raise AuthError("claim 'tenant' is missing or not allowed for this client")
        sub = _optional_string(claims, "sub")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("claim 'jti' must be a non-empty string")
        if len(jti) > MAX_JTI_LENGTH:
            raise AuthError(f"claim 'jti' is longer than {MAX_JTI_LENGTH} characters")
        await self._remember(iss, jti, exp + self._settings.clock_skew_seconds)
        return ClientIdentity(iss=iss, sub=sub, tenant=tenant, jti=jti, client=client)

    async def _remember(self, iss: str, jti: str, forget_after: float) -> None:
        store = self._replay
        now = self._clock()
        try:
            if store.blocking:
                fresh = await asyncio.to_thread(store.remember, iss, jti, forget_after, now)
            else:
                fresh = store.remember(iss, jti, forget_after, now)
        except ReplayStoreError as exc:
            raise AuthError(f"replay check failed, refusing the call: {exc}") from None
        except ValueError as exc:
            raise AuthError(f"replay check refused the token: {exc}") from None
        if not fresh:
            raise AuthError("jti has already been used (replay)")

    @staticmethod
    def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:  # one unverified read of header and payload (the verified decode follows in _decode)
            parts = jwt.decode_complete(token, options={"verify_signature": False})
            header, payload = parts["header"], parts["payload"]
        except PyJWTError as exc:
            raise AuthError(f"token is not a well-formed JWS ({type(exc).__name__})") from None
        if not isinstance(payload, dict):
            raise AuthError("token payload must be a JSON object")
        return header, payload

    async def _find_key(self, client: TrustedClient, header: Mapping[str, Any], kid: str, alg: str) -> PyJWK:
        jku = header.get("jku")
        if jku is not None and (not isinstance(jku, str) or jku not in client.jku_allowlist):
            # Decided before any network access: an unlisted jku is never fetched.
            raise AuthError("header 'jku' is not on this client's allowlist")
        static = self._static.get(client.iss)
        if static is not None:
            key = static.key(kid, alg)
            if key is not None:
                return key
        if jku is not None:
            try:
                key = await self._jwks_cache.get_key(jku, kid, alg)
            except JwksError as exc:
                raise AuthError(f"could not obtain the client's JWK Set: {exc}") from None
            if key is not None:
                return key
        raise AuthError("no key matching header 'kid' and 'alg' for this client")

    def _decode(
        self, token: str, key: PyJWK, alg: str, audience: str | Sequence[str], client: TrustedClient
    ) -> dict[str, Any]:
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences:
            raise AuthError("no audience is configured for this call")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audiences,
                issuer=client.iss,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    # Times are checked by _check_times with the injected clock and configured skew.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "strict_aud": False,
                },
            )
        except MissingRequiredClaimError as exc:
            raise AuthError(f"claim '{exc.claim}' is required") from None
        except InvalidAudienceError:
            raise AuthError("claim 'aud' does not contain the URL called") from None
        except InvalidIssuerError:
            raise AuthError("claim 'iss' does not match the client") from None
        except InvalidJTIError:
            raise AuthError("claim 'jti' must be a string") from None
        except InvalidSubjectError:
            raise AuthError("claim 'sub' must be a string") from None
        except InvalidSignatureError:
            raise AuthError("signature verification failed") from None
        except PyJWTError as exc:
            raise AuthError(f"token rejected ({type(exc).__name__})") from None
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        now = self._clock()
        skew = self._settings.clock_skew_seconds
        exp = _number(claims, "exp")
        iat = _number(claims, "iat")
        if now > exp + skew:
            raise AuthError("token has expired (claim 'exp')")
        if iat > now + skew:
            raise AuthError("claim 'iat' is in the future")
        if exp <= iat:
            raise AuthError("claim 'exp' must be after claim 'iat'")
        if exp - iat > self._settings.max_token_lifetime_seconds:
            raise AuthError("token lifetime (exp - iat) exceeds the allowed maximum")
        if "nbf" in claims:
            nbf = _number(claims, "nbf")
            if nbf > now + skew:
                raise AuthError("token is not yet valid (claim 'nbf')")
        return exp
