"""An artifact service in the test process (the wiring of `trackd_services.artifact.app`, on the
session stack's PostgreSQL and S3, on port 0), for drills that need settings the session stack's
own artifact service does not have: auth on, a short slow-reader limit or clean-up time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from trackd_platform.config import StoresConfig
from trackd_platform.s3 import s3_client
from trackd_platform.stack import HOST, EmbeddedStack
from trackd_platform.wiring import wire
from trackd_services.artifact.access import RULES
from trackd_services.artifact.app import install
from trackd_services.artifact.sweeper import Sweeper


@dataclass(frozen=True)
class Service:
    target: str
    sweeper: Sweeper


def service_env(stack: EmbeddedStack, **extra: str) -> dict[str, str]:
    """The environment of an artifact service on the stack's stores, listening on a free port."""
    return {**stack.infra_env(), "TRACKD_GRPC_HOST": HOST, "TRACKD_GRPC_PORT": "0", "TRACKD_METRICS_PORT": "0",
            "TRACKD_SHUTDOWN_GRACE_S": "1", **extra}


@contextlib.asynccontextmanager
async def artifact_service(env: dict[str, str]) -> AsyncIterator[Service]:
    """An artifact service configured by `env` alone (its sweeper is not started: call
    `sweeper.sweep_once()` or `run()` as the drill needs)."""
    config = StoresConfig.from_env(env, service="artifact")
    server, pool = await wire(config.server, config.postgres, RULES, redis=None)
    async with s3_client(config.s3) as s3:
        sweeper = install(server, config, pool, s3)
        await server.start()
        try:
            yield Service(f"{HOST}:{server.port}", sweeper)
        finally:
            await server.stop()
