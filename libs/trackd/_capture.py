"""Automatic capture of a run's source (git) and environment (Python, host, packages, GPUs)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

FRAMEWORKS = ("torch", "tensorflow", "jax", "scikit-learn", "transformers", "xgboost", "lightgbm",
              "keras", "numpy", "pandas", "lightning", "optuna")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def capture_source() -> dict[str, Any]:
    entry = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c") else None
    cwd = entry.parent if entry and entry.exists() else Path.cwd()
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
