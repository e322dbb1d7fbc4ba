"""Service configuration: one TOML file, overridable by environment variables, validated at start-up.

Environment variables use the prefix CDS_ONNX_ and `__` between levels, e.g. CDS_ONNX_SERVER__PORT=9000 or
CDS_ONNX_STORE__URL=postgresql+psycopg://…; they win over the file. A bad value stops start-up with a message naming
the setting.

Which file: `--config FILE`, else the file named by CDS_ONNX_CONFIG, else `cds-onnx.toml` in the working directory,
else — only when cds-onnx runs from its source checkout — the checkout's `config/development.toml`, else none (the
built-in defaults and the environment). Relative paths in a file resolve against the file's folder, so every command
works from any folder (`find_config`).
"""

from __future__ import annotations

import ipaddress

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cds_hooks.auth import AuthSettings, TrustedClient

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str | None = None  # external base URL: JWT `aud` and card links (never taken from requests)
    max_body_bytes: int = Field(default=8_000_000, gt=1024)  # every route: larger bodies get 413
    # who may frame the HTML pages (model cards, preview): CSP frame-ancestors sources; empty means 'none'
    frame_ancestors: list[str] = []
    # a service call's mapping, inference, rendering and journal sync in a worker thread instead of on the event loop
    call_stages_in_thread: bool = False
    # reverse proxies (IP addresses or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto may replace the peer
    # address and scheme; empty (the default): those headers are ignored whoever sends them
    forwarded_allow_ips: list[str] = []

    @field_validator("public_base_url")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return _base_url(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            try:
                out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR network (a proxy's address; \"*\" and "
                                 "host names are not accepted)") from None
        return out


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _base_url(value: str) -> str:
    """A configured base URL: http(s), a host, no query or fragment; trailing slashes dropped."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must start with http:// or https:// and name a host")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError("must not contain a query or fragment")
    return value.strip().rstrip("/")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class ModelsSettings(_Section):
    root: Path = Path("models")
    # Open Inference Protocol v2 base URLs (KServe, Triton) that a model folder's `backend:` may name; a URL not
    # listed here is never called (docs/timeline-models.md)
    remote_backends: list[str] = []

    @field_validator("remote_backends")
    @classmethod
    def _backends(cls, values: list[str]) -> list[str]:
        return [_base_url(v) for v in values]


class StoreSettings(_Section):
    url: str = "sqlite:///var/cds-onnx.sqlite3"
    hmac_secret: str = Field(default="", repr=False)  # pseudonymisation key; required by whatever opens the store
    spool_dir: Path = Path("var/spool")
    retention_days: int = Field(default=730, gt=0)
    queue_size: int = Field(default=10_000, gt=0)

    @field_validator("hmac_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and len(value) < 16:  # unset ("") is refused by load_settings when the store is needed
            raise ValueError("must be at least 16 characters (set CDS_ONNX_STORE__HMAC_SECRET)")
        return value


class PrefetchSettings(_Section):
    deadline_seconds: float = Field(default=0.8, gt=0, le=30)
    max_pages: int = Field(default=5, ge=1, le=100)
    max_connections: int = Field(default=20, ge=1)
    max_response_bytes: int = Field(default=20_000_000, ge=1024)  # bytes read from a FHIR server per response


class ClientSettings(_Section):
    iss: str
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None
    jku_allowlist: list[str] = []
    fhir_servers: list[str] = []
    tenants: list[str] = []
    algorithms: list[str] = ["ES384", "RS384"]
    development_only: bool = False  # e.g. the public CDS Hooks sandbox key: anyone can sign with it

    @model_validator(mode="after")
    def _keys(self) -> ClientSettings:
        if self.jwks is None and self.jwks_file is None and not self.jku_allowlist:
            raise ValueError(f"client {self.iss}: give jwks, jwks_file or jku_allowlist")
        bad = [a for a in self.algorithms if a == "none" or a.startswith("HS")]
        if bad:
            raise ValueError(f"client {self.iss}: algorithm {bad[0]} is never allowed")
        return self


class AuthConfig(_Section):
    enabled: bool = True
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    max_token_lifetime_seconds: int = Field(default=3600, gt=0)
    clients: list[ClientSettings] = []
    anonymous_fhir_servers: list[str] = []  # FHIR servers callers may name when auth is disabled (local experiments)
    # Base URLs a client JWT's `aud` may name (each + the exact path called), besides server.public_base_url.
    accepted_audiences: list[str] = []
    # Replay cache: unset = the store's database (shared by every process using it); or redis://, rediss://, unix://
    replay_cache_url: str | None = Field(default=None, repr=False)

    @field_validator("accepted_audiences")
    @classmethod
    def _audiences(cls, values: list[str]) -> list[str]:
        return [_base_url(v) for v in values]

    @field_validator("replay_cache_url")
    @classmethod
    def _replay_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (unset: the store's database)")
        return value


class CorsSettings(_Section):
    allow_origins: list[str] = []
    allow_origin_regex: str | None = None
    # answer Private Network Access preflights (Access-Control-Allow-Private-Network: true) for allowed origins,
    # so browser clients on public origins may call a service on a local address
    allow_private_network: bool = False


class SmartClientSettings(_Section):
    """An EHR that may launch the details view as a SMART app (its FHIR base URL is the launch's `iss`)."""

    iss: str
    client_id: str
    auth_origins: list[str] = []  # origins of its authorization/token endpoints besides the FHIR server's own


class SmartSettings(_Section):
    """SMART App Launch of the details view: with clients configured, cards also carry a `type: smart` link."""

    clients: list[SmartClientSettings] = []


class ServicesSettings(_Section):
    """Which services discovery lists. By default one per clinical question and hook (the manifest's `question`,
    lowest `question_rank`), so an EHR never shows two numbers for one risk; `listed` names services to list as
    well (or instead, with `one_per_question = false`)."""

    one_per_question: bool = True
    listed: list[str] = []


class CardsSettings(_Section):
    smart_app_url: str | None = None
    # per service, the lowest category that gets a card (e.g. {"ascvd-pce-10y" = "intermediate"}); predictions
    # below it are still made and recorded, they just do not interrupt the clinician
    min_category: dict[str, str] = {}
    details_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=7 * 24 * 3600)  # life of a card's details link


class MappingSettings(_Section):
    """How records are read. `time_zone` (IANA name, e.g. "America/Chicago") is the patients' local zone: ages are
    counted on the local date and vital-sign times shown in it. Unset: the offset of the record's newest timestamp
    (EHRs write local offsets), else UTC."""

    time_zone: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"'{value}' is not an IANA time zone name (e.g. America/New_York)") from exc
        return value


