"""PostgreSQL: the connection pool and the migration runner.

The suite shares one database and one ordered history of versioned SQL files
(`trackd_platform/migrations/NNNN_name.sql`). Every service calls `migrate()` at start-up; an
advisory lock taken inside the migration transaction makes replicas that start at the same
moment apply each file exactly once, the others waiting and then finding nothing to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Generator
from importlib import resources
from typing import Any

import asyncpg

from trackd_platform.config import PostgresSettings
from trackd_platform.errors import Unavailable

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x74726B64  # "trkd"


class DeadlinePool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool whose every acquisition — `acquire()` and the pool's own `fetch()`,
    `execute()`, … — waits at most `acquire_timeout_s` for a free connection (unless a timeout is
    given), then raises Unavailable: a caller finds out that the service is saturated instead of
    waiting until its own deadline, and gRPC answers UNAVAILABLE, which clients retry."""

    def __init__(self, dsn: str, *, acquire_timeout_s: float, **options: Any) -> None:
        super().__init__(dsn, max_queries=50_000, max_inactive_connection_lifetime=300.0, loop=None,
                         connection_class=asyncpg.Connection, record_class=asyncpg.Record, **options)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> _Acquisition:
        limit = self.acquire_timeout_s if timeout is None else timeout
        return _Acquisition(super().acquire(timeout=limit or None), self, limit)


class _Acquisition:
    """asyncpg's acquisition context (`async with pool.acquire()` or `await pool.acquire()`),
    with its timeout reported as Unavailable."""

    def __init__(self, inner: Any, pool: DeadlinePool, timeout_s: float) -> None:
        self._inner, self._pool, self._timeout_s = inner, pool, timeout_s

    def _exhausted(self) -> Unavailable:
        return Unavailable(
            f"no PostgreSQL connection became free within {self._timeout_s:g} s (all {self._pool.get_max_size()} "
            "of this process's pool are busy): the service is overloaded; retry shortly")

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            connection: asyncpg.Connection = await self._inner.__aenter__()
        except TimeoutError:
            raise self._exhausted() from None
        return connection

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._acquired().__await__()

    async def _acquired(self) -> asyncpg.Connection:
        try:
            connection: asyncpg.Connection = await self._inner
        except TimeoutError:
            raise self._exhausted() from None
        return connection


async def create_pool(settings: PostgresSettings, *, wait_s: float = 30.0) -> DeadlinePool:
    """A pool to `settings.dsn`, retrying while the server starts (up to `wait_s`). Acquiring a
    connection waits at most `settings.acquire_timeout_s` (Unavailable after that)."""
    deadline = time.monotonic() + wait_s
    while True:
        pool = DeadlinePool(
            settings.dsn, acquire_timeout_s=settings.acquire_timeout_s, min_size=1, max_size=settings.pool_max,
            command_timeout=30, init=_init_connection, reset=_keep_session,
        )
        try:
            await pool
            return pool
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            if time.monotonic() > deadline:
                raise Unavailable(f"PostgreSQL is unreachable: {exc}") from exc
            await asyncio.sleep(0.3)


# Driver errors that mean the server is down, restarting or out of connections: the pool
# reconnects by itself once it is back, so a caller may retry (the edge answers UNAVAILABLE).
_UNREACHABLE = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError,
)


def postgres_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL could not be reached (rather than that a query was wrong)."""
    if isinstance(exc, asyncpg.InterfaceError):  # a pooled connection that died with the server
        return "connection is closed" in str(exc)
    return isinstance(exc, _UNREACHABLE)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's session reset (UNLISTEN, RESET ALL, advisory unlock:
    one more round trip per release). Pooled connections hold no session state: advisory locks
    are transaction-scoped, LISTEN and the relay's leader lock use a connection of their own,
    nothing SETs a session variable. An open transaction is still rolled back by asyncpg."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order."""
    found = []
    for entry in resources.files("trackd_platform.migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    found.sort()
    return found


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations this database lacks, all in one transaction; returns their names."""
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied
