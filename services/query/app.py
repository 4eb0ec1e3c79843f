"""Wiring of the query service. Its API lands with its own issue; until then the process connects
to its stores, applies migrations and reports health, so the suite's shape is complete."""

from __future__ import annotations

import asyncio

from trackd_platform.config import StoresConfig
from trackd_platform.db import create_pool, migrate
from trackd_platform.server import GrpcServer, configure_logging


async def serve(config: StoresConfig) -> None:
    server = GrpcServer(config.server)
    pool = await create_pool(config.postgres)
    server.add_closer(pool.close)
    await migrate(pool)
    await server.run_until_signal()


def main() -> None:
    configure_logging("query")
    asyncio.run(serve(StoresConfig.from_env(service="query")))
