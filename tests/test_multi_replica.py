"""Three real `cds-onnx serve` replicas behind a real load balancer (haproxy), sharing PostgreSQL and Redis (issue #12).

Everything runs on 127.0.0.1 on free ports and is started by this module: a PostgreSQL cluster (initdb in a temp
dir), a Redis server, the replicas (`cds-onnx serve --config config/development.toml`, overridden by environment) and
haproxy (tests/load_balancer.py). The module runs twice, once per place the JWT replay cache lives:

* `postgresql`: the store's `auth_replay` table in the shared PostgreSQL database (the default);
* `redis`: `auth.replay_cache_url` pointing at the shared Redis server.

In both, predictions and feedback go to the shared PostgreSQL database, and every replica's JWT audience is the
balancer's URL (`server.public_base_url`), as in a real deployment: a token minted for the service is good on any
replica, once.

Shown: a token replayed on another replica is refused; feedback posted to one replica for a card another served is
joined to its prediction; `/readyz` answers 503 while the shared store (or the Redis replay cache) is down, so the
balancer takes the replicas out of rotation, and 200 again when it is back; and a replica killed with SIGKILL in the
middle of a stream of hook calls costs no request (the balancer retries on another replica; the one exception, a call
whose single-use token the dead replica had already spent, is refused as a replay rather than run twice) and no
answered prediction (the killed replica replays its journal when it starts again).

The machine may be fully loaded (2 cores, another test suite running): every wait below is a generous deadline on an
observable state, never an assertion on speed. Without PostgreSQL, Redis or haproxy installed the module skips and
says how to install them (`make system-deps`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.replay import RedisReplayStore
from cds_hooks.signing import LocalKey, load_local_key, mint_token
from load_balancer import HEALTH_FALL, HEALTH_INTERVAL_SECONDS, HEALTH_RISE, Haproxy, haproxy_binary
from postgres_fixture import _bin_dir, _run_as
from service_process import CLI, ROOT, free_port, stop_process
from store.schema import AuthReplay
from store.store import Store

SECRET = "development-only-pseudonymisation-key"  # config/development.toml
ISSUER = "cds-onnx-cli"  # the development configuration trusts var/keys as this issuer
SERVICE = "ascvd-pce-10y"
REPLICAS = ("a", "b", "c")

# Deadlines, generous for a fully loaded 2-core machine; none of them is a performance expectation.
STARTUP_SECONDS = 180  # three replicas loading and validating every model at once
HTTP_TIMEOUT_SECONDS = 60  # one request, end to end through the balancer
STATE_SECONDS = 60  # a replica or the balancer noticing that the shared store went down or came back
RECORD_SECONDS = 60  # a prediction reaching the shared store (the recorder writes in the background)
LOAD_REQUESTS = 200
LOAD_THREADS = 4
KILL_AFTER = 40  # answered requests before the SIGKILL


# ---- the shared engines -----------------------------------------------------------------------------------------


class PgCluster:
    """This module's own PostgreSQL cluster, so a test can stop it (`pg_ctl stop -m fast`) and start it again."""

    def __init__(self, bindir: str, user: str | None) -> None:
        self.bindir, self.user = bindir, user
        self.workdir = tempfile.mkdtemp(prefix="cds-onnx-replicas-pg-")
        self.data = os.path.join(self.workdir, "data")
        self.sockets = os.path.join(self.workdir, "sock")
        os.makedirs(self.sockets)
        if user:
            shutil.chown(self.workdir, user)
            shutil.chown(self.sockets, user)
        self.port = free_port()
        _run_as(user, [f"{bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "cds", "--no-sync", "-E", "UTF8"])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://cds@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run_as(self.user, [f"{self.bindir}/pg_ctl", "-D", self.data, "-l", os.path.join(self.workdir, "log"), "-w",
                            "-t", "120", "start", "-o",
                            f"-p {self.port} -h 127.0.0.1 -k {self.sockets} -c fsync=off -c max_connections=200"])
        wait_for_port(self.port, 60, "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        _run_as(self.user, [f"{self.bindir}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "120", "stop"])

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"postgresql://cds@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.stop("immediate")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer:
    """A Redis server on a free loopback port, no persistence; stop() and start() keep the port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 60, "Redis")

    def stop(self) -> None:
        stop_process(self.proc)


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgCluster]:
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL not installed: `apt-get install postgresql` (or `make system-deps`) to run the "
                    "multi-replica tests")
    user = None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("the multi-replica tests need the `postgres` system user when run as root")
        user = "postgres"
    cluster = PgCluster(bindir, user)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: `apt-get install redis-server` (or `make system-deps`) to run the "
                    "multi-replica tests")
    workdir = Path(tempfile.mkdtemp(prefix="cds-onnx-replicas-redis-"))
    server = RedisServer(binary, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- the replicas and the balancer ------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.launch()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """`cds-onnx serve` with this replica's environment (port, spool directory, shared store...)."""
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([CLI, "serve", "--dev", "--config", "config/development.toml"], cwd=ROOT,
                                         env=self.env, stdout=fh, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Deployment:
    replay: str  # where the JWT replay cache lives: "postgresql" or "redis"
    balancer: Haproxy
    replicas: dict[str, Replica]
    store_url: str
    postgres: PgCluster
    redis: RedisServer
    key: LocalKey
    http: httpx.Client
    templates: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The URL clients call (the balancer), which is every replica's configured JWT audience base."""
        return self.balancer.base

    def auth(self, path: str) -> dict[str, str]:
        """A fresh single-use token for `path` (aud = the balancer's URL + the path, whoever receives it)."""
        return {"Authorization": f"Bearer {mint_token(self.key, ISSUER, self.base + path)}"}

    def hook_body(self, pid: str = "p1") -> dict[str, Any]:
        context = {"userId": "Practitioner/example", "patientId": pid}
        prefetch = prefetch_from_resources(self.templates, F.pce_record(gender="male", race="white", pid=pid),
                                           context)
        return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}

    def call_hook(self, base: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        path = f"/cds-services/{SERVICE}"
        return self.http.post(base + path, json=self.hook_body(), headers=headers or self.auth(path), **kw)

    def store(self) -> Store:
        return Store(self.store_url, SECRET.encode())


def start_replicas(workdir: Path, env: dict[str, str]) -> dict[str, Replica]:
    """Start every replica at once (as an orchestrator would), then wait until each answers /readyz 200."""
    subprocess.run([CLI, "keys", "generate", "--dir", "var/keys", "--if-missing"], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    replicas = {}
    for name in REPLICAS:
        port = free_port()
        (workdir / name).mkdir(parents=True, exist_ok=True)
        replica_env = {**os.environ, **env, "CDS_ONNX_SERVER__PORT": str(port),
                       "CDS_ONNX_STORE__SPOOL_DIR": str(workdir / name / "spool")}
        replicas[name] = Replica(name, port, replica_env, workdir / name / "server.log")
    try:
        for replica in replicas.values():
            wait_ready(replica, STARTUP_SECONDS)
    except BaseException:
        for replica in replicas.values():
            replica.stop(signal.SIGKILL)
        raise
    return replicas


def wait_ready(replica: Replica, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.proc.poll() is not None:
            raise AssertionError(f"replica {replica.name} exited at start-up:\n{replica.log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{replica.base}/readyz", timeout=10, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica {replica.name} not ready within {timeout:.0f} s:\n"
                         f"{replica.log.read_text()[-4000:]}")


@pytest.fixture(scope="module", params=["postgresql", "redis"])
def deployment(request: pytest.FixtureRequest, postgres: PgCluster, redis_server: RedisServer
               ) -> Iterator[Deployment]:
    if haproxy_binary() is None:
        pytest.skip("haproxy not installed: `apt-get install haproxy` (or `make system-deps`) to run the "
                    "multi-replica tests")
    replay = request.param
    workdir = Path(tempfile.mkdtemp(prefix=f"cds-onnx-replicas-{replay}-"))  # logs, spools, haproxy; removed after
    try:
        yield from _deployment(replay, workdir, postgres, redis_server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _deployment(replay: str, workdir: Path, postgres: PgCluster, redis_server: RedisServer) -> Iterator[Deployment]:
    store_url = postgres.create_database(f"cds_{replay}")  # a fresh database per configuration
    lb_port = free_port()
    env = {"CDS_ONNX_SERVER__PUBLIC_BASE_URL": f"http://127.0.0.1:{lb_port}", "CDS_ONNX_STORE__URL": store_url}
    if replay == "redis":
        env["CDS_ONNX_AUTH__REPLAY_CACHE_URL"] = redis_server.url
    replicas = start_replicas(workdir, env)
    balancer = None
    http = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False)  # loopback only, never a proxy
    try:
        balancer = Haproxy.start(workdir / "haproxy", lb_port, {name: r.port for name, r in replicas.items()})
        balancer.wait_for_states({name: "UP" for name in REPLICAS}, STATE_SECONDS)
        dep = Deployment(replay, balancer, replicas, store_url, postgres, redis_server,
                         load_local_key(ROOT / "var" / "keys"), http)
        discovery = http.get(f"{dep.base}/cds-services", headers=dep.auth("/cds-services"))
        assert discovery.status_code == 200, discovery.text
        dep.templates = next(s for s in discovery.json()["services"] if s["id"] == SERVICE)["prefetch"]
        yield dep
    finally:
        http.close()
        if balancer is not None:
            balancer.stop()
        for replica in replicas.values():
            replica.stop()


def assert_bare_401(resp: httpx.Response, case: str) -> None:
    assert resp.status_code == 401, f"{case}: {resp.status_code} {resp.text[:300]}"
    assert resp.content == b"", case


def jti_of(headers: dict[str, str]) -> str:
    import jwt

    return jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["jti"]


def replay_cache_holds(dep: Deployment, jti: str) -> bool:
    """Whether the shared replay cache of this configuration remembers (ISSUER, jti)."""
    if dep.replay == "redis":
        store = RedisReplayStore(dep.redis.url)
        try:
            return bool(store._client.exists(store.key(ISSUER, jti)))
        finally:
            store.close()
    store = dep.store()
    try:
        with store.session() as session:
            return session.execute(select(AuthReplay).where(AuthReplay.iss == ISSUER, AuthReplay.jti == jti)
                                   ).first() is not None
    finally:
        store.dispose()


# ---- the tests (in this order for each configuration: the last one kills a replica) -----------------------------


def test_a_token_replayed_on_another_replica_is_refused(deployment: Deployment) -> None:
    dep, http = deployment, deployment.http
    a, b, c = (dep.replicas[n].base for n in REPLICAS)
    headers = dep.auth("/cds-services")
    assert http.get(f"{a}/cds-services", headers=headers).status_code == 200
    for base, where in ((b, "replica b"), (c, "replica c"), (a, "replica a again"), (dep.base, "the balancer")):
        assert_bare_401(http.get(f"{base}/cds-services", headers=headers), f"discovery token replayed on {where}")

    # A hook call through the balancer, then the same token straight to every replica: each refuses it.
    path = f"/cds-services/{SERVICE}"
    headers = dep.auth(path)
    first = dep.call_hook(dep.base, headers)
    assert first.status_code == 200, first.text
    assert first.json()["cards"]
    served_by = first.headers["X-Replica"]
    for name in REPLICAS:
        assert_bare_401(dep.call_hook(dep.replicas[name].base, headers),
                        f"hook token served by {served_by} replayed on {name}")

    # The token was remembered where this configuration keeps the replay cache, and only there.
    jti = jti_of(headers)
    assert replay_cache_holds(dep, jti)
    if dep.replay == "redis":
        store = dep.store()
        try:
            with store.session() as session:
                assert session.execute(select(AuthReplay)).first() is None, "Redis configuration wrote auth_replay"
        finally:
            store.dispose()


def test_feedback_posted_to_another_replica_is_joined_to_its_prediction(deployment: Deployment) -> None:
    dep, http = deployment, deployment.http
    served = dep.call_hook(dep.replicas["a"].base)
    assert served.status_code == 200, served.text
    card = served.json()["cards"][0]["uuid"]
    path = f"/cds-services/{SERVICE}/feedback"
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": stamp,
                          "overrideReason": {"reason": {"system": "urn:cds-onnx:override-reason",
                                                        "code": "not-clinically-relevant",
                                                        "display": "Not clinically relevant for this patient"},
                                             "userComment": "discussed with patient"}}]}
    posted = http.post(dep.replicas["b"].base + path, json=body, headers=dep.auth(path))
    assert posted.status_code == 200, posted.text

    store = dep.store()
    try:
        deadline = time.monotonic() + RECORD_SECONDS  # replica a records its prediction in the background
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = [r for r in store.feedback_joined() if r["card_uuid"] == card]
            if rows and rows[0]["prediction_id"] is not None:
                break
            time.sleep(0.2)
        assert len(rows) == 1, rows
        joined = rows[0]
        assert joined["prediction_id"] is not None, "feedback never joined to the prediction replica a recorded"
        assert joined["outcome"] == "overridden" and joined["override_reason_code"] == "not-clinically-relevant"
        assert joined["model_id"] == SERVICE and joined["client_id"] == ISSUER
        assert store.predictions_for_card(card)[0]["prediction_id"] == joined["prediction_id"]
    finally:
        store.dispose()


