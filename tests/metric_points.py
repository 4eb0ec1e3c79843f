"""Helpers shared by the integration tests and the fault drills: points as PostgreSQL holds them,
series to send, and an extra ingest replica to kill."""

from __future__ import annotations

import os
import sys
import uuid

import asyncpg
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.processes import Managed, free_port
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving
from trackd_services.ingest.domain import unpack


async def stored(stack: EmbeddedStack, run_id: str) -> list[tuple[str, int, float]]:
    """Every point of a run as PostgreSQL holds it: (key, step, value)."""
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            """SELECT s.key, c.steps, c.vals, c.timestamps FROM metric_chunks c
               JOIN metric_series s ON s.id = c.series_id WHERE c.run_id = $1""", uuid.UUID(run_id))
    finally:
        await conn.close()
    points = []
    for row in rows:
        chunk = unpack(row["steps"], row["vals"], row["timestamps"])
        points += [(row["key"], s, v) for s, v in zip(chunk.steps, chunk.values, strict=True)]
    return points


def series(key: str, steps: list[int], values: list[float]) -> ingest_pb2.MetricSeries:
    return ingest_pb2.MetricSeries(key=key, steps=steps, values=values, timestamps_ms=[1] * len(steps))


def extra_ingest_replica(stack: EmbeddedStack, name: str) -> tuple[Managed, int]:
    """One more ingest replica on a free port, not supervised: killing it is final."""
    port = free_port()
    replica = Managed(
        name=name, argv=[sys.executable, "-m", "trackd_services.ingest"],
        env={**os.environ, **stack.infra_env(), "TRACKD_GRPC_HOST": HOST, "TRACKD_GRPC_PORT": str(port),
             "TRACKD_METRICS_PORT": "0"},
        log_path=stack.home / "logs" / f"{name}.log",
        ready=lambda: grpc_serving(f"{HOST}:{port}"),
    )
    replica.start()
    replica.wait_ready(60)
    return replica, port
