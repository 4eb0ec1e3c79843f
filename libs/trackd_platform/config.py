"""The servers' configuration: the only server module that reads the environment.

Each process parses its settings once, at start-up, into frozen dataclasses and passes them down
by constructor injection. Every name read here is listed in `ENV_NAMES` (the docker-compose and
Kubernetes tests check their manifests against it). How a client addresses the services
(`service_targets`) is here too, shared by the SDK and the services that call services; the SDK's
own settings are `trackd._settings.ClientSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trackd_platform.errors import InvalidArgument

SERVICES = ("run", "ingest", "artifact", "query", "hpo")
DEFAULT_PORTS = {"run": 50051, "ingest": 50052, "artifact": 50053, "query": 50054, "hpo": 50055}
# The hpo service's second, plaintext port: Optuna's StorageService for GrpcStorageProxy (docs/optuna.md)
OPTUNA_PORT = 50056
WEB_PORT = 8080  # the web service speaks HTTP (the browser UI), not gRPC

ENV_NAMES = frozenset(
    {
        "TRACKD_HOME",
        "TRACKD_INGEST_REPLICAS",
        "TRACKD_PG_DSN",
        "TRACKD_PG_POOL_MAX",
        "TRACKD_PG_ACQUIRE_TIMEOUT_S",
        "TRACKD_ARTIFACT_SLOW_READER_S",
        "TRACKD_QUERY_SLOW_READER_S",
        "TRACKD_ARTIFACT_DIRECT_UPLOAD_GRACE_S",
        "TRACKD_ARTIFACT_STALE_UPLOAD_S",
        "TRACKD_ARTIFACT_SWEEP_INTERVAL_S",
        "TRACKD_REDIS_URL",
        "TRACKD_KAFKA_BOOTSTRAP",
        "TRACKD_KAFKA_PARTITIONS",
        "TRACKD_EVENT_KEY",
        "TRACKD_S3_ENDPOINT",
        "TRACKD_S3_ACCESS_KEY",
        "TRACKD_S3_SECRET_KEY",
        "TRACKD_S3_BUCKET",
        "TRACKD_S3_REGION",
        "TRACKD_GRPC_HOST",
        "TRACKD_GRPC_PORT",
        "TRACKD_METRICS_PORT",
        "TRACKD_SHUTDOWN_GRACE_S",
        "TRACKD_HEARTBEAT_TIMEOUT_S",
        "TRACKD_CRASH_CHECK_INTERVAL_S",
        "TRACKD_HPO_LEASE_S",
        "TRACKD_OPTUNA_PORT",
        "TRACKD_TARGET",
        "TRACKD_RUN_TARGET",
        "TRACKD_INGEST_TARGET",
        "TRACKD_ARTIFACT_TARGET",
        "TRACKD_QUERY_TARGET",
        "TRACKD_HPO_TARGET",
        "TRACKD_AUTH",
        "TRACKD_ADMIN_TOKEN",
        "TRACKD_TOKEN",
        "TRACKD_TLS_CERT_FILE",
        "TRACKD_TLS_KEY_FILE",
        "TRACKD_TLS_CA_FILE",
        "TRACKD_RATE_LIMIT_WRITES_PER_S",
        "TRACKD_RATE_LIMIT_BURST",
        "TRACKD_WEB_HOST",
        "TRACKD_WEB_PORT",
        "TRACKD_WEB_MAX_VIEWERS",
        "TRACKD_GRPC_KEEPALIVE_S",
        "TRACKD_GRPC_MAX_CONNECTION_IDLE_S",
        "TRACKD_INGEST_MAX_STREAMS",
        "TRACKD_INGEST_MAX_STREAMS_PER_CALLER",
        "TRACKD_INGEST_STREAM_IDLE_S",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
    }
)


def env_text(env: Mapping[str, str], name: str, default: str, *, known: frozenset[str] = ENV_NAMES) -> str:
    """`name`'s value, stripped, or `default` when unset or blank. `known`: the reader's list of
    the names it reads (this module's ENV_NAMES, or the SDK's)."""
    assert name in known, f"{name} must be listed in ENV_NAMES"
    value = env.get(name, "").strip()
    return value or default


def env_number(env: Mapping[str, str], name: str, default: float, *, known: frozenset[str] = ENV_NAMES) -> float:
    """A non-negative number; InvalidArgument naming the setting otherwise."""
    raw = env_text(env, name, str(default), known=known)
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise InvalidArgument(f"{name}={raw!r} must not be negative")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, known: frozenset[str] = ENV_NAMES) -> int:
    """A non-negative whole number; InvalidArgument naming the setting otherwise."""
    value = env_number(env, name, default, known=known)
    if value != int(value):
        raise InvalidArgument(f"{name}={value!r} must be a whole number")
    return int(value)


def service_targets(env: Mapping[str, str]) -> dict[str, str]:
    """Where a client reaches each service (ARCHITECTURE.md, client addressing): its
    `TRACKD_<SERVICE>_TARGET`, else `TRACKD_TARGET` (a gateway), else localhost on its default port."""
    gateway = env_text(env, "TRACKD_TARGET", "")
    return {s: env_text(env, f"TRACKD_{s.upper()}_TARGET", gateway or f"localhost:{DEFAULT_PORTS[s]}")
            for s in SERVICES}


def home(env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded stack keeps its data: `TRACKD_HOME`, else `.trackd/` here."""
    env = os.environ if env is None else env
    return Path(env_text(env, "TRACKD_HOME", str(Path.cwd() / ".trackd"))).resolve()


