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
from importlib import resources

import asyncpg

from trackd_platform.config import PostgresSettings
from trackd_platform.errors import Unavailable

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x74726B64  # "trkd"


async def create_pool(settings: PostgresSettings, *, wait_s: float = 30.0) -> asyncpg.Pool:
    """A pool to `settings.dsn`, retrying while the server starts (up to `wait_s`)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                settings.dsn, min_size=1, max_size=settings.pool_max, command_timeout=30,
                init=_init_connection, reset=_keep_session,
            )
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
