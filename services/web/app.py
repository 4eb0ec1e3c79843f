"""Wiring of the web service: config → gRPC clients → live hub → routes → uvicorn.

`create_app` builds the ASGI app from its collaborators (the tests build it the same way)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import prometheus_client
import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from trackd_platform.config import WebConfig
from trackd_platform.server import configure_logging
from trackd_platform.telemetry import setup_tracing

from . import mlflow, views
from .artifacts import Artifacts
from .backends import Backends
from .charts import ChartData
from .compare import Compare
from .http import CSRF_FIELD, Edge, csrf_token, error_response, rpc_error_response, wants_json
from .live import LiveHub
from .login import Sessions, SessionState, signed_out
from .models import Models
from .runs import Pages
from .studies import Studies

HERE = Path(__file__).parent
log = logging.getLogger(__name__)

_TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
           409: "Conflict", 429: "Too many requests", 503: "Service unavailable"}


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=HERE / "templates")
    env = found.env
    env.globals.update(csrf_field=CSRF_FIELD, csrf_token=csrf_token)
    env.filters.update(duration=views.format_duration, value=views.format_value, bytes=views.format_bytes)
    return found


def create_app(config: WebConfig, backends: Backends, *, registry: prometheus_client.CollectorRegistry) -> Starlette:
    pages = templates()
    hub = LiveHub(backends, max_viewers=config.max_viewers, registry=registry)
    sessions = Sessions(backends, pages, auth_enabled=config.auth.enabled)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics(request: Request) -> Response:
        return Response(prometheus_client.generate_latest(registry), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    async def on_rpc_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, grpc.aio.AioRpcError)
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED and config.auth.enabled and not wants_json(request):
            return signed_out(request)  # no, revoked or expired token: sign in (again)
        return rpc_error_response(pages, request, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(pages, request, exc.status_code, _TITLES.get(exc.status_code, "Error"), exc.detail)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(pages, request, 500, "Something went wrong in trackd's web service",
                              "The error is logged; the page may work if you reload it.")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await hub.close()
        await backends.close()

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *Pages(backends, pages).routes(),
        *ChartData(backends, hub).routes(),
        *Artifacts(backends, pages).routes(),
        *Compare(backends, pages).routes(),
        *Studies(backends, pages).routes(),
        *Models(backends, pages).routes(),
        *sessions.routes(),
        *mlflow.routes(backends),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan,
        # a span per request, not per chunk sent (a live stream sends thousands)
        middleware=[Middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"]),
                    Middleware(Edge, registry=registry), Middleware(SessionState, sessions=sessions)],
        exception_handlers={grpc.aio.AioRpcError: on_rpc_error, HTTPException: on_http_error, Exception: on_error},
    )
    app.state.hub = hub
    return app


async def serve(config: WebConfig) -> None:
    setup_tracing(config.telemetry)
    registry = prometheus_client.CollectorRegistry()
    app = create_app(config, Backends(config.client), registry=registry)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.auth.enabled:
        log.warning("the web UI listens on %s with TRACKD_AUTH off: anyone who reaches it can read and change "
                    "every run. Bind 127.0.0.1 (TRACKD_WEB_HOST) or turn auth on.", config.host)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="on",
        http="httptools",  # the C parser: live streams send many small writes
        timeout_keep_alive=30, timeout_graceful_shutdown=5, proxy_headers=False))
    log.info("web serving http://%s:%d", config.host, config.port)
    await server.serve()


def main() -> None:
    import asyncio

    configure_logging("web")
    asyncio.run(serve(WebConfig.from_env()))
