"""Sign-in with a trackd token when TRACKD_AUTH=on: the login and logout forms, the session cookie
and what the session may do.

The session is the token itself in an HttpOnly, SameSite=Strict cookie (Secure under TLS): the web
service keeps no state, never puts the token in a URL and never logs it. Every call made for the
page carries it (`Backends.caller`), so the services decide, and re-check it: a revoked or expired
token answers UNAUTHENTICATED, which sends pages back here (app.py) and `session.js` polls
/api/session so an open page follows within the services' token cache (3 s) and a poll.

What a token may do is asked once per token (the run service's WhoAmI: its project and role) and
kept SESSION_CACHE_S."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

import grpc
from cachetools import TTLCache
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from trackd_api.auth.v1 import auth_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.auth import TOKEN_MAX_CHARS, Role

from .backends import PAGE_TIMEOUT_S, SESSION_COOKIE, Backends, Caller
from .http import require_csrf

SESSION_CACHE_S = 30.0
SESSION_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """Who the browser is: with auth off, everyone may write; with auth on, the token's project
    (empty for the global admin) and role."""

    auth: bool
    project: str = ""
    role: Role = Role.ADMIN

    @property
    def may_write(self) -> bool:
        return self.role >= Role.WRITE


OPEN = Session(auth=False)


class Sessions:
    def __init__(self, backends: Backends, templates: Jinja2Templates, *, auth_enabled: bool) -> None:
        self._b = backends
        self._t = templates
        self.auth_enabled = auth_enabled
        self._known: TTLCache[str, Session] = TTLCache(maxsize=4096, ttl=SESSION_CACHE_S)

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_page),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/session", self.check),
        ]

    async def current(self, request: Request) -> Session | None:
        """The request's session; None when auth is on and its token is missing or refused."""
        if not self.auth_enabled:
            return OPEN
        caller = self._b.caller(request)
        if not caller.token:
            return None
        key = hashlib.sha256(caller.token.encode()).hexdigest()
        found = self._known.get(key)
        if found is None:
            try:
                found = await self._probe(caller)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return None
                raise
            self._known[key] = found
        return found

    async def _probe(self, caller: Caller) -> Session:
        found = await self._b.tokens.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=caller.metadata,
                                            timeout=PAGE_TIMEOUT_S)
        if found.admin:
            return Session(auth=True, project="", role=Role.ADMIN)
        return Session(auth=True, project=found.project_name, role=Role.parse(found.role))

    # -- routes -----------------------------------------------------------------------------------

    async def login_page(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        return self._t.TemplateResponse(request, "login.html", {
            "auth": self.auth_enabled, "error": error, "next": _local(request.query_params.get("next", "/"))},
            status_code=status)

    async def login(self, request: Request) -> Response:
        form = await require_csrf(request)
        token = str(form.get("token", "")).strip()
        target = _local(str(form.get("next", "/")))
        if not self.auth_enabled:
            return RedirectResponse(target, 303)
        if not token or len(token) > TOKEN_MAX_CHARS:
            return await self.login_page(request, error="Paste a trackd token (trk_…).", status=400)
        try:
            session = await self._probe(Caller(token))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            return await self.login_page(request, error="That token is unknown, expired or revoked.", status=401)
        self._known[hashlib.sha256(token.encode()).hexdigest()] = session
        response = RedirectResponse(target, 303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                            samesite="strict", secure=_tls(request))
        return response

    async def logout(self, request: Request) -> Response:
        await require_csrf(request)
        return signed_out(request)

    async def check(self, request: Request) -> Response:
        """Whether the session's token still works: a fresh ListProjects (the services re-check it)."""
        if not self.auth_enabled:
            return JSONResponse({"auth": False})
        caller = self._b.caller(request)
        if not caller.token:
            return JSONResponse({"error": "Sign-in needed", "message": "no session"}, status_code=401)
        await self._b.runs.ListProjects(run_pb2.ListProjectsRequest(page_size=1), metadata=caller.metadata,
                                        timeout=PAGE_TIMEOUT_S)  # UNAUTHENTICATED → 401 (app.py)
        return JSONResponse({"auth": True})


def signed_out(request: Request) -> Response:
    """To the login page, the session cookie dropped; back to this page after signing in."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/login" if request.url.path in ("/login", "/logout") else f"/login?next={_quote(here)}"
    response = RedirectResponse(target, 303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_tls(request))
    return response


class SessionState:
    """Pure ASGI middleware: puts the page's Session in `request.state.session` for the templates
    (the nav's project and sign-out, write controls shown only to writers)."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions) -> None:
        self.app = app
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(("/static/", "/api/", "/healthz", "/metrics")):
            try:
                session = await self._sessions.current(Request(scope))
            except grpc.aio.AioRpcError:
                session = None  # the page's own calls will say what is wrong
            scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)


def _tls(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def _local(url: str) -> str:
    """Only a path of this site: never redirect elsewhere."""
    return url if url.startswith("/") and not url.startswith("//") else "/"


def _quote(path: str) -> str:
    return quote(path, safe="")
