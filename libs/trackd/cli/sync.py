"""`trackd sync [DIR]`: upload offline runs (their journals: trackd._offline, trackd._sync) and send
metric batches left in the local spool (outages, crashes). Whatever a live process holds is
skipped and named."""

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
from trackd._offline import journals
from trackd._spool import SpoolInUse, default_root, leftover
from trackd._sync import sync_journal


def sync(
    directory: Path | None = typer.Argument(
        None, help="An offline run's journal, a directory of them, or a spool directory (default: "
                   "TRACKD_SPOOL_DIR or ~/.cache/trackd/spool, offline runs in its runs/)."),
    timeout: float = typer.Option(600.0, help="Seconds to wait for each stream."),
) -> None:
    """Upload every offline run under its own id and times, and replay every spooled metric
    stream; the server drops what it already has, so running it again adds nothing twice. A
    journal or spool still held by a live process (a run that is logging) is skipped and named."""
    console = Console()
    client = default_client()
    root = directory if directory is not None else default_root(client.settings.spool_dir)
    runs, streams = journals(root), leftover(root)
    if not runs and not streams:
        console.print(f"nothing to sync in {root}")
        return
    counts = {"synced": 0, "busy": 0, "failed": 0, "gone": 0}
    for journal in runs:
        done = sync_journal(client, journal, timeout_s=timeout)
        counts[done.outcome] += 1
        for warning in done.warnings:
            console.print(f"[yellow]run {done.run_id}: {escape(warning)}[/yellow]")
        if done.outcome == "busy":
            console.print(f"[yellow]skipped offline run {journal}[/yellow]: it is still open in a live process; "
                          "sync it after that process has ended")
        elif done.outcome == "failed":
            console.print(f"[red]offline run {done.run_id} not synced[/red]: {escape(done.message)}; kept in {journal}")
        elif done.outcome == "synced":
            note = f" ({escape(done.message)})" if done.message else ""
            console.print(f"uploaded offline run {done.run_id}{note}")
    for stream in streams:
        counts[_sync_one(console, client, root, stream, timeout)] += 1
    console.print(f"synced {counts['synced']} runs and streams" +
                  (f"; {counts['busy']} in use by a live process, left alone" if counts["busy"] else ""))
    if counts["failed"]:
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
