"""Wiring of the run service: config → pool → migrations → store → servicer → serve."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.run.v1 import run_data_pb2, run_data_pb2_grpc, run_pb2, run_pb2_grpc
from trackd_platform.config import RunServiceConfig
from trackd_platform.errors import Unavailable
from trackd_platform.outbox import OutboxRelay
from trackd_platform.redis import create_redis
from trackd_platform.server import configure_logging
from trackd_platform.tokens import TokenStore
from trackd_platform.wiring import wire

from .access import RULES
from .api import RunServicer
from .data_api import RunDataServicer
from .data_store import RunDataStore
from .domain import CrashGrace
from .store import RunStore
from .tokens_api import TokenServicer

log = logging.getLogger(__name__)


async def serve(config: RunServiceConfig) -> None:
    redis = create_redis(config.redis) if config.redis and config.server.auth.writes_per_s else None  # limits only
    server, pool = await wire(config.server, config.postgres, RULES, redis=redis)
    store = RunStore(pool)
    server.add_servicer(
        run_pb2_grpc.add_RunServiceServicer_to_server,
        RunServicer(store),
        run_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    )
    server.add_servicer(
        run_data_pb2_grpc.add_RunDataServiceServicer_to_server,
        RunDataServicer(RunDataStore(pool)),
        run_data_pb2.DESCRIPTOR.services_by_name["RunDataService"].full_name,
    )
    server.add_servicer(
        auth_pb2_grpc.add_TokenServiceServicer_to_server,
        TokenServicer(TokenStore(pool)),
        auth_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    )
    relay = OutboxRelay(postgres=config.postgres, kafka=config.kafka, registry=server.registry)
    server.add_background(relay.run)

    grace = CrashGrace(config.heartbeat_timeout_s)

    async def detect_crashes() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await store.writable()
                if grace.may_judge(loop.time()):
                    for run in await store.crash_stale_runs(config.heartbeat_timeout_s):
                        log.warning("run %s CRASHED: no heartbeat for %.0fs", run.id.hex, config.heartbeat_timeout_s)
            except (Unavailable, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                if grace.writable_since is not None:
                    log.warning("PostgreSQL cannot be written (%s): no run is judged CRASHED until it has been "
                                "writable for %.0fs", exc, config.heartbeat_timeout_s)
                grace.failed()
            await asyncio.sleep(config.crash_check_interval_s)

    server.add_background(detect_crashes)
    await server.run_until_signal()


def main() -> None:
    configure_logging("run")
    asyncio.run(serve(RunServiceConfig.from_env()))
