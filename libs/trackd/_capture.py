"""Automatic capture of a run's source (git) and environment (Python, host, packages, GPUs), and
what it takes to reproduce it: the uncommitted `git diff`, the CUDA / cuDNN / driver versions, the
conda environment and the container.

Everything here is best effort and bounded: a missing tool, a timeout or an unreadable file
leaves its field empty and never fails the run. The diff and `conda env export` are kept as the
run's artifacts (`Captured.files`), at most `FILE_MAX_BYTES` each (a longer one is cut there and
marked truncated); every external command gets `COMMAND_TIMEOUT_S`."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackd._settings import CaptureEnv

log = logging.getLogger("trackd")

FILE_MAX_BYTES = 1024 * 1024  # the uncommitted diff and the conda export, each
COMMAND_TIMEOUT_S = 30.0
DIFF_ARTIFACT = "source/uncommitted.diff"
CONDA_ARTIFACT = "environment/conda.yaml"
_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")
_RUNTIMES = (("kubepods", "kubernetes"), ("libpod", "podman"), ("docker", "docker"), ("containerd", "containerd"),
             ("lxc", "lxc"))

FRAMEWORKS = ("torch", "tensorflow", "jax", "scikit-learn", "transformers", "xgboost", "lightgbm",
              "keras", "numpy", "pandas", "lightning", "optuna")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class CapturedFile:
    content: bytes
    truncated: bool  # the output went past FILE_MAX_BYTES: `content` is its first FILE_MAX_BYTES

    @property
    def metadata(self) -> dict[str, str]:
        return {"truncated": "true", "limit_bytes": str(FILE_MAX_BYTES)} if self.truncated else {}


@dataclass(frozen=True)
class Captured:
    """What start_run records: the run's source and environment, and files kept as its artifacts."""

    source: dict[str, Any]
    environment: dict[str, Any]
    files: dict[str, CapturedFile] = field(default_factory=dict)  # artifact path → content


def capture(env: CaptureEnv | None = None, *, cwd: Path | None = None, root: Path = Path("/")) -> Captured:
    """The source (of the entry point's checkout, or `cwd`'s), the environment and the files.
    `root`: where /proc, /.dockerenv and the like are read (tests)."""
    env = env or CaptureEnv.from_env()
    cwd = cwd or _checkout()
    source, environment = capture_source(cwd), capture_environment()
    files: dict[str, CapturedFile] = {}
    if source.get("dirty") and (diff := uncommitted_diff(cwd)) is not None:
        files[DIFF_ARTIFACT] = diff
        source.update(diff_artifact=DIFF_ARTIFACT, diff_truncated=diff.truncated)
        if diff.truncated:
            log.warning("the uncommitted git diff is over %d bytes: its artifact %s holds the first %d only",
                        FILE_MAX_BYTES, DIFF_ARTIFACT, FILE_MAX_BYTES)
    environment.update(gpu_versions())
    environment.update(conda(env))
    if env.conda_prefix and (export := conda_export(env)) is not None:
        files[CONDA_ARTIFACT] = export
        environment["conda_artifact"] = CONDA_ARTIFACT
    if container_info := container(env, root):
        environment["container"] = container_info
    return Captured(source, environment, files)


def bounded_output(args: list[str], *, cwd: Path | None = None, limit: int = FILE_MAX_BYTES,
                   timeout_s: float = COMMAND_TIMEOUT_S) -> CapturedFile | None:
    """A command's standard output, at most `limit` bytes kept (the command is stopped past
    them); None when it cannot run, fails or takes longer than `timeout_s`."""
    try:
        process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   stdin=subprocess.DEVNULL)
    except OSError:
        return None
    chunks: list[bytes] = []
    size = 0

    def read() -> None:
        nonlocal size
        assert process.stdout is not None
        while size <= limit and (block := os.read(process.stdout.fileno(), 64 * 1024)):
            chunks.append(block)
            size += len(block)

    reader = threading.Thread(target=read, name="trackd-capture", daemon=True)
    reader.start()
    reader.join(timeout_s)
    timed_out, truncated = reader.is_alive(), size > limit
    if timed_out or truncated:
        process.kill()
    reader.join(5)
    try:
        code = process.wait(5)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if process.stdout is not None:
            process.stdout.close()
    if timed_out or (code != 0 and not truncated):
        return None
    return CapturedFile(b"".join(chunks)[:limit], truncated)


def uncommitted_diff(cwd: Path) -> CapturedFile | None:
    """`git diff HEAD` (staged and unstaged changes of tracked files; untracked files are not
    in it), bounded; None when there is none."""
    diff = bounded_output(["git", "diff", "HEAD", "--no-color", "--no-ext-diff"], cwd=cwd)
    return diff if diff is not None and diff.content else None


def _entry() -> Path | None:
    return Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c") else None


def _checkout() -> Path:
    """Where the source is: the entry point's directory, else the working directory."""
    entry = _entry()
    return entry.parent if entry and entry.exists() else Path.cwd()


