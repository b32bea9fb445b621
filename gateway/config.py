"""Typed configuration, read once: a YAML file plus ``CGT_GATEWAY_*`` environment overrides.

Precedence (highest first): keyword arguments to :func:`load_settings`, environment variables
(``CGT_GATEWAY_DATABASE_URL``, ``CGT_GATEWAY_PORT``, ...; nested fields with ``__``), the YAML file
named by ``config`` / ``CGT_GATEWAY_CONFIG`` (default: the packaged demo configuration), defaults.
Nothing else in the gateway reads ``os.environ``.

Relative paths in the YAML file (site profiles) are resolved against the file's directory.
API tokens are never stored in clear: the file holds their SHA-256 (tokens are high-entropy).
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mappings.milestones import Milestones

__all__ = [
    "DEMO_CONFIG",
    "POLICY_STAGES",
    "AutoUntil",
    "SiteRequestRule",
    "SiteRequestPolicy",
    "ProductConfig",
    "ManufacturerConfig",
    "SiteConfig",
    "ApiClientConfig",
    "OAuthClientConfig",
    "CertificationConfig",
    "Settings",
    "load_settings",
    "hash_token",
    "parse_role",
]

DEMO_CONFIG = Path(__file__).parent / "demo" / "gateway.yaml"
_ROLE = re.compile(r"^(manufacturer|site):([A-Za-z0-9][A-Za-z0-9._\-]*)$|^admin$")


def hash_token(token: str) -> str:
    """The stored form of a bearer token (hex SHA-256; tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_role(role: str) -> tuple[Literal["manufacturer", "site", "admin"], str | None]:
    """``manufacturer:acme-bio`` -> (``manufacturer``, ``acme-bio``); ``admin`` -> (``admin``, None)."""
    match = _ROLE.match(role)
    if not match:
        raise ValueError(f"role must be manufacturer:<id>, site:<id> or admin, not {role!r}")
    if role == "admin":
        return "admin", None
    kind = match.group(1)
    if kind == "manufacturer":
        return "manufacturer", match.group(2)
    assert kind == "site"
    return "site", match.group(2)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The order statuses a policy's ``auto_until`` may name: the lifecycle's stages, in order (the side
#: states on_hold, cancelled and failed are not stages).
POLICY_STAGES: tuple[str, ...] = (
    "placed", "confirmed", "apheresis_scheduled", "collected", "manufacturing", "manufactured", "released",
    "shipped", "received", "infusion_scheduled", "infused")


class AutoUntil(_Config):
    """Decided automatically while the order's lifecycle stage is at or before ``auto_until``."""

    auto_until: str

    @field_validator("auto_until")
    @classmethod
    def _a_stage(cls, value: str) -> str:
        if value not in POLICY_STAGES:
            raise ValueError(f"{value!r} is not a stage of the order lifecycle; "
                             f"one of {', '.join(POLICY_STAGES)}")
        return value


#: ``auto`` (the gateway applies it), ``manufacturer`` (the manufacturer decides) or ``{auto_until: X}``.
SiteRequestRule = Literal["auto", "manufacturer"] | AutoUntil


class SiteRequestPolicy(_Config):
    """A product's policy for site requests (issue 13), by request kind.  Absent keys: ``release_hold``
    follows ``hold``, ``change`` follows ``reschedule``, ``infused`` is ``auto``, the others
    ``manufacturer``.  ``order_number`` is always automatic (it changes nothing in the order's
    lifecycle) and cannot be configured."""

    cancel: SiteRequestRule | None = None
    hold: SiteRequestRule | None = None
    release_hold: SiteRequestRule | None = None
    reschedule: SiteRequestRule | None = None
    change: SiteRequestRule | None = None
    infused: SiteRequestRule | None = None

    @field_validator("cancel", "hold", "release_hold", "reschedule", "change", "infused", mode="wrap")
    @classmethod
    def _one_error(cls, value: Any, handler: Any) -> Any:
        """One clear error for a bad rule (instead of one per member of the union)."""
        if value is None or value in ("auto", "manufacturer") or isinstance(value, AutoUntil):
            return handler(value)
        if isinstance(value, dict) and set(value) == {"auto_until"}:
            return AutoUntil.model_validate(value)
        shown = repr(value)[:200]
        raise ValueError(f"must be 'auto', 'manufacturer' or {{auto_until: <order status>}}, not {shown}")

    def rule(self, kind: str) -> SiteRequestRule:
        """The rule for a request ``kind`` with the defaults applied."""
        if kind == "order_number":
            return "auto"
        value = getattr(self, kind, None)
        if value is not None:
            return value  # type: ignore[no-any-return]
        if kind == "release_hold":
            return self.rule("hold")
        if kind == "change":
            return self.rule("reschedule")
        if kind == "infused":
            return "auto"
        return "manufacturer"


class ProductConfig(_Config):
    """A manufacturer's product. ``coi_pattern`` (a regular expression) is required for the
    ``manufacturer`` CoI format and ignored for ``isbt128``; ``shelf_life_days`` bounds the
    ``expires_at`` a ``manufacturing.completed`` event may declare; ``site_requests`` is the policy for
    the changes sites ask for (see :class:`SiteRequestPolicy` and ``docs/site-requests.md``)."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$", max_length=64)
    name: str
    autologous: bool = True
    coi_format: Literal["isbt128", "manufacturer"]
    coi_pattern: str | None = None
    shelf_life_days: int = Field(gt=0)
    site_requests: SiteRequestPolicy = Field(default_factory=SiteRequestPolicy)
    # Milestone alerts (issue 16, docs/alerts.md): absent, the product raises no milestone alert.
    milestones: Milestones | None = None

    @model_validator(mode="after")
    def _pattern_for_manufacturer_format(self) -> ProductConfig:
        if self.coi_format == "manufacturer":
            if not self.coi_pattern:
                raise ValueError("coi_pattern is required when coi_format is 'manufacturer'")
            try:
                re.compile(self.coi_pattern)
            except re.error as exc:
                raise ValueError(f"coi_pattern is not a valid regular expression: {exc}") from None
        return self


class WebhookConfig(_Config):
    """Where the manufacturer hears about its orders; bodies are signed with HMAC-SHA256 using the
    secret held in the environment variable ``secret_env`` (never in the file)."""

    url: HttpUrl
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_s: float = Field(default=30.0, gt=0, le=600)


class ManufacturerConfig(_Config):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=64)
    name: str
    products: list[ProductConfig] = Field(min_length=1)
    webhook: WebhookConfig | None = None


class SiteConfig(_Config):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=64)
    name: str
    profile: Path  # the site's mapping profile (YAML); relative to the configuration file


class ApiClientConfig(_Config):
    """A bearer token bound to exactly one role; only its SHA-256 is configured."""

    name: str
    role: str
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("role")
    @classmethod
    def _valid_role(cls, value: str) -> str:
        parse_role(value)
        return value


class OAuthClientConfig(_Config):
    """A SMART Backend Services client of the configuration file (issue 14): its role, the scopes it
    may request (space-separated) and its public keys: ``jwks`` inline (a JWKS mapping, or the text of
    a JWKS or of a PEM public key), or ``jwks_file`` (relative to the configuration file; its text is
    read into ``jwks`` when the settings load).  Keys and scopes are checked by
    ``gateway.oauth.clients`` when the app starts."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$", max_length=64)
    role: str
    scopes: str = Field(min_length=1, max_length=2000)
    jwks: dict[str, Any] | str | None = None
    jwks_file: Path | None = None

    @field_validator("role")
    @classmethod
    def _valid_role(cls, value: str) -> str:
        parse_role(value)
        return value

    @model_validator(mode="after")
    def _one_jwks(self) -> OAuthClientConfig:
        if (self.jwks is None) == (self.jwks_file is None):
            raise ValueError(f"oauth client {self.client_id!r}: give exactly one of jwks and jwks_file")
        return self


class CertificationConfig(_Config):
    """A site's certification for a product from the configuration file (issue 16).  A certification
    recorded at run time (``POST /v1/admin/certifications``) for the same site and product replaces it."""

    site_id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=64)
    product_code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$", max_length=64)
    status: Literal["certified", "suspended", "withdrawn"] = "certified"
    valid_until: date
    training_completed_at: datetime | None = None
    note: str | None = Field(default=None, max_length=1000)


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by the ``config`` setting (init kwarg, env, or the demo file)."""

    def __init__(self, settings_cls: type[BaseSettings], *higher: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def config_path(self) -> Path:
        for source in self._higher:
            value = source().get("config")
            if value:
                return Path(value)
        return DEMO_CONFIG

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ is overridden

    def __call__(self) -> dict[str, Any]:
        path = self.config_path()
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the configuration must be a mapping")
        data = dict(data)
        data["config"] = str(path)
        return data


class Settings(BaseSettings):
    """The gateway's one settings object."""

    model_config = SettingsConfigDict(
        env_prefix="CGT_GATEWAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    config: Path = DEMO_CONFIG
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    database_url: str = "sqlite:///var/cgt-gateway.db"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # uvicorn's event loop and HTTP parser for ``cgt-gateway serve``: ``auto`` takes uvloop and
    # httptools (installed with uvicorn[standard]) when they import, else asyncio and h11.
    server_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    server_http: Literal["auto", "h11", "httptools"] = "auto"
    # The gateway's own absolute URL (Bundle fullUrl, paging links, /fhir/metadata); never taken from
    # the request's Host header. Unset: http://{host}:{port} (filled in by the issue-11 block below).
    public_base_url: str | None = None

    # --- issue 11 / identity (DIN, lot, resource ids): settings of this part go below

    # --- issue 11 / templates and profile YAML bounds: settings of this part go below
    # UTF-8 bytes one override template may render for one field; longer is a mapping issue and the
    # field keeps its default value.
    template_max_output_bytes: int = Field(default=4096, gt=0, le=65536)
    # Wall-clock backstop for the override templates of one event (the step budget normally stops first).
    template_timeout_ms: int = Field(default=100, gt=0, le=10_000)
    # Evaluation steps (look-ups, calls, filters, operators, loop iterations) for the overrides of one event.
    template_max_steps: int = Field(default=10_000, gt=0, le=1_000_000)
    # Items one range() in a template may have; a constant range above it is refused at check time.
    template_max_range: int = Field(default=100, gt=0, le=10_000)
    # How deep {% for %} loops may nest in one template.
    template_max_loop_nesting: int = Field(default=2, ge=1, le=5)
    # Size of a profile file or preview profile_yaml, checked before it is read or parsed.
    profile_max_bytes: int = Field(default=256 * 1024, gt=0, le=16 * 1024 * 1024)
    # YAML values in one profile, aliases expanded, counted while composing.
    profile_max_nodes: int = Field(default=20_000, gt=0, le=1_000_000)
    # Alias uses (*name) in one profile, counted while composing.
    profile_max_aliases: int = Field(default=100, ge=0, le=100_000)
    # Problems listed for one invalid profile before "... and n more problems not listed".
    profile_max_problems: int = Field(default=100, gt=0, le=10_000)

    # --- issue 11 / FHIR search, error lists, HTTP server bounds: settings of this part go below
    # A FHIR search takes at most this many parameters (each occurrence counts), and at most this many
    # values per parameter name (repeats and comma-separated OR values together); else 400 too-costly.
    fhir_search_max_params: int = Field(default=50, ge=1, le=1000)
    fhir_search_max_values: int = Field(default=100, ge=1, le=1000)
    # An error body (problem+json errors[], OperationOutcome issue[]) lists at most this many entries.
    max_error_entries: int = Field(default=100, ge=1, le=10_000)
    # cgt-gateway serve: a request's headers must arrive within server_header_timeout_s of its first byte
    # (or of the connection), its body within server_body_timeout_s of its headers (else 408 and close);
    # headers beyond server_max_header_bytes get 431; past server_limit_concurrency open connections or
    # requests in flight, uvicorn answers 503; idle keep-alive connections close after the keep-alive timeout.
    server_header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    server_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    server_keep_alive_timeout_s: float = Field(default=5.0, gt=0, le=600)
    server_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    server_limit_concurrency: int = Field(default=256, ge=1, le=100_000)

    @model_validator(mode="after")
    def _public_base_url(self) -> Settings:
        """An unset ``public_base_url`` follows ``host`` and ``port``; a set one loses its trailing slash."""
        url = self.public_base_url
        if not url:
            host = f"[{self.host}]" if ":" in self.host else self.host
            url = f"http://{host}:{self.port}"
        elif not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", url):
            raise ValueError(f"public_base_url must be an absolute http(s) URL with no query, not {url!r}")
        object.__setattr__(self, "public_base_url", url.rstrip("/"))
        return self

    def base_url(self) -> str:
        """``public_base_url`` (always set once validated): this gateway's absolute URL, no trailing slash."""
        assert self.public_base_url is not None
        return self.public_base_url

    # --- issue 11 / plausible times and safety gates: settings of this part go below
    # A time at which something happened (occurred_at, data.collected_at/at/received_at/infused_at) may
    # be at most this many seconds ahead of the gateway's clock (clock drift between systems).
    max_future_skew_s: int = Field(default=300, ge=0, le=86400)
    # A planned time (data.start/end/expected_at/expires_at, requested dates) at most this far ahead.
    max_plan_ahead_days: int = Field(default=730, ge=1, le=3650)
    # Any order or event time before 1 January of this year (UTC) is refused (not birth dates).
    min_event_year: int = Field(default=2000, ge=1900, le=2100)

    # --- issue 11 / retraction: settings of this part go below

    # --- issue 11 / HL7v2 character sets and fidelity: settings of this part go below

    # --- issue 13 / site requests (inbound): settings of this part go below
    # inbound listeners (wire): the MLLP listeners of the sites whose profile has ``inbound.mllp``.
    # ``serve`` and ``listen`` start them unless switched off here (CGT_GATEWAY_INBOUND_MLLP_ENABLED=false).
    inbound_mllp_enabled: bool = True
    # Per listener: open connections at most (more are closed at accept); a connection with no byte for
    # read_timeout_s is closed; a message must arrive whole within message_timeout_s of its first byte;
    # the site must take our answer within write_timeout_s.  The size limit is the profile's
    # hl7v2.inbound.max_message_bytes.
    inbound_mllp_max_connections: int = Field(default=64, ge=1, le=10_000)
    inbound_mllp_read_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    inbound_mllp_message_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    inbound_mllp_write_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Messages stored at once (database work in worker threads), across all listeners; others wait.
    inbound_mllp_max_concurrency: int = Field(default=4, ge=1, le=64)
    # On stop, messages in flight get this long to be stored and answered.
    inbound_mllp_stop_timeout_s: float = Field(default=10.0, ge=0, le=600)
    # TEST ONLY: the process exits (os._exit) right after a message is committed, before its ACK is
    # sent, to prove that the site's resend is answered from the stored ACK and processed once.
    inbound_mllp_exit_after_commit: bool = False

    # --- issue 14 / OAuth (SMART Backend Services): settings of this part go below
    # Static bearer tokens (api_clients above and `cgt-gateway token create`): on for the demo and
    # development; set false in production so only OAuth access tokens are accepted.
    static_tokens: bool = True
    # SMART Backend Services clients of the configuration file (more at run time: `cgt-gateway client
    # register`).
    oauth_clients: list[OAuthClientConfig] = Field(default_factory=list)
    # Lifetime of an access token from POST /oauth/token.
    oauth_access_token_lifetime_s: int = Field(default=300, ge=30, le=3600)
    # Clock difference allowed between a client and the gateway when checking an assertion's exp
    # (expired only once exp + skew has passed; at most 300 s + skew ahead), nbf and iat.
    oauth_clock_skew_s: int = Field(default=60, ge=0, le=300)
    # POST /oauth/token: body bytes, and client_assertion bytes, refused (400 invalid_request) beyond these.
    oauth_max_request_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    oauth_max_assertion_bytes: int = Field(default=8 * 1024, ge=512, le=64 * 1024)
    # A client's JWKS (inline, file or `client register --jwks`): bytes and keys.
    oauth_max_jwks_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    oauth_max_jwks_keys: int = Field(default=10, ge=1, le=100)
    # A used assertion jti is kept until its exp + clock skew (it is refused as expired after that) plus
    # this margin; expired access tokens are deleted after the same margin.
    oauth_jti_retention_s: int = Field(default=3600, ge=0, le=30 * 86400)

    @model_validator(mode="after")
    def _oauth_clients(self) -> Settings:
        """Client ids unique, roles naming known tenants, JWKS files read now (size-bounded)."""
        _unique("oauth_clients client_id", [c.client_id for c in self.oauth_clients])
        for client in self.oauth_clients:
            kind, subject = parse_role(client.role)
            known = {"manufacturer": self.manufacturer_ids(), "site": self.site_ids()}.get(kind)
            if known is not None and subject not in known:
                raise ValueError(f"oauth client {client.client_id!r}: role {client.role!r} names an unknown "
                                 f"{kind}")
            if client.jwks_file is not None:
                path = client.jwks_file
                path = path if path.is_absolute() else self.config.parent / path
                try:
                    with path.open("rb") as handle:
                        text = handle.read(self.oauth_max_jwks_bytes + 1)
                except OSError as exc:
                    raise ValueError(f"oauth client {client.client_id!r}: cannot read jwks_file {path}: "
                                     f"{exc.strerror}") from None
                if len(text) > self.oauth_max_jwks_bytes:
                    raise ValueError(f"oauth client {client.client_id!r}: jwks_file {path} is larger than "
                                     f"oauth_max_jwks_bytes ({self.oauth_max_jwks_bytes})")
                try:
                    object.__setattr__(client, "jwks", text.decode("utf-8"))
                except UnicodeDecodeError:
                    raise ValueError(f"oauth client {client.client_id!r}: jwks_file {path} is not UTF-8 "
                                     "text") from None
                object.__setattr__(client, "jwks_file", path)
        return self

    # --- issue 14 / audit trail: settings of this part go below
    # One audit record per API call that reads or writes patient data (gateway/audit, docs/audit.md).
    # Off only to measure its cost (bench); a deployment keeps it on (HIPAA 164.312(b)).
    audit_enabled: bool = True
    # Reads are recorded through a write-behind batch: appended at most this many seconds after the read.
    audit_read_flush_s: float = Field(default=0.5, gt=0, le=1.0)
    # Reads waiting for the batch; past it the reading request appends the batch itself (never dropped).
    audit_read_max_pending: int = Field(default=10_000, ge=10, le=1_000_000)
    # The chain head (sequence number and SHA-256, nothing else) is logged this often by the serving
    # process and at shutdown, so it can be anchored outside the database; 0: only at shutdown.
    audit_head_log_s: float = Field(default=300.0, ge=0, le=86_400)
    # GET /fhir/AuditEvent: records a page holds by default and at most (_count).
    audit_search_default_count: int = Field(default=50, ge=1, le=1000)
    audit_search_max_count: int = Field(default=200, ge=1, le=1000)

    # --- issue 16 / subscriptions: settings of this part go below
    # Subscriptions (R4 backport; docs/subscriptions.md). Live (requested/active) subscriptions per site.
    subscription_max_per_site: int = Field(default=20, ge=1, le=1000)
    # After this many failed deliveries in a row (handshake included) a subscription goes to error.
    subscription_max_failures: int = Field(default=5, ge=1, le=1000)
    # Channel timeout (backport-timeout): default and the most a subscriber may ask for (seconds).
    subscription_default_timeout_s: int = Field(default=10, ge=1, le=300)
    subscription_max_timeout_s: int = Field(default=30, ge=1, le=300)
    # Heartbeat period (backport-heartbeat-period) a subscriber may ask for, in seconds.
    subscription_min_heartbeat_s: int = Field(default=10, ge=1, le=86_400)
    subscription_max_heartbeat_s: int = Field(default=86_400, ge=1, le=7 * 86_400)
    # How often the heartbeat scheduler (inside serve and worker) looks for heartbeats due.
    subscription_heartbeat_poll_s: float = Field(default=1.0, gt=0, le=60)
    # $events returns at most this many events per call (eventsUntilNumber is clipped to it).
    subscription_events_page_max: int = Field(default=100, ge=1, le=1000)
    # Filters (backport-filter-criteria) and channel headers per subscription.
    subscription_max_filters: int = Field(default=10, ge=0, le=100)
    subscription_max_headers: int = Field(default=4, ge=0, le=20)


    # --- issue 16 / milestone alerts and certification: settings of this part go below
    # A new order needs a site certification for its product valid on the order's day (certifications
    # below, or POST /v1/admin/certifications); else 422 site-not-certified.  Off by default (a
    # configuration without certifications keeps working); on in the demo.
    require_certification: bool = False
    # Site certifications per product (docs/alerts.md).
    certifications: list[CertificationConfig] = Field(default_factory=list)
    # The alert scheduler (inside serve and worker) evaluates every open order this often.
    alerts_enabled: bool = True
    alerts_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    # Orders evaluated per database transaction by the scheduler.
    alerts_batch_size: int = Field(default=200, ge=1, le=10_000)

    @model_validator(mode="after")
    def _certifications(self) -> Settings:
        _unique("certifications site_id/product_code",
                [f"{c.site_id}/{c.product_code}" for c in self.certifications])
        # A certification naming a site or product not configured (e.g. a manufacturer removed from a copy
        # of the demo) is kept but matches no order and is not listed (gateway.alerts.certification).
        return self

    # --- issue 15 / demo peer and metrics: settings of this part go below
    # `cgt-gateway demo-peer` / `serve --with-demo-peer` (make run): the demo site engine's MLLP port on
    # 127.0.0.1 (the demo site-b profile's delivery.mllp.port), and its control file of
    # 'AE <control id>' / 'AR <control id>' lines ('*' matches every message), re-read when it changes.
    demo_peer_port: int = Field(default=2576, ge=1, le=65535)
    demo_peer_control_file: Path | None = Path("var/demo-peer.ctl")

    # --- issue 15 / console: settings of this part go below
    # The key that signs /console session cookies and CSRF tokens (at least 32 characters; a secret:
    # set it from the environment, CGT_GATEWAY_CONSOLE_SESSION_KEY). Unset: 32 random bytes drawn when
    # the app starts, so console sessions end when the server restarts.
    console_session_key: str | None = Field(default=None, min_length=32, max_length=512, repr=False)
    # A console session ends this long after sign-in (sign in again then).
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400)

    # --- issue 17 / processes: settings of this part go below
    # `cgt-gateway serve`: HTTP server processes on one port (uvicorn's workers; --processes N).  More
    # than 1 needs PostgreSQL.  Each process runs the API, the sites' MLLP listeners (SO_REUSEPORT),
    # the delivery worker (unless serve_delivery_worker is false: --no-worker), the subscription
    # heartbeats, the alert scheduler and the audit trail thread.
    serve_processes: int = Field(default=1, ge=1, le=256)
    serve_delivery_worker: bool = True
    # The parent pings each process this often at most before it counts it hung, kills and replaces
    # it (uvicorn's worker healthcheck); also how long a new process may take to import and answer.
    serve_process_healthcheck_s: int = Field(default=30, ge=1, le=600)
    # Connections each process's database pool keeps open, and the extra ones it may open under load
    # (PostgreSQL): a host opens up to processes x (pool_size + max_overflow + 2) connections.
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_max_overflow: int = Field(default=20, ge=0, le=1000)
    # TEST ONLY: every HTTP response carries X-Cgt-Process (the serving process's id), so tests can see
    # that several processes answer.  Off in any deployment (a process id tells an outsider nothing
    # useful, but it is not theirs to know).
    serve_process_header: bool = False

    manufacturers: list[ManufacturerConfig] = Field(default_factory=list)
    sites: list[SiteConfig] = Field(default_factory=list)
    api_clients: list[ApiClientConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlFileSource(settings_cls, init_settings, env_settings)

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        base = self.config.parent
        for i, site in enumerate(self.sites):
            if not site.profile.is_absolute():
                object.__setattr__(self.sites[i], "profile", (base / site.profile).resolve())
        _unique("manufacturers", [m.id for m in self.manufacturers])
        _unique("sites", [s.id for s in self.sites])
        _unique("api_clients token_sha256", [c.token_sha256 for c in self.api_clients])
        for manufacturer in self.manufacturers:
            _unique(f"products of {manufacturer.id}", [p.code for p in manufacturer.products])
        for client in self.api_clients:
            kind, subject = parse_role(client.role)
            known = {"manufacturer": self.manufacturer_ids(), "site": self.site_ids()}.get(kind)
            if known is not None and subject not in known:
                raise ValueError(f"api client {client.name!r}: role {client.role!r} names an unknown {kind}")
        return self

    # -- look-ups used by the API
    def manufacturer_ids(self) -> set[str]:
        return {m.id for m in self.manufacturers}

    def site_ids(self) -> set[str]:
        return {s.id for s in self.sites}

    def manufacturer(self, manufacturer_id: str) -> ManufacturerConfig | None:
        return next((m for m in self.manufacturers if m.id == manufacturer_id), None)

    def site(self, site_id: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.id == site_id), None)

    def product(self, manufacturer_id: str, code: str) -> ProductConfig | None:
        manufacturer = self.manufacturer(manufacturer_id)
        if manufacturer is None:
            return None
        return next((p for p in manufacturer.products if p.code == code), None)

    def product_owner(self, code: str) -> str | None:
        """The manufacturer that declares ``code``, if any."""
        return next((m.id for m in self.manufacturers for p in m.products if p.code == code), None)

    def role_for_token_hash(self, token_sha256: str) -> str | None:
        return next((c.role for c in self.api_clients if c.token_sha256 == token_sha256), None)


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what}: {value!r} appears twice")
        seen.add(value)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings; ``config`` names the YAML file (else ``CGT_GATEWAY_CONFIG``, else the demo)."""
    if config is not None:
        overrides["config"] = Path(config)
    return Settings(**overrides)
