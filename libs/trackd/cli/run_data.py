"""`trackd runs logs|media|inputs|using`: a run's console output, media and inputs, and the runs
that used a dataset."""

from __future__ import annotations

import sys

import typer

from trackd._client import Client
from trackd._run_data import get_media, list_inputs, read_logs, runs_with_input
from trackd.cli.tables import _fail, _table, runs
from trackd.errors import TrackdError


@runs.command("logs")
def logs(
    run_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing what is appended until the run ends."),
    tail: int = typer.Option(0, "--tail-bytes", help="Only about the last this many bytes (0: all)."),
) -> None:
    """Print RUN_ID's console output (stdout and stderr as the process wrote them)."""
    try:
        for line in read_logs(run_id, follow=follow, tail_bytes=tail, client=Client()):
            sys.stdout.write(line.text)
            sys.stdout.flush()
    except TrackdError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@runs.command("media")
def media(run_id: str, key: str = typer.Argument("", help="Only this key.")) -> None:
    """List the images, histograms and tables RUN_ID logged, by key and step."""
    try:
        items = get_media(run_id, key, download=False, client=Client())
    except TrackdError as exc:
        raise _fail(exc) from None
    _table(f"media of run {run_id}", ["key", "step", "kind", "info"],
           ((m.key, str(m.step), m.kind, ", ".join(f"{k}={v}" for k, v in m.info.items() if v != ""))
            for m in items))


@runs.command("inputs")
def inputs(run_id: str) -> None:
    """The datasets RUN_ID read (log_input)."""
    try:
        found = list_inputs(run_id, client=Client())
    except TrackdError as exc:
        raise _fail(exc) from None
    _table(f"inputs of run {run_id}", ["context", "uri", "digest", "rows"],
           ((i.context, i.uri, i.digest, "" if i.rows is None else str(i.rows)) for i in found))


@runs.command("using")
def using(digest: str, uri: str = typer.Option("", "--uri", help="Only inputs with this uri too.")) -> None:
    """The runs that used the dataset with DIGEST (newest first)."""
    try:
        found = runs_with_input(digest, uri=uri, client=Client())
    except TrackdError as exc:
        raise _fail(exc) from None
    _table(f"runs that used {digest}", ["run", "context", "uri", "logged"],
           ((i.run_id, i.context, i.uri, i.time.isoformat(timespec="seconds") if i.time else "") for i in found))
