"""Access control at the gRPC edge: authentication, per-RPC authorization and write rate limits.

Each service declares a table `full method name → Rule`: the role the RPC needs and how to find
the projects a request touches (the resolvers below: a run id → its experiment's project, …).
The interceptor authenticates the `authorization: Bearer` metadata (TRACKD_AUTH=on), checks the
rule on every request message — for client streams, on each message as it arrives, with the token
authenticated again — drops list items the caller may not read, and takes one write from the
caller's rate-limit bucket for each request of an RPC that needs WRITE or more. Health checking
and reflection are exempt.

A call that stays open (server-streaming, client-streaming or bidirectional) is checked again
every `STREAM_RECHECK_S` while it is open, whether or not messages flow: once its token is
revoked or expired (visible within the token cache's 5 s) the call ends with UNAUTHENTICATED, or
PERMISSION_DENIED if the token no longer grants the rule's role, even while the servicer waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import asyncpg
import grpc
import redis.asyncio as aioredis

from trackd_platform.auth import ANONYMOUS, GLOBAL, Principal, Role, Target, bearer, current_principal, is_admin_secret
from trackd_platform.config import AuthSettings
from trackd_platform.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from trackd_platform.ids import parse_id
from trackd_platform.owners import Owners, Unowned
from trackd_platform.ratelimit import Limit, RateLimiter
from trackd_platform.rpc_types import Context, Continuation, Handler, StreamingBehaviour, UnaryBehaviour
from trackd_platform.tokens import TokenStore

log = logging.getLogger(__name__)

EXEMPT_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
RETRY_AFTER = "retry-after-ms"  # trailing metadata of a rate-limited call: wait this long, then retry
# An open stream re-checks its caller this often. A lookup is cached up to 3 s
# (trackd_platform.tokens.CACHE_TTL_S), so a revoked token's streams end within 3 s + this.
STREAM_RECHECK_S = 1.0


@dataclass(frozen=True)
class Check:
    """What a resolver may use: the caller and the resource → project lookups."""

    principal: Principal
    owners: Owners


Resolver = Callable[[Any, Check], Awaitable[list[Target]]]
Filter = Callable[[Any, Check], Awaitable[None]]


@dataclass(frozen=True)
class Rule:
    """`role` (or a function of the request giving it) on every project `targets` finds;
    `keep` filters a list response to what the caller may read."""

    role: Role | Callable[[Any], Role]
    targets: Resolver | None = None
    keep: Filter | None = None

    def role_for(self, request: Any) -> Role:
        return self.role if isinstance(self.role, Role) else self.role(request)


def rules_for(service: str, table: Mapping[str, Rule]) -> dict[str, Rule]:
    """A service's table keyed by the full method names the interceptor sees."""
    return {f"/{service}/{method}": rule for method, rule in table.items()}


# -- resolvers ---------------------------------------------------------------------------------


def _field(message: Any, path: str) -> Any:
    for part in path.split("."):
        message = getattr(message, part)
    return message


def _values(message: Any, path: str) -> list[str]:
    value = _field(message, path)
    return [value] if isinstance(value, str) else list(value)


def ids(kind: str, path: str) -> Resolver:
    """The projects of the `kind` resources whose ids are at `path` (a field or a repeated field).
    Unknown ids find nothing: the servicer answers NOT_FOUND."""

    async def resolve(request: Any, check: Check) -> list[Target]:
        keys = [parse_id(path.rsplit(".", 1)[-1], v) for v in _values(request, path) if v]
        return _owned((await check.owners.projects(kind, keys)).values())

    return resolve


def names(kind: str, path: str, *, default: str = "", unknown_is_global: bool = False) -> Resolver:
    """The projects of the `kind` resources named at `path` (`default` when empty). A name that does
    not exist is GLOBAL when `unknown_is_global` (the RPC would create it: admin only)."""

    async def resolve(request: Any, check: Check) -> list[Target]:
        keys = [v for v in _values(request, path) if v] or ([default] if default else [])
        found = await check.owners.projects(kind, keys)
        missing = [GLOBAL] if unknown_is_global and len(found) < len(keys) else []
        return _owned(found.values()) + missing

    return resolve


def all_of(*resolvers: Resolver) -> Resolver:
    async def resolve(request: Any, check: Check) -> list[Target]:
        return [t for r in resolvers for t in await r(request, check)]

    return resolve


def either(path: str, given: Resolver, otherwise: Resolver) -> Resolver:
    """`given` when the field at `path` is set (e.g. an id), else `otherwise` (e.g. by name)."""

    async def resolve(request: Any, check: Check) -> list[Target]:
        return await (given if _field(request, path) else otherwise)(request, check)

    return resolve


async def global_only(request: Any, check: Check) -> list[Target]:
    return [GLOBAL]


async def own_project(request: Any, check: Check) -> list[Target]:
    """Creates something in the caller's own project (the servicer reads it from the principal)."""
    return [] if check.principal.admin else [check.principal.project_id]


