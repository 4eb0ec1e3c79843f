"""The model registry's pages: registered models with their latest versions and aliases; a model's
versions (source run, metric snapshot, metadata tags); moving an alias, after a confirmation step.

The confirmation is the server's: a move posted without `confirm=yes` answers a page that asks
(models.js shows the same question in a dialog and posts the confirmed form), so no write happens
by a stray click, with or without JavaScript."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from trackd_api.artifact.v1 import registry_pb2
from trackd_api.run.v1 import run_pb2

from . import views
from .backends import Backends, Caller, page_call
from .http import require_csrf

MAX_MODELS = 1000
CONCURRENT_LOOKUPS = 8
MAX_ALIAS = 256
MAX_RUN_NAMES = 200  # source runs looked up for their names


def version_row(v: registry_pb2.ModelVersion) -> dict[str, Any]:
    return {"version": v.version, "run_id": v.run_id, "path": v.path, "sha256": v.sha256,
            "aliases": sorted(v.aliases), "metrics": sorted(v.metrics.items()), "tags": sorted(v.metadata.items()),
            "created": views.format_time(v.create_time)}


def model_row(m: registry_pb2.RegisteredModel, latest: registry_pb2.ModelVersion | None) -> dict[str, Any]:
    return {"name": m.name, "description": m.description, "latest_version": m.latest_version,
            "aliases": sorted(m.aliases.items(), key=lambda a: (-a[1], a[0])), "tags": sorted(m.tags.items()),
            "created": views.format_time(m.create_time), "created_iso": views.iso_time(m.create_time),
            "latest": version_row(latest) if latest is not None else None}


class Models:
    def __init__(self, backends: Backends, templates: Jinja2Templates) -> None:
        self._b = backends
        self._t = templates

    def routes(self) -> list[Route]:
        return [
            Route("/models", self.index),
            Route("/models/{name:path}/alias", self.move_alias, methods=["POST"]),
            Route("/models/{name:path}", self.model),
        ]

    _call = staticmethod(page_call)  # one RPC for a page (backends.page_call)

    async def _run_names(self, run_ids: set[str], caller: Caller) -> dict[str, str]:
        """Each source run's name (its id's start when it is gone or unreadable), at most MAX_RUN_NAMES."""
        limit = asyncio.Semaphore(CONCURRENT_LOOKUPS)

        async def name(run_id: str) -> tuple[str, str]:
            async with limit:
                try:
                    run = (await self._call(self._b.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id), caller)).run
                except grpc.aio.AioRpcError:
                    return run_id, run_id[:8]
            return run_id, run.name or run_id[:8]

        return dict(await asyncio.gather(*(name(r) for r in sorted(run_ids)[:MAX_RUN_NAMES] if r)))

    async def index(self, request: Request) -> Response:
        caller = self._b.caller(request)
        text = request.query_params.get("q", "").strip()
        found = await self._call(self._b.registry.ListRegisteredModels, registry_pb2.ListRegisteredModelsRequest(
            name_contains=text, page_size=MAX_MODELS), caller)
        limit = asyncio.Semaphore(CONCURRENT_LOOKUPS)

        async def latest(m: registry_pb2.RegisteredModel) -> registry_pb2.ModelVersion | None:
            if not m.latest_version:
                return None
            async with limit:
                try:
                    return (await self._call(self._b.registry.GetModelVersion, registry_pb2.GetModelVersionRequest(
                        name=m.name, version=m.latest_version), caller)).version
                except grpc.aio.AioRpcError as error:
                    # FAILED_PRECONDITION: with auth off, two projects have a model of this name and
                    # a lookup by name alone is ambiguous; the row shows without its latest version
                    if error.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                        raise
                    return None

        versions = await asyncio.gather(*(latest(m) for m in found.models))
        rows = [model_row(m, v) for m, v in zip(found.models, versions, strict=True)]
        rows.sort(key=lambda r: r["name"].lower())
        names = await self._run_names({r["latest"]["run_id"] for r in rows if r["latest"]}, caller)
        return self._t.TemplateResponse(request, "models.html", {"models": rows, "q": text, "run_names": names})

    async def model(self, request: Request) -> Response:
        caller = self._b.caller(request)
        name = request.path_params["name"]
        gone = f"No registered model is called {name!r}."
        model, versions = await asyncio.gather(
            self._call(self._b.registry.GetRegisteredModel, registry_pb2.GetRegisteredModelRequest(name=name), caller,
                       not_found=gone),
            self._call(self._b.registry.ListModelVersions, registry_pb2.ListModelVersionsRequest(name=name), caller,
                       not_found=gone))
        rows = sorted((version_row(v) for v in versions.versions), key=lambda r: -r["version"])
        metric_keys = sorted({k for r in rows for k, _ in r["metrics"]})
        names = await self._run_names({r["run_id"] for r in rows}, caller)
        return self._t.TemplateResponse(request, "model.html", {
            "model": model_row(model.model, None), "versions": rows, "metric_keys": metric_keys,
            "metrics_of": {r["version"]: dict(r["metrics"]) for r in rows}, "run_names": names,
            "alias": request.query_params.get("alias", ""), "moved": request.query_params.get("moved", "")})

    async def move_alias(self, request: Request) -> Response:
        """Point an alias at a version: asks first (confirm=yes missing), then SetModelAlias."""
        form = await require_csrf(request)
        caller = self._b.caller(request)
        name = request.path_params["name"]
        alias = str(form.get("alias", "")).strip()
        raw = str(form.get("version", "")).strip()
        if not alias or len(alias) > MAX_ALIAS:
            raise HTTPException(400, f"An alias is 1 to {MAX_ALIAS} characters, e.g. champion.")
        if not raw.isdigit() or int(raw) < 1:
            raise HTTPException(400, f"version={raw!r}: a version number (1, 2, …).")
        version = int(raw)
        if form.get("confirm") != "yes":
            model = (await self._call(self._b.registry.GetRegisteredModel, registry_pb2.GetRegisteredModelRequest(
                name=name), caller, not_found=f"No registered model is called {name!r}.")).model
            return self._t.TemplateResponse(request, "model_alias_confirm.html", {
                "name": name, "alias": alias, "version": version, "current": model.aliases.get(alias, 0)})
        await self._call(self._b.registry.SetModelAlias, registry_pb2.SetModelAliasRequest(
            name=name, alias=alias, version=version), caller)
        return RedirectResponse(f"/models/{quote(name)}?moved={quote(alias)}", 303)
