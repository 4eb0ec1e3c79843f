"""Pages: home (projects and experiments), an experiment's runs table, a run (studies.py: studies);
and the writes those pages make (delete / restore runs, tags, notes).

A handler reads like a servicer: parse the request, call the services, render."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import grpc
from cachetools import TTLCache
from markdown_it import MarkdownIt
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2

from . import run_data, views
from .backends import Backends, Caller, page_call
from .compare import experiment_panel
from .http import require_csrf

MAX_HOME_EXPERIMENTS = 1000
KEYS_TTL_S = 10.0
DEFAULT_COLUMNS = 6  # params and metrics shown when the URL names none
MAX_CHILDREN = 100
MAX_NOTES = 100_000
HPO_STUDY_TAG, HPO_TRIAL_TAG = "trackd.hpo.study", "trackd.hpo.trial"

# Markdown with raw HTML off: a note's text can never become markup, and markdown-it refuses
# javascript:, vbscript:, file: and data: (but images) links.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str) -> str:
    html: str = _markdown.render(text)
    return html


class Pages:
    def __init__(self, backends: Backends, templates: Jinja2Templates) -> None:
        self._b = backends
        self._t = templates
        self._keys: TTLCache[tuple[bytes, str], query_pb2.ListRunKeysResponse] = TTLCache(maxsize=1024, ttl=KEYS_TTL_S)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.home),
            Route("/go", self.go),
            Route("/experiments/{experiment_id}", self.experiment),
            Route("/runs/{run_id}", self.run),
            Route("/runs-action/{action}", self.runs_action, methods=["POST"]),
            Route("/runs/{run_id}/tags", self.set_tag, methods=["POST"]),
            Route("/runs/{run_id}/tags/delete", self.delete_tag, methods=["POST"]),
            Route("/runs/{run_id}/notes", self.set_notes, methods=["POST"]),
        ]

    _call = staticmethod(page_call)  # one RPC for a page (backends.page_call)

    # -- home -------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        caller = self._b.caller(request)
        projects, experiments = await asyncio.gather(
            self._call(self._b.runs.ListProjects, run_pb2.ListProjectsRequest(page_size=1000), caller),
            self._call(self._b.runs.ListExperiments,
                       run_pb2.ListExperimentsRequest(page_size=MAX_HOME_EXPERIMENTS), caller))
        ids = [e.id for e in experiments.experiments]
        stats = {}
        if ids:
            found = await self._call(self._b.query.GetExperimentStats,
                                     query_pb2.GetExperimentStatsRequest(experiment_ids=ids), caller)
            stats = {s.experiment_id: s for s in found.stats}
        by_project: dict[str, list[dict[str, Any]]] = {p.id: [] for p in projects.projects}
        for e in experiments.experiments:
            s = stats.get(e.id)
            by_project.setdefault(e.project_id, []).append({
                "id": e.id, "name": e.name, "description": e.description,
                "runs": s.runs if s else 0, "running": s.running_runs if s else 0,
                "last_activity": views.format_time(s.last_activity_time) if s and s.HasField("last_activity_time")
                else "", "last_iso": views.iso_time(s.last_activity_time) if s else ""})
        for items in by_project.values():
            items.sort(key=lambda item: item["last_iso"], reverse=True)
        return self._t.TemplateResponse(request, "home.html", {
            "projects": [(p, by_project.get(p.id, [])) for p in projects.projects],
            "truncated": bool(experiments.next_page_token)})

    async def go(self, request: Request) -> Response:
        """The jump box: a run or experiment id, or an experiment's or run's name."""
        caller = self._b.caller(request)
        text = request.query_params.get("q", "").strip()
        if not text:
            return RedirectResponse("/", 303)
        if _is_id(text):
            if await _found(self._call(self._b.runs.GetRun, run_pb2.GetRunRequest(run_id=text), caller)):
                return RedirectResponse(f"/runs/{text}", 303)
            if await _found(self._call(self._b.runs.GetExperiment, run_pb2.GetExperimentRequest(experiment_id=text),
                                       caller)):
                return RedirectResponse(f"/experiments/{text}", 303)
        experiments = await self._call(self._b.runs.ListExperiments,
                                       run_pb2.ListExperimentsRequest(page_size=MAX_HOME_EXPERIMENTS), caller)
        for e in experiments.experiments:
            if e.name == text:
                return RedirectResponse(f"/experiments/{e.id}", 303)
        quoted = text.replace("\\", "\\\\").replace("'", "\\'")
        found = await self._call(self._b.query.SearchRuns, query_pb2.SearchRunsRequest(
            selection=query_pb2.RunSelection(filter=f"attributes.name = '{quoted}'"), page_size=1,
            columns=query_pb2.RunColumns()), caller)
        if found.results:
            return RedirectResponse(f"/runs/{found.results[0].run.id}", 303)
        raise HTTPException(404, f"No run or experiment is called {text!r} (or has that id).")

    # -- an experiment ----------------------------------------------------------------------------

    async def experiment(self, request: Request) -> Response:
        """The runs table. The experiment, the column chooser's keys and (when the URL names the
        columns) the page of runs are fetched at once; the default columns need the keys first."""
        caller = self._b.caller(request)
        experiment_id = request.path_params["experiment_id"]
        table = views.TableQuery.parse(_flat(request.query_params))
        selection = query_pb2.RunSelection(experiment_ids=[experiment_id], view_type=table.view_type)
        chosen = bool(table.params or table.metrics or table.tags or "cols" in request.query_params)
        found_experiment, keys, page = await asyncio.gather(
            self._call(self._b.runs.GetExperiment, run_pb2.GetExperimentRequest(experiment_id=experiment_id), caller,
                       not_found=f"No experiment has the id {experiment_id!r}."),
            self._run_keys(selection, caller),
            self._page(selection, table, caller) if chosen else asyncio.sleep(0, None),
            return_exceptions=True)
        if isinstance(found_experiment, BaseException):  # the experiment's own error (404) first
            raise found_experiment
        if isinstance(keys, BaseException):
            raise keys
        experiment = found_experiment.experiment
        metric_keys = sorted({m.key for m in keys.metric_keys})
        if not chosen:
            table = replace(table, params=tuple(keys.param_keys[:DEFAULT_COLUMNS]), metrics=tuple(
                k for k in metric_keys if not k.startswith(views.SYSTEM_PREFIX))[:DEFAULT_COLUMNS])
        project, page = await asyncio.gather(
            self._call(self._b.runs.GetProject, run_pb2.GetProjectRequest(project_id=experiment.project_id), caller),
            self._page(selection, table, caller) if not chosen else asyncio.sleep(0, page))
        if isinstance(page, BaseException):
            raise page
        assert page is not None  # chosen columns: the first round fetched it
        rows, next_token, error = page
        position = views.filter_error_position(error) if error and table.filter else None
        path = f"/experiments/{experiment.id}"
        return self._t.TemplateResponse(request, "experiment.html", {
            "experiment": experiment, "project": project.project, "table": table, "path": path, "rows": rows,
            "next_url": table.url(path, page_token=next_token) if next_token else "",
            "first_url": table.url(path) if table.page_token else "",
            "error": error, "error_position": position, "keys": keys, "metric_keys": metric_keys,
            "quote_key": views.quote_key, "page_sizes": views.PAGE_SIZES,
            **experiment_panel(request.query_params, keys, path, table),  # the charts panel and the CSV link
        }, status_code=400 if error else 200)

    async def _run_keys(self, selection: query_pb2.RunSelection, caller: Caller) -> query_pb2.ListRunKeysResponse:
        """The column chooser's keys, kept KEYS_TTL_S per experiment, view and caller: they change
        slowly, and every sort, filter or page of the table would ask again."""
        cache_key = (selection.SerializeToString(), caller.token)
        found = self._keys.get(cache_key)
        if found is None:
            found = await self._call(self._b.query.ListRunKeys, query_pb2.ListRunKeysRequest(selection=selection),
                                     caller)
            self._keys[cache_key] = found
        return found

    async def _page(self, selection: Any, table: views.TableQuery, caller: Caller
                    ) -> tuple[list[views.RunRow], str, str]:
        """(rows, next page token, "") — or ([], "", the reason) when the filter, order or token is invalid."""
        request = query_pb2.SearchRunsRequest(
            selection=query_pb2.RunSelection(experiment_ids=selection.experiment_ids, view_type=selection.view_type,
                                             filter=table.filter),
            order_by=[o.strip() for o in table.order_by.split(",") if o.strip()],
            page_size=table.page_size, page_token=table.page_token,
            columns=query_pb2.RunColumns(param_keys=table.params, tag_keys=table.tags, metric_keys=table.metrics))
        try:
            found = await self._call(self._b.query.SearchRuns, request, caller)
        except grpc.aio.AioRpcError as failed:
            if failed.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return [], "", failed.details() or "invalid request"
        return views.run_rows(found.results), found.next_page_token, ""

    async def runs_action(self, request: Request) -> Response:
        """Delete or restore the selected runs, then back to the table."""
        form = await require_csrf(request)
        action = request.path_params["action"]
        if action not in ("delete", "restore"):
            raise HTTPException(404, f"unknown action {action!r}")
        caller = self._b.caller(request)
        run_ids = (await request.form()).getlist("run_ids")
        if not run_ids:
            raise HTTPException(400, "Select at least one run first.")
        if action == "delete":
            await asyncio.gather(*(self._call(self._b.runs.DeleteRun, run_pb2.DeleteRunRequest(run_id=str(i)), caller)
                                   for i in run_ids))
        else:
            await asyncio.gather(*(self._call(self._b.runs.RestoreRun, run_pb2.RestoreRunRequest(run_id=str(i)),
                                              caller) for i in run_ids))
        return RedirectResponse(_local(str(form.get("next", "/"))), 303)

    # -- a run ------------------------------------------------------------------------------------

    async def run(self, request: Request) -> Response:
        caller = self._b.caller(request)
        run_id = request.path_params["run_id"]
        run = (await self._call(self._b.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id), caller,
                                not_found=f"No run has the id {run_id!r}.")).run
        tab = request.query_params.get("tab", "charts")
        if tab not in ("charts", "system", "overview", "artifacts", "logs", "media"):
            tab = "charts"
        experiment, latest, children = await asyncio.gather(
            self._call(self._b.runs.GetExperiment, run_pb2.GetExperimentRequest(experiment_id=run.experiment_id),
                       caller),
            self._call(self._b.query.GetLatestMetrics, query_pb2.GetLatestMetricsRequest(run_id=run.id), caller),
            self._call(self._b.runs.ListRuns, run_pb2.ListRunsRequest(
                parent_run_id=run.id, experiment_ids=[run.experiment_id], page_size=MAX_CHILDREN), caller))
        parent = None
        if run.parent_run_id:
            try:
                parent = (await self._call(self._b.runs.GetRun, run_pb2.GetRunRequest(run_id=run.parent_run_id),
                                           caller)).run
            except grpc.aio.AioRpcError:
                parent = None
        context: dict[str, Any] = {
            "run": run, "status": views.status_name(run.status), "experiment": experiment.experiment, "tab": tab,
            "latest": [(views.metric_label(m.key, m.context), views.format_value(m.value), m.step)
                       for m in latest.metrics],
            "charts": views.chart_groups(latest.metrics), "children": children.runs, "parent": parent,
            "params": views.group_params(run.params), "tags": sorted(run.tags.items()),
            "environment": views.environment_summary(run.environment),
            "packages": sorted(run.environment.packages.items()),
            "notes_html": render_markdown(run.notes) if run.notes else "",
            "study": run.tags.get(HPO_STUDY_TAG, ""), "trial": run.tags.get(HPO_TRIAL_TAG, ""),
            "start": views.format_time(run.start_time), "end": views.format_time(run.end_time),
            "duration": views.format_duration(run.duration_ms), "status_name": views.status_name,
        }
        if tab == "artifacts":
            context["artifacts"] = await self._artifact_tree(run.id, caller)
        elif tab == "logs":
            context.update(await run_data.logs_context(self._b, run.id, caller))
        elif tab == "media":
            context.update(await run_data.media_context(self._b, run.id, request.query_params, caller))
        return self._t.TemplateResponse(request, "run.html", context)

    async def _artifact_tree(self, run_id: str, caller: Caller) -> list[views.TreeEntry]:
        from trackd_api.artifact.v1 import artifact_pb2

        found: list[artifact_pb2.Artifact] = []
        token = ""
        while len(found) < 10_000:
            page = await self._call(self._b.artifacts.ListArtifacts, artifact_pb2.ListArtifactsRequest(
                run_id=run_id, recursive=True, page_size=1000, page_token=token), caller)
            found += page.artifacts
            token = page.next_page_token
            if not token:
                break
        return views.artifact_tree(found)

    async def set_tag(self, request: Request) -> Response:
        form = await require_csrf(request)
        run_id = request.path_params["run_id"]
        key, value = str(form.get("key", "")).strip(), str(form.get("value", ""))
        if not key:
            raise HTTPException(400, "A tag needs a key.")
        await self._call(self._b.runs.SetTags, run_pb2.SetTagsRequest(run_id=run_id, tags={key: value}),
                         self._b.caller(request))
        return RedirectResponse(f"/runs/{run_id}?tab=overview", 303)

    async def delete_tag(self, request: Request) -> Response:
        form = await require_csrf(request)
        run_id = request.path_params["run_id"]
        await self._call(self._b.runs.DeleteTags, run_pb2.DeleteTagsRequest(run_id=run_id, keys=[str(form.get("key"))]),
                         self._b.caller(request))
        return RedirectResponse(f"/runs/{run_id}?tab=overview", 303)

    async def set_notes(self, request: Request) -> Response:
        form = await require_csrf(request)
        run_id = request.path_params["run_id"]
        notes = str(form.get("notes", ""))
        if len(notes) > MAX_NOTES:
            raise HTTPException(400, f"Notes are at most {MAX_NOTES} characters, these are {len(notes)}.")
        await self._call(self._b.runs.SetNotes, run_pb2.SetNotesRequest(run_id=run_id, notes=notes),
                         self._b.caller(request))
        return RedirectResponse(f"/runs/{run_id}?tab=overview", 303)


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def _found(lookup: Awaitable[Any]) -> bool:
    """Whether a lookup by id found something: False on NOT_FOUND, other errors raised."""
    try:
        await lookup
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


def _flat(query: QueryParams) -> dict[str, str]:
    """The query string, with the column chooser's repeated checkboxes (p, m, t) joined."""
    flat = dict(query)
    for short, name in (("p", "params"), ("m", "metrics"), ("t", "tags")):
        if short in query:
            flat[name] = ",".join(query.getlist(short))
    return flat


def _local(url: str) -> str:
    """Only a path of this site: never redirect elsewhere."""
    return url if url.startswith("/") and not url.startswith("//") else "/"
