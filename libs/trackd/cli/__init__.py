"""The `trackd` command line."""

from __future__ import annotations

import typer

from trackd.cli import (  # noqa: F401  (search and run_data add runs commands)
    artifacts,
    events,
    hpo,
    models,
    report,
    run_data,
    search,
    stack,
    sync,
    tables,
    tokens,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="trackd: experiment tracking and HPO.")
app.command("up")(stack.up)
app.command("sync")(sync.sync)
app.command("report")(report.report)
app.add_typer(tables.projects, name="projects")
app.add_typer(tables.experiments, name="experiments")
app.add_typer(tables.runs, name="runs")
app.add_typer(events.app, name="events")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(models.app, name="models")
app.add_typer(hpo.app, name="hpo")
app.add_typer(tokens.app, name="tokens")


def main() -> None:
    app()
