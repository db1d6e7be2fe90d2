"""Typed settings, read from the environment and checked when loaded.

Every variable is listed in README.md. ``Settings.from_env()`` is the only
reader of ``os.environ``; everything else receives a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from storage.crypto import parse_keys
from storage.redis_link import describe_redis_url

__all__ = [
    "DEV_API_KEY",
    "AuthSettings",
    "KafkaSettings",
    "LimitSettings",
    "ProviderSettings",
    "Settings",
    "SettingsError",
    "SosSettings",
]

# Printed at start in development so a newcomer can call the server API at once.
DEV_API_KEY = "dev-api-key-change-me"


def _tiles_url(value: str) -> str:
    """An https (or http) URL with {z}, {x} and {y}, or empty."""
    if not value:
        return ""
    parsed = urlsplit(value)
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise SettingsError("LIFELINE_MAP_TILES_URL must be an http(s) URL")
    if not all(part in value for part in ("{z}", "{x}", "{y}")):
        raise SettingsError("LIFELINE_MAP_TILES_URL must contain {z}, {x} and {y}")
    return value


class SettingsError(ValueError):
    """A setting is missing, malformed or not allowed in this environment."""


def _redis_url(value: str | None) -> str | None:
    """One Redis, a Redis Cluster or Sentinel (storage/redis_link.py), or unset."""
    if value is not None:
        try:
            describe_redis_url(value)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    return value


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str = ""
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 30 * 24 * 3600
    issuer: str = "lifeline"
    # Optional external identity provider (access tokens verified against its JWKS).
    jwks_url: str | None = None
    jwks_issuer: str | None = None
    jwks_audience: str | None = None
    # Login brute-force protection.
    login_free_failures: int = 3
    login_lockout_failures: int = 10
    login_lockout_s: int = 15 * 60
    login_window_s: int = 15 * 60
    # argon2id cost; tests lower it to stay fast.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    # Accounts registered with these emails get the role admin (the operator view).
    admin_emails: tuple[str, ...] = ()
    # A socket hears auth:expiring this long before its token expires.
    expiring_notice_s: float = 60.0
    # Proxies whose X-Forwarded-For is believed (CIDRs); none by default.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_payload_bytes: int = 64 * 1024
    chat_send_per_window: int = 20
    chat_send_window_s: float = 10.0
    presence_ttl_s: float = 8.0
    connections_per_address: int = 120
    connection_window_s: float = 10.0
    sockets_per_user: int = 20
    socket_events_per_s: float = 20.0
    socket_event_burst: int = 60
    socket_queue_max: int = 1000
    socket_buffer_max_bytes: int = 4 * 1024 * 1024
    # Engine.IO heartbeats, as Node's socket.io: a ping every 25 s, 20 s to answer it.
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    # An Engine.IO session that has not connected a namespace by then is closed (Node: 45 s).
    connect_timeout_s: float = 45.0


@dataclass(frozen=True, slots=True)
class SosSettings:
    escalate_after_s: float = 60.0
    escalation_levels: int = 3
    expire_after_s: float = 24 * 3600.0
    max_contacts: int = 20
    scheduler_interval_s: float = 0.5
    # A contact's sockets have this long to ack sos:alert before a push goes out.
    socket_ack_s: float = 5.0
    # iOS critical alerts ring through silent mode; they need Apple's entitlement.
    critical_alerts: bool = False
    android_channel_id: str = "sos_alerts"


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    group_id: str = "lifeline"
    topics: tuple[str, ...] = ("donations", "notifications", "projects", "users")
    out_topic: str = "realtime.events"
    create_topics: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Credentials of the outside providers; a channel without them records "skipped"."""

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str | None = None
    # The public URL of POST /api/v1/webhooks/twilio, as Twilio calls it (and signs it).
    twilio_status_url: str | None = None
    fcm_credentials_file: str | None = None
    fcm_project_id: str | None = None
    fcm_base_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Lifeline <no-reply@lifeline.invalid>"
    smtp_tls: bool = True

    @property
    def sms(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @property
    def push(self) -> bool:
        return bool(self.fcm_credentials_file)

    @property
    def email(self) -> bool:
        return bool(self.smtp_host)


UPLOAD_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
)