def readyz(base: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{base}/readyz", timeout=10, trust_env=False)
    except httpx.HTTPError:
        return None


def wait_readyz(dep: Deployment, status: int, timeout: float) -> dict[str, Any]:
    """Wait until every replica's /readyz answers `status`; returns the bodies."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for name, replica in dep.replicas.items():
            resp = readyz(replica.base)
            seen[name] = (resp.status_code, resp.json()) if resp is not None else None
        if all(v is not None and v[0] == status for v in seen.values()):
            return {name: v[1] for name, v in seen.items()}
        time.sleep(0.3)
    raise AssertionError(f"replicas' /readyz not all {status} within {timeout:.0f} s: {seen}")


# Long enough for haproxy to see `fall`/`rise` consecutive probes, on a loaded machine.
BALANCER_SECONDS = STATE_SECONDS + max(HEALTH_FALL, HEALTH_RISE) * HEALTH_INTERVAL_SECONDS


def test_readyz_fails_while_the_shared_store_is_down_and_recovers(deployment: Deployment) -> None:
    dep, http = deployment, deployment.http
    dep.postgres.stop("fast")
    try:
        bodies = wait_readyz(dep, 503, STATE_SECONDS)
        assert all(body["store"] == "unreachable" for body in bodies.values()), bodies
        dep.balancer.wait_for_states({name: "DOWN" for name in REPLICAS}, BALANCER_SECONDS)
        assert http.get(f"{dep.base}/readyz").status_code == 503  # no replica in rotation
        if dep.replay == "postgresql":  # the replay cache is down too: calls are refused, never let through
            assert_bare_401(dep.call_hook(dep.replicas["b"].base), "replay cache (PostgreSQL) down")
    finally:
        dep.postgres.start()
    wait_readyz(dep, 200, STATE_SECONDS)
    dep.balancer.wait_for_states({name: "UP" for name in REPLICAS}, BALANCER_SECONDS)
    resp = dep.call_hook(dep.base)
    assert resp.status_code == 200, resp.text
    assert http.get(f"{dep.base}/readyz").status_code == 200


@pytest.mark.parametrize("deployment", ["redis"], indirect=True)  # with PostgreSQL's replay cache: the test above
def test_readyz_fails_while_the_redis_replay_cache_is_down_and_recovers(deployment: Deployment) -> None:
    dep = deployment
    assert dep.replay == "redis"
    dep.redis.stop()
    try:
        bodies = wait_readyz(dep, 503, STATE_SECONDS)
        assert all(body.get("replay_cache") == "unreachable" for body in bodies.values()), bodies
        dep.balancer.wait_for_states({name: "DOWN" for name in REPLICAS}, BALANCER_SECONDS)
        assert_bare_401(dep.call_hook(dep.replicas["a"].base), "replay cache (Redis) down")
    finally:
        dep.redis.start()
    wait_readyz(dep, 200, STATE_SECONDS)
    dep.balancer.wait_for_states({name: "UP" for name in REPLICAS}, BALANCER_SECONDS)
    resp = dep.call_hook(dep.base)
    assert resp.status_code == 200, resp.text


@dataclass
class Outcome:
    request_id: str
    jti: str
    status: int  # -1: no HTTP answer at all
    replica: str
    error: str = ""
    cards: list[str] = field(default_factory=list)


def test_no_request_fails_when_a_replica_is_killed_mid_load(deployment: Deployment) -> None:
    """SIGKILL one replica while 4 threads send 200 hook calls through the balancer.

    Every call is answered 200, with one exception the replay protection requires: a call the killed replica had
    already authenticated when it died. Its token is then spent (the shared replay cache holds its jti), so the
    balancer's retry on another replica is a replay and is refused with 401 — a retried CDS Hooks call is never run
    twice. Such calls are at most the ones in flight at the kill, and the test checks each one: haproxy retried it and
    the replay cache holds its jti. A call the killed replica had not authenticated (refused connection, or still
    queued in the dying process) is retried elsewhere as a first use and answered 200.

    Then the killed replica starts again on its spool directory and replays its journal: every card answered 200,
    by any replica, has its prediction in the shared store.
    """
    dep = deployment
    path = f"/cds-services/{SERVICE}"
    victim = dep.replicas["a"]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    next_index = iter(range(LOAD_REQUESTS))

    def worker() -> None:
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False) as client:
            while True:
                with lock:
                    if next(next_index, None) is None:
                        return
                rid = str(uuid.uuid4())
                headers = {**dep.auth(path), "X-Request-Id": rid}
                try:
                    resp = client.post(dep.base + path, json=dep.hook_body(), headers=headers)
                    outcome = Outcome(rid, jti_of(headers), resp.status_code, resp.headers.get("X-Replica", ""),
                                      "" if resp.status_code == 200 else resp.text[:300],
                                      [c["uuid"] for c in resp.json()["cards"]] if resp.status_code == 200 else [])
                except httpx.HTTPError as exc:
                    outcome = Outcome(rid, jti_of(headers), -1, "", repr(exc))
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        with lock:
            answered = [o for o in outcomes if o.status == 200]
        if len(answered) >= KILL_AFTER and any(o.replica == victim.name for o in answered):
            break
        time.sleep(0.02)
    victim.stop(signal.SIGKILL)  # mid-load: no shutdown, open connections reset
    killed_at = len(outcomes)
    for t in threads:
        t.join(HTTP_TIMEOUT_SECONDS * 4)
    assert not any(t.is_alive() for t in threads), "load threads did not finish"
    assert killed_at < LOAD_REQUESTS, "the load ended before the kill; nothing was shown"

    assert len(outcomes) == LOAD_REQUESTS
    log = {line.request_id: line for line in dep.balancer.log_lines() if line.request_id}
    no_answer = [o for o in outcomes if o.status == -1]
    assert not no_answer, f"requests without an HTTP answer: {no_answer[:5]}"
    failed = [o for o in outcomes if o.status != 200]
    for o in failed:  # only spent tokens of calls the dead replica had authenticated, retried by the balancer
        line = log.get(o.request_id)
        detail = f"{o} / haproxy: {line}"
        assert o.status == 401, f"request failed: {detail}"
        assert line is not None and line.retries >= 1, f"401 without a retry: {detail}"
        assert replay_cache_holds(dep, o.jti), f"401 but its token was never spent: {detail}"
    assert len(failed) <= LOAD_THREADS, f"more refusals than calls in flight at the kill: {failed}"

    # The balancer did retry: calls sent to the dead replica before its probes failed were answered by the others.
    retried_ok = [line for line in log.values() if line.retries >= 1 and line.status == 200]
    assert retried_ok, "no call was retried on another replica; the kill was not exercised"
    dep.balancer.wait_for_states({victim.name: "DOWN"}, BALANCER_SECONDS)
    survivors = {o.replica for o in outcomes[killed_at + LOAD_THREADS:] if o.status == 200}
    assert survivors and victim.name not in survivors, survivors
    print(json.dumps({"replay": dep.replay, "answered_200": len(outcomes) - len(failed),
                      "refused_spent_tokens": len(failed), "retried_then_200": len(retried_ok)}))

    # Nothing answered is lost: what the killed replica answered but had not yet written to the shared store is in
    # its journal (store.spool_dir), replayed when it starts again on the same spool directory.
    answered_cards = [card for o in outcomes if o.status == 200 for card in o.cards]
    assert any(o.replica == victim.name and o.cards for o in outcomes)
    victim.launch()
    wait_ready(victim, STARTUP_SECONDS)
    store = dep.store()
    try:
        deadline = time.monotonic() + RECORD_SECONDS
        lost = answered_cards
        while lost and time.monotonic() < deadline:
            lost = [card for card in lost if not store.predictions_for_card(card)]
            time.sleep(0.3)
        assert not lost, f"{len(lost)} of {len(answered_cards)} answered cards have no prediction in the store"
    finally:
        store.dispose()
    dep.balancer.wait_for_states({victim.name: "UP"}, BALANCER_SECONDS)  # back in rotation
