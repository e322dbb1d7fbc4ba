"""The details view as a SMART app: an EHR that supports SMART App Launch opens a card's `type: smart` link.

The card link carries the details token as `appContext`. The EHR opens `/smart/launch?iss=…&launch=…`; the service
checks `iss` against its configured SMART clients (it never contacts a server configuration does not name), reads the
EHR's `.well-known/smart-configuration`, and sends the browser to the EHR's authorization endpoint (authorization
code with PKCE S256). The EHR returns to `/smart/callback`; the service exchanges the code at the token endpoint and
opens the details page named by the `appContext` the EHR hands back. No state is kept between the two steps: the
`state` parameter is HMAC-signed (issuer, time, nonce) and the PKCE verifier is derived from it, so any replica can
finish a launch another started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from cds_hooks.details.links import verify_details_token

STATE_MAX_AGE_SECONDS = 600
MAX_ANSWER_BYTES = 200_000
_DOMAIN = b"cds-onnx smart launch v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
        parts.scheme.lower())


def make_state(secret: bytes, iss: str, now: float | None = None) -> str:
    body = json.dumps({"iss": iss, "t": int(now if now is not None else time.time()),
                       "n": secrets.token_urlsafe(12)}, separators=(",", ":")).encode()
    mac = hmac.new(secret, _DOMAIN + body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(mac)}"


def read_state(secret: bytes, state: str, now: float | None = None) -> str | None:
    """The issuer a state was made for, or None when it is forged, malformed or older than 10 minutes."""
    try:
        body_text, mac_text = state.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
        if not hmac.compare_digest(mac, hmac.new(secret, _DOMAIN + body, hashlib.sha256).digest()[:16]):
            return None
        doc = json.loads(body)
    except (ValueError, TypeError):
        return None
    age = (now if now is not None else time.time()) - float(doc.get("t", 0))
    if not 0 <= age <= STATE_MAX_AGE_SECONDS or not isinstance(doc.get("iss"), str):
        return None
    return str(doc["iss"])


def pkce_verifier(secret: bytes, state: str) -> str:
    return _b64(hmac.new(secret, b"pkce:" + state.encode(), hashlib.sha256).digest())


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


class SmartError(Exception):
    """A launch that cannot go on; the message is shown to the clinician (no secrets in it)."""


def register_smart(app: FastAPI, *, secret: bytes, clients: dict[str, dict[str, Any]], base_url: str,
                   http_client: Any = None) -> None:
    """SMART launch routes. `clients` maps a normalised FHIR base URL (iss) to {client_id, auth_origins}."""

    def client_for(iss: str) -> dict[str, Any] | None:
        return clients.get(iss.rstrip("/"))

    async def configuration(request: Request, iss: str) -> dict[str, Any]:
        http = http_client or request.app.state.cds.http_client
        url = iss.rstrip("/") + "/.well-known/smart-configuration"
        try:
            resp = await http.get(url, headers={"Accept": "application/json"}, timeout=5.0)
        except httpx.HTTPError as exc:
            raise SmartError(f"the EHR's SMART configuration could not be read ({type(exc).__name__})") from None
        if resp.status_code != 200 or len(resp.content) > MAX_ANSWER_BYTES:
            raise SmartError(f"the EHR's SMART configuration answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            raise SmartError("the EHR's SMART configuration is not JSON") from None
        allowed = {_origin(iss)} | {_origin(o) for o in client_for(iss).get("auth_origins", ())}  # type: ignore[union-attr]
        for key in ("authorization_endpoint", "token_endpoint"):
            value = doc.get(key) if isinstance(doc, dict) else None
            if not isinstance(value, str) or _origin(value) not in allowed:
                raise SmartError(f"the EHR's {key} is missing or on an origin this service is not configured for")
        return doc

    def refuse(message: str, status: int = 400) -> Response:
        return Response(f"SMART launch refused: {message}\n", status_code=status,
                        media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/smart/launch", include_in_schema=False)
    async def launch(request: Request, iss: str = "", launch: str = "") -> Response:
        client = client_for(iss) if iss else None
        if client is None:
            return refuse("iss is not an EHR this service is configured to launch from (smart.clients)")
        if not launch or len(launch) > 2048:
            return refuse("launch is missing")
        try:
            doc = await configuration(request, iss)
        except SmartError as exc:
            return refuse(str(exc), 502)
        state = make_state(secret, iss.rstrip("/"))
        params = {
            "response_type": "code", "client_id": client["client_id"], "redirect_uri": f"{base_url}/smart/callback",
            "launch": launch, "scope": "launch openid fhirUser", "state": state, "aud": iss,
            "code_challenge": pkce_challenge(pkce_verifier(secret, state)), "code_challenge_method": "S256",
        }
        return RedirectResponse(f"{doc['authorization_endpoint']}?{urlencode(params)}", status_code=302,
                                headers={"Cache-Control": "no-store"})

    @app.get("/smart/callback", include_in_schema=False)
    async def callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        if error:
            return refuse(f"the EHR did not authorise the launch ({error[:100]})", 403)
        iss = read_state(secret, state) if state else None
        client = client_for(iss) if iss else None
        if iss is None or client is None or not code:
            return refuse("the launch state is missing, forged or expired; open the card's link again")
        try:
            doc = await configuration(request, iss)
            http = http_client or request.app.state.cds.http_client
            resp = await http.post(doc["token_endpoint"], data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": f"{base_url}/smart/callback",
                "client_id": client["client_id"], "code_verifier": pkce_verifier(secret, state)},
                headers={"Accept": "application/json"}, timeout=5.0)
        except SmartError as exc:
            return refuse(str(exc), 502)
        except httpx.HTTPError as exc:
            return refuse(f"the EHR's token endpoint could not be reached ({type(exc).__name__})", 502)
        if resp.status_code != 200 or len(resp.content) > MAX_ANSWER_BYTES:
            return refuse(f"the EHR's token endpoint answered HTTP {resp.status_code}", 502)
        try:
            token_doc = resp.json()
        except ValueError:
            return refuse("the EHR's token endpoint answer is not JSON", 502)
        context = token_doc.get("appContext") if isinstance(token_doc, dict) else None
        if not isinstance(context, str) or verify_details_token(context, secret, datetime.now(UTC)) is None:
            return refuse("the EHR did not pass back this card's context (appContext), or it has expired", 404)
        return RedirectResponse(f"{base_url}/details/{context}", status_code=302,
                                headers={"Cache-Control": "no-store"})

