"""A run's artifacts in the browser: previews (images, text, Markdown, JSON, YAML, CSV) and
streamed downloads. Nothing an artifact holds is ever active content: HTML and SVG are sent as
attachments, previews are escaped text or safe Markdown, and every file response carries a
sandboxing Content-Security-Policy."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from trackd_api.artifact.v1 import artifact_pb2

from . import views
from .backends import PAGE_TIMEOUT_S, Backends
from .runs import render_markdown

PREVIEW_BYTES = 512 * 1024  # text previews read at most this much
PREVIEW_IMAGE_BYTES = 32 * 1024 * 1024
CSV_ROWS = 50
DOWNLOAD_TIMEOUT_S = 3600.0


class Artifacts:
    def __init__(self, backends: Backends, templates: Jinja2Templates) -> None:
        self._b = backends
        self._t = templates

    def routes(self) -> list[Route]:
        return [
            Route("/runs/{run_id}/artifacts/preview", self.preview),
            Route("/runs/{run_id}/artifacts/file", self.file),
        ]

    async def _stat(self, request: Request) -> Any:
        path = request.query_params.get("path", "")
        if not path:
            raise HTTPException(400, "path names the artifact")
        try:
            return (await self._b.artifacts.StatArtifact(
                artifact_pb2.StatArtifactRequest(run_id=request.path_params["run_id"], path=path),
                metadata=self._b.caller(request).metadata, timeout=PAGE_TIMEOUT_S)).artifact
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise HTTPException(404, f"No artifact {path!r} in this run.") from None
            raise

    async def _read(self, request: Request, artifact: Any, limit: int) -> bytes:
        parts = []
        call = self._b.artifacts.DownloadArtifact(
            artifact_pb2.DownloadArtifactRequest(run_id=artifact.run_id, path=artifact.path, length=limit),
            metadata=self._b.caller(request).metadata, timeout=PAGE_TIMEOUT_S)
        async for part in call:
            parts.append(part.chunk)
        return b"".join(parts)

    async def preview(self, request: Request) -> Response:
        artifact = await self._stat(request)
        kind = views.preview_kind(artifact.path)
        context: dict[str, Any] = {"artifact": artifact, "kind": kind, "size": views.format_bytes(artifact.size_bytes),
                                   "run_id": artifact.run_id, "quoted_path": quote(artifact.path)}
        if kind == "image" and artifact.size_bytes > PREVIEW_IMAGE_BYTES:
            context["kind"] = ""
        elif kind and kind != "image":
            raw = await self._read(request, artifact, PREVIEW_BYTES)
            context["truncated"] = artifact.size_bytes > len(raw)
            context.update(_text_preview(kind, raw.decode("utf-8", errors="replace"), truncated=context["truncated"]))
        return self._t.TemplateResponse(request, "artifact_preview.html", context)

    async def file(self, request: Request) -> Response:
        """The artifact's bytes, streamed as they arrive from the artifact service (the browser shows
        its own progress: Content-Length is set). Images are shown inline; everything else is an
        attachment."""
        artifact = await self._stat(request)
        name = artifact.path.rsplit("/", 1)[-1]
        suffix = name[name.rfind("."):].lower() if "." in name else ""
        inline = suffix in views.IMAGE_TYPES and request.query_params.get("download") != "1"
        media_type = views.IMAGE_TYPES[suffix] if inline else "application/octet-stream"
        disposition = "inline" if inline else "attachment"
        call = self._b.artifacts.DownloadArtifact(
            artifact_pb2.DownloadArtifactRequest(run_id=artifact.run_id, path=artifact.path),
            metadata=self._b.caller(request).metadata, timeout=DOWNLOAD_TIMEOUT_S)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for part in call:
                    yield part.chunk
            finally:
                call.cancel()

        return StreamingResponse(body(), media_type=media_type, headers={
            "content-length": str(artifact.size_bytes),
            "content-disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
            "content-security-policy": "default-src 'none'; sandbox",
            "x-trackd-sha256": artifact.sha256,
        })


def _text_preview(kind: str, text: str, *, truncated: bool) -> dict[str, Any]:
    if kind == "markdown":
        return {"html": render_markdown(text)}
    if kind == "json" and not truncated:
        try:
            return {"text": json.dumps(json.loads(text), indent=2, ensure_ascii=False)}
        except ValueError:
            return {"text": text}
    if kind == "csv":
        dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
        rows = []
        for i, row in enumerate(csv.reader(io.StringIO(text), dialect=dialect)):
            if i > CSV_ROWS:
                break
            rows.append(row)
        return {"rows": rows[:CSV_ROWS + 1]}
    return {"text": text}
