"""What the benchmarks share: the anchors virtualenv, the embedded stack with retry-on-start, and
starting / stopping an MLflow server from the anchors venv in its own process group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from trackd_platform.processes import free_port
from trackd_platform.stack import EmbeddedStack, StackPorts

BENCH = Path(__file__).resolve().parent
ANCHORS = BENCH / ".venv-anchors"
ANCHOR_PACKAGES = ("mlflow>=3,<4", "psycopg[binary]", "boto3")
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
console = Console() if sys.stdout.isatty() else Console(width=110)


def ensure_anchors(*modules: str) -> None:
    """Create bench/.venv-anchors on first use; install whichever of `modules` (importable name =
    package name) an older venv lacks."""
    if not (ANCHORS / "bin" / "mlflow").exists():
        console.print(f"[dim]creating {ANCHORS} (MLflow 3.x + psycopg + boto3)…[/]")
        subprocess.run([sys.executable, "-m", "venv", str(ANCHORS)], check=True)
        subprocess.run([str(ANCHORS / "bin" / "pip"), "install", "--quiet", *ANCHOR_PACKAGES], check=True)
    missing = [m for m in modules
               if subprocess.run([str(ANCHORS / "bin" / "python"), "-c", f"import {m}"],
                                 capture_output=True).returncode != 0]
    if missing:
        console.print(f"[dim]installing {', '.join(missing)} into {ANCHORS}…[/]")
        subprocess.run([str(ANCHORS / "bin" / "pip"), "install", "--quiet", *missing], check=True)


def anchor_json(script: str, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run bench/`script` in the anchors venv (the environment plus QUIET unless `env` is given);
    its last line of output is a JSON object, returned."""
    out = subprocess.run([str(ANCHORS / "bin" / "python"), str(BENCH / script), *args], capture_output=True,
                         text=True, env=dict(env) if env is not None else {**os.environ, **QUIET}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{script} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def sql(dsn: str, query: str, *args: object) -> object:
    """One statement on a fresh connection: its first column of the first row."""
    async def go() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()
    return asyncio.run(go())


def with_database(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + name


def start_stack(tmp: Path, attempts: int = 3) -> EmbeddedStack:
    """Free ports can be taken between choosing and binding them (tests may run beside us)."""
    for attempt in range(1, attempts + 1):
        stack = EmbeddedStack(tmp / f"stack-{attempt}", ports=StackPorts.free())
        try:
            stack.start()  # stops what it started when it fails
            return stack
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            console.print(f"[yellow]stack start failed ({exc}); retrying on other ports[/]")
    raise AssertionError("unreachable")


def start_mlflow(args: Sequence[str], tmp: Path, env: Mapping[str, str] | None = None,
                 timeout_s: float = 180) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server ARGS --host 127.0.0.1 --port FREE` in its own process group, logging to
    tmp/mlflow-server.log; returns once /health answers."""
    port = free_port()
    log = open(tmp / "mlflow-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(ANCHORS / "bin" / "mlflow"), "server", *args, "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **QUIET, **(env or {})},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}); see {tmp / 'mlflow-server.log'}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, uri
        except OSError:
            pass
        time.sleep(0.5)
    stop_mlflow(proc)
    raise RuntimeError(f"mlflow server did not answer /health within {timeout_s:.0f} s")


def stop_mlflow(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (gunicorn/uvicorn workers included), SIGKILL after 30 s."""
    if proc.poll() is not None:  # the leader is gone: take any worker it left behind with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
