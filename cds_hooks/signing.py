"""Local ES384 signing keys and CDS client token minting.

The service sometimes acts as a CDS client itself: `cds-onnx invoke` and the preview page call services with a JWT,
and `cds-onnx keys generate` creates the key pair an operator registers with this (or another) CDS service. A key
directory holds `private.pem` (PKCS#8, mode 0600) and `jwks.json` (the public JWK Set to publish or configure).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES384"
PRIVATE_KEY_FILE = "private.pem"
JWKS_FILE = "jwks.json"
RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "jti"})


@dataclass(frozen=True)
class LocalKey:
    """An ES384 key pair loaded from (or written to) a key directory."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_jwk: dict[str, Any]

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWK Set containing only this key."""
        return {"keys": [dict(self.public_jwk)]}


def _public_jwk(private_key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    public = {name: jwk[name] for name in ("kty", "crv", "x", "y")}
    return public | {"kid": kid, "use": "sig", "alg": ALGORITHM}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an EC public JWK, base64url without padding."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
    if not overwrite:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)  # O_CREAT's mode is filtered by the umask
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".private-", suffix=".pem")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_keypair(directory: Path, kid: str | None = None, *, overwrite: bool = False) -> LocalKey:
    """Create a P-384 key pair in `directory` (created if needed). `kid` defaults to the RFC 7638 thumbprint.

    Refuses (FileExistsError) to replace an existing private key unless `overwrite` is set.
    """
    directory = Path(directory)
    if kid is not None and (not isinstance(kid, str) or not kid.strip()):
        raise ValueError("kid must be a non-empty string")
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} already exists; pass overwrite=True to replace the key")
    private_key = ec.generate_private_key(ec.SECP384R1())
    kid = kid or jwk_thumbprint(_public_jwk(private_key, ""))
    key = LocalKey(kid=kid, private_key=private_key, public_jwk=_public_jwk(private_key, kid))
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(private_path, pem, overwrite)
    (directory / JWKS_FILE).write_text(json.dumps(key.jwks, indent=2) + "\n", encoding="utf-8")
    return key


def load_local_key(directory: Path) -> LocalKey:
    """Load the key pair from `directory`; the kid comes from `jwks.json`, which must match the private key."""
    directory = Path(directory)
    private_path = directory / PRIVATE_KEY_FILE
    jwks_path = directory / JWKS_FILE
    try:
        private_key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise FileNotFoundError(f"{private_path}: private key file not found") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{private_path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(private_key.curve, ec.SECP384R1):
        raise ValueError(f"{private_path}: key must be an EC P-384 private key for {ALGORITHM}")
    try:
        document = json.loads(jwks_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{jwks_path}: JWK Set file not found") from None
    except ValueError as exc:
        raise ValueError(f"{jwks_path}: not valid JSON ({exc})") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not isinstance(keys[0], dict):
        raise ValueError(f"{jwks_path}: field 'keys' must be a non-empty list of JWK objects")
    kid = keys[0].get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError(f"{jwks_path}: field 'keys[0].kid' must be a non-empty string")
    public_jwk = _public_jwk(private_key, kid)
    if (keys[0].get("x"), keys[0].get("y")) != (public_jwk["x"], public_jwk["y"]):
        raise ValueError(f"{jwks_path}: field 'keys[0]' is not the public half of {private_path}")
    return LocalKey(kid=kid, private_key=private_key, public_jwk=public_jwk)


def mint_token(
    key: LocalKey,
    iss: str,
    aud: str,
    lifetime_seconds: int = 300,
    extra: dict[str, Any] | None = None,
    jku: str | None = None,
    *,
    now: float | None = None,
) -> str:
    """A CDS Hooks client JWT: ES384, header alg/typ/kid[/jku], claims iss/aud/exp/iat/jti plus `extra`
    (e.g. `tenant`, `sub`; it may not override the standard claims)."""
    if not iss:
        raise ValueError("iss must be a non-empty string")
    if not aud:
        raise ValueError("aud must be a non-empty string")
    if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int) or lifetime_seconds <= 0:
        raise ValueError("lifetime_seconds must be a positive integer")
    clashes = sorted(RESERVED_CLAIMS.intersection(extra or {}))
    if clashes:
        raise ValueError(f"extra must not set standard claims: {', '.join(clashes)}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = dict(extra or {})
    claims.update(iss=iss, aud=aud, iat=issued, exp=issued + lifetime_seconds, jti=str(uuid.uuid4()))
    headers: dict[str, Any] = {"typ": "JWT", "kid": key.kid}
    if jku is not None:
        headers["jku"] = jku
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)
