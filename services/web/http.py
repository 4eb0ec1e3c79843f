"""What every response of the web service shares: security headers (a Content-Security-Policy
without inline scripts), the CSRF cookie and its check, the mapping of gRPC errors to HTTP
statuses and error pages, and the request metrics."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any

import grpc
import prometheus_client
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CSRF_COOKIE = "trackd_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

# gRPC status → (HTTP status, a title for the error page)
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "Bad request"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "Bad request"),
    grpc.StatusCode.NOT_FOUND: (404, "Not found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "Already exists"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "Not possible now"),
    grpc.StatusCode.ABORTED: (409, "Conflict"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Forbidden"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "Sign-in needed"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "Too many requests"),
    grpc.StatusCode.UNAVAILABLE: (503, "Service unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "Service unavailable"),
    grpc.StatusCode.CANCELLED: (503, "Service unavailable"),
}


class Edge:
    """Pure ASGI middleware (streams pass through untouched): security headers on every response,
    a CSRF cookie for browsers that lack one, and request counts and latencies by route."""

    def __init__(self, app: ASGIApp, *, registry: prometheus_client.CollectorRegistry) -> None:
        self.app = app
        self._requests = prometheus_client.Counter(
            "trackd_web_requests", "HTTP requests by route and status", ["route", "status"], registry=registry)
        self._seconds = prometheus_client.Histogram(
            "trackd_web_request_seconds", "Time to the response's headers, by route", ["route"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = request.cookies.get(CSRF_COOKIE, "")
        new_token = "" if len(token) == 43 else secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = new_token or token
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name.decode(), value.decode())
                if new_token:
                    headers.append("set-cookie", f"{CSRF_COOKIE}={new_token}; Path=/; HttpOnly; SameSite=Strict")
                route = getattr(scope.get("route"), "path", "other")
                self._requests.labels(route, str(message["status"])).inc()
                self._seconds.labels(route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    return str(request.state.csrf)


async def require_csrf(request: Request) -> dict[str, Any]:
    """The form of a write request, once its CSRF token (form field or header) matches the
    cookie and its Origin, if sent, is this site. Else 403 saying why."""
    form = await request.form()
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str(form.get(CSRF_FIELD, "") or request.headers.get(CSRF_HEADER, ""))
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise HTTPException(403, "The form's CSRF token is missing or does not match: reload the page and retry.")
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise HTTPException(403, f"A write from another site ({origin}) is refused.")
    return dict(form)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(templates: Jinja2Templates, request: Request, status: int, title: str, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": title, "message": message}, status_code=status)
    return templates.TemplateResponse(request, "error.html", {"status": status, "title": title, "message": message},
                                      status_code=status)


def rpc_error_response(templates: Jinja2Templates, request: Request, error: grpc.aio.AioRpcError) -> Response:
    status, title = HTTP_STATUS.get(error.code(), (502, "A trackd service failed"))
    message = error.details() or str(error.code())
    if status == 503:
        message = (f"A trackd service is unreachable ({message}). Is `make up` running? The page works again "
                   "as soon as the service is back.")
    elif status == 502:
        log.warning("%s answered %s: %s", request.url.path, error.code(), message)
    return error_response(templates, request, status, title, message)
