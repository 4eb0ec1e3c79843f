"""`trackd projects|experiments|runs …`: tables of what the run service holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import RunStatus

from trackd._client import Client, default_client
from trackd._run import RunInfo, get_run, list_runs
from trackd.errors import TrackdError

projects = typer.Typer(no_args_is_help=True, help="Projects.")
experiments = typer.Typer(no_args_is_help=True, help="Experiments.")
runs = typer.Typer(no_args_is_help=True, help="Runs.")
console = Console()

STATUS_STYLE = {RunStatus.RUNNING.name: "cyan", RunStatus.FINISHED.name: "green", RunStatus.FAILED.name: "red",
                RunStatus.KILLED.name: "yellow", RunStatus.CRASHED.name: "magenta"}


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _fail(exc: TrackdError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


Item = TypeVar("Item")


def _pages(page: Callable[[str], tuple[Sequence[Item], str]]) -> list[Item]:
    """Every item of a listing, given how to read one page: page token → (items, next token)."""
    items: list[Item] = []
    token = ""
    while True:
        found, token = page(token)
        items.extend(found)
        if not token:
            return items


def _projects(client: Client) -> list[run_pb2.Project]:
    def page(token: str) -> tuple[Sequence[run_pb2.Project], str]:
        response = client.call("run", client.runs.ListProjects, run_pb2.ListProjectsRequest(page_token=token))
        return response.projects, response.next_page_token

    return _pages(page)


def _experiments(client: Client, project_id: str, archived: bool) -> list[run_pb2.Experiment]:
    def page(token: str) -> tuple[Sequence[run_pb2.Experiment], str]:
        response = client.call("run", client.runs.ListExperiments, run_pb2.ListExperimentsRequest(
            project_id=project_id, include_archived=archived, page_token=token))
        return response.experiments, response.next_page_token

    return _pages(page)


@projects.command("list")
def list_projects() -> None:
    """Every project."""
    try:
        found = _projects(default_client())
    except TrackdError as exc:
        raise _fail(exc) from None
    _table("projects", ("name", "id", "created"),
           ((p.name, p.id, p.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M")) for p in found))


@experiments.command("list")
def list_experiments(
    project: str = typer.Option("", help="Only this project's experiments."),
    archived: bool = typer.Option(False, help="Include archived experiments."),
) -> None:
    """Experiments, with their project."""
    client = default_client()
    try:
        project_id = ""
        if project:
            project_id = client.call("run", client.runs.GetProject, run_pb2.GetProjectRequest(name=project)).project.id
        found = _experiments(client, project_id, archived)
        names = {p.id: p.name for p in _projects(client)}
    except TrackdError as exc:
        raise _fail(exc) from None
    _table("experiments", ("project", "name", "id", "archived", "description"),
           ((names.get(e.project_id, e.project_id), e.name, e.id, "yes" if e.archived else "", e.description)
            for e in found))


def _status(run: RunInfo) -> str:
    return f"[{STATUS_STYLE.get(run.status, 'white')}]{run.status}[/]"


@runs.command("list")
def list_(
    experiment: str = typer.Option(None, "--experiment", "-e", help="Experiment name."),
    project: str = typer.Option("default", "--project", "-p"),
    view: str = typer.Option("active", help="active, deleted or all."),
    limit: int = typer.Option(100, help="At most this many runs."),
) -> None:
    """Runs, newest first."""
    try:
        found = list_runs(experiment, project=project, view=view, max_results=limit)
    except (TrackdError, ValueError) as exc:
        raise _fail(exc) if isinstance(exc, TrackdError) else typer.BadParameter(str(exc)) from None
    _table(f"runs of {project}/{experiment}" if experiment else "runs",
           ("id", "name", "status", "started", "duration", "params"),
           ((r.id, r.name, _status(r), r.start_time.strftime("%Y-%m-%d %H:%M:%S") if r.start_time else "",
             f"{r.duration_s:.1f}s", ", ".join(f"{k}={v}" for k, v in sorted(r.params.items()))[:60])
            for r in found))


@runs.command("show")
def show(run_id: str) -> None:
    """One run: status, times, params, tags, source and environment."""
    try:
        run = get_run(run_id)
    except TrackdError as exc:
        raise _fail(exc) from None
    rows = [("id", run.id), ("name", run.name), ("status", _status(run)), ("experiment", run.experiment_id),
            ("started", str(run.start_time or "")), ("ended", str(run.end_time or "")),
            ("duration", f"{run.duration_s:.1f}s"), ("user", run.user), ("parent", run.parent_run_id),
            ("deleted", "yes" if run.deleted else "no")]
    rows += [(f"param {k}", v) for k, v in sorted(run.params.items())]
    rows += [(f"tag {k}", v) for k, v in sorted(run.tags.items())]
    rows += [(f"source {k}", str(v)) for k, v in sorted(run.source.items())]
    env = run.environment
    rows += [(f"env {k}", str(env[k])) for k in ("python_version", "platform", "hostname", "cpu_count",
                                                  "memory_bytes", "frameworks", "gpus") if k in env]
    if run.notes:
        rows.append(("notes", run.notes))
    _table(f"run {run.name}", ("field", "value"), rows)


@runs.command("delete")
def delete(run_id: str) -> None:
    """Soft-delete a run (restore brings it back)."""
    client = default_client()
    try:
        client.call("run", client.runs.DeleteRun, run_pb2.DeleteRunRequest(run_id=run_id))
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"deleted run {run_id}")


@runs.command("restore")
def restore(run_id: str) -> None:
    """Restore a deleted run."""
    client = default_client()
    try:
        client.call("run", client.runs.RestoreRun, run_pb2.RestoreRunRequest(run_id=run_id))
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"restored run {run_id}")
