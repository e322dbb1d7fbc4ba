"""Client JWT verification at the HTTP level, log hygiene, CORS and configuration errors."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

import fhirfactory as F
from cds_hooks.app import create_app
from cds_hooks.settings import ConfigError, load_settings
from conftest import KEYS, make_settings

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_KEY = serialization.load_pem_private_key((KEYS / "sandbox" / "ecprivkey.pem").read_bytes(), password=None)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_ISS = "https://epic.example/interconnect"
LOCAL = json.loads((KEYS / "local" / "jwks.json").read_text())
PATHS = ["/cds-services", "/cds-services/ascvd-pce-10y", "/cds-services/ascvd-pce-10y/feedback"]


class Listener:
    """A loopback TCP listener that records whether anything connected (for 'no request was made')."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("security")
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    rsa_jwk.update(kid="rsa-1", alg="RS384", use="sig")
    sandbox_jwks = json.loads((KEYS / "sandbox" / "jwks.json").read_text())
    settings = make_settings(tmp, auth={"clients": [
        {"iss": "https://ehr.test/cds-client", "jwks": LOCAL},
        {"iss": SANDBOX_ISS, "jwks": sandbox_jwks, "development_only": True,
         "jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"]},
        {"iss": RSA_ISS, "jwks": {"keys": [rsa_jwk]}, "algorithms": ["RS384"]},
    ]}, cors={"allow_origins": ["https://sandbox.cds-hooks.org"]})
    with TestClient(create_app(settings)) as c:
        yield c


def claims(path: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": SANDBOX_ISS, "aud": f"http://testserver{path}", "exp": now + 300, "iat": now,
            "jti": str(uuid.uuid4())}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sandbox_token(path: str, headers: dict[str, Any] | None = None, **over: Any) -> str:
    head = {"typ": "JWT", "kid": SANDBOX_KID, "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}
    head.update(headers or {})
    return jwt.encode(claims(path, **over), SANDBOX_KEY, algorithm="ES384", headers=head)


def call(client: TestClient, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path == "/cds-services":
        return client.get(path, headers=headers)
    body = {"feedback": []} if path.endswith("feedback") else F.hook_request({})
    return client.post(path, json=body, headers=headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC-sign with the server's public key bytes (PyJWT refuses to, so by hand)."""
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': SANDBOX_KID})}.{_b64(payload)}"
    sig = base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{signing_input}.{sig.decode()}"


def bad_tokens(path: str, listener: Listener) -> dict[str, str | None]:
    now = int(time.time())
    public_pem = SANDBOX_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    good = sandbox_token(path)
    head, payload, sig = good.split(".")
    tampered_claims = claims(path)
    tampered_claims["iss"] = RSA_ISS
    replayed = sandbox_token(path)
    return {
        "no token": None,
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': SANDBOX_KID})}.{_b64(claims(path))}.",
        "HS256 with the public key": _hs256_with(public_pem, claims(path)),
        "wrong aud": sandbox_token(path, aud="http://testserver/other"),
        "wrong iss": sandbox_token(path, iss="https://evil.example"),
        "expired": sandbox_token(path, exp=now - 600, iat=now - 900),
        "nbf in the future": sandbox_token(path, nbf=now + 900),
        "unknown kid": sandbox_token(path, headers={"kid": "nope"}),
        "jku not on the allowlist": sandbox_token(path, headers={
            "kid": "other", "jku": f"http://127.0.0.1:{listener.port}/jwks.json"}),
        "tampered payload": f"{head}.{_b64(tampered_claims)}.{sig}",
        "missing jti": sandbox_token(path, jti=None),
        "missing exp": sandbox_token(path, exp=None),
        "replayed jti": replayed,
        "__replay_first_use__": replayed,
    }


@pytest.mark.parametrize("path", PATHS)
def test_jwt_battery_is_a_bare_401(client: TestClient, listener: Listener, path: str) -> None:
    tokens = bad_tokens(path, listener)
    first_use = call(client, path, tokens.pop("__replay_first_use__"))
    assert first_use.status_code != 401  # the first use of the jti is fine …
    for case, token in tokens.items():
        resp = call(client, path, token)
        assert resp.status_code == 401, case  # … its replay and every other case are refused
        assert resp.content == b"", case
    assert listener.connections == 0  # the unlisted jku was never fetched


def test_valid_es384_and_rs384_are_accepted(client: TestClient) -> None:
    path = "/cds-services"
    assert call(client, path, sandbox_token(path)).status_code == 200
    rs = jwt.encode(claims(path, iss=RSA_ISS, sub="epic-client", nbf=int(time.time())), RSA_KEY, algorithm="RS384",
                    headers={"kid": "rsa-1", "typ": "JWT"})
    assert call(client, path, rs).status_code == 200
    # the RS384 client may not use ES384, even with a key it could find
    assert call(client, path, sandbox_token(path, iss=RSA_ISS)).status_code == 401


def test_audience_uses_the_configured_public_base_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"public_base_url": "https://cds.example.org/base"},
                             auth={"clients": [{"iss": SANDBOX_ISS, "jwks": json.loads(
                                 (KEYS / "sandbox" / "jwks.json").read_text())}]})
    with TestClient(create_app(settings)) as c:
        external = jwt.encode(claims("/", aud="https://cds.example.org/base/cds-services"), SANDBOX_KEY,
                              algorithm="ES384", headers={"kid": SANDBOX_KID, "typ": "JWT"})
        internal = sandbox_token("/cds-services")
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {external}"}).status_code == 200
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {internal}"}).status_code == 401


def test_no_token_or_patient_name_in_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = "/cds-services/ascvd-pce-10y"
    record = F.pce_record()
    record[0]["name"] = [{"family": "Zyxwvutsson", "given": ["Qwertina"]}]
    from cds_hooks.bundle_prefetch import prefetch_from_resources

    templates = next(s for s in client.get("/cds-services", headers={
        "Authorization": f"Bearer {sandbox_token('/cds-services')}"}).json()["services"])["prefetch"]
    prefetch = prefetch_from_resources(templates, record, {"patientId": "p1", "userId": "Practitioner/x"})
    token = sandbox_token(path)
    body = F.hook_request(prefetch, fhirServer="https://launch.example/fhir", fhirAuthorization={
        "access_token": "SECRET-ACCESS-TOKEN-123", "token_type": "Bearer", "expires_in": 300, "scope": "s",
        "subject": "x"})
    client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})  # fhirServer not allowed: 403
    client.post(path, json=F.hook_request(prefetch), headers={"Authorization": f"Bearer {token}"})  # replay: 401
    ok = client.post(path, json=F.hook_request(prefetch), headers={"Authorization": f"Bearer {sandbox_token(path)}"})
    assert ok.status_code == 200
    client.post(path, json=F.hook_request(None), headers={"Authorization": f"Bearer {sandbox_token(path)}"})  # 412
    text = caplog.text
    for secret in ("SECRET-ACCESS-TOKEN-123", token, token.split(".")[1], "Zyxwvutsson", "Qwertina"):
        assert secret not in text


