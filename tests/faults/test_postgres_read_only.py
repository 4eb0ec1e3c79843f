"""Drill: PostgreSQL turns read-only (a standby promoted elsewhere, a failover in progress):
writes answer UNAVAILABLE saying so, reads go on, and writes work again once it is writable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import grpc
import pytest
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration


async def set_read_only(stack: EmbeddedStack, on: bool) -> None:
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        await conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    await asyncio.sleep(1.0)  # every backend applies the reload at its next command


async def test_writes_are_unavailable_while_postgres_is_read_only(
    stack: EmbeddedStack, runs: run_pb2_grpc.RunServiceStub, unique: Callable[[str], str],
    figure: Callable[[str], None]
) -> None:
    before = await runs.StartRun(run_pb2.StartRunRequest(experiment_name=unique("ro")), timeout=30)
    await set_read_only(stack, True)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await runs.StartRun(run_pb2.StartRunRequest(experiment_name=unique("ro")), timeout=30)
        read = await runs.GetRun(run_pb2.GetRunRequest(run_id=before.run.id), timeout=30)
    finally:
        await set_read_only(stack, False)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
    assert "read-only" in (refused.value.details() or "")
    assert read.run.id == before.run.id, "reads go on"
    after = await runs.StartRun(run_pb2.StartRunRequest(experiment_name=unique("ro")), timeout=30)
    await runs.EndRun(run_pb2.EndRunRequest(run_id=after.run.id, status=run_pb2.RUN_STATUS_FINISHED), timeout=30)
    await runs.EndRun(run_pb2.EndRunRequest(run_id=before.run.id, status=run_pb2.RUN_STATUS_FINISHED), timeout=30)
    figure(f"PostgreSQL read-only: StartRun {refused.value.code().name} ({refused.value.details()[:60]}…), "
           "GetRun answered; writable again: StartRun OK")