@dataclass(frozen=True)
class PostgresSettings:
    dsn: str = field(repr=False)  # may carry a password
    pool_max: int = 10
    # how long a call waits for a free pooled connection before it is answered UNAVAILABLE (0: forever)
    acquire_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PostgresSettings:
        return cls(
            dsn=env_text(env, "TRACKD_PG_DSN", "postgresql://postgres@127.0.0.1:15432/trackd"),
            pool_max=env_int(env, "TRACKD_PG_POOL_MAX", 10),
            acquire_timeout_s=env_number(env, "TRACKD_PG_ACQUIRE_TIMEOUT_S", 10.0),
        )


@dataclass(frozen=True)
class RedisSettings:
    url: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedisSettings:
        return cls(url=env_text(env, "TRACKD_REDIS_URL", "redis://127.0.0.1:16379/0"))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    partitions: int = 3
    # HMAC key of the events' `trackd-signature` header (kafka.signature); empty: unsigned, unchecked
    event_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings:
        return cls(
            bootstrap=env_text(env, "TRACKD_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            partitions=max(1, env_int(env, "TRACKD_KAFKA_PARTITIONS", 3)),
            event_key=env.get("TRACKD_EVENT_KEY", ""),
        )


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings:
        return cls(
            endpoint=env_text(env, "TRACKD_S3_ENDPOINT", "http://127.0.0.1:18333"),
            bucket=env_text(env, "TRACKD_S3_BUCKET", "trackd-artifacts"),
            region=env_text(env, "TRACKD_S3_REGION", "us-east-1"),
            access_key=env_text(env, "TRACKD_S3_ACCESS_KEY", "trackd"),
            secret_key=env_text(env, "TRACKD_S3_SECRET_KEY", "trackd"),
        )


@dataclass(frozen=True)
class TelemetrySettings:
    service_name: str
    otlp_endpoint: str  # empty: no exporter

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, service: str) -> TelemetrySettings:
        return cls(
            service_name=env_text(env, "OTEL_SERVICE_NAME", f"trackd-{service}"),
            otlp_endpoint=env_text(env, "OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        )


@dataclass(frozen=True)
class AuthSettings:
    """Server side of docs/auth.md: bearer tokens checked per project when `enabled`; the admin
    secret is a global admin (how the first project token is created); writes limited per token
    to `writes_per_s` (0: unlimited) with bursts of `burst` (0: one second's worth)."""

    enabled: bool = False
    admin_token: str = field(default="", repr=False)
    writes_per_s: float = 0.0
    burst: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthSettings:
        mode = env_text(env, "TRACKD_AUTH", "off").lower()
        if mode not in ("on", "off"):
            raise InvalidArgument(f"TRACKD_AUTH={mode!r}: use on or off")
        settings = cls(
            enabled=mode == "on",
            admin_token=env_text(env, "TRACKD_ADMIN_TOKEN", ""),
            writes_per_s=env_number(env, "TRACKD_RATE_LIMIT_WRITES_PER_S", 0.0),
            burst=env_number(env, "TRACKD_RATE_LIMIT_BURST", 0.0),
        )
        if settings.admin_token and len(settings.admin_token) < 16:
            raise InvalidArgument("TRACKD_ADMIN_TOKEN must be at least 16 characters")
        return settings


@dataclass(frozen=True)
class TlsSettings:
    """Servers serve TLS when both `cert_file` and `key_file` are set; clients (and services calling
    services) verify servers against `ca_file` (empty: the system roots) when TLS is on."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TlsSettings:
        settings = cls(
            cert_file=env_text(env, "TRACKD_TLS_CERT_FILE", ""),
            key_file=env_text(env, "TRACKD_TLS_KEY_FILE", ""),
            ca_file=env_text(env, "TRACKD_TLS_CA_FILE", ""),
        )
        if bool(settings.cert_file) != bool(settings.key_file):
            raise InvalidArgument("set both TRACKD_TLS_CERT_FILE and TRACKD_TLS_KEY_FILE, or neither")
        return settings

    @property
    def serving(self) -> bool:
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class ServerSettings:
    """How one service process serves: its gRPC address, metrics port and shutdown grace.

    `keepalive_s`: the server pings a connection's peer after this long without activity and
    closes the connection (ending its calls, freeing their stream slots) when the ping is not
    answered within 20 s: half-open connections of vanished clients do not hold calls forever.
    `max_connection_idle_s`: a connection with no call open for this long is closed with a
    GOAWAY (clients reconnect transparently on their next call). 0 turns either off."""

    name: str
    host: str
    port: int
    metrics_port: int  # 0: no /metrics endpoint
    shutdown_grace_s: float
    telemetry: TelemetrySettings
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()
    keepalive_s: float = 60.0
    max_connection_idle_s: float = 300.0
    # a second port serving the same services without TLS, 0: none — the hpo service's port for
    # Optuna's GrpcStorageProxy (TRACKD_OPTUNA_PORT), which speaks no TLS
    plaintext_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, service: str) -> ServerSettings:
        port = env_int(env, "TRACKD_GRPC_PORT", DEFAULT_PORTS[service])
        return cls(
            name=service,
            host=env_text(env, "TRACKD_GRPC_HOST", "0.0.0.0"),
            port=port,
            metrics_port=env_int(env, "TRACKD_METRICS_PORT", port + 1000),
            shutdown_grace_s=env_number(env, "TRACKD_SHUTDOWN_GRACE_S", 10.0),
            telemetry=TelemetrySettings.from_env(env, service=service),
            auth=AuthSettings.from_env(env),
            tls=TlsSettings.from_env(env),
            keepalive_s=env_number(env, "TRACKD_GRPC_KEEPALIVE_S", 60.0),
            max_connection_idle_s=env_number(env, "TRACKD_GRPC_MAX_CONNECTION_IDLE_S", 300.0),
            plaintext_port=env_int(env, "TRACKD_OPTUNA_PORT", OPTUNA_PORT) if service == "hpo" else 0,
        )


@dataclass(frozen=True)
class IngestSettings:
    """Stream slots of one ingest replica. At most `max_streams` StreamMetrics calls at once, of
    which one caller holds at most `max_streams_per_caller` (0: no per-caller bound); a caller is
    a token (TRACKD_AUTH=on: the token id, or the admin secret) or, with auth off, a client
    address as the replica sees it. A stream that sends no batch for `stream_idle_s` seconds is
    ended with DEADLINE_EXCEEDED (0: never); the SDK opens a new one when it next has a batch."""

    max_streams: int = 512
    max_streams_per_caller: int = 128
    stream_idle_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        settings = cls(
            max_streams=env_int(env, "TRACKD_INGEST_MAX_STREAMS", 512),
            max_streams_per_caller=env_int(env, "TRACKD_INGEST_MAX_STREAMS_PER_CALLER", 128),
            stream_idle_s=env_number(env, "TRACKD_INGEST_STREAM_IDLE_S", 60.0),
        )
        if settings.max_streams < 1:
            raise InvalidArgument("TRACKD_INGEST_MAX_STREAMS must be at least 1")
        return settings


@dataclass(frozen=True)
class RunServiceConfig:
    server: ServerSettings
    postgres: PostgresSettings
    kafka: KafkaSettings
    heartbeat_timeout_s: float
    crash_check_interval_s: float
    redis: RedisSettings | None = None  # rate limits only (TRACKD_RATE_LIMIT_WRITES_PER_S)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunServiceConfig:
        env = os.environ if env is None else env
        return cls(
            server=ServerSettings.from_env(env, service="run"),
            postgres=PostgresSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            heartbeat_timeout_s=env_number(env, "TRACKD_HEARTBEAT_TIMEOUT_S", 120.0),
            crash_check_interval_s=env_number(env, "TRACKD_CRASH_CHECK_INTERVAL_S", 5.0),
            redis=RedisSettings.from_env(env),
        )


@dataclass(frozen=True)
class ArtifactSettings:
    """The artifact service's bounds on what clients leave behind (docs/reliability.md).

    `slow_reader_s`: a DownloadArtifact whose client takes no message for this long is ended with
    DEADLINE_EXCEEDED (0: never). `direct_upload_grace_s`: a direct (presigned) upload not
    completed this long after its URLs expired is removed, object or open multipart upload.
    `stale_upload_s`: multipart uploads and temporary objects older than this that nothing owns
    (a process killed mid-upload) are removed; an upload stream may last at most this long.
    `sweep_interval_s`: how often each replica looks."""

    slow_reader_s: float = 60.0
    direct_upload_grace_s: float = 3600.0
    stale_upload_s: float = 86400.0
    sweep_interval_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ArtifactSettings:
        settings = cls(
            slow_reader_s=env_number(env, "TRACKD_ARTIFACT_SLOW_READER_S", 60.0),
            direct_upload_grace_s=env_number(env, "TRACKD_ARTIFACT_DIRECT_UPLOAD_GRACE_S", 3600.0),
            stale_upload_s=env_number(env, "TRACKD_ARTIFACT_STALE_UPLOAD_S", 86400.0),
            sweep_interval_s=env_number(env, "TRACKD_ARTIFACT_SWEEP_INTERVAL_S", 60.0),
        )
        if settings.sweep_interval_s <= 0:
            raise InvalidArgument("TRACKD_ARTIFACT_SWEEP_INTERVAL_S must be positive")
        return settings


@dataclass(frozen=True)
class StoresConfig:
    """Settings of a service that reaches PostgreSQL, Redis and S3 (ingest, artifact, query, hpo)."""

    server: ServerSettings
    postgres: PostgresSettings
    redis: RedisSettings
    kafka: KafkaSettings
    s3: S3Settings
    run_target: str
    # hpo: where it logs an Optuna trial's intermediate values as metrics (docs/optuna.md)
    ingest_target: str = ""
    # hpo: how long a trial's lease lasts without a heartbeat (workers beat every third of it)
    hpo_lease_s: float = 30.0
    ingest: IngestSettings = IngestSettings()
    artifact: ArtifactSettings = ArtifactSettings()
    # query: an ExportMetric whose client takes no message this long is ended (0: never)
    query_slow_reader_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, service: str) -> StoresConfig:
        env = os.environ if env is None else env
        return cls(
            server=ServerSettings.from_env(env, service=service),
            postgres=PostgresSettings.from_env(env),
            redis=RedisSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            s3=S3Settings.from_env(env),
            run_target=service_targets(env)["run"],
            ingest_target=service_targets(env)["ingest"],
            hpo_lease_s=env_number(env, "TRACKD_HPO_LEASE_S", 30.0),
            ingest=IngestSettings.from_env(env) if service == "ingest" else IngestSettings(),
            artifact=ArtifactSettings.from_env(env) if service == "artifact" else ArtifactSettings(),
            query_slow_reader_s=env_number(env, "TRACKD_QUERY_SLOW_READER_S", 60.0),
        )


@dataclass(frozen=True)
class CallerSettings:
    """How a server process calls the services (the web service): addressed as the SDK addresses
    them, sending `token` (TRACKD_TOKEN) when set, over TLS trusting `tls_ca_file`
    (TRACKD_TLS_CA_FILE) when set."""

    targets: Mapping[str, str]
    token: str = field(default="", repr=False)
    tls_ca_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CallerSettings:
        return cls(targets=service_targets(env), token=env_text(env, "TRACKD_TOKEN", ""),
                   tls_ca_file=env_text(env, "TRACKD_TLS_CA_FILE", ""))

    def target(self, service: str) -> str:
        return self.targets[service]


@dataclass(frozen=True)
class StackSettings:
    """What `trackd up` starts: everything under `home`, except the parts given as `external`."""

    home: Path
    external: Mapping[str, str]
    ingest_replicas: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        env = os.environ if env is None else env
        names = ("TRACKD_PG_DSN", "TRACKD_REDIS_URL", "TRACKD_KAFKA_BOOTSTRAP", "TRACKD_S3_ENDPOINT")
        return cls(
            home=home(env),
            external={n: env_text(env, n, "") for n in names if env_text(env, n, "")},
            ingest_replicas=max(1, env_int(env, "TRACKD_INGEST_REPLICAS", 1)),
        )


@dataclass(frozen=True)
class WebConfig:
    """The web service: an HTTP server (pages, chart data, live updates) that is a gRPC client of
    the run, query, artifact and hpo services (`client` addresses them as the SDK does). With
    `auth.enabled` it forwards the caller's token, else `client.token` (TRACKD_TOKEN) if set."""

    host: str
    port: int
    client: CallerSettings
    telemetry: TelemetrySettings
    auth: AuthSettings
    # live viewers (Server-Sent Events streams) one replica holds at once; more get 429
    max_viewers: int = 5000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebConfig:
        env = os.environ if env is None else env
        return cls(
            host=env_text(env, "TRACKD_WEB_HOST", "127.0.0.1"),
            port=env_int(env, "TRACKD_WEB_PORT", WEB_PORT),
            client=CallerSettings.from_env(env),
            telemetry=TelemetrySettings.from_env(env, service="web"),
            auth=AuthSettings.from_env(env),
            max_viewers=max(1, env_int(env, "TRACKD_WEB_MAX_VIEWERS", 5000)),
        )
