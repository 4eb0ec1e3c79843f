"""Access control at the gRPC edge: authentication, per-RPC authorization and write rate limits.

Each service declares a table `full method name → Rule`: the role the RPC needs and how to find
the projects a request touches (the resolvers below: a run id → its experiment's project, …).
The interceptor authenticates the `authorization: Bearer` metadata (TRACKD_AUTH=on), checks the
rule on every request message — for client streams, on each message as it arrives — drops list
items the caller may not read, and takes one write from the caller's rate-limit bucket for each
request of an RPC that needs WRITE or more. Health checking and reflection are exempt.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import redis.asyncio as aioredis

from trackd_platform.auth import ANONYMOUS, GLOBAL, Principal, Role, Target, bearer, current_principal, is_admin_secret
from trackd_platform.config import AuthSettings
from trackd_platform.errors import PermissionDenied, ResourceExhausted
from trackd_platform.ids import parse_id
from trackd_platform.owners import UNOWNED, Owners
from trackd_platform.ratelimit import Limit, RateLimiter
from trackd_platform.tokens import TokenStore

EXEMPT_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
RETRY_AFTER = "retry-after-ms"  # trailing metadata of a rate-limited call: wait this long, then retry


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


def _owned(found: Iterable[object]) -> list[Target]:
    return [GLOBAL if p is UNOWNED else p for p in found]  # type: ignore[misc]


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


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Registered after the edge interceptor, which maps the errors raised here to status codes."""

    def __init__(self, rules: Mapping[str, Rule], *, auth: AuthSettings, tokens: TokenStore, owners: Owners,
                 limiter: RateLimiter | None) -> None:
        self._rules = dict(rules)
        self._auth = auth
        self._tokens = tokens
        self._owners = owners
        self._limiter = limiter

    async def _principal(self, context: grpc.aio.ServicerContext) -> Principal:
        if not self._auth.enabled:
            return ANONYMOUS
        secret = bearer(context.invocation_metadata())
        if is_admin_secret(secret, self._auth.admin_token):
            return Principal(key="admin", admin=True)
        return await self._tokens.authenticate(secret)

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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(EXEMPT_SERVICES):
            return handler
        rule = self._rules.get(method)

        async def begin(context: grpc.aio.ServicerContext) -> Check:
            check = Check(await self._principal(context), self._owners)
            current_principal.set(check.principal)
            if rule is None and self._auth.enabled:  # fail closed; a unit test keeps the tables complete
                raise PermissionDenied(f"{method} has no access rule")
            return check

        async def admit(request: Any, context: grpc.aio.ServicerContext, check: Check) -> None:
            """A unary request: authorized, then refused with a retry-after hint when limited."""
            if rule is not None and (wait_ms := await self._limited(await self._authorize(rule, request, check),
                                                                    check)):
                context.set_trailing_metadata(((RETRY_AFTER, str(wait_ms)),))
                raise ResourceExhausted(f"write rate limit of this token reached; retry in {wait_ms} ms")

        async def stream(requests: AsyncIterator[Any], check: Check) -> AsyncIterator[Any]:
            """A client stream: each message authorized; writes paced to the limit (a message in a
            stream cannot be refused alone without losing the stream)."""
            async for request in requests:
                if rule is not None:
                    role = await self._authorize(rule, request, check)
                    await self._pace(role, check)
                yield request

        async def filtered(response: Any, check: Check) -> Any:
            if self._auth.enabled and rule is not None and rule.keep is not None:
                await rule.keep(response, check)
            return response

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                check = await begin(context)
                await admit(request, context, check)
                return await filtered(await inner(request, context), check)

            return _rebuild(grpc.unary_unary_rpc_method_handler, unary_unary, handler)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                check = await begin(context)
                await admit(request, context, check)
                async for response in inner_us(request, context):
                    yield response

            return _rebuild(grpc.unary_stream_rpc_method_handler, unary_stream, handler)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                check = await begin(context)
                return await filtered(await inner_su(stream(requests, check), context), check)

            return _rebuild(grpc.stream_unary_rpc_method_handler, stream_unary, handler)
        inner_ss = handler.stream_stream

        async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            check = await begin(context)
            async for response in inner_ss(stream(requests, check), context):
                yield response

        return _rebuild(grpc.stream_stream_rpc_method_handler, stream_stream, handler)


def _rebuild(factory: Callable[..., grpc.RpcMethodHandler], behaviour: Any,
             handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
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
