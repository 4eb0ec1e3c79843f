"""`trackd models ls|show|alias`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from trackd._registry import list_model_versions, list_models, set_model_alias
from trackd.errors import TrackdError

app = typer.Typer(no_args_is_help=True, help="The model registry.")
console = Console()


def _fail(exc: TrackdError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command("ls")
def ls(name_contains: str = typer.Argument("", help="Only names containing this.")) -> None:
    """Registered models."""
    try:
        models = list_models(name_contains)
    except TrackdError as exc:
        raise _fail(exc) from None
    table = Table(title="registered models")
    for column in ("name", "latest version", "aliases", "description"):
        table.add_column(column)
    for m in models:
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, str(m.latest_version or ""), aliases, m.description)
    console.print(table)


@app.command("show")
def show(name: str) -> None:
    """A model's versions: source run, path, aliases, metric snapshot."""
    try:
        versions = list_model_versions(name)
    except TrackdError as exc:
        raise _fail(exc) from None
    table = Table(title=f"model {name}")
    for column in ("version", "aliases", "run", "path", "metrics", "metadata"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.version), ", ".join(v.aliases), v.run_id, v.path,
                      ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))[:60],
                      ", ".join(f"{k}={val}" for k, val in sorted(v.metadata.items()))[:40])
    console.print(table)


@app.command("alias")
def alias(name: str, alias: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION (atomic)."""
    try:
        set_model_alias(name, alias, version)
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"{name}@{alias} → version {version}")