def capture_source(cwd: Path | None = None) -> dict[str, Any]:
    cwd = cwd or _checkout()
    entry = _entry()
    source: dict[str, Any] = {"entry_point": str(entry) if entry else "<interactive>"}
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit:
        source["commit"] = commit
        source["branch"] = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or ""
        source["repository"] = _git(["config", "--get", "remote.origin.url"], cwd) or (
            _git(["rev-parse", "--show-toplevel"], cwd) or ""
        )
        source["dirty"] = bool(_git(["status", "--porcelain", "--untracked-files=no"], cwd))
    return source


def _gpus() -> list[dict[str, Any]]:
    try:
        import pynvml  # nvidia-ml-py, when installed
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append({"model": name.decode() if isinstance(name, bytes) else name,
                         "memory_bytes": str(pynvml.nvmlDeviceGetMemoryInfo(handle).total)})
        pynvml.nvmlShutdown()
        return gpus
    except Exception:  # noqa: BLE001 — no driver: no GPUs
        return []


def capture_environment() -> dict[str, Any]:
    import psutil

    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if "Name" in dist.metadata else ""  # none: a broken install
        if name:
            packages[name.lower()] = dist.version
    return {
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": packages,
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": str(psutil.virtual_memory().total),
        "gpus": _gpus(),
        "frameworks": {f: packages[f] for f in FRAMEWORKS if f in packages},
    }


def _version(number: int) -> str:
    """cuDNN's version number as text: 8902 → 8.9.2, 90100 → 9.1.0."""
    major, rest = (number // 10000, number % 10000) if number >= 10000 else (number // 1000, number % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def gpu_versions() -> dict[str, str]:
    """CUDA and cuDNN as torch was built with (asked only when the script has imported torch
    already: importing it here would cost a script that does not use it seconds at start_run) and
    the NVIDIA driver (NVML, else nvidia-smi); missing ones are left out."""
    found: dict[str, str] = {}
    if "torch" in sys.modules:
        try:
            torch: Any = sys.modules["torch"]
            if cuda := getattr(torch.version, "cuda", None):
                found["cuda_version"] = str(cuda)
            cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            if cudnn:
                found["cudnn_version"] = _version(int(cudnn))
        except Exception as exc:  # noqa: BLE001 — a broken torch install must not fail the run
            log.debug("torch did not tell its CUDA versions: %s", exc)
    driver = _nvml_driver()
    if driver is None and shutil.which("nvidia-smi"):
        out = bounded_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             limit=4096, timeout_s=10)
        driver = out.content.decode(errors="replace").strip().splitlines()[0] if out and out.content.strip() else None
    if driver:
        found["driver_version"] = driver
    return found


def _nvml_driver() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 — no driver
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def conda(env: CaptureEnv) -> dict[str, str]:
    """The conda environment's name and prefix, when the process runs in one."""
    if not env.conda_prefix:
        return {}
    return {"conda_prefix": env.conda_prefix, "conda_env": env.conda_env or Path(env.conda_prefix).name}


def conda_export(env: CaptureEnv) -> CapturedFile | None:
    """`conda env export` of the active environment, bounded; None without conda."""
    exe = env.conda_exe or shutil.which("conda")
    if not exe:
        return None
    return bounded_output([exe, "env", "export", "--prefix", env.conda_prefix])


def _read(path: Path, limit: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def container(env: CaptureEnv, root: Path = Path("/")) -> dict[str, str]:
    """What can be known of the container the process runs in: the image (TRACKD_IMAGE, or
    podman's /run/.containerenv), the runtime and id (/.dockerenv, /proc/1/cgroup, /proc/self/
    mountinfo) and, on Kubernetes, the pod, namespace and node. Empty outside a container."""
    found: dict[str, str] = {}
    containerenv = _read(root / "run" / ".containerenv")
    if (root / "run" / ".containerenv").exists():
        found["runtime"] = "podman"
        if match := re.search(r'^image="([^"]*)"', containerenv, re.M):
            found["image"] = match.group(1)
        if match := re.search(r'^id="([0-9a-f]+)"', containerenv, re.M):
            found["id"] = match.group(1)
    elif (root / ".dockerenv").exists():
        found["runtime"] = "docker"
    cgroup = _read(root / "proc" / "1" / "cgroup")
    for marker, runtime in _RUNTIMES:
        if marker in cgroup:
            found.setdefault("runtime", runtime)
            break
    if "id" not in found and found.get("runtime"):
        where = cgroup + _read(root / "proc" / "self" / "mountinfo")
        if match := _CONTAINER_ID.search(where):
            found["id"] = match.group(1)
    if env.kubernetes:
        found["runtime"] = "kubernetes"
        namespace = env.namespace or _read(root / "var" / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
                                           / "namespace").strip()
        found.update({k: v for k, v in (("pod", env.pod), ("namespace", namespace), ("node", env.node)) if v})
    if env.image:
        found["image"] = env.image
    return found
