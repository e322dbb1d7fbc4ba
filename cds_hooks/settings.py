"""Service configuration: one TOML file, overridable by environment variables, validated at start-up.

Environment variables use the prefix CDS_ONNX_ and `__` between levels, e.g. CDS_ONNX_SERVER__PORT=9000 or
CDS_ONNX_STORE__URL=postgresql+psycopg://…; they win over the file. A bad value stops start-up with a message naming
the setting.
"""

from __future__ import annotations

import json
import logging
import tomllib
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

    @field_validator("public_base_url")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return _base_url(value)


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


class StoreSettings(_Section):
    url: str = "sqlite:///var/cds-onnx.sqlite3"
    hmac_secret: str = Field(default="", repr=False, validate_default=True)  # pseudonymisation key; required
    spool_dir: Path = Path("var/spool")
    retention_days: int = Field(default=730, gt=0)
    queue_size: int = Field(default=10_000, gt=0)

    @field_validator("hmac_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(value) < 16:
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
    store: StoreSettings
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


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate; ConfigError names the bad setting."""
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
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path or 'configuration'}: {where}: {err['msg']}") from exc
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
