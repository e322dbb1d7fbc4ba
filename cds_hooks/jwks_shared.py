"""JWK Set documents shared by every process and replica, so a fleet fetches a client's keys once, not once each.

`JwksCache` (cds_hooks/jwks.py) keeps documents in process memory. Behind a load balancer with N replicas of W
workers each, that is N×W fetches per refresh, N×W separate rate limits for unknown `kid`s, and a key rotation seen
by one process but not the next. A shared store fixes all three: a process that needs a document first looks here
(a document another process fetched is adopted while it is fresh), and a process that fetched one writes it here.
The shared fetch time also rate-limits refreshes across the fleet: an unknown `kid` makes at most one process fetch
per `min_refresh_seconds`, whichever replica the tokens land on.

Two stores share one contract, like the replay stores (cds_hooks/replay.py):

* `SqlJwksStore` — the `jwks_documents` table in the store's database (SQLite embedded, PostgreSQL by URL);
* `RedisJwksStore` — when `auth.replay_cache_url` names a Redis-protocol server: one key per URL with a TTL.

The store is a cache, never an authority: only URLs the caller has already allowlisted are read or written, every
entry carries an HMAC (keyed from `store.hmac_secret`, which lives in the environment, not in the database) over its
URL, fetch time and document, so write access to the database or Redis alone cannot plant a key; an entry that fails
the check, or cannot be parsed, is ignored and logged; and when the store cannot answer the process falls back to its
own memory and its own fetch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

from cds_hooks.jwks import MAX_JWKS_BYTES


class JwksStoreError(Exception):
    """The shared JWK Set store cannot answer; callers fall back to their own fetch."""


@dataclass(frozen=True)
class SharedDocument:
    """A JWK Set as some process fetched it: the JSON text and when (seconds since epoch)."""

    document: str
    fetched_at: float


class JwksStore(Protocol):
    def load(self, url: str) -> SharedDocument | None: ...

    def save(self, url: str, document: str, fetched_at: float, ttl_seconds: float) -> None: ...


class EntrySeal:
    """The HMAC that ties a shared entry to this deployment's secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the shared JWK Set cache needs a non-empty secret (store.hmac_secret)")
        self._key = hashlib.sha256(b"cds-onnx shared jwks v1\0" + secret).digest()

    def mac(self, url: str, document: str, fetched_at: float) -> str:
        message = json.dumps([url, repr(float(fetched_at)), document], separators=(",", ":")).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def check(self, url: str, document: str, fetched_at: float, mac: object) -> None:
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self.mac(url, document, fetched_at)):
            raise JwksStoreError(f"{url}: shared JWK Set entry fails its integrity check (not written by a process "
                                 "with this deployment's store.hmac_secret)")


def _checked(url: str, document: str, fetched_at: float) -> None:
    if not isinstance(document, str) or len(document.encode()) > MAX_JWKS_BYTES:
        raise JwksStoreError(f"{url}: shared JWK Set is not text of at most {MAX_JWKS_BYTES} bytes")
    if isinstance(fetched_at, bool) or not isinstance(fetched_at, (int, float)) or not math.isfinite(fetched_at):
        raise JwksStoreError(f"{url}: shared JWK Set has no finite fetch time")


class SqlJwksStore:
    """The `jwks_documents` table (created by the store's Alembic migrations): url → document, fetched_at."""

    def __init__(self, engine: Any, secret: bytes) -> None:
        from store.schema import JwksDocument
        from store.store import upsert_insert

        insert = upsert_insert(engine)
        if insert is None:
            raise JwksStoreError(f"the shared JWK Set cache supports SQLite and PostgreSQL, not {engine.dialect.name}")
        self._insert = insert
        self._engine = engine
        self._table = JwksDocument.__table__
        self._seal = EntrySeal(secret)

    def load(self, url: str) -> SharedDocument | None:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        table = self._table
        try:
            with self._engine.connect() as conn:
                row = conn.execute(select(table.c.document, table.c.fetched_at, table.c.mac)
                                   .where(table.c.url == url)).first()
        except SQLAlchemyError as exc:
            raise JwksStoreError(f"shared JWK Set table unavailable ({type(exc).__name__})") from None
        if row is None:
            return None
        _checked(url, row.document, row.fetched_at)
        self._seal.check(url, row.document, row.fetched_at, row.mac)
        return SharedDocument(row.document, float(row.fetched_at))

    def save(self, url: str, document: str, fetched_at: float, ttl_seconds: float) -> None:
        """Keep the newer of this document and the stored one (a slow writer never replaces a newer fetch)."""
        from sqlalchemy.exc import SQLAlchemyError

        _checked(url, document, fetched_at)
        table = self._table
        mac = self._seal.mac(url, document, fetched_at)
        stmt = self._insert(table).values(url=url, document=document, fetched_at=fetched_at, mac=mac)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.url],
            set_={"document": stmt.excluded.document, "fetched_at": stmt.excluded.fetched_at,
                  "mac": stmt.excluded.mac},
            where=table.c.fetched_at < stmt.excluded.fetched_at,
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(stmt)
        except SQLAlchemyError as exc:
            raise JwksStoreError(f"shared JWK Set table unavailable ({type(exc).__name__})") from None


class RedisJwksStore:
    """A Redis-protocol server: one key per URL digest, holding {"document", "fetched_at"}, expiring with the TTL."""

    def __init__(self, url: str, secret: bytes, *, prefix: str = "cds-onnx:jwks:", timeout_seconds: float = 2.0,
                 client: Any = None) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
        self._client = client
        self._prefix = prefix
        self._seal = EntrySeal(secret)

    def key(self, url: str) -> str:
        return self._prefix + hashlib.sha256(url.encode()).hexdigest()

    def load(self, url: str) -> SharedDocument | None:
        try:
            raw = self._client.get(self.key(url))
        except Exception as exc:  # redis.RedisError and socket errors
            raise JwksStoreError(f"shared JWK Set server unavailable ({type(exc).__name__})") from None
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            document, fetched_at, mac = entry["document"], entry["fetched_at"], entry["mac"]
        except (ValueError, TypeError, KeyError):
            raise JwksStoreError(f"{url}: shared JWK Set entry is malformed") from None
        _checked(url, document, fetched_at)
        self._seal.check(url, document, fetched_at, mac)
        return SharedDocument(document, float(fetched_at))

    def save(self, url: str, document: str, fetched_at: float, ttl_seconds: float) -> None:
        _checked(url, document, fetched_at)
        value = json.dumps({"document": document, "fetched_at": fetched_at,
                            "mac": self._seal.mac(url, document, fetched_at)})
        try:
            self._client.set(self.key(url), value, ex=max(1, math.ceil(ttl_seconds)))
        except Exception as exc:  # redis.RedisError and socket errors
            raise JwksStoreError(f"shared JWK Set server unavailable ({type(exc).__name__})") from None


def open_jwks_store(url: str | None, store: Any, secret: bytes) -> JwksStore:
    """Redis when `url` (auth.replay_cache_url) names a Redis-protocol server, else the store's database."""
    if url:
        return RedisJwksStore(url, secret)
    return SqlJwksStore(store.engine, secret)
