"""`trackd sync`: send metric batches left in the local spool (offline mode, outages, crashes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from tqdm import tqdm

from trackd._client import Client, default_client
from trackd._metrics import CONTEXT_NAMES, MetricWriter
from trackd._spool import SpoolInUse, default_root, leftover


def sync(timeout: float = typer.Option(600.0, help="Seconds to wait for each stream.")) -> None:
    """Replay every spooled stream to the ingest service; the server drops what it already has.
    A spool still held by a live process (a run that is logging) is skipped and named."""
    console = Console()
    client = default_client()
    root = default_root(client.settings.spool_dir)
    streams = leftover(root)
    if not streams:
        console.print(f"nothing to sync in {root}")
        return
    synced = busy = failed = 0
    for directory in streams:
        outcome = _sync_one(console, client, root, directory, timeout)
        synced += outcome == "synced"
        busy += outcome == "busy"
        failed += outcome == "failed"
    console.print(f"synced {synced} streams" + (f"; {busy} in use by a live process, left alone" if busy else ""))
    if failed:
        raise typer.Exit(1)


def _sync_one(console: Console, client: Client, root: Path, directory: Path, timeout: float) -> str:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        writer = MetricWriter(meta["run_id"], client.channel("ingest"), spool_root=root, stream_id=meta["stream_id"],
                              resume=True)
    except SpoolInUse:
        console.print(f"[yellow]skipped {directory}[/yellow]: its run is still logging (the spool is held by a "
                      "live process); sync it after that process has ended")
        return "busy"
    except FileNotFoundError:  # delivered by its own process meanwhile
        return "synced"
    total = writer.spool.pending()
    with tqdm(total=total, desc=f"run {meta['run_id'][:8]}", unit="batch") as bar:
        deadline = time.monotonic() + timeout
        while writer.spool.pending() and time.monotonic() < deadline and not writer.failure:
            writer.flush(0.5)
            bar.update(total - writer.spool.pending() - bar.n)
    left = writer.close(5)
    for (key, context), reason in writer.rejected.items():
        console.print(f"[yellow]run {meta['run_id']}: metric {escape(repr(key))} "
                      f"({CONTEXT_NAMES.get(context, context)}) refused by the server, not stored[/yellow]: "
                      f"{escape(reason)}")
    if left:
        why = f" (the server refused them: {escape(writer.failure)})" if writer.failure else ""
        console.print(f"[red]{left} batches of run {meta['run_id']} not delivered[/red]{why}; kept in {directory}")
        return "failed"
    return "synced"
