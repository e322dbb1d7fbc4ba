"""HTTP routes of the details view: `GET /details/{token}` (the page), `POST /details/{token}/what-if` (JSON) and the
page's own script and style under `/static/details/`.

The token is the capability: the page is opened by a clinician's browser from a card link, without the EHR's JWT.
A tampered, malformed, expired or unknown token answers a plain 404 that does not say which. The page never shows a
patient identifier (the store has none) and is not cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from cds_hooks.details.links import verify_details_token
from cds_hooks.details.view import details_view
from cds_hooks.details.what_if import WhatIfError, run_what_if
from cds_hooks.errors import operation_outcome
from cds_hooks.security_headers import DETAILS_CSP
from inference.runtime import ModelRuntime

log = logging.getLogger(__name__)

STATIC = resources.files("cds_hooks") / "static" / "details"
ASSETS = {"details.js": "text/javascript; charset=utf-8", "details.css": "text/css; charset=utf-8"}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
WAIT_FOR_RECORDER_SECONDS = 2.0  # a page opened right after its card may arrive before the row is written
MAX_WHAT_IF_BYTES = 16_384

_html = Environment(loader=PackageLoader("cds_hooks", "templates"), autoescape=select_autoescape(["html"]))


def not_found() -> Response:
    return Response("Not found\n", status_code=404, media_type="text/plain; charset=utf-8", headers=NO_STORE)


def register_details(app: FastAPI, secret: bytes, clock: Any = None) -> None:
    """Add the details routes. `secret` is the store's HMAC secret (the one the card links were signed with)."""
    now = clock or (lambda: datetime.now(UTC))

    async def prediction_for(request: Request, token: str) -> dict[str, Any] | None:
        prediction_id = verify_details_token(token, secret, now())
        cds = getattr(request.app.state, "cds", None)
        if prediction_id is None or cds is None:
            return None
        pred = await asyncio.to_thread(cds.store.prediction, prediction_id)
        if pred is None:  # journalled but maybe not in the database yet: let the recorder catch up, then look again
            await asyncio.to_thread(cds.recorder.flush, WAIT_FOR_RECORDER_SECONDS)
            pred = await asyncio.to_thread(cds.store.prediction, prediction_id)
        if pred is None or pred.get("alias") != "champion":  # a shadow challenger's output is never shown
            return None
        return pred

    def runtime_for(request: Request, pred: dict[str, Any]) -> ModelRuntime | None:
        entry = request.app.state.cds.repository.entries.get(pred["model_id"])
        return entry.versions.get(pred["model_version"]) if entry is not None else None

    @app.get("/details/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def details_page(token: str, request: Request) -> Response:
        pred = await prediction_for(request, token)
        if pred is None:
            return not_found()
        runtime = runtime_for(request, pred)
        if runtime is None:  # the model version that made it is no longer served: nothing trustworthy to show
            log.warning("details page for a prediction of %s %s, which is not loaded", pred["model_id"],
                        pred["model_version"])
            return not_found()
        view = await asyncio.to_thread(details_view, pred, runtime)
        page = _html.get_template("details.html").render(**view)
        return HTMLResponse(page, headers={"Content-Security-Policy": DETAILS_CSP, **NO_STORE})

    @app.post("/details/{token}/what-if", include_in_schema=False)
    async def what_if(token: str, request: Request) -> Response:
        pred = await prediction_for(request, token)
        if pred is None:
            return not_found()
        runtime = runtime_for(request, pred)
        if runtime is None:
            return not_found()
        raw = await request.body()
        if len(raw) > MAX_WHAT_IF_BYTES:
            return JSONResponse(operation_outcome("the what-if request is too large", None, "too-costly"),
                                status_code=413, headers=NO_STORE)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return JSONResponse(operation_outcome("the body is not JSON", None), status_code=400, headers=NO_STORE)
        try:
            result = await asyncio.to_thread(run_what_if, runtime, pred, body)
        except WhatIfError as exc:
            return JSONResponse(operation_outcome(exc.message, exc.field, "invalid"), status_code=422,
                                headers=NO_STORE)
        return JSONResponse(result, headers=NO_STORE)

    @app.get("/static/details/{name}", include_in_schema=False)
    async def details_asset(name: str) -> Response:
        if name not in ASSETS:
            return not_found()
        return Response((STATIC / name).read_bytes(), media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=3600"})