class PreviewSettings(_Section):
    """The card preview page (/preview): off unless enabled; it mints tokens with the local developer key."""

    enabled: bool = False
    key_dir: Path = Path("var/keys")
    issuer: str = "cds-onnx-cli"
    allow_remote: bool = False  # serve the preview's token endpoint to non-loopback clients (never in production)
    # origins (scheme://host[:port]) the preview page may be served from, besides server.public_base_url and the
    # listen address; a token request whose Origin/Referer names another origin is refused
    allowed_origins: list[str] = []


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_ONNX_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = ServerSettings()
    models: ModelsSettings = ModelsSettings()
    store: StoreSettings = StoreSettings()
    prefetch: PrefetchSettings = PrefetchSettings()
    auth: AuthConfig = AuthConfig()
    cors: CorsSettings = CorsSettings()
    cards: CardsSettings = CardsSettings()
    services: ServicesSettings = ServicesSettings()
    smart: SmartSettings = SmartSettings()
    mapping: MappingSettings = MappingSettings()
    preview: PreviewSettings = PreviewSettings()
    base_dir: Path = Path(".")  # relative paths in the file are relative to the file's folder

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # environment wins over the file

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.base_dir / value)

    def audience_bases(self) -> list[str]:
        """The base URLs this service answers as, from configuration only (never from a request's Host or
        X-Forwarded-* headers): `server.public_base_url`, then `auth.accepted_audiences`; when neither is set, the
        listen address `http://{server.host}:{server.port}` (for a loopback or wildcard host also its 127.0.0.1,
        localhost and [::1] spellings). The first is the one card links use."""
        bases = ([self.server.public_base_url] if self.server.public_base_url else []) + self.auth.accepted_audiences
        if not bases:
            host, port = self.server.host.strip(), self.server.port
            if host in _LOOPBACK_HOSTS or host in _WILDCARD_HOSTS:
                first = host if host in _LOOPBACK_HOSTS else "127.0.0.1"
                bases = [f"http://{_url_host(h)}:{port}" for h in (first, *_LOOPBACK_HOSTS)]
            else:
                bases = [f"http://{_url_host(host)}:{port}"]
        return list(dict.fromkeys(bases))

    def store_url(self) -> str:
        """The database URL with a relative SQLite path made absolute (relative to the configuration file)."""
        prefix = "sqlite:///"
        url = self.store.url
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            db_path = self.path(Path(url[len(prefix):])).resolve()
            db_path.parent.mkdir(parents=True, exist_ok=True)
            return prefix + str(db_path)
        return url

    def auth_settings(self) -> AuthSettings:
        clients = []
        for c in self.auth.clients:
            jwks = c.jwks
            if c.jwks_file is not None:
                jwks_path = self.path(c.jwks_file)
                try:
                    jwks = json.loads(jwks_path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"auth.clients[{c.iss}].jwks_file: cannot read {jwks_path}: {exc}") from exc
            if c.development_only:
                log.warning("Trusting development-only client %s: anyone can sign as it. Never use in production.",
                            c.iss)
            clients.append(TrustedClient(iss=c.iss, jwks=jwks, jku_allowlist=tuple(c.jku_allowlist),
                                         fhir_servers=tuple(c.fhir_servers), tenants=tuple(c.tenants),
                                         algorithms=tuple(c.algorithms)))
        return AuthSettings(enabled=self.auth.enabled, clients=tuple(clients),
                            clock_skew_seconds=self.auth.clock_skew_seconds,
                            max_token_lifetime_seconds=self.auth.max_token_lifetime_seconds)


