"""Wiring of the ingest service: config → pool, Redis → stores → servicer → serve."""

from __future__ import annotations

import asyncio
import logging

from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.config import StoresConfig
from trackd_platform.redis import create_redis
from trackd_platform.server import configure_logging
from trackd_platform.wiring import wire

from .access import RULES
from .api import IngestServicer
from .store import LatestCache, MetricStore


async def serve(config: StoresConfig) -> None:
    redis = create_redis(config.redis)
    server, pool = await wire(config.server, config.postgres, RULES, redis=redis)
    store = MetricStore(pool)
    cache = LatestCache(redis, store)
    server.add_servicer(
        ingest_pb2_grpc.add_IngestServiceServicer_to_server,
        IngestServicer(store, cache, max_concurrent_commits=config.postgres.pool_max, settings=config.ingest,
                       registry=server.registry),
        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    )

    async def repair_cache() -> None:
        if backfilled := await store.backfill_summaries():
            logging.getLogger(__name__).info("filled the summaries of %d series written before 0005", backfilled)
        while True:
            await cache.repair_pending()
            await asyncio.sleep(1.0)

    server.add_background(repair_cache)
    await server.run_until_signal()


def main() -> None:
    configure_logging("ingest")
    asyncio.run(serve(StoresConfig.from_env(service="ingest")))
