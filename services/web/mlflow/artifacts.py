"""MLflow's `mlflow-artifacts` proxy over trackd's artifact service, so `mlflow.log_artifact(s)`,
`list_artifacts`, `download_artifacts` and the files of `log_model` land in trackd's
content-addressed store and show on the run's page.

An MLflow artifact location is `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>`: the
run's trackd artifact `<path>`. Uploads and downloads are streamed chunk by chunk through gRPC
(never a whole file in memory). trackd keeps an artifact immutable: a PUT of other content to a
path that holds one is RESOURCE_ALREADY_EXISTS (the same content again is a no-op), where MLflow's
own server would overwrite. MLflow's proxied multipart upload (off unless the client sets
MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD) answers MLflow's "not supported" message, on which the
client falls back to one streamed PUT."""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from trackd_api.artifact.v1 import artifact_pb2
from trackd_api.run.v1 import run_pb2

from ..backends import Backends
from .protocol import (
    BAD_REQUEST,
    CALL_TIMEOUT_S,
    FROM_GRPC,
    INTERNAL_ERROR,
    Call,
    MlflowError,
    invalid,
    not_found,
)
from .runs import get_run

log = logging.getLogger(__name__)

PREFIX = "/api/2.0/mlflow-artifacts"
CHUNK = 1024 * 1024  # the size of the gRPC messages an upload is cut into
TRANSFER_TIMEOUT_S = 3600.0  # deadline of one upload or download stream
LIST_PAGE = 1000
# MLflow's client falls back to a plain PUT on a message that starts with this
# (mlflow.exceptions._UnsupportedMultipartUploadException.MESSAGE).
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Location:
    """Where an MLflow artifact path lives in trackd: the run and the path inside its artifacts."""

    experiment_id: str
    run_id: str
    path: str  # "" for the run's artifact root

    @property
    def uri(self) -> str:
        tail = f"/{self.path}" if self.path else ""
        return f"mlflow-artifacts:/{self.experiment_id}/{self.run_id}/artifacts{tail}"


def parse_location(path: str, *, allow_root: bool = False) -> Location:
    """`<experiment_id>/<run_id>/artifacts[/<path>]` (what follows `mlflow-artifacts:/` or the
    proxy's `/artifacts/`). INVALID_PARAMETER_VALUE for anything else, or an unsafe path."""
    parts = path.strip("/").split("/", 3)
    if len(parts) < 3 or parts[2] != "artifacts" or not parts[0] or not _RUN_ID.match(parts[1]):
        raise invalid(f"Artifact path {path[:200]!r} is not of the form <experiment_id>/<run_id>/artifacts/<path>: "
                      "trackd keeps every artifact in a run")
    rest = _without_dots(parts[3].strip("/") if len(parts) == 4 else "")
    if not rest and not allow_root:
        raise invalid("Give the artifact's path inside the run's artifacts")
    if rest and any(s in ("", ".", "..") for s in rest.split("/")) or "\\" in rest or "\x00" in rest:
        raise invalid(f"Invalid artifact path {rest[:200]!r}: no empty or '..' segments")
    return Location(parts[0], parts[1], rest)


def _without_dots(path: str) -> str:
    """`path` without its "." segments: MLflow's client lists and downloads "." (the whole run) as
    `<root>/.` and the files it finds as `./<name>`, which its own server reads as the root."""
    return "/".join(s for s in path.split("/") if s != ".") if path else ""


def parse_uri(uri: str) -> Location:
    """An `mlflow-artifacts:/…` URI (or the proxy URL a client resolved it to) as a Location."""
    for marker in ("/mlflow-artifacts/artifacts/", "mlflow-artifacts://", "mlflow-artifacts:/"):
        if marker in uri:
            tail = uri.split(marker, 1)[1]
            if marker == "mlflow-artifacts://" and "/" in tail:
                tail = tail.split("/", 1)[1]  # a host part
            return parse_location(tail, allow_root=True)
    raise invalid(f"Source {uri[:200]!r} is not an mlflow-artifacts URI of a trackd run")


def _error_response(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, MlflowError):
        return error.response()
    assert isinstance(error, grpc.aio.AioRpcError)
    code = FROM_GRPC.get(error.code(), INTERNAL_ERROR)
    if code == INTERNAL_ERROR:
        log.warning("%s: the artifact service answered %s: %s", request.url.path, error.code(), error.details())
    return MlflowError(code, error.details() or str(error.code())).response()


