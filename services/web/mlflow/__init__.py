"""MLflow's REST API 2.0 on the web service's port, mapped onto trackd's services over gRPC, so
`MLFLOW_TRACKING_URI=http://127.0.0.1:8080` is all existing MLflow code needs (docs/mlflow.md).

Each area module lists its endpoints as `ENDPOINTS`: (path under the prefix, methods, handler);
`protocol` holds what they share (fields, errors, the endpoint wrapper). An unknown path under
the prefix answers MLflow's ENDPOINT_NOT_FOUND."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..backends import Backends
from . import artifacts, experiments, metrics, models, registry, runs
from .protocol import ENDPOINT_NOT_FOUND, Handler, MlflowError, endpoint

# MLflow's client calls /api/2.0/mlflow/…; its own web UI calls some endpoints under /ajax-api.
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
Endpoints = Sequence[tuple[str, list[str], Handler]]


def routes(backends: Backends) -> list[BaseRoute]:
    table: list[tuple[str, list[str], Handler]] = [*experiments.ENDPOINTS, *runs.ENDPOINTS, *metrics.ENDPOINTS]
    table += [*models.ENDPOINTS, *registry.ENDPOINTS, *artifacts.ENDPOINTS]  # logged models, the registry
    found: list[BaseRoute] = [
        Route(prefix + path, endpoint(backends, handler), methods=methods)
        for prefix in PREFIXES for path, methods, handler in table
    ]

    async def unknown(request: Request) -> Response:
        return MlflowError(ENDPOINT_NOT_FOUND, f"No MLflow endpoint {request.method} {request.url.path} in trackd "
                                               "(docs/mlflow.md lists what is served).").response()

    found += artifacts.upload_route(backends)  # a raw body, not JSON
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    found += [Route(prefix + "/{rest:path}", unknown, methods=methods) for prefix in PREFIXES]
    found += artifacts.routes(backends)  # the mlflow-artifacts proxy: streamed bodies, not JSON endpoints
    return found
