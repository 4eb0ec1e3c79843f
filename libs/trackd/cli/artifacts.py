"""`trackd artifacts ls|get|put`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from trackd_platform.errors import InvalidArgument

from trackd._client import default_client
from trackd._run import download_artifacts, list_artifacts
from trackd.errors import TrackdError

app = typer.Typer(no_args_is_help=True, help="Artifacts of a run.")
console = Console()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


@app.command("ls")
def ls(run_id: str, path: str = typer.Argument("", help="A directory in the run's artifacts."),
       recursive: bool = typer.Option(False, "--recursive", "-r")) -> None:
    """List artifacts."""
    try:
        found = list_artifacts(run_id, path, recursive=recursive)
    except TrackdError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"artifacts of run {run_id}" + (f" under {path}" if path else ""))
    for column in ("path", "size", "type", "sha256"):
        table.add_column(column)
    for a in found:
        table.add_row(a.path, "" if a.is_dir else _human(a.size), a.type, a.sha256[:12])
    console.print(table)


@app.command("get")
def get(run_id: str, path: str, dst: Path = typer.Option(Path("."), "--dst", help="Where to write.")) -> None:
    """Download a file or directory (resumes an interrupted download)."""
    try:
        written = download_artifacts(run_id, path, dst)
    except TrackdError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"downloaded {len(written)} files into {dst}")


@app.command("put")
def put(run_id: str, local: Path, path: str = typer.Option("", "--path", help="Artifact path (default: the name)."),
        type: str = typer.Option("file", help="file, model, figure, data or text.")) -> None:
    """Upload a file or directory to a run."""
    from trackd import _artifacts

    client = default_client()
    if not local.exists():
        raise typer.BadParameter(f"{local} does not exist")
    target = (path or local.name).strip("/")
    files = [(local, target)] if local.is_file() else [
        (f, f"{target}/{f.relative_to(local).as_posix()}") for f in sorted(local.rglob("*")) if f.is_file()]
    try:
        for f, p in files:
            _artifacts.upload(client, run_id, f, p, type=type)
    except (TrackdError, InvalidArgument) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"uploaded {len(files)} files to run {run_id} under {target}")
