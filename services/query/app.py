"""Wiring of the query service: config → pool, Redis → stores → servicer → serve. The service
only reads what the run and ingest services write."""

from __future__ import annotations

import asyncio

from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.config import StoresConfig
from trackd_platform.redis import create_redis
from trackd_platform.server import configure_logging
from trackd_platform.wiring import wire

from .access import RULES
from .api import QueryServicer
from .live import PointsHub
from .store import LatestReader, QueryStore
from .wire import pre_encoded

MAX_WATCHERS = 10_000  # WatchRun calls per replica; all share one Redis connection


async def serve(config: StoresConfig) -> None:
    redis = create_redis(config.redis)
    server, pool = await wire(config.server, config.postgres, RULES, redis=redis)
    store = QueryStore(pool)
    hub = PointsHub(redis, max_watchers=MAX_WATCHERS, registry=server.registry)
    server.add_closer(hub.close)
    server.add_servicer(
        pre_encoded(query_pb2_grpc.add_QueryServiceServicer_to_server, frozenset({"ExportMetric"})),
        QueryServicer(store, LatestReader(redis, store, registry=server.registry), hub,
                      slow_reader_s=config.query_slow_reader_s),
        query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
    )
    await server.run_until_signal()


def main() -> None:
    configure_logging("query")
    asyncio.run(serve(StoresConfig.from_env(service="query")))
