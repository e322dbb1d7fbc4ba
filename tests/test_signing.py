"""Local ES384 keys: generate, load, mint, and verify with the service's own authenticator."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import jwt
import pytest

from cds_hooks.auth import AuthError, AuthSettings, ClientAuthenticator, TrustedClient
from cds_hooks.signing import generate_keypair, jwk_thumbprint, load_local_key, mint_token

AUD = "http://127.0.0.1:8000/cds-services/ascvd-pce"
ISS = "https://cds-onnx.local/cli"
FIXTURE = Path(__file__).parent / "fixtures" / "keys" / "local"


def _authenticator(jwks: dict, **client: object) -> ClientAuthenticator:
    return ClientAuthenticator(AuthSettings(clients=(TrustedClient(iss=ISS, jwks=jwks, **client),)))  # type: ignore[arg-type]


async def test_generate_load_mint_verify_round_trip(tmp_path: Path) -> None:
    generated = generate_keypair(tmp_path / "keys", kid="k-1")
    loaded = load_local_key(tmp_path / "keys")
    assert loaded.kid == "k-1"
    assert loaded.public_jwk == generated.public_jwk
    published = json.loads((tmp_path / "keys" / "jwks.json").read_text())
    token = mint_token(loaded, ISS, AUD, extra={"tenant": "t1", "sub": "cli"})
    identity = await _authenticator(published, tenants=("t1",)).verify(f"Bearer {token}", AUD)
    assert (identity.iss, identity.tenant, identity.sub) == (ISS, "t1", "cli")


def test_token_header_and_claims(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path)
    token = mint_token(key, ISS, AUD, lifetime_seconds=120, jku="https://cds-onnx.local/jwks.json", now=1_000)
    assert jwt.get_unverified_header(token) == {
        "alg": "ES384",
        "typ": "JWT",
        "kid": key.kid,
        "jku": "https://cds-onnx.local/jwks.json",
    }
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "exp", "iat", "jti"}
    assert (claims["iss"], claims["aud"], claims["iat"], claims["exp"]) == (ISS, AUD, 1_000, 1_120)
    assert "jku" not in jwt.get_unverified_header(mint_token(key, ISS, AUD))
    assert claims["jti"] != jwt.decode(mint_token(key, ISS, AUD, now=1_000), options={"verify_signature": False})["jti"]


async def test_token_from_another_key_is_rejected(tmp_path: Path) -> None:
    trusted = generate_keypair(tmp_path / "a", kid="same-kid")
    impostor = generate_keypair(tmp_path / "b", kid="same-kid")
    with pytest.raises(AuthError, match="signature"):
        await _authenticator(trusted.jwks).verify(f"Bearer {mint_token(impostor, ISS, AUD)}", AUD)


def test_private_key_file_is_owner_only(tmp_path: Path) -> None:
    generate_keypair(tmp_path)
    assert stat.S_IMODE((tmp_path / "private.pem").stat().st_mode) == 0o600


def test_jwks_has_only_public_parts(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path)
    document = json.loads((tmp_path / "jwks.json").read_text())
    assert len(document["keys"]) == 1
    jwk = document["keys"][0]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-384", "ES384", "sig")
    assert "PRIVATE" not in (tmp_path / "jwks.json").read_text()
    assert jwk["kid"] == key.kid == jwk_thumbprint(jwk)  # default kid: RFC 7638 thumbprint


def test_thumbprint_matches_rfc7638_canonical_form() -> None:
    jwk = {"kty": "EC", "crv": "P-384", "x": "AAA", "y": "BBB", "kid": "ignored"}
    expected = base64.urlsafe_b64encode(
        hashlib.sha256(b'{"crv":"P-384","kty":"EC","x":"AAA","y":"BBB"}').digest()
    ).rstrip(b"=")
    assert jwk_thumbprint(jwk) == expected.decode()


def test_existing_key_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path, kid="one")
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path, kid="two")
    assert load_local_key(tmp_path).public_jwk == first.public_jwk
    second = generate_keypair(tmp_path, kid="two", overwrite=True)
    assert load_local_key(tmp_path).public_jwk == second.public_jwk
    assert stat.S_IMODE((tmp_path / "private.pem").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwks.json", "private.pem"]


def test_committed_fixture_key_loads() -> None:
    key = load_local_key(FIXTURE)
    assert key.kid == "cds-onnx-test-local"


def test_load_rejects_mismatched_or_missing_files(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "a")
    generate_keypair(tmp_path / "b")
    (tmp_path / "a" / "jwks.json").write_text((tmp_path / "b" / "jwks.json").read_text())
    with pytest.raises(ValueError, match="public half"):
        load_local_key(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"private\.pem"):
        load_local_key(tmp_path / "missing")
    (tmp_path / "b" / "jwks.json").write_text("{}")
    with pytest.raises(ValueError, match="keys"):
        load_local_key(tmp_path / "b")


def test_mint_rejects_bad_arguments(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path)
    with pytest.raises(ValueError, match="exp"):
        mint_token(key, ISS, AUD, extra={"exp": 1})
    with pytest.raises(ValueError, match="lifetime_seconds"):
        mint_token(key, ISS, AUD, lifetime_seconds=0)
    with pytest.raises(ValueError, match="aud"):
        mint_token(key, ISS, "")