def project_or_own(path: str) -> Resolver:
    """A project id at `path`, or — empty, meaning every project — the caller's own project,
    written into the request so the servicer lists only that."""

    async def resolve(request: Any, check: Check) -> list[Target]:
        if not _field(request, path) and not check.principal.admin:
            assert check.principal.project_id is not None
            _set(request, path, check.principal.project_id.hex)
        return await ids("project", path)(request, check)

    return resolve


def project_name_or_own(path: str, *, default: str = "") -> Resolver:
    """Like `project_or_own`, for a project given by name."""

    async def resolve(request: Any, check: Check) -> list[Target]:
        if not _field(request, path) and not default and not check.principal.admin:
            assert check.principal.project_id is not None
            _set(request, path, await check.owners.project_name(check.principal.project_id) or "")
        return await names("project_name", path, default=default, unknown_is_global=True)(request, check)

    return resolve


def _set(message: Any, path: str, value: str) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_field(message, parent) if parent else message, name, value)


def _owned(found: Iterable[uuid.UUID | Unowned]) -> list[Target]:
    return [GLOBAL if isinstance(p, Unowned) else p for p in found]


def keep(items: str, key: str, kind: str = "") -> Filter:
    """Drops the items of the repeated field `items` whose project the caller may not READ: the
    project is the item's field `key`, or that of the `kind` resource whose id/name `key` holds."""

    async def apply(response: Any, check: Check) -> None:
        if check.principal.admin:
            return
        field = getattr(response, items)
        keys = [getattr(item, key) for item in field]
        if kind:
            lookup = [parse_id(key, k) for k in keys] if kind not in ("model", "study_name") else keys
            found = await check.owners.projects(kind, lookup)
            projects = [found.get(k) for k in lookup]
        else:
            projects = [uuid.UUID(k) for k in keys]
        kept = [item for item, p in zip(field, projects, strict=True)
                if isinstance(p, uuid.UUID) and check.principal.may(Role.READ, p)]
        del field[:]
        field.extend(kept)

    return apply


# -- the interceptor ---------------------------------------------------------------------------


