"""The SDK's and CLI's settings: the only client module that reads the environment. Every name it
reads is in `ENV_NAMES`. The services are addressed as the servers' config says
(`trackd_platform.config.service_targets`: TRACKD_TARGET, TRACKD_<SERVICE>_TARGET)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from trackd_platform.config import KafkaSettings, env_int, env_number, env_text, service_targets
from trackd_platform.errors import InvalidArgument

ENV_NAMES = frozenset({
    "TRACKD_TARGET", "TRACKD_RUN_TARGET", "TRACKD_INGEST_TARGET", "TRACKD_ARTIFACT_TARGET", "TRACKD_QUERY_TARGET",
    "TRACKD_HPO_TARGET", "TRACKD_TOKEN", "TRACKD_TLS_CA_FILE", "TRACKD_KAFKA_BOOTSTRAP",
    "TRACKD_HEARTBEAT_INTERVAL_S", "TRACKD_RPC_TIMEOUT_S", "TRACKD_SPOOL_DIR", "TRACKD_MODE",
    "TRACKD_FLUSH_TIMEOUT_S", "TRACKD_SYSTEM_METRICS_INTERVAL_S", "TRACKD_SPOOL_MAX_BYTES",
    "TRACKD_IMAGE",  # CaptureEnv: the container image a run executes in
})
MIN_SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ClientSettings:
    """How the SDK and CLI address the services (see ARCHITECTURE.md, client addressing) and
    behave towards them."""

    targets: Mapping[str, str]
    heartbeat_interval_s: float
    rpc_timeout_s: float
    kafka_bootstrap: str
    spool_dir: str = ""  # empty: ~/.cache/trackd/spool
    offline: bool = False  # TRACKD_MODE=offline: whole runs are journaled on disk (`trackd sync` sends)
    # TRACKD_MODE=auto: online, unless the run service cannot be reached at start_run: then offline
    auto: bool = False
    flush_timeout_s: float = 30.0
    system_metrics_interval_s: float = 10.0  # 0: off
    token: str = field(default="", repr=False)  # TRACKD_TOKEN: sent as `authorization: Bearer …`
    tls_ca_file: str = ""  # TRACKD_TLS_CA_FILE: speak TLS, trusting this CA
    # TRACKD_SPOOL_MAX_BYTES: disk a run's metric spool may use for batches not yet acknowledged
    spool_max_bytes: int = 1024**3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            return env_number(env, name, default, known=ENV_NAMES)

        def text(name: str, default: str = "") -> str:
            return env_text(env, name, default, known=ENV_NAMES)

        spool_max_bytes = env_int(env, "TRACKD_SPOOL_MAX_BYTES", 1024**3, known=ENV_NAMES)
        if spool_max_bytes < MIN_SPOOL_BYTES:
            raise InvalidArgument(f"TRACKD_SPOOL_MAX_BYTES={spool_max_bytes} must be at least 1048576 (1 MiB)")

        mode = text("TRACKD_MODE", "online").lower()
        if mode not in ("online", "offline", "auto"):
            raise InvalidArgument(f"TRACKD_MODE={mode!r}: use online or offline, or auto (offline when the "
                                  "servers cannot be reached at start_run)")

        return cls(
            targets=service_targets(env),
            heartbeat_interval_s=number("TRACKD_HEARTBEAT_INTERVAL_S", 10.0),
            rpc_timeout_s=number("TRACKD_RPC_TIMEOUT_S", 30.0),
            kafka_bootstrap=KafkaSettings.from_env(env).bootstrap,
            spool_dir=text("TRACKD_SPOOL_DIR"),
            offline=mode == "offline",
            auto=mode == "auto",
            flush_timeout_s=number("TRACKD_FLUSH_TIMEOUT_S", 30.0),
            system_metrics_interval_s=number("TRACKD_SYSTEM_METRICS_INTERVAL_S", 10.0),
            token=text("TRACKD_TOKEN"),
            tls_ca_file=text("TRACKD_TLS_CA_FILE"),
            spool_max_bytes=spool_max_bytes,
        )

    def target(self, service: str) -> str:
        return self.targets[service]


@dataclass(frozen=True)
class LaunchEnv:
    """What a distributed launcher (torchrun, and most others) tells a process: its rank among
    `world_size`, and the job's id when it has one (TORCHELASTIC_RUN_ID, SLURM_JOB_ID)."""

    rank: int
    world_size: int
    job_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchEnv | None:
        """None outside a launcher (no RANK, or one that is not a number)."""
        env = os.environ if env is None else env
        try:
            rank, world_size = int(env["RANK"]), int(env.get("WORLD_SIZE", "1"))
        except (KeyError, ValueError):
            return None
        job_id = env.get("TORCHELASTIC_RUN_ID", "")
        return cls(rank, world_size, env.get("SLURM_JOB_ID", "") if job_id in ("", "none") else job_id)


@dataclass(frozen=True)
class CaptureEnv:
    """What the environment says about where a run executes, for `trackd._capture`: the conda
    environment (CONDA_PREFIX, CONDA_DEFAULT_ENV, CONDA_EXE) and the container (TRACKD_IMAGE, and
    Kubernetes' KUBERNETES_SERVICE_HOST with the downward API's POD_NAME, POD_NAMESPACE, NODE_NAME)."""

    conda_prefix: str = ""
    conda_env: str = ""
    conda_exe: str = ""
    image: str = ""
    kubernetes: bool = False
    pod: str = ""
    namespace: str = ""
    node: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CaptureEnv:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        return cls(conda_prefix=get("CONDA_PREFIX"), conda_env=get("CONDA_DEFAULT_ENV"), conda_exe=get("CONDA_EXE"),
                   image=env_text(env, "TRACKD_IMAGE", "", known=ENV_NAMES),
                   kubernetes=bool(get("KUBERNETES_SERVICE_HOST")),
                   pod=get("POD_NAME") or (get("HOSTNAME") if get("KUBERNETES_SERVICE_HOST") else ""),
                   namespace=get("POD_NAMESPACE"), node=get("NODE_NAME"))
