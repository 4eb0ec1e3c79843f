"""What every service's `app.py` starts from: a migrated PostgreSQL pool and a GrpcServer whose
access interceptor enforces the service's rules (write limits through the service's Redis
client, when it has one), with the pool and the client closed after the server drains."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
import redis.asyncio as aioredis

from trackd_platform.access import Rule, access_interceptors
from trackd_platform.config import PostgresSettings, ServerSettings
from trackd_platform.db import create_pool, migrate
from trackd_platform.server import GrpcServer


async def wire(settings: ServerSettings, postgres: PostgresSettings, rules: Mapping[str, Rule], *,
               redis: aioredis.Redis | None) -> tuple[GrpcServer, asyncpg.Pool]:
    """The server listens at once (NOT_SERVING) and waits for PostgreSQL with back-off; the
    caller adds its servicers, waits for its other dependencies (`server.until_ready`) and starts."""
    server = GrpcServer(settings)
    pool = await server.until_ready("PostgreSQL", lambda: create_pool(postgres, wait_s=0))
    await migrate(pool)
    server.add_interceptors(*access_interceptors(rules, auth=settings.auth, pool=pool, redis=redis))
    server.add_closer(pool.close)
    if redis is not None:
        server.add_closer(redis.aclose)
    return server, pool
