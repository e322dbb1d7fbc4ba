"""Opaque, short-lived, unguessable links to one prediction's details page.

The token carries the prediction id and an expiry, authenticated with an HMAC under the store's secret: it names no
patient, cannot be forged or extended, and stops working when it expires. A tampered, expired or unknown token is
simply "not found".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid
from datetime import datetime

_MAC_BYTES = 16
_DOMAIN = b"cds-onnx details link v1"


def details_token(prediction_id: str, secret: bytes, now: datetime, ttl_seconds: int) -> str:
    """A URL-safe token for the prediction, valid for ttl_seconds from now."""
    expires = int(now.timestamp()) + int(ttl_seconds)
    body = uuid.UUID(prediction_id).bytes + struct.pack(">Q", expires)
    mac = hmac.new(secret, _DOMAIN + body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).decode("ascii").rstrip("=")


def verify_details_token(token: str, secret: bytes, now: datetime) -> str | None:
    """The prediction id the token names, or None when it is malformed, tampered with or expired."""
    if not isinstance(token, str) or not 40 <= len(token) <= 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != 16 + 8 + _MAC_BYTES:
        return None
    body, mac = raw[:24], raw[24:]
    expected = hmac.new(secret, _DOMAIN + body, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    (expires,) = struct.unpack(">Q", body[16:])
    if now.timestamp() > expires:
        return None
    return str(uuid.UUID(bytes=body[:16]))
