"""Replay protection for client JWTs: each (iss, jti) is accepted once, until its token could no longer be accepted.

Three stores share one contract, `remember(iss, jti, forget_after, now) -> bool` (True: first use, now remembered;
False: already remembered and not yet forgotten, i.e. a replay):

* `SqlReplayStore` — the default in the service: a table (`auth_replay`, primary key (iss, jti), `expires_at`) in the
  store's own database on PostgreSQL, and in a SQLite file of its own beside the embedded store
  (`Store.replay_engine`), so it holds across restarts, workers and replicas that share the database. Insert-if-absent is one atomic `INSERT … ON CONFLICT … DO UPDATE … WHERE expired RETURNING`
  statement: of two processes racing with the same jti exactly one gets a row back. Concurrent calls in a process
  share one such statement (group commit), so the write lock is taken once per batch. Expired rows are purged at most
  once per `purge_interval_seconds` by the process that happens to be writing.
* `RedisReplayStore` — when `auth.replay_cache_url = "redis://…"`: `SET key 1 NX EX ttl`, expiry by Redis itself.
* `MemoryReplayStore` — one process only (unit tests, `ClientAuthenticator` without a store); bounded, and when full
  it refuses new tokens rather than forgetting entries that are still live.

Every store refuses a non-finite or non-numeric expiry (a NaN entry would never expire and never be purged), and any
infrastructure failure raises ReplayStoreError, which the authenticator turns into a refusal (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_MEMORY_ENTRIES = 100_000
DEFAULT_PURGE_INTERVAL_SECONDS = 60.0
MAX_JTI_LENGTH = 255  # the auth_replay.jti column; longer jti claims are refused by the authenticator
MAX_BATCH = 200  # claims in one replay-table statement (three bound parameters each)
MAX_ISS_LENGTH = 1024  # the auth_replay.iss column; longer issuers cannot be configured


class ReplayStoreError(Exception):
    """The replay store cannot answer (unreachable, full, misconfigured). Calls must then be refused."""


class ReplayStore(Protocol):
    blocking: bool  # True when remember() does I/O (the authenticator then runs it in a worker thread)

    def remember(self, iss: str, jti: str, forget_after: float, now: float) -> bool: ...

    def purge(self, now: float | None = None) -> int: ...

    def ping(self) -> bool: ...  # whether remember() can be answered now (for /readyz); never raises

    def close(self) -> None: ...


def checked_expiry(forget_after: object) -> float:
    """`forget_after` as a finite float; ValueError for NaN, infinities, booleans and non-numbers."""
    if isinstance(forget_after, bool) or not isinstance(forget_after, (int, float)):
        raise ValueError("replay expiry must be a number (seconds since epoch)")
    try:
        value = float(forget_after)
    except OverflowError:
        raise ValueError("replay expiry is out of range") from None
    if not math.isfinite(value):
        raise ValueError("replay expiry must be finite")
    return value


class MemoryReplayStore:
    """(iss, jti) pairs in process memory. Thread-safe; bounded (full → ReplayStoreError, never silent forgetting)."""

    blocking = False

    def __init__(self, max_entries: int = DEFAULT_MEMORY_ENTRIES) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def remember(self, iss: str, jti: str, forget_after: float, now: float) -> bool:
        expiry = checked_expiry(forget_after)
        key = (iss, jti)
        with self._lock:
            known = self._seen.get(key)
            if known is not None and known >= now:
                return False
            if known is None and len(self._seen) >= self._max_entries:
                self._purge(now)
                if len(self._seen) >= self._max_entries:
                    raise ReplayStoreError("replay cache is full; refusing new tokens until entries expire")
            self._seen[key] = expiry
            return True

    def purge(self, now: float | None = None) -> int:
        with self._lock:
            return self._purge(time.time() if now is None else now)

    def _purge(self, now: float) -> int:
        # `not (expiry >= now)` rather than `expiry < now`: anything that is not a current expiry goes.
        stale = [k for k, expiry in self._seen.items() if not expiry >= now]
        for key in stale:
            del self._seen[key]
        return len(stale)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclass
class _Claim:
    """One remember() call waiting for its batch: the answer, or the error to raise."""

    iss: str
    jti: str
    expiry: float
    now: float
    done: bool = False
    fresh: bool = False
    error: ReplayStoreError | None = None


class SqlReplayStore:
    """The `auth_replay` table of `Store.replay_engine()` (the store's Alembic migrations create it on PostgreSQL).

    Concurrent remember() calls share one transaction (group commit): the first caller writes every claim queued
    at that moment in one statement, the others wait for it, and whoever arrives meanwhile goes in the next batch.
    Under load the database's write lock — which, on SQLite, every worker of the service takes in turn — is taken
    once per batch rather than once per call.
    """

    blocking = True

    def __init__(self, engine: Any, *, purge_interval_seconds: float = DEFAULT_PURGE_INTERVAL_SECONDS) -> None:
        from sqlalchemy import bindparam

        from store.schema import AuthReplay
        from store.store import upsert_insert

        insert = upsert_insert(engine)
        if insert is None:
            raise ReplayStoreError(f"the replay cache supports SQLite and PostgreSQL stores, not {engine.dialect.name}")
        self._engine = engine
        self._table = table = AuthReplay.__table__
        # Built once, run with one parameter set per claim: insert, or take over a row whose token can no longer be
        # accepted; a live row is left alone and does not come back. (Building the statement for each call cost
        # three times what running it costs.)
        values = insert(table).values(iss=bindparam("iss"), jti=bindparam("jti"), expires_at=bindparam("expiry"))
        self._claim = values.on_conflict_do_update(
            index_elements=[table.c.iss, table.c.jti], set_={"expires_at": values.excluded.expires_at},
            where=table.c.expires_at < bindparam("now"),
        ).returning(table.c.iss, table.c.jti)
        self._purge_interval = purge_interval_seconds
        self._last_purge = -math.inf
        self._purge_lock = threading.Lock()
        self._batch = threading.Condition()
        self._pending: list[_Claim] = []
        self._writing = False
        self.batches = 0  # transactions written (tests and metrics read it)

    @property
    def waiting(self) -> int:
        """Claims queued for the next batch."""
        with self._batch:
            return len(self._pending)

    def remember(self, iss: str, jti: str, forget_after: float, now: float) -> bool:
        claim = _Claim(iss, jti, checked_expiry(forget_after), checked_expiry(now))
        with self._batch:
            self._pending.append(claim)
        while True:
            with self._batch:
                while not claim.done and self._writing:
                    self._batch.wait()
                if claim.done:
                    break
                # nobody is writing: this call writes the oldest claims queued, then looks again for its own
                self._writing = True
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                self._write(batch)
            finally:
                with self._batch:
                    self._writing = False
                    self._batch.notify_all()
        if claim.error is not None:
            raise claim.error
        if now - self._last_purge >= self._purge_interval:
            try:
                self.purge(now)
            except ReplayStoreError:
                pass  # purging is housekeeping; the answer above stands
        return claim.fresh

    def _write(self, batch: list[_Claim]) -> None:
        """One statement for the batch: insert, or take over a row whose token can no longer be accepted; a live row
        is left alone and does not come back. Of two claims of one (iss, jti) in a batch the first is answered by
        the database and the second is a replay; two processes racing with the same pair cannot both win."""
        first: dict[tuple[str, str], _Claim] = {}
        for claim in batch:
            first.setdefault((claim.iss, claim.jti), claim)
        now = min(c.now for c in batch)
        params = [{"iss": c.iss, "jti": c.jti, "expiry": c.expiry, "now": now} for c in first.values()]
        try:
            with self._engine.begin() as conn:
                fresh = {(row[0], row[1]) for row in conn.execute(self._claim, params)}
            self.batches += 1
        except Exception as exc:  # SQLAlchemyError and driver errors alike: every claim of the batch fails closed
            error = ReplayStoreError(f"replay table unavailable ({type(exc).__name__})")
            for claim in batch:
                claim.error = error
        else:
            for claim in batch:
                claim.fresh = first[(claim.iss, claim.jti)] is claim and (claim.iss, claim.jti) in fresh
        finally:
            for claim in batch:
                claim.done = True

    def purge(self, now: float | None = None) -> int:
        """Delete entries whose tokens can no longer be accepted. Returns how many went."""
        from sqlalchemy import delete
        from sqlalchemy.exc import SQLAlchemyError

        now = time.time() if now is None else checked_expiry(now)
        with self._purge_lock:
            self._last_purge = now
            try:
                with self._engine.begin() as conn:
                    removed = conn.execute(delete(self._table).where(self._table.c.expires_at < now)).rowcount
            except SQLAlchemyError as exc:
                raise ReplayStoreError(f"replay table purge failed ({type(exc).__name__})") from None
        return int(removed or 0)

    def ping(self) -> bool:
        """The replay table can be read (the database is reachable and the table exists)."""
        from sqlalchemy import select

        try:
            with self._engine.connect() as conn:
                conn.execute(select(self._table.c.jti).limit(1)).all()
            return True
        except Exception:  # any driver error means "cannot check tokens" to a readiness probe
            return False

    def close(self) -> None:
        pass  # the engine belongs to the Store (Store.replay_engine), disposed with the process


class RedisReplayStore:
    """A Redis-protocol server: one key per (iss, jti), `SET NX EX`, so Redis forgets entries when they expire."""

    blocking = True

    def __init__(self, url: str, *, prefix: str = "cds-onnx:jti:", timeout_seconds: float = 2.0,
                 client: Any = None) -> None:
        if client is None:
            try:
                import redis
            except ImportError as exc:  # pragma: no cover - redis is a dependency
                raise ReplayStoreError("auth.replay_cache_url needs the 'redis' package") from exc
            client = redis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                          socket_connect_timeout=timeout_seconds)
        self._client = client
        self._prefix = prefix

    def key(self, iss: str, jti: str) -> str:
        # A digest of the pair: fixed length, and no separator an issuer or jti could forge.
        return self._prefix + hashlib.sha256(json.dumps([iss, jti]).encode()).hexdigest()

    def remember(self, iss: str, jti: str, forget_after: float, now: float) -> bool:
        expiry = checked_expiry(forget_after)
        ttl = max(1, math.ceil(expiry - checked_expiry(now)))
        try:
            return bool(self._client.set(self.key(iss, jti), b"1", nx=True, ex=ttl))
        except Exception as exc:  # redis.RedisError and socket errors: fail closed
            raise ReplayStoreError(f"replay cache server unavailable ({type(exc).__name__})") from None

    def purge(self, now: float | None = None) -> int:
        return 0  # Redis expires keys itself

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:  # redis.RedisError and socket errors: not reachable
            return False

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing is best effort
            pass


def open_replay_store(url: str | None, store: Any) -> ReplayStore:
    """The service's replay store: Redis when `url` is a redis:// (rediss://, unix://) URL, else the store's DB."""
    if url:
        return RedisReplayStore(url)
    return SqlReplayStore(store.replay_engine())
