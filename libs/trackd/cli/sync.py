"""`trackd sync`: send metric batches left in the local spool (offline mode, outages, crashes)."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from tqdm import tqdm

from trackd._client import default_client
from trackd._metrics import MetricWriter
from trackd._spool import default_root, leftover


def sync(timeout: float = typer.Option(600.0, help="Seconds to wait for each stream.")) -> None:
    """Replay every spooled stream to the ingest service; the server drops what it already has."""
    console = Console()
    client = default_client()
    root = default_root(client.settings.spool_dir)
    streams = leftover(root)
    if not streams:
        console.print(f"nothing to sync in {root}")
        return
    failed = 0
    for directory in streams:
        meta = json.loads((directory / "meta.json").read_text())
        writer = MetricWriter(meta["run_id"], client.channel("ingest"), spool_root=root, stream_id=meta["stream_id"])
        total = writer.spool.pending()
        with tqdm(total=total, desc=f"run {meta['run_id'][:8]}", unit="batch") as bar:
            deadline = time.monotonic() + timeout
            while writer.spool.pending() and time.monotonic() < deadline:
                writer.flush(0.5)
                bar.update(total - writer.spool.pending() - bar.n)
        left = writer.close(5)
        if left:
            failed += 1
            console.print(f"[red]{left} batches of run {meta['run_id']} not delivered[/red]; kept in {directory}")
    if failed:
        raise typer.Exit(1)
    console.print(f"synced {len(streams)} streams")
