"""The FastAPI application: CDS Hooks discovery, service calls and feedback, plus model cards and probes.

Start-up loads and validates every model (a broken folder stops the start), migrates the store and starts the
recorder; shutdown flushes the recorder. Every route that CDS clients call verifies the client's JWT first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_hooks.auth import AuthError, ClientAuthenticator, ClientIdentity
from cds_hooks.errors import ApiError, operation_outcome
from cds_hooks.feedback import parse_feedback, store_feedback
from cds_hooks.champion_sync import ChampionSync
from cds_hooks.metrics import Metrics, observe_call
from cds_hooks.request import parse_hook_request
from cds_hooks.responses import CardsResponse, held_until_sent
from cds_hooks.service_call import ServiceCaller
from cds_hooks.services import CdsService, build_services, listed_services
from cds_hooks.settings import ConfigError, Settings
from cds_hooks.preview import register_preview
from cds_hooks.jwks_shared import open_jwks_store
from cds_hooks.replay import open_replay_store
from cds_hooks.web import register_pages
from cds_hooks.details.routes import WAIT_FOR_RECORDER_SECONDS, register_details
from cds_hooks.details.smart import register_smart
from cds_hooks.head_requests import HeadAsGetMiddleware
from cds_hooks.security_headers import RequestLimitsMiddleware, SecurityHeadersMiddleware
from cds_hooks.openapi_doc import install_openapi
from inference.repository import ModelEntry, ModelRepository
from store.recorder import Recorder
from store.store import Store

log = logging.getLogger("cds_hooks")


@dataclass
class AppState:
    settings: Settings
    repository: ModelRepository
    services: dict[str, CdsService]
    authenticator: ClientAuthenticator
    store: Store
    recorder: Recorder
    caller: ServiceCaller
    http_client: httpx.AsyncClient
    champion_sync: ChampionSync | None = None  # moves champions as the audit chain says


#: Young collection every 100,000 net container allocations (Python's default: 700), the middle generation every 50
#: of those, the oldest every 100 of those. Reference counting frees a request's objects when it ends; only cycles
#: wait for the collector, and those are few (the service's memory stays flat over a benchmark run).
SERVING_GC_THRESHOLDS = (100_000, 50, 100)


def create_app(settings: Settings, *, freeze_gc: bool = False) -> FastAPI:
    """Build the app; models are loaded and validated here so that a broken model folder fails fast.

    `freeze_gc` (the `serve` command): once start-up is done, every object alive (models, value sets, FHIR classes,
    templates) moves to the GC's permanent generation, so full collections no longer walk it on the request path,
    and the collector runs less often (`SERVING_GC_THRESHOLDS`): parsing a 1 MB prefetch allocates some 50,000
    containers, and at Python's default of a young collection every 700 allocations the collector walked the
    request's own live objects dozens of times per request (docs/performance.md). Off by default: tests build many
    apps in one process.
    """
    repository = ModelRepository(settings.path(settings.models.root), tuple(settings.models.remote_backends)).load()
    services = build_services(repository)
    _check_service_settings(settings, services)
    metrics = Metrics()

    def label_aliases(entry: ModelEntry) -> None:
        for version, runtime in entry.versions.items():
            alias = ("champion" if runtime is entry.champion else
                     "challenger" if runtime is entry.challenger else "inactive")
            for other in ("champion", "challenger", "inactive"):
                if other != alias:  # after a promotion (cds_hooks/champion_sync.py) the old label goes
                    with contextlib.suppress(KeyError):
                        metrics.model_valid.remove(entry.id, version, other)
            metrics.model_valid.labels(entry.id, version, alias).set(1)

    for entry in repository.entries.values():
        label_aliases(entry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.store_url(), settings.store.hmac_secret.encode())
        await asyncio.to_thread(store.migrate)
        recorder = Recorder(store, max_queue=settings.store.queue_size,
                            spool_dir=settings.path(settings.store.spool_dir))
        recorder.start()
        limits = httpx.Limits(max_connections=settings.prefetch.max_connections,
                              max_keepalive_connections=settings.prefetch.max_connections)
        http_client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
        caller = ServiceCaller(
            http_client=http_client, record=recorder.record,
            deadline_seconds=settings.prefetch.deadline_seconds, max_pages=settings.prefetch.max_pages,
            anonymous_fhir_servers=tuple(settings.auth.anonymous_fhir_servers),
            smart_app_url=settings.cards.smart_app_url,
            time_zone=ZoneInfo(settings.mapping.time_zone) if settings.mapping.time_zone else None,
            max_response_bytes=settings.prefetch.max_response_bytes,
            details_secret=settings.store.hmac_secret.encode(), details_ttl_seconds=settings.cards.details_ttl_seconds,
            min_category=dict(settings.cards.min_category), smart_launch=bool(settings.smart.clients),
            offload=settings.server.call_stages_in_thread,
        )
        shared_url = settings.auth.replay_cache_url  # replay cache and client keys: Redis, or else the database
        authenticator = ClientAuthenticator(
            settings.auth_settings(), http_client=http_client, replay_store=open_replay_store(shared_url, store),
            jwks_store=open_jwks_store(shared_url, store, settings.store.hmac_secret.encode()))
        app.state.cds = AppState(settings, repository, services, authenticator, store, recorder, caller, http_client)
        champion_sync = ChampionSync(store, repository, services, on_switch=label_aliases)
        await champion_sync.start()  # the governed champions before the first request, then polled
        app.state.cds.champion_sync = champion_sync
        if freeze_gc:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*SERVING_GC_THRESHOLDS)
        try:
            yield
        finally:
            await champion_sync.stop()
            await asyncio.to_thread(recorder.stop, 10.0)
            await http_client.aclose()
            store.dispose()

    # redirect_slashes off: Starlette's redirect to the other spelling builds its Location from the Host header,
    # before authentication (docs/security.md: no URL is derived from Host); '/cds-services/' is a 404
    app = FastAPI(title="cds-onnx", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    app.state.repository = repository
    app.state.metrics = metrics
    # innermost: body-size limit and 415 on every route; inside CORS, so an EHR's browser can read a 413 or 415
    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=settings.server.max_body_bytes)
    if settings.cors.allow_origins or settings.cors.allow_origin_regex:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors.allow_origins,
            allow_origin_regex=settings.cors.allow_origin_regex,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
            allow_private_network=settings.cors.allow_private_network,  # Private Network Access preflights
        )
    # outside CORS: security headers on every response, a preflight's included (docs/security.md)
    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=settings.server.frame_ancestors)
    app.add_middleware(HeadAsGetMiddleware)  # HEAD is the GET without its body (RFC 9110 §9.3.2)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> Response:
        log.info("rejected client authentication on %s: %s", request.url.path, exc)
        # RFC 9110 §11.6.1 and RFC 6750 §3: a 401 carries a challenge; the reason is not disclosed to the caller
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or None
        return JSONResponse(operation_outcome(f"{where or 'request'}: {err['msg']}", where), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the exception's headers go with it: a 405's Allow (RFC 9110 §15.5.6 requires one)
        return JSONResponse(operation_outcome(str(exc.detail), None, "not-found" if exc.status_code == 404
                                              else "invalid"), status_code=exc.status_code, headers=exc.headers)

    def state(request: Request) -> AppState:
        return request.app.state.cds

    # Base URLs from configuration only, never from the request's Host or X-Forwarded-* headers (security.md).
    audience_bases = settings.audience_bases()

    def audience(request: Request) -> list[str]:
        return [f"{base}{request.scope['path']}" for base in audience_bases]  # the path as routed, no Host

    def base_url(request: Request) -> str:
        return audience_bases[0]

    async def authenticate(request: Request) -> ClientIdentity:
        # Every Authorization header, not just the first: more than one is refused.
        return await state(request).authenticator.verify(request.headers.getlist("authorization"), audience(request))

    async def read_body(request: Request) -> bytes:
        limit = settings.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes", None, code="too-costly")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is larger than {limit} bytes", None, code="too-costly")
            chunks.append(chunk)
        return b"".join(chunks)

    def service_or_404(request: Request, service_id: str) -> CdsService:
        service = state(request).services.get(service_id)
        if service is None:
            raise ApiError(404, f"no CDS service '{service_id}'", "id", code="not-found")
        return service

    @app.get("/cds-services")
    async def discovery(request: Request) -> dict[str, Any]:
        await authenticate(request)
        listed = listed_services(state(request).services, settings.services.one_per_question,
                                 settings.services.listed)
        return {"services": [s.discovery() for s in listed]}

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        identity = await authenticate(request)
        service = service_or_404(request, service_id)
        sync = state(request).champion_sync
        not_served = sync.problems.get(service.model.id) if sync is not None else None
        if not_served:  # the governed champion cannot be served (cds_hooks/champion_sync.py): no card from a guess
            metrics.requests.labels(service_id, "503").inc()
            raise ApiError(503, f"model {service.model.id} is not served: {not_served}", None, code="transient")
        started = time.perf_counter()
        try:
            req = parse_hook_request(await read_body(request))
            result = await state(request).caller.call(service, req, identity, base_url(request))
        except ApiError as exc:
            metrics.requests.labels(service_id, str(exc.status)).inc()
            raise
        observe_call(metrics, service_id, result, time.perf_counter() - started)
        # the parsed body (a whole record is a megabyte of objects, ~0.8 ms to free) is held until the answer is out
        return CardsResponse(result.body, background=BackgroundTask(held_until_sent, req, result))

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        identity = await authenticate(request)
        service_or_404(request, service_id)
        items = parse_feedback(await read_body(request), service_id,
                               None if identity.iss == "anonymous" else identity.iss)
        try:
            cds = state(request)
            await asyncio.to_thread(store_feedback, cds.store, items,
                                    lambda: cds.recorder.flush(WAIT_FOR_RECORDER_SECONDS))
        except ApiError:
            raise  # feedback on another service's card: 400, naming it
        except Exception as exc:
            log.error("feedback for %s could not be stored: %s", service_id, type(exc).__name__)
            raise ApiError(503, "feedback could not be stored; please retry", None, code="transient") from exc
        for item in items:
            metrics.feedback.labels(service_id, item.outcome).inc()
        return JSONResponse({})

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        cds: AppState | None = getattr(request.app.state, "cds", None)
        if cds is not None:
            for name in ("queued", "written", "spooled", "failed", "rejected"):
                metrics.recorder.labels(name).set(getattr(cds.recorder, name))
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        cds: AppState | None = getattr(request.app.state, "cds", None)
        if cds is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        store_ok = await asyncio.to_thread(cds.store.ping)
        # Every call is refused (fail closed) while the JWT replay cache cannot be reached: not ready either.
        replay_ok = await asyncio.to_thread(cds.authenticator.replay_store_ok)
        ready = store_ok and replay_ok
        status = "ready" if ready else "store unreachable" if not store_ok else "replay cache unreachable"
        body = {"status": status, "models": sorted(cds.repository.entries),
                "store": "ok" if store_ok else "unreachable", "replay_cache": "ok" if replay_ok else "unreachable"}
        return JSONResponse(body, status_code=200 if ready else 503)

    register_pages(app, repository, base_url)
    register_details(app, settings.store.hmac_secret.encode())  # the page behind each card's details link
    if settings.smart.clients:  # ... also opened as a SMART app by EHRs that support launch
        register_smart(app, secret=settings.store.hmac_secret.encode(), base_url=settings.audience_bases()[0],
                       clients={c.iss.rstrip("/"): {"client_id": c.client_id, "auth_origins": c.auth_origins}
                                for c in settings.smart.clients})
    register_preview(app, settings, base_url)
    # /openapi.json describes the JSON request bodies and names the services and models (cds_hooks/openapi_doc.py)
    install_openapi(app, service_ids=list(services), model_ids=list(repository.entries))
    return app


def _check_service_settings(settings: Settings, services: dict[str, CdsService]) -> None:
    """Settings that name services or categories must name real ones: a typo must not silently show every card."""
    for sid in settings.services.listed:
        if sid not in services:
            raise ConfigError(f"services.listed: no service '{sid}' (services: {', '.join(sorted(services))})")
    for sid, label in settings.cards.min_category.items():
        if sid not in services:
            raise ConfigError(f"cards.min_category: no service '{sid}' (services: {', '.join(sorted(services))})")
        labels = [c.label for c in services[sid].model.champion.manifest.categories]
        if label not in labels:
            raise ConfigError(f"cards.min_category.{sid}: '{label}' is not a category of the model "
                              f"(categories: {', '.join(labels)})")
