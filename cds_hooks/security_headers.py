"""HTTP hardening applied to every route, as two pure-ASGI middlewares (no route can forget them).

`RequestLimitsMiddleware` (inside the CORS layer, so its refusals carry CORS headers) and
`SecurityHeadersMiddleware` (outermost, so every response carries its headers, a CORS preflight's included):

* Body size: a request body over `server.max_body_bytes` is refused with 413 before any route reads it (the
  declared Content-Length is checked first; a chunked body is counted as it arrives and never held past the limit).
* Content type: POST routes that take JSON (including the details page's what-if) answer 415 unless the body is
  declared `application/json` or `application/fhir+json` (parameters such as `charset=utf-8` allowed).
* Response headers: `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on every response; HTML
  responses get a Content-Security-Policy (`default-src 'self'` unless the route set a stricter one) that always
  carries `frame-ancestors` (`'none'` unless `server.frame_ancestors` lists who may frame the pages).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from cds_hooks.errors import operation_outcome

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json", "application/fhir+json")
# POST routes whose body is JSON: CDS service calls, feedback, the preview's helpers and the details what-if
JSON_POST_ROUTES = re.compile(
    r"^/(?:cds-services/[^/]+(?:/feedback)?|preview/(?:request|token)|details/[^/]+/what-if)/?$")
DEFAULT_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; " \
              "form-action 'self'"
# The details page behind a card's link: its script, style and what-if calls from this origin only, no inline script
# or style, no forms, nothing else.
DETAILS_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " \
              "base-uri 'none'; form-action 'none'"


class _TooLarge(Exception):
    pass


def frame_ancestors_directive(frame_ancestors: Sequence[str]) -> str:
    return "frame-ancestors " + (" ".join(frame_ancestors) if frame_ancestors else "'none'")


def with_frame_ancestors(csp: str, frame_ancestors: Sequence[str]) -> str:
    """The policy with its frame-ancestors directive set from configuration (a route cannot widen it)."""
    kept = [d.strip() for d in csp.split(";") if d.strip() and not d.strip().lower().startswith("frame-ancestors")]
    return "; ".join([*kept, frame_ancestors_directive(frame_ancestors)])


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES


class SecurityHeadersMiddleware:
    """The response headers, on every response: the outermost layer, so that answers given by a layer inside it
    (a CORS preflight, a 413 or 415 of RequestLimitsMiddleware) carry them too."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: Sequence[str] = ()) -> None:
        self.app = app
        self.frame_ancestors = tuple(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._decorating(send))

    def _decorating(self, send: Send) -> Send:
        async def decorated(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                content_type = next((v for k, v in raw if k.lower() == b"content-type"), b"").decode("latin-1")
                if b"x-content-type-options" not in names:
                    raw.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    raw.append((b"referrer-policy", b"no-referrer"))
                if content_type.lower().startswith("text/html"):
                    given = next((v.decode("latin-1") for k, v in raw if k.lower() == b"content-security-policy"),
                                 DEFAULT_CSP)
                    raw = [(k, v) for k, v in raw if k.lower() != b"content-security-policy"]
                    raw.append((b"content-security-policy",
                                with_frame_ancestors(given, self.frame_ancestors).encode("latin-1")))
                    if not self.frame_ancestors and b"x-frame-options" not in names:
                        raw.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": raw}
            await send(message)

        return decorated


class RequestLimitsMiddleware:
    """Body size, content coding and content type, checked before any route reads the body. Inside the CORS layer,
    so that its 413 and 415 carry the CORS headers an EHR's browser needs to read them."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope.get("method", "GET")
        path = scope.get("path", "")

        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _error(send, 400, "Content-Length is not a number", "invalid")
                return
            if int(declared) > limit:
                await _error(send, 413, f"request body is larger than {limit} bytes (server.max_body_bytes)",
                             "too-costly")
                return
        coding = (headers.get("content-encoding") or "").strip().lower()
        if coding not in ("", "identity"):
            # RFC 9110 §8.4/§15.5.16: a body in a content coding the service does not decode is not JSON yet; read
            # as if it were, a proxy that honours the header and this service would disagree about the request
            await _error(send, 415, f"Content-Encoding {coding[:40]} is not supported: send the body uncoded",
                         "not-supported", {"Accept-Encoding": "identity"})
            return
        if method == "POST" and JSON_POST_ROUTES.match(path) and not is_json_content_type(headers.get("content-type")):
            got = headers.get("content-type")
            await _error(send, 415, f"Content-Type must be application/json or application/fhir+json"
                                    f"{f', not {got[:100]}' if got else ' (none was given)'}", "not-supported")
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if response_started:
                raise
            await _error(send, 413, f"request body is larger than {limit} bytes (server.max_body_bytes)",
                         "too-costly")


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        out.setdefault(name, value.decode("latin-1"))
    return out


async def _error(send: Send, status: int, message: str, code: str, extra: dict[str, str] | None = None) -> None:
    body = orjson.dumps(operation_outcome(message, None, code))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                            *((k.lower().encode(), v.encode()) for k, v in (extra or {}).items())]})
    await send({"type": "http.response.body", "body": body})