class _Caller:
    """The caller of one call: its bearer secret (None: auth off) and the latest check of it."""

    def __init__(self, secret: str | None, check: Check) -> None:
        self.secret = secret
        self.check = check
        self.request: Any = None  # the request last authorized, for the open stream's re-checks

    @property
    def revocable(self) -> bool:
        """Whether a re-check could ever refuse this caller (a token; not auth off, not the admin secret)."""
        return self.secret is not None and not self.check.principal.admin


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Registered after the edge interceptor, which maps the errors raised here to status codes."""

    def __init__(self, rules: Mapping[str, Rule], *, auth: AuthSettings, tokens: TokenStore, owners: Owners,
                 limiter: RateLimiter | None, recheck_s: float = STREAM_RECHECK_S) -> None:
        self._rules = dict(rules)
        self._auth = auth
        self._tokens = tokens
        self._owners = owners
        self._limiter = limiter
        self._recheck_s = recheck_s
        # one lookup per secret at a time: the streams of one token re-check together when its
        # cache entry expires, and must not all ask PostgreSQL
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    async def _authenticate(self, secret: str) -> Principal:
        if is_admin_secret(secret, self._auth.admin_token):
            return Principal(key="admin", admin=True)
        pending = self._lookups.get(secret)
        if pending is None:
            pending = self._lookups[secret] = asyncio.ensure_future(self._tokens.authenticate(secret))
            pending.add_done_callback(lambda _: self._lookups.pop(secret, None))
        return await asyncio.shield(pending)

    async def _caller(self, context: Context) -> _Caller:
        if not self._auth.enabled:
            return _Caller(None, Check(ANONYMOUS, self._owners))
        secret = bearer(context.invocation_metadata())
        return _Caller(secret, Check(await self._authenticate(secret), self._owners))

    async def _renewed(self, caller: _Caller) -> Check:
        """The caller's check with its token authenticated again (Unauthenticated once revoked or expired)."""
        if caller.revocable:
            assert caller.secret is not None
            caller.check = Check(await self._authenticate(caller.secret), self._owners)
        return caller.check

    async def _authorize(self, rule: Rule, request: Any, check: Check) -> Role:
        role = rule.role_for(request)
        if self._auth.enabled and rule.targets is not None:
            check.principal.require(role, await rule.targets(request, check))
        return role

    async def _limited(self, role: Role, check: Check) -> int:
        if self._limiter is None or role < Role.WRITE:
            return 0
        return await self._limiter.take(check.principal.key)

    async def _pace(self, role: Role, check: Check) -> None:
        """Wait until the caller's bucket gives a write (each wait is the bucket's own estimate)."""
        wait_ms = await self._limited(role, check)
        while wait_ms:
            await asyncio.sleep(wait_ms / 1000)
            wait_ms = await self._limited(role, check)

    async def _watch(self, rule: Rule | None, caller: _Caller) -> NoReturn:
        """Re-checks an open call's caller until it is refused; raises Unauthenticated or
        PermissionDenied then (the call's wrapper ends the call with it)."""
        await asyncio.sleep(self._recheck_s * random.uniform(0.5, 1.0))  # spread the streams' checks
        while True:
            try:
                check = await self._renewed(caller)
                if rule is not None and caller.request is not None:
                    await self._authorize(rule, caller.request, check)
            except (Unauthenticated, PermissionDenied):
                raise
            except Exception as exc:  # noqa: BLE001 — a lookup failed (PostgreSQL away): the last verdict stands
                log.warning("re-checking an open call's token failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(self._recheck_s)

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(EXEMPT_SERVICES):
            return handler
        rule = self._rules.get(method)

        async def begin(context: Context) -> _Caller:
            caller = await self._caller(context)
            current_principal.set(caller.check.principal)
            if rule is None and self._auth.enabled:  # fail closed; a unit test keeps the tables complete
                raise PermissionDenied(f"{method} has no access rule")
            return caller

        async def admit(request: Any, context: Context, caller: _Caller) -> None:
            """A unary request: authorized, then refused with a retry-after hint when limited."""
            if rule is None:
                return
            caller.request = request
            if wait_ms := await self._limited(await self._authorize(rule, request, caller.check), caller.check):
                context.set_trailing_metadata(((RETRY_AFTER, str(wait_ms)),))
                raise ResourceExhausted(f"write rate limit of this token reached; retry in {wait_ms} ms")

        async def stream(requests: AsyncIterator[Any], caller: _Caller) -> AsyncIterator[Any]:
            """A client stream: each message authorized, the token authenticated again first (a
            revoked token's next batch is refused); writes paced to the limit (a message in a
            stream cannot be refused alone without losing the stream)."""
            async for request in requests:
                if rule is not None:
                    check = await self._renewed(caller)
                    role = await self._authorize(rule, request, check)
                    caller.request = request
                    await self._pace(role, check)
                yield request

        async def filtered(response: Any, check: Check) -> Any:
            if self._auth.enabled and rule is not None and rule.keep is not None:
                await rule.keep(response, check)
            return response

        def watched(responses: AsyncIterator[Any], caller: _Caller) -> AsyncIterator[Any]:
            return _ended_by(self._watch(rule, caller), responses) if caller.revocable else responses

        if handler.unary_unary:
            inner = cast(UnaryBehaviour, handler.unary_unary)

            async def unary_unary(request: Any, context: Context) -> Any:
                caller = await begin(context)
                await admit(request, context, caller)
                return await filtered(await inner(request, context), caller.check)

            return _rebuild(grpc.unary_unary_rpc_method_handler, unary_unary, handler)
        if handler.unary_stream:
            inner_us = cast(StreamingBehaviour, handler.unary_stream)

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                caller = await begin(context)
                await admit(request, context, caller)
                async for response in watched(inner_us(request, context), caller):
                    yield response

            return _rebuild(grpc.unary_stream_rpc_method_handler, unary_stream, handler)
        if handler.stream_unary:
            inner_su = cast(UnaryBehaviour, handler.stream_unary)

            async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
                caller = await begin(context)

                async def one() -> AsyncIterator[Any]:
                    yield await inner_su(stream(requests, caller), context)

                [response] = [r async for r in watched(one(), caller)]
                return await filtered(response, caller.check)

            return _rebuild(grpc.stream_unary_rpc_method_handler, stream_unary, handler)
        inner_ss = cast(StreamingBehaviour, handler.stream_stream)

        async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            caller = await begin(context)
            async for response in watched(inner_ss(stream(requests, caller), context), caller):
                yield response

        return _rebuild(grpc.stream_stream_rpc_method_handler, stream_stream, handler)


_END = object()


async def _next(responses: AsyncIterator[Any]) -> Any:
    try:
        return await anext(responses)
    except StopAsyncIteration:
        return _END


async def _ended_by(watch: Awaitable[NoReturn], responses: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`responses`, ended with the watcher's error as soon as it raises one — also while the
    servicer waits (on a client, Redis, a lock). Each step of `responses` runs in a task of its
    own so it can be cancelled without cancelling the call, which then ends with the error's status."""
    watcher = asyncio.ensure_future(watch)
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            if watcher.done():
                watcher.result()
            step = asyncio.ensure_future(_next(responses))
            await asyncio.wait((step, watcher), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
                watcher.result()  # raises the refusal
            response = step.result()
            step = None
            if response is _END:
                return
            yield response
    finally:
        watcher.cancel()
        if step is not None and not step.done():  # the call itself was cancelled
            step.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*(f for f in (watcher, step) if f is not None))
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def _rebuild(factory: Callable[..., Handler], behaviour: UnaryBehaviour | StreamingBehaviour,
             handler: Handler) -> Handler:
    return factory(behaviour, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


def access_interceptors(rules: Mapping[str, Rule], *, auth: AuthSettings, pool: asyncpg.Pool,
                        redis: aioredis.Redis | None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors to give GrpcServer: none when auth is off and writes are unlimited, so the
    default `make up` pays nothing. Rate limits need `redis`."""
    limit = Limit.of(auth.writes_per_s, auth.burst)
    limiter = RateLimiter(redis, limit) if limit is not None and redis is not None else None
    if not auth.enabled and limiter is None:
        return []
    return [AccessInterceptor(rules, auth=auth, tokens=TokenStore(pool), owners=Owners(pool), limiter=limiter)]