def _guarded(serve: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        try:
            return await serve(request)
        except (MlflowError, grpc.aio.AioRpcError) as error:
            return _error_response(request, error)
        except ClientDisconnect:
            return MlflowError(BAD_REQUEST, "The client went away before the upload was complete.").response()

    return guarded


class ArtifactProxy:
    """The `/api/2.0/mlflow-artifacts/…` routes."""

    def __init__(self, backends: Backends) -> None:
        self._b = backends

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PREFIX}/artifacts", _guarded(self.listing), methods=["GET"]),
            Route(PREFIX + "/artifacts/{path:path}", _guarded(self.upload), methods=["PUT"]),
            Route(PREFIX + "/artifacts/{path:path}", _guarded(self.download), methods=["GET"]),
            Route(PREFIX + "/artifacts/{path:path}", _guarded(self.delete), methods=["DELETE"]),
            Route(PREFIX + "/mpu/{step}/{path:path}", _guarded(self.multipart), methods=["POST"]),
            Route(PREFIX + "/{rest:path}", _guarded(self.unknown), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    async def unknown(self, request: Request) -> Response:
        raise MlflowError("ENDPOINT_NOT_FOUND", f"No mlflow-artifacts endpoint {request.method} {request.url.path} "
                                                "in trackd (docs/mlflow.md lists what is served).")

    async def upload(self, request: Request) -> Response:
        """PUT: the request body, streamed into UploadArtifact in 1 MiB messages."""
        where = parse_location(request.path_params["path"])
        length = request.headers.get("content-length", "")
        size = int(length) if length.isdigit() else 0
        header = artifact_pb2.UploadHeader(run_id=where.run_id, path=where.path, type=artifact_pb2.ARTIFACT_TYPE_FILE,
                                           expected_size_bytes=size)

        async def messages() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
            yield artifact_pb2.UploadArtifactRequest(header=header)
            pending = bytearray()
            async for part in request.stream():
                pending += part
                while len(pending) >= CHUNK:
                    yield artifact_pb2.UploadArtifactRequest(chunk=bytes(pending[:CHUNK]))
                    del pending[:CHUNK]
            if pending:
                yield artifact_pb2.UploadArtifactRequest(chunk=bytes(pending))

        timeout = max(CALL_TIMEOUT_S, size / (5 * 1024 * 1024)) if size else TRANSFER_TIMEOUT_S
        await self._b.artifacts.UploadArtifact(messages(), metadata=self._b.caller(request).metadata, timeout=timeout)
        return JSONResponse({})

    async def download(self, request: Request) -> Response:
        """GET: the file's bytes as DownloadArtifact streams them (Content-Length from a stat first,
        so a missing file is a 404 before any byte is sent)."""
        where = parse_location(request.path_params["path"])
        metadata = self._b.caller(request).metadata
        artifact = await self._stat(where, metadata)
        call = self._b.artifacts.DownloadArtifact(
            artifact_pb2.DownloadArtifactRequest(run_id=where.run_id, path=where.path),
            metadata=metadata, timeout=TRANSFER_TIMEOUT_S)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for part in call:
                    yield part.chunk
            finally:
                call.cancel()

        name = posixpath.basename(where.path)
        return StreamingResponse(body(), media_type="application/octet-stream", headers={
            "content-length": str(artifact.size_bytes),
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; sandbox",
        })

    async def _stat(self, where: Location, metadata: Any) -> artifact_pb2.Artifact:
        try:
            response = await self._b.artifacts.StatArtifact(
                artifact_pb2.StatArtifactRequest(run_id=where.run_id, path=where.path),
                metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise not_found(f"No artifact {where.path!r} in run {where.run_id}") from None
            raise
        return response.artifact

    async def listing(self, request: Request) -> Response:
        """GET ?path=<experiment_id>/<run_id>/artifacts[/<dir>]: the directory's direct children,
        `{"files": [{"path": <basename>, "is_dir": …, "file_size": …}]}` (a file, or nothing: [])."""
        raw = request.query_params.get("path", "")
        if not raw:
            return JSONResponse({"files": []})  # MLflow's root lists experiments; trackd's runs are per run
        where = parse_location(raw, allow_root=True)
        files = [_file_info(a) for a in await self.children(where, self._b.caller(request).metadata)]
        return JSONResponse({"files": files})

    async def children(self, where: Location, metadata: Any) -> list[artifact_pb2.Artifact]:
        """Every direct child (files and sub-directories ending in '/') of the directory `where`."""
        found: list[artifact_pb2.Artifact] = []
        token = ""
        while True:
            page = await self._b.artifacts.ListArtifacts(
                artifact_pb2.ListArtifactsRequest(run_id=where.run_id, prefix=where.path, recursive=False,
                                                  page_size=LIST_PAGE, page_token=token),
                metadata=metadata, timeout=CALL_TIMEOUT_S)
            seen = {a.path for a in found}
            found += [a for a in page.artifacts if a.path not in seen]  # a directory may span two pages
            token = page.next_page_token
            if not token:
                return found

    async def delete(self, request: Request) -> Response:
        """DELETE: the file, or every file under the directory (MLflow's delete_artifacts)."""
        where = parse_location(request.path_params["path"], allow_root=True)
        metadata = self._b.caller(request).metadata
        paths = await self.files_under(where, metadata)
        if not paths:
            raise not_found(f"No artifact {where.path!r} in run {where.run_id}")
        for path in paths:
            await self._b.artifacts.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(run_id=where.run_id, path=path),
                                                   metadata=metadata, timeout=CALL_TIMEOUT_S)
        return JSONResponse({})

    async def files_under(self, where: Location, metadata: Any) -> list[str]:
        """The file at `where`, else every file under it (recursively)."""
        if where.path:
            try:
                return [(await self._stat(where, metadata)).path]
            except MlflowError:
                pass
        found: list[str] = []
        token = ""
        while True:
            page = await self._b.artifacts.ListArtifacts(
                artifact_pb2.ListArtifactsRequest(run_id=where.run_id, prefix=where.path, recursive=True,
                                                  page_size=LIST_PAGE, page_token=token),
                metadata=metadata, timeout=CALL_TIMEOUT_S)
            found += [a.path for a in page.artifacts]
            token = page.next_page_token
            if not token:
                return found

    async def multipart(self, request: Request) -> Response:
        """MLflow's proxied multipart upload: the client then falls back to one streamed PUT."""
        if request.path_params["step"] not in ("create", "complete", "abort"):
            return await self.unknown(request)
        parse_location(request.path_params["path"])
        raise MlflowError("NOT_IMPLEMENTED", f"{MULTIPART_UNSUPPORTED}: trackd streams large files through "
                                             "one PUT (or the SDK's direct S3 upload)")


UPLOAD_MAX_BYTES = 10 * 1024 * 1024  # MLflow's upload-artifact limit


def upload_route(backends: Backends) -> list[BaseRoute]:
    """MLflow's UI's `upload-artifact` (POST ?run_uuid=&path=, the file as the raw body, at most
    10 MB): one file into the run's artifacts."""

    async def upload(request: Request) -> Response:
        run_id = request.query_params.get("run_uuid", "")
        if not run_id:
            raise invalid("Request must specify run_uuid.")
        path = request.query_params.get("path", "")
        if not path:
            raise invalid("Request must specify path.")
        if path.startswith("/") or any(s in ("", "..") for s in path.split("/")) or "\\" in path or "\x00" in path:
            raise invalid("Invalid path")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > UPLOAD_MAX_BYTES:
            raise invalid("Artifact size is too large. Max size is 10MB.")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > UPLOAD_MAX_BYTES:
                raise invalid("Artifact size is too large. Max size is 10MB.")
        if not data:
            raise invalid("Request must specify data.")
        metadata = backends.caller(request).metadata
        run = (await backends.runs.GetRun(_run_request(run_id), metadata=metadata, timeout=CALL_TIMEOUT_S)).run
        header = artifact_pb2.UploadHeader(run_id=run.id, path=_without_dots(path),
                                           type=artifact_pb2.ARTIFACT_TYPE_FILE, expected_size_bytes=len(data))

        async def messages() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
            yield artifact_pb2.UploadArtifactRequest(header=header)
            for start in range(0, len(data), CHUNK):
                yield artifact_pb2.UploadArtifactRequest(chunk=bytes(data[start:start + CHUNK]))

        await backends.artifacts.UploadArtifact(messages(), metadata=metadata, timeout=CALL_TIMEOUT_S)
        return JSONResponse({})

    return [Route(prefix + "/upload-artifact", _guarded(upload), methods=["POST"])
            for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")]


def _run_request(run_id: str) -> run_pb2.GetRunRequest:
    if not _RUN_ID.match(run_id):
        raise not_found(f"Run '{run_id[:80]}' not found")
    return run_pb2.GetRunRequest(run_id=run_id)


async def list_artifacts(call: Call) -> dict[str, Any]:
    """MLflow's REST `artifacts/list` (what MLflow's own UI reads): the direct children of `path`
    in a run's artifacts, with their paths from the run's artifact root."""
    run_id = call.get("run_id", str) or call.get("run_uuid", str)
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'.")
    raw = call.get("path", str, "") or ""
    if raw.startswith("/") or any(s == ".." for s in raw.split("/")) or "\\" in raw or "\x00" in raw:
        raise invalid("Invalid path")
    if call.get("page_token", str):
        raise invalid("Invalid page_token: trackd answers the whole directory in one page")
    run = await get_run(call, run_id)
    where = Location(run.experiment_id, run.id, _without_dots(raw.strip("/")))
    found: list[artifact_pb2.Artifact] = []
    token = ""
    while True:
        page = await call.rpc(call.backends.artifacts.ListArtifacts, artifact_pb2.ListArtifactsRequest(
            run_id=run.id, prefix=where.path, recursive=False, page_size=LIST_PAGE, page_token=token))
        seen = {a.path for a in found}
        found += [a for a in page.artifacts if a.path not in seen]  # a directory may span two pages
        token = page.next_page_token
        if not token:
            break
    files = [{**_file_info(a), "path": a.path.rstrip("/")} for a in found]
    return {"root_uri": Location(run.experiment_id, run.id, "").uri, "files": files}


ENDPOINTS = [("/artifacts/list", ["GET"], list_artifacts)]


def _file_info(artifact: artifact_pb2.Artifact) -> dict[str, Any]:
    is_dir = artifact.path.endswith("/")
    name = posixpath.basename(artifact.path.rstrip("/"))
    info: dict[str, Any] = {"path": name, "is_dir": is_dir}
    if not is_dir:
        info["file_size"] = artifact.size_bytes
    return info


def routes(backends: Backends) -> list[BaseRoute]:
    return ArtifactProxy(backends).routes()