@dataclass(frozen=True, slots=True)
class UploadSettings:
    max_bytes: int = 25 * 1024 * 1024
    types: tuple[str, ...] = UPLOAD_TYPES
    # The node's folder (embedded default; a cluster shares it) unless S3 is set.
    folder: Path | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # The node's public base URL, for the upload and download links it signs itself.
    public_url: str = ""
    # How often each node looks for uploads no message carried within a day.
    sweep_every_s: float = 600.0


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """History's second tier on MongoDB; off unless ``MONGODB_URL`` is set."""

    mongodb_url: str | None = None
    database: str = "lifeline"
    hot_days: float = 90.0
    retention_days: float | None = None
    batch: int = 500
    every_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    env: str = "development"
    data_dir: Path = Path("./var")
    pg_dir: Path | None = None
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "lifeline:"
    # "interest": a node hears a room's bus traffic only while it holds a socket of it;
    # "broadcast": every node hears everything (the design before; kept to measure).
    bus_routing: str = "interest"
    kafka_bootstrap_servers: str | None = None
    api_key: str = DEV_API_KEY
    node_id: str = field(default_factory=lambda: secrets.token_hex(4))
    shutdown_timeout_s: float = 10.0
    db_pool_min: int = 2
    db_pool_max: int = 20
    log_level: str = "INFO"
    # Browser origins allowed besides the node's own; empty: same origin only.
    cors_origins: tuple[str, ...] = ()
    # Path of the socket.io-msgpack-parser endpoint; empty: not offered.
    msgpack_path: str = "socket.io-msgpack"
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    sos: SosSettings = field(default_factory=SosSettings)
    # AES-256 keys for personal data at rest, (key id, key); the first encrypts.
    data_keys: tuple[tuple[str, bytes], ...] = ()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    # The operator map's tile server ({z}/{x}/{y} URL); empty: an offline world outline.
    map_tiles_url: str = ""
    map_attribution: str = ""

    @property
    def uploads_dir(self) -> Path:
        return self.uploads.folder if self.uploads.folder is not None else self.data_dir / "uploads"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def cluster(self) -> bool:
        return self.redis_url is not None

    @property
    def embedded_pg_dir(self) -> Path:
        return self.pg_dir if self.pg_dir is not None else self.data_dir / "pg"

    def with_auth(self, **changes: object) -> Settings:
        return replace(self, auth=replace(self.auth, **changes))  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        mode = reader.choice("LIFELINE_ENV", ("development", "production"), "development")
        production = mode == "production"
        data_dir = Path(reader.text("LIFELINE_DATA_DIR", "./var"))
        api_key = reader.optional("LIFELINE_API_KEY")
        jwt_secret = reader.optional("LIFELINE_JWT_SECRET")
        try:
            data_keys = tuple(parse_keys(reader.text("LIFELINE_DATA_KEYS", "")).items())
        except ValueError as exc:
            raise SettingsError(f"LIFELINE_DATA_KEYS: {exc}") from None
        if production:
            missing = [
                name
                for name, value in (
                    ("LIFELINE_API_KEY", api_key),
                    ("LIFELINE_JWT_SECRET", jwt_secret),
                    ("LIFELINE_DATA_KEYS", "x" if data_keys else None),
                    ("DATABASE_URL", reader.optional("DATABASE_URL")),
                )
                if not value
            ]
            if missing:
                raise SettingsError(
                    "production refuses development defaults; set " + ", ".join(missing)
                )
            if api_key == DEV_API_KEY:
                raise SettingsError("production refuses the development LIFELINE_API_KEY")
            assert jwt_secret is not None
            if len(jwt_secret) < 32:
                raise SettingsError("LIFELINE_JWT_SECRET must be at least 32 characters")
        auth = AuthSettings(
            jwt_secret=jwt_secret or "",
            access_ttl_s=reader.integer("LIFELINE_ACCESS_TTL_S", 15 * 60, minimum=10),
            refresh_ttl_s=reader.integer("LIFELINE_REFRESH_TTL_S", 30 * 24 * 3600, minimum=60),
            jwks_url=reader.optional("LIFELINE_JWKS_URL"),
            jwks_issuer=reader.optional("LIFELINE_JWKS_ISSUER"),
            jwks_audience=reader.optional("LIFELINE_JWKS_AUDIENCE"),
            login_lockout_failures=reader.integer("LIFELINE_LOGIN_LOCKOUT_FAILURES", 10, minimum=1),
            login_lockout_s=reader.integer("LIFELINE_LOGIN_LOCKOUT_S", 15 * 60, minimum=1),
            argon2_time_cost=reader.integer("LIFELINE_ARGON2_TIME_COST", 3, minimum=1),
            argon2_memory_kib=reader.integer("LIFELINE_ARGON2_MEMORY_KIB", 65536, minimum=1024),
            admin_emails=tuple(
                e.strip().lower()
                for e in reader.text("LIFELINE_ADMIN_EMAILS", "").split(",")
                if e.strip()
            ),
            expiring_notice_s=reader.number("LIFELINE_AUTH_EXPIRING_S", 60.0, minimum=1.0),
            trusted_proxies=_networks(reader.text("LIFELINE_TRUSTED_PROXIES", "")),
        )
        limits = LimitSettings(
            max_payload_bytes=reader.integer("LIFELINE_MAX_PAYLOAD_BYTES", 64 * 1024, minimum=1024),
            chat_send_per_window=reader.integer("LIFELINE_CHAT_SEND_LIMIT", 20, minimum=1),
            chat_send_window_s=reader.number("LIFELINE_CHAT_SEND_WINDOW_S", 10.0, minimum=0.1),
            presence_ttl_s=reader.number("LIFELINE_PRESENCE_TTL_S", 8.0, minimum=1.0),
            connections_per_address=reader.integer(
                "LIFELINE_CONNECTIONS_PER_ADDRESS", 120, minimum=1
            ),
            sockets_per_user=reader.integer("LIFELINE_SOCKETS_PER_USER", 20, minimum=1),
            socket_events_per_s=reader.number("LIFELINE_SOCKET_EVENTS_PER_S", 20.0, minimum=0.1),
            socket_event_burst=reader.integer("LIFELINE_SOCKET_EVENT_BURST", 60, minimum=1),
            socket_queue_max=reader.integer("LIFELINE_SOCKET_QUEUE_MAX", 1000, minimum=10),
            socket_buffer_max_bytes=reader.integer(
                "LIFELINE_SOCKET_BUFFER_MAX_BYTES", 4 * 1024 * 1024, minimum=65536
            ),
            ping_interval_s=reader.number("LIFELINE_PING_INTERVAL_S", 25.0, minimum=1.0),
            connect_timeout_s=reader.number("LIFELINE_CONNECT_TIMEOUT_S", 45.0, minimum=0.1),
            ping_timeout_s=reader.number("LIFELINE_PING_TIMEOUT_S", 20.0, minimum=1.0),
        )
        sos = SosSettings(
            escalate_after_s=reader.number("LIFELINE_SOS_ESCALATE_AFTER_S", 60.0, minimum=1.0),
            escalation_levels=reader.integer("LIFELINE_SOS_ESCALATION_LEVELS", 3, minimum=1),
            expire_after_s=reader.number("LIFELINE_SOS_EXPIRE_AFTER_S", 86400.0, minimum=60.0),
            max_contacts=reader.integer("LIFELINE_MAX_CONTACTS", 20, minimum=1),
            socket_ack_s=reader.number("LIFELINE_SOS_SOCKET_ACK_S", 5.0, minimum=0.5),
            critical_alerts=reader.choice(
                "LIFELINE_SOS_CRITICAL_ALERTS", ("true", "false"), "false"
            )
            == "true",
            android_channel_id=reader.text("LIFELINE_SOS_ANDROID_CHANNEL", "sos_alerts"),
        )
        providers = ProviderSettings(
            twilio_account_sid=reader.optional("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=reader.optional("TWILIO_AUTH_TOKEN"),
            twilio_from=reader.optional("TWILIO_FROM_NUMBER"),
            twilio_base_url=reader.optional("LIFELINE_TWILIO_BASE_URL"),
            twilio_status_url=reader.optional("LIFELINE_TWILIO_STATUS_URL"),
            fcm_credentials_file=reader.optional("LIFELINE_FCM_CREDENTIALS"),
            fcm_project_id=reader.optional("LIFELINE_FCM_PROJECT_ID"),
            fcm_base_url=reader.optional("LIFELINE_FCM_BASE_URL"),
            smtp_host=reader.optional("LIFELINE_SMTP_HOST"),
            smtp_port=reader.integer("LIFELINE_SMTP_PORT", 587, minimum=1, maximum=65535),
            smtp_username=reader.optional("LIFELINE_SMTP_USERNAME"),
            smtp_password=reader.optional("LIFELINE_SMTP_PASSWORD"),
            smtp_from=reader.text("LIFELINE_SMTP_FROM", "Lifeline <no-reply@lifeline.invalid>"),
            smtp_tls=reader.choice("LIFELINE_SMTP_TLS", ("true", "false"), "true") == "true",
        )
        topics = tuple(
            reader.text(f"LIFELINE_KAFKA_TOPIC_{name.upper()}", name)
            for name in ("donations", "notifications", "projects", "users")
        ) + tuple(
            t.strip()
            for t in reader.text("LIFELINE_KAFKA_EXTRA_TOPICS", "").split(",")
            if t.strip()
        )
        kafka = KafkaSettings(
            group_id=reader.text("LIFELINE_KAFKA_GROUP", "lifeline"),
            topics=topics,
            out_topic=reader.text("LIFELINE_KAFKA_OUT_TOPIC", "realtime.events"),
            create_topics=reader.choice("LIFELINE_KAFKA_CREATE_TOPICS", ("true", "false"), "false")
            == "true",
        )
        pg_dir = reader.optional("LIFELINE_PG_DIR")
        uploads_dir = reader.optional("LIFELINE_UPLOADS_DIR")
        types = reader.text("LIFELINE_UPLOADS_TYPES", ",".join(UPLOAD_TYPES))
        uploads = UploadSettings(
            max_bytes=reader.integer("LIFELINE_UPLOADS_MAX_BYTES", 25 * 1024 * 1024, minimum=1024),
            types=tuple(t.strip().lower() for t in types.split(",") if t.strip()),
            folder=Path(uploads_dir) if uploads_dir else None,
            s3_bucket=reader.optional("LIFELINE_S3_BUCKET"),
            s3_prefix=reader.text("LIFELINE_S3_PREFIX", ""),
            s3_endpoint_url=reader.optional("LIFELINE_S3_ENDPOINT_URL"),
            s3_region=reader.optional("LIFELINE_S3_REGION"),
            public_url=reader.text("LIFELINE_PUBLIC_URL", ""),
            sweep_every_s=reader.number("LIFELINE_UPLOADS_SWEEP_S", 600.0, minimum=1.0),
        )
        retention = reader.optional("LIFELINE_ARCHIVE_RETENTION_DAYS")
        archive = ArchiveSettings(
            mongodb_url=reader.optional("MONGODB_URL"),
            database=reader.text("LIFELINE_MONGODB_DATABASE", "lifeline"),
            hot_days=reader.number("LIFELINE_HOT_DAYS", 90.0, minimum=0.0),
            retention_days=reader.number("LIFELINE_ARCHIVE_RETENTION_DAYS", 0.0, minimum=1.0)
            if retention
            else None,
            batch=reader.integer("LIFELINE_ARCHIVE_BATCH", 500, minimum=1, maximum=10_000),
            every_s=reader.number("LIFELINE_ARCHIVE_EVERY_S", 60.0, minimum=0.01),
        )
        settings = cls(
            uploads=uploads,
            archive=archive,
            host=reader.text("LIFELINE_HOST", "127.0.0.1"),
            port=reader.integer("LIFELINE_PORT", 8080, minimum=0, maximum=65535),
            env=mode,
            data_dir=data_dir,
            pg_dir=Path(pg_dir) if pg_dir else None,
            database_url=reader.optional("DATABASE_URL"),
            redis_url=_redis_url(reader.optional("REDIS_URL")),
            bus_routing=reader.choice(
                "LIFELINE_BUS_ROUTING", ("interest", "broadcast"), "interest"
            ),
            redis_prefix=reader.text("LIFELINE_REDIS_PREFIX", "lifeline:"),
            kafka_bootstrap_servers=reader.optional("KAFKA_BOOTSTRAP_SERVERS"),
            api_key=api_key or DEV_API_KEY,
            node_id=reader.optional("LIFELINE_NODE_ID") or secrets.token_hex(4),
            shutdown_timeout_s=reader.number("LIFELINE_SHUTDOWN_TIMEOUT_S", 10.0, minimum=0.0),
            db_pool_min=reader.integer("LIFELINE_DB_POOL_MIN", 2, minimum=1),
            db_pool_max=reader.integer("LIFELINE_DB_POOL_MAX", 20, minimum=1),
            log_level=reader.choice(
                "LIFELINE_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"
            ),
            map_tiles_url=_tiles_url(reader.text("LIFELINE_MAP_TILES_URL", "")),
            map_attribution=reader.text("LIFELINE_MAP_ATTRIBUTION", ""),
            cors_origins=tuple(
                o.strip() for o in reader.text("LIFELINE_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            msgpack_path=reader.text("LIFELINE_MSGPACK_PATH", "socket.io-msgpack").strip("/")
            if reader.optional("LIFELINE_MSGPACK_PATH") != "off"
            else "",
            auth=auth,
            limits=limits,
            sos=sos,
            data_keys=data_keys,
            kafka=kafka,
            providers=providers,
        )
        if settings.db_pool_min > settings.db_pool_max:
            raise SettingsError("LIFELINE_DB_POOL_MIN must not exceed LIFELINE_DB_POOL_MAX")
        return settings


def _networks(raw: str) -> tuple[str, ...]:
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"LIFELINE_TRUSTED_PROXIES: {part!r} is not an address or a CIDR network"
            ) from None
    return tuple(found)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
        self._bounds(name, value, minimum, maximum)
        return value

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {raw!r}") from None
        self._bounds(name, value, minimum, None)
        return value

    @staticmethod
    def _bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name} must be at most {maximum}")