CONFIG_ENV = "CDS_ONNX_CONFIG"  # names the configuration file when --config is not given
LOCAL_CONFIG = "cds-onnx.toml"  # the configuration file of the working directory
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the source checkout, when running from one
SANDBOX_HOST = "sandbox.cds-hooks.org"
# The public CDS Hooks sandbox's published P-384 signing key (its private half is public too: anyone can sign as it)
SANDBOX_KEY_X = "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB"


@dataclass(frozen=True)
class ConfigChoice:
    """The configuration file a command uses (None: built-in defaults and the environment) and why that one."""

    path: Path | None
    origin: str  # "--config", "CDS_ONNX_CONFIG", "./cds-onnx.toml", "source checkout", "built-in defaults"

    def describe(self) -> str:
        if self.path is None:
            return "the built-in defaults and CDS_ONNX_ environment variables (no configuration file found)"
        return f"{self.path} (from {self.origin})"


def source_checkout_config() -> Path | None:
    """config/development.toml of the source checkout cds-onnx runs from; None for an installed package."""
    candidate = SOURCE_ROOT / "config" / "development.toml"
    if candidate.is_file() and (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "cds_hooks").is_dir():
        return candidate
    return None


def find_config(explicit: Path | None = None, *, cwd: Path | None = None,
                environ: Mapping[str, str] | None = None) -> ConfigChoice:
    """--config, else CDS_ONNX_CONFIG, else ./cds-onnx.toml, else the source checkout's development configuration,
    else none. The file is not read here (a named file that does not exist is the caller's error to report)."""
    if explicit is not None:
        return ConfigChoice(explicit, "--config")
    named = (os.environ if environ is None else environ).get(CONFIG_ENV, "").strip()
    if named:
        return ConfigChoice(Path(named), CONFIG_ENV)
    local = (cwd or Path.cwd()) / LOCAL_CONFIG
    if local.is_file():
        return ConfigChoice(local, f"./{LOCAL_CONFIG}")
    development = source_checkout_config()
    if development is not None:
        return ConfigChoice(development, "the source checkout's development configuration")
    return ConfigChoice(None, "built-in defaults")


def public_key_clients(settings: Settings) -> list[str]:
    """The trusted clients whose signing key is public (the CDS Hooks sandbox, or any marked development_only),
    each described as `auth.clients[i] (iss …): why`. A service trusting one accepts calls anyone can sign."""
    found = []
    for i, client in enumerate(settings.auth.clients):
        reasons = []
        if client.development_only:
            reasons.append("is marked development_only")
        if urlsplit(client.iss).hostname == SANDBOX_HOST:
            reasons.append("is the public CDS Hooks sandbox")
        if any(urlsplit(url).hostname == SANDBOX_HOST for url in client.jku_allowlist):
            reasons.append(f"fetches keys from {SANDBOX_HOST}")
        keys = (client.jwks or {}).get("keys", [])
        if client.jwks_file is not None:
            try:
                keys = keys + json.loads(settings.path(client.jwks_file).read_text(encoding="utf-8")).get("keys", [])
            except (OSError, ValueError, AttributeError):
                pass  # an unreadable file is reported by auth_settings()
        if any(isinstance(k, dict) and k.get("x") == SANDBOX_KEY_X for k in keys):
            reasons.append("holds the sandbox's published signing key")
        if reasons:
            found.append(f"auth.clients[{i}] (iss {client.iss}) {' and '.join(reasons)}")
    return found


def load_settings(path: Path | None = None, *, need_store: bool = True, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate; ConfigError names the bad setting.

    `need_store=False` for commands that never open the store (e.g. `models validate`): an unset
    store.hmac_secret is then not an error."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        data.setdefault("base_dir", str(path.parent.resolve()))
    merge_dicts(data, overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        from inference.problems import field_path, plain_error

        errors = exc.errors(include_url=False)
        parts = []
        for err in errors:
            problem, fix = plain_error(err, Settings)
            parts.append(f"{field_path(err['loc'])}: {problem} — {fix}")
        raise ConfigError(f"{path or 'configuration'}: {'; '.join(parts)}") from exc
    if need_store and not settings.store.hmac_secret:
        raise ConfigError(f"{path or 'configuration'}: store.hmac_secret: not set — set hmac_secret in the [store] "
                          "table or CDS_ONNX_STORE__HMAC_SECRET (a secret of at least 16 characters)")
    if (settings.server.host.strip() in _WILDCARD_HOSTS and not settings.server.public_base_url
            and not settings.auth.accepted_audiences):
        log.warning("server.host %s listens on every interface but server.public_base_url is not set: client JWTs "
                    "are accepted only for %s", settings.server.host, ", ".join(settings.audience_bases()))
    if not settings.auth.enabled:
        log.warning("Client authentication is DISABLED: any caller can use this service. For local experiments only.")
    return settings


def merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge `extra` into `base` (nested tables merge; other values replace)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_dicts(base[key], value)
        else:
            base[key] = value
