"""JWK Set sources for client JWT verification: parsing, key selection and the `jku` fetch cache.

CDS Hooks clients publish their signing keys as a JWK Set, configured out of band or found through the token's
`jku` header. This module turns JWK Sets into keys PyJWT can verify with, choosing a key only when it is
compatible with the token's algorithm, and caches `jku` documents with a per-URL refresh rate limit so that
tokens naming unknown `kid`s cannot make the service hammer a client's key server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from cds_hooks.capped_read import BodyTooLarge, BodyUnreadable, read_capped

if TYPE_CHECKING:
    from cds_hooks.jwks_shared import JwksStore

log = logging.getLogger(__name__)

# Asymmetric JWS algorithms this service can verify, with the JWK key type (and EC curve) each needs.
# HMAC (`HS*`) and `none` are deliberately absent: a client's key is public, so neither can prove anything.
SUPPORTED_ALGORITHMS: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "ES256": ("EC", "P-256"),
        "ES384": ("EC", "P-384"),
        "ES512": ("EC", "P-521"),
        "RS256": ("RSA", None),
        "RS384": ("RSA", None),
        "RS512": ("RSA", None),
        "PS256": ("RSA", None),
        "PS384": ("RSA", None),
        "PS512": ("RSA", None),
    }
)

MAX_JWKS_BYTES = 256 * 1024

KeyIndex = Mapping[str, tuple[Mapping[str, Any], ...]]


class JwksError(ValueError):
    """A JWK Set could not be obtained or is malformed. The message names the source and the problem."""


def parse_jwks(document: object, source: str) -> KeyIndex:
    """Index a JWK Set document by `kid`. Keys without a string `kid` are skipped (they can never be selected)."""
    if not isinstance(document, Mapping):
        raise JwksError(f"{source}: JWK Set must be a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksError(f"{source}: JWK Set field 'keys' must be a list")
    index: dict[str, list[Mapping[str, Any]]] = {}
    for position, jwk in enumerate(keys):
        if not isinstance(jwk, Mapping):
            raise JwksError(f"{source}: JWK Set field 'keys[{position}]' must be an object")
        kid = jwk.get("kid")
        if isinstance(kid, str) and kid:
            index.setdefault(kid, []).append(MappingProxyType(dict(jwk)))
    return MappingProxyType({kid: tuple(entries) for kid, entries in index.items()})


def _compatible(jwk: Mapping[str, Any], alg: str) -> bool:
    expected = SUPPORTED_ALGORITHMS.get(alg)
    if expected is None:
        return False
    kty, crv = expected
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    if "use" in jwk and jwk["use"] != "sig":
        return False
    # A JWK carrying private parameters is still usable for verification; select_key loads only its public half.
    key_ops = jwk.get("key_ops")
    return key_ops is None or (isinstance(key_ops, list) and "verify" in key_ops)


def select_key(index: KeyIndex, kid: str, alg: str) -> PyJWK | None:
    """The verification key for `kid` that fits `alg` (key type, curve, `alg`, `use`), or None."""
    for jwk in index.get(kid, ()):
        if not _compatible(jwk, alg):
            continue
        public = {k: v for k, v in jwk.items() if k not in {"d", "p", "q", "dp", "dq", "qi", "oth"}}
        try:
            return PyJWK(public, algorithm=alg)
        except PyJWTError:
            continue
    return None


class KeyRing:
    """A parsed JWK Set with the verification keys already built from it, one per (kid, alg), built on first use.

    Building a key (PyJWK: the JWK's coordinates decoded, the public key loaded and checked by OpenSSL) took 0.15–0.21 ms
    per call inside a serving process, for a set that changes only when its configuration or its `jku` document does.
    Only keys found are kept, so tokens naming unknown `kid`s cannot grow it: at most one key per JWK and algorithm.
    """

    def __init__(self, index: KeyIndex) -> None:
        self.index = index
        self._keys: dict[tuple[str, str], PyJWK] = {}

    def key(self, kid: str, alg: str) -> PyJWK | None:
        """select_key(index, kid, alg), built once."""
        key = self._keys.get((kid, alg))
        if key is None:
            key = select_key(self.index, kid, alg)
            if key is not None:
                self._keys[(kid, alg)] = key
        return key


@dataclass
class _Entry:
    ring: KeyRing | None = None
    fetched_at: float | None = None
    last_attempt: float | None = None
    shared_checked_at: float | None = None  # when the shared store was last read for this URL


SHARED_CHECK_SECONDS = 1.0  # a process reads the shared store for a URL at most this often (unknown-kid floods)


class JwksCache:
    """Fetches and caches JWK Sets by URL. Callers must only pass URLs they have already allowlisted.

    * A document is reused for `cache_seconds` after a successful fetch.
    * A URL is requested at most once per `min_refresh_seconds`, whatever the outcome, so an unknown `kid`
      triggers at most one refresh in that window and a failing key server is not retried in a loop.
    * Redirects are not followed (they could leave the allowlist); bodies over MAX_JWKS_BYTES are refused.
    * With a `shared` store (cds_hooks/jwks_shared.py), a fresh document another process fetched is adopted before
      fetching, a fetched document is written back, and the shared fetch time counts in the refresh rate limit, so
      the whole fleet fetches a URL at most once per `min_refresh_seconds`. A store that cannot answer is logged and
      skipped: the process then relies on its own memory and fetch.
    """

    def __init__(
        self,
        *,
        cache_seconds: float = 3600,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = 2.0,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        shared: JwksStore | None = None,
    ) -> None:
        self._shared = shared
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = timeout_seconds
        self._http_client = http_client
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_key(self, url: str, kid: str, alg: str) -> PyJWK | None:
        """The key for `kid` from the JWK Set at `url`, fetching or refreshing it when allowed; None if absent.

        Raises JwksError when a fetch is needed and fails (no usable cached document).
        """
        entry = self._entries.setdefault(url, _Entry())
        key = self._cached(entry, kid, alg)
        if key is not None:
            return key
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            # Another task may have refreshed while this one waited.
            key = self._cached(entry, kid, alg)
            if key is not None:
                return key
            shared_fetched_at = await self._adopt_shared(url, entry)
            if shared_fetched_at is not None:
                key = self._cached(entry, kid, alg)
                if key is not None:
                    return key
                # another process fetched this URL recently: that fetch spends the fleet's refresh budget too
                if self._clock() - shared_fetched_at < self._min_refresh_seconds:
                    entry.last_attempt = max(entry.last_attempt or shared_fetched_at, shared_fetched_at)
            if not self._may_fetch(entry):
                if self._fresh(entry):
                    return None  # unknown kid, and the refresh budget for this URL is spent
                raise JwksError(f"{url}: no current JWK Set and refetch is rate-limited")
            entry.last_attempt = self._clock()
            document = await self._fetch(url)
            entry.ring = KeyRing(parse_jwks(document, url))
            entry.fetched_at = self._clock()
            await self._publish(url, document, entry.fetched_at)
            return entry.ring.key(kid, alg)

    async def _adopt_shared(self, url: str, entry: _Entry) -> float | None:
        """Take the shared document for `url` when it is fresh and newer than ours; its fetch time, or None."""
        if self._shared is None:
            return None
        now = self._clock()
        if entry.shared_checked_at is not None and now - entry.shared_checked_at < SHARED_CHECK_SECONDS:
            return None
        entry.shared_checked_at = now
        from cds_hooks.jwks_shared import JwksStoreError

        try:
            shared = await asyncio.to_thread(self._shared.load, url)
        except JwksStoreError as exc:
            log.warning("shared JWK Set cache skipped: %s", exc)
            return None
        if shared is None:
            return None
        if self._clock() - shared.fetched_at >= self._cache_seconds:
            return shared.fetched_at  # stale: not adopted, but its time still says when the fleet last fetched
        if entry.fetched_at is None or shared.fetched_at > entry.fetched_at:
            try:
                index = parse_jwks(json.loads(shared.document), f"shared cache of {url}")
            except (ValueError, JwksError) as exc:
                log.warning("shared JWK Set cache entry ignored: %s", exc)
                return None
            entry.ring, entry.fetched_at = KeyRing(index), shared.fetched_at
        return shared.fetched_at

    async def _publish(self, url: str, document: object, fetched_at: float) -> None:
        if self._shared is None:
            return
        from cds_hooks.jwks_shared import JwksStoreError

        try:
            text = json.dumps(document, separators=(",", ":"))
            await asyncio.to_thread(self._shared.save, url, text, fetched_at, self._cache_seconds)
        except (JwksStoreError, ValueError) as exc:
            log.warning("shared JWK Set cache not updated: %s", exc)

    def _cached(self, entry: _Entry, kid: str, alg: str) -> PyJWK | None:
        """The key from the cached document while it is fresh; None when stale, absent or without that kid."""
        if not self._fresh(entry):
            return None
        assert entry.ring is not None
        return entry.ring.key(kid, alg)

    def _fresh(self, entry: _Entry) -> bool:
        return (
            entry.ring is not None
            and entry.fetched_at is not None
            and self._clock() - entry.fetched_at < self._cache_seconds
        )

    def _may_fetch(self, entry: _Entry) -> bool:
        return entry.last_attempt is None or self._clock() - entry.last_attempt >= self._min_refresh_seconds

    async def _fetch(self, url: str) -> object:
        if self._http_client is not None:
            return await self._get(self._http_client, url)
        # A short-lived client per fetch: fetches are rare and this keeps the cache independent of event loops.
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            return await self._get(client, url)

    async def _get(self, client: httpx.AsyncClient, url: str) -> object:
        try:
            async with client.stream(
                "GET", url, headers={"Accept": "application/json"}, timeout=self._timeout, follow_redirects=False
            ) as response:
                if response.status_code != 200:
                    raise JwksError(f"{url}: JWK Set fetch returned HTTP {response.status_code}")
                try:  # the cap holds for what a compressed answer decodes to (capped_read.py)
                    body = await read_capped(response, MAX_JWKS_BYTES)
                except BodyTooLarge:
                    raise JwksError(f"{url}: JWK Set larger than {MAX_JWKS_BYTES} bytes") from None
                except BodyUnreadable as exc:
                    raise JwksError(f"{url}: JWK Set cannot be read: {exc}") from None
        except httpx.HTTPError as exc:
            raise JwksError(f"{url}: JWK Set fetch failed ({type(exc).__name__})") from exc
        try:
            return json.loads(bytes(body))
        except ValueError as exc:
            raise JwksError(f"{url}: JWK Set is not valid JSON") from exc