def test_cors_preflight_from_the_sandbox(client: TestClient) -> None:
    resp = client.options("/cds-services/ascvd-pce-10y", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()
    other = client.options("/cds-services", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


def test_shipped_development_configuration_allows_the_sandbox_origin() -> None:
    settings = load_settings(Path(__file__).resolve().parent.parent / "config" / "development.toml")
    assert "https://sandbox.cds-hooks.org" in settings.cors.allow_origins
    assert settings.auth.enabled
    assert any(c.iss == SANDBOX_ISS and c.development_only for c in settings.auth.clients)


@pytest.mark.parametrize(("override", "message"), [
    ({"server": {"port": 70000}}, "server.port"),
    ({"store": {"hmac_secret": "short"}}, "store.hmac_secret"),
    ({"auth": {"clients": [{"iss": "x", "jwks": {"keys": []}, "algorithms": ["HS256"]}]}}, "never allowed"),
    ({"prefetch": {"deadline_seconds": 0}}, "prefetch.deadline_seconds"),
])
def test_configuration_errors_name_the_setting(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_settings(tmp_path, **override)


def test_unreadable_jwks_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"clients": [{"iss": "x", "jwks_file": str(tmp_path / "missing.json")}]})
    with pytest.raises(ConfigError, match=r"jwks_file: cannot read"):
        settings.auth_settings()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_ONNX_SERVER__PORT", "9123")
    settings = load_settings(Path(__file__).resolve().parent.parent / "config" / "development.toml")
    assert settings.server.port == 9123


def test_disabling_auth_is_explicit_and_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert make_settings(tmp_path).auth.enabled  # the default
    caplog.set_level(logging.WARNING)
    settings = make_settings(tmp_path, auth={"enabled": False})
    assert not settings.auth.enabled
    assert "authentication is DISABLED" in caplog.text
    with TestClient(create_app(settings)) as c:
        assert c.get("/cds-services").status_code == 200
