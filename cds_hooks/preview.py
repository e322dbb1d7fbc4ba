"""The card preview page: fire a real hook at this service and see its cards as an EHR sidebar shows them.

The page is static (HTML, CSS, JS served here; no CDN). It shows a patient banner from the Bundle's Patient, fires
one service or every service registered for a hook (as an EHR does, one hookInstance for all), and sends an override
only with a reason the user chose (the list starts on no choice). Its server-side helpers only prepare a request: the
example patients, the prefetch a Bundle answers for a service's templates, and a short-lived JWT signed with the
deployment's local developer key for exactly this service's URL and its feedback URL. The page then calls the real
CDS endpoints.

The preview is off unless `preview.enabled` (a development switch: never in production); its token endpoint answers
loopback clients only (unless `preview.allow_remote`) and only same-origin requests: an Origin or Referer header,
when present, must name the configured public base URL or listen address (or `preview.allowed_origins`). The peer
address alone proves nothing (a same-host proxy, DNS rebinding), and a token from it is as good as calling the service.
"""

from __future__ import annotations

import ipaddress
import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cds_hooks.services import listed_services
from cds_hooks.bundle_prefetch import BundleError, bundle_resources, patient_of, prefetch_from_resources
from cds_hooks.errors import ApiError, bad_request
from cds_hooks.hooks import ORDER_HOOKS
from cds_hooks.preview_examples import example_bundle, list_examples
from cds_hooks.request import parse_json_object
from cds_hooks.settings import Settings
from cds_hooks.signing import LocalKey, load_local_key, mint_token

log = logging.getLogger(__name__)
STATIC = resources.files("cds_hooks") / "static" / "preview"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "markdown.js": "text/javascript"}


def register_preview(app: FastAPI, settings: Settings, base_url: Any) -> None:
    if not settings.preview.enabled:
        return
    key: dict[str, LocalKey | None] = {"key": None}
    origins = {o for o in (_origin(u) for u in [*settings.audience_bases(), *settings.preview.allowed_origins]) if o}

    def local_key() -> LocalKey:
        if key["key"] is None:
            try:
                key["key"] = load_local_key(settings.path(settings.preview.key_dir))
            except (OSError, ValueError) as exc:
                raise ApiError(503, "the preview has no local signing key (run `cds-onnx keys generate`)",
                               None, code="not-supported") from exc
        return key["key"]  # type: ignore[return-value]

    def services(request: Request) -> dict[str, Any]:
        return request.app.state.cds.services

    @app.get("/preview", response_class=HTMLResponse)
    async def preview_page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                            headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                                "style-src 'self'; script-src 'self'"})

    @app.get("/preview/assets/{name}")
    async def preview_asset(name: str) -> Response:
        if name not in ASSETS:
            raise ApiError(404, f"no preview asset '{name}'", "name", code="not-found")
        return Response((STATIC / name).read_bytes(), media_type=ASSETS[name])

    @app.get("/preview/services")
    async def preview_services(request: Request) -> dict[str, Any]:
        listed = listed_services(services(request), settings.services.one_per_question, settings.services.listed)
        return {"services": [{"id": svc.id, "hook": svc.hook, "title": svc.model.champion.manifest.title}
                             for svc in listed]}

    @app.get("/preview/examples")
    async def examples() -> dict[str, Any]:
        return {"examples": list_examples()}

    @app.get("/preview/examples/{example_id}")
    async def example(example_id: str) -> JSONResponse:
        bundle = example_bundle(example_id)
        if bundle is None:
            raise ApiError(404, f"no example patient '{example_id}'", "id", code="not-found")
        return JSONResponse(bundle)

    @app.post("/preview/request")
    async def build_request(request: Request) -> JSONResponse:
        """A hook request for a service from a pasted/uploaded Bundle (the prefetch the EHR would send).

        The Bundle (synthetic patients, names included) is used for this answer only: never logged or stored."""
        doc = parse_json_object(await request.body())
        service = services(request).get(str(doc.get("service")))
        if service is None:
            raise ApiError(404, f"no CDS service '{doc.get('service')}'", "service", code="not-found")
        try:
            resources_ = bundle_resources(doc.get("bundle"))
            patient = patient_of(resources_, doc.get("patientId"))
        except BundleError as exc:
            raise bad_request(f"bundle: {exc}", "bundle") from None
        context: dict[str, Any] = {"userId": "Practitioner/preview", "patientId": patient["id"]}
        if doc.get("encounterId"):
            context["encounterId"] = str(doc["encounterId"])
        if service.hook in ORDER_HOOKS:
            # the orders being placed: the Bundle's orders written with status draft, as an EHR sends an order set
            # (order-select: every one of them is selected); they are not part of the record sent as prefetch
            drafts = [r for r in resources_ if r.get("resourceType") in _ORDER_TYPES and r.get("status") == "draft"]
            context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                      "entry": [{"resource": r} for r in drafts]}
            if service.hook == "order-select":
                context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in drafts
                                         if isinstance(r.get("id"), str)]
            resources_ = [r for r in resources_ if not any(r is d for d in drafts)]
        # "fire every service for this hook" sends one hookInstance to every service, as an EHR does
        instance = doc.get("hookInstance")
        if not (isinstance(instance, str) and 0 < len(instance) <= 100):
            instance = _uuid()
        body = {"hook": service.hook, "hookInstance": instance, "context": context,
                "prefetch": prefetch_from_resources({k: v.template for k, v in service.plan.items()}, resources_,
                                                    context)}
        return JSONResponse(body)

    @app.post("/preview/token")
    async def token(request: Request) -> JSONResponse:
        if not settings.preview.allow_remote and not _loopback(request):
            raise ApiError(403, "the preview token endpoint answers local (loopback) clients only", None,
                           code="forbidden")
        foreign = _foreign_origin(request, origins)
        if foreign is not None:
            log.warning("refused a preview token request from another origin (%s)", foreign[:100])
            raise ApiError(403, "the preview token endpoint answers pages served by this service only (the request's "
                                "Origin/Referer is not server.public_base_url, the listen address or "
                                "preview.allowed_origins)", None, code="forbidden")
        doc = parse_json_object(await request.body())
        service_id = str(doc.get("service"))
        if service_id not in services(request):
            raise ApiError(404, f"no CDS service '{service_id}'", "service", code="not-found")
        purpose = doc.get("purpose", "call")
        if purpose not in ("call", "feedback"):
            raise bad_request("purpose must be 'call' or 'feedback'", "purpose")
        url = f"{base_url(request)}/cds-services/{service_id}" + ("/feedback" if purpose == "feedback" else "")
        # one token per call: the service refuses a replayed jti
        return JSONResponse({"token": mint_token(local_key(), settings.preview.issuer, url, lifetime_seconds=60),
                             "aud": url})


# the resource types of CDS Hooks order-select and order-sign draftOrders (FHIR R4)
_ORDER_TYPES = frozenset({"MedicationRequest", "ServiceRequest", "NutritionOrder", "DeviceRequest",
                          "VisionPrescription"})


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _origin(url: str) -> str | None:
    """scheme://host[:port] of a URL, lowercase, default ports dropped; None when it has no http(s) origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _foreign_origin(request: Request, allowed: set[str]) -> str | None:
    """The first Origin or Referer value naming an origin that is not allowed (absent headers are no evidence)."""
    for name in ("origin", "referer"):
        for value in request.headers.getlist(name):
            if _origin(value) not in allowed:
                return value or "(empty)"
    return None


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")  # "testclient": the in-process test transport, not a network peer

