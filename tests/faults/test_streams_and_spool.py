"""Drills of careless and hostile metric clients on the real stack (the session stack, whose
ingest ends a stream idle for 5 s): idle StreamMetrics calls that would hold every stream slot,
`trackd sync` run beside a live training process, a metric key over the limit, and a spool that
cannot reach the service. In each: a real SDK run still logs and ends, every point it was given
is stored once, and nothing waits forever. (Revoked tokens on open streams, and one token
against the others' slots: test_stream_auth.py, on an auth-on stack.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd._client import Client
from trackd._metrics import InvalidMetric
from trackd._settings import ClientSettings
from trackd._spool import Spool, SpoolFull
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.run.v1 import run_pb2
from trackd_platform.processes import free_port
from trackd_platform.stack import HOST, EmbeddedStack

from tests.conftest import INGEST_STREAM_IDLE_S
from tests.metric_points import series, stored

pytestmark = pytest.mark.integration
IDLE_CALLS = 600  # more than a replica's 512 slots
PER_CALLER = 128  # TRACKD_INGEST_MAX_STREAMS_PER_CALLER's default
MAX_STEPS = 200_000  # the sync test's training loop: ~40 s of logging at most


def sdk_client(spool: Path, *, ingest_target: str | None = None, flush_timeout_s: float = 60,
               spool_max_bytes: int = 1024**3) -> Client:
    base = ClientSettings.from_env()
    targets = {**base.targets, "ingest": ingest_target} if ingest_target else base.targets
    return Client(ClientSettings(targets=targets, heartbeat_interval_s=1, rpc_timeout_s=30,
                                 kafka_bootstrap=base.kafka_bootstrap, spool_dir=str(spool),
                                 flush_timeout_s=flush_timeout_s, system_metrics_interval_s=0,
                                 spool_max_bytes=spool_max_bytes))


def sync_process(stack: EmbeddedStack, spool: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`trackd sync` as its own process, as a user would run it."""
    env = {**os.environ, **stack.client_env(), "TRACKD_SPOOL_DIR": str(spool), "COLUMNS": "500"}
    return subprocess.run([sys.executable, "-m", "trackd.cli", "sync", *extra], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


async def test_idle_metric_streams_do_not_lock_trainers_out(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    target = f"{HOST}:{stack.service_port('ingest')}"
    channels = [grpc.aio.insecure_channel(target) for _ in range(6)]
    try:
        calls = [ingest_pb2_grpc.IngestServiceStub(channels[i % 6]).StreamMetrics() for i in range(IDLE_CALLS)]
        await asyncio.gather(*(c.wait_for_connection() for c in calls))
        opened = time.monotonic()
        ended_at: dict[int, float] = {}
        for i, call in enumerate(calls):
            call.add_done_callback(lambda _, i=i: ended_at.setdefault(i, time.monotonic() - opened))
        refused: list[grpc.aio.StreamStreamCall] = []
        for _ in range(300):  # until every call beyond the caller's share is refused (60 s at most)
            refused = [c for c in calls if c.done() and await c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
            if len(refused) >= IDLE_CALLS - PER_CALLER:
                break
            await asyncio.sleep(0.2)
        refusals = {await c.details() for c in refused}
        assert all("TRACKD_INGEST_MAX_STREAMS_PER_CALLER=128" in details for details in refusals), refusals
        held = [c for c in calls if c not in refused]
        assert len(held) == PER_CALLER

        # a real trainer, from the same address, while the idle calls hold their slots
        client = sdk_client(tmp_path / "spool")
        started = time.monotonic()
        run = trackd.start_run(unique("beside-idle"), capture_env=False, system_metrics=False, client=client)
        for step in range(1_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        info = await asyncio.to_thread(run.end)
        took = time.monotonic() - started
        client.close()
        assert info.status == "FINISHED"
        assert sorted(s for _, s, _ in await stored(stack, run.id)) == list(range(1_000))

        async with asyncio.timeout(INGEST_STREAM_IDLE_S + 30):
            codes = {await c.code() for c in held}
        assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED}
        ended = [ended_at[calls.index(c)] for c in held]
        assert "TRACKD_INGEST_STREAM_IDLE_S" in await held[0].details()
    finally:
        for channel in channels:
            await channel.close()
    figure(f"{IDLE_CALLS} idle StreamMetrics calls from one address: {len(held)} admitted (the per-caller share), "
           f"{len(refused)} refused RESOURCE_EXHAUSTED; the {len(held)} ended DEADLINE_EXCEEDED "
           f"{min(ended):.1f}-{max(ended):.1f}s after opening (idle bound "
           f"{INGEST_STREAM_IDLE_S:g}s); an SDK run logged 1,000 points and ended FINISHED in {took:.1f}s, "
           f"1,000 stored")


async def test_sync_leaves_the_spool_of_a_live_run_alone(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    spool = tmp_path / "spool"
    client = sdk_client(spool)
    run = trackd.start_run(unique("sync-live"), capture_env=False, system_metrics=False, client=client)
    logging_started, sync_done = threading.Event(), threading.Event()
    logged = 0

    def train() -> None:  # a training loop logging every ~4 ms until the sync process has finished
        nonlocal logged
        while not sync_done.is_set() and logged < MAX_STEPS:
            run.log_metric("loss", logged * 0.5, step=logged)
            logged += 1
            if logged % 20 == 0:
                logging_started.set()
                time.sleep(0.004)

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        assert await asyncio.to_thread(logging_started.wait, 30)
        result = await asyncio.to_thread(sync_process, stack, spool)
        still_logging = trainer.is_alive()
    finally:
        sync_done.set()
        await asyncio.to_thread(trainer.join)
    info = await asyncio.to_thread(run.end)
    client.close()
    points = await stored(stack, run.id)
    assert still_logging, f"the run stopped logging ({MAX_STEPS:,} steps) before sync ended"
    assert result.returncode == 0, result.stdout + result.stderr
    assert "still logging" in result.stdout and "left alone" in result.stdout, result.stdout
    assert info.status == "FINISHED"
    assert sorted(s for _, s, _ in points) == list(range(logged)), "every point once"
    figure(f"`trackd sync` (its own process) during a run logging {logged:,} points: spool skipped as live; "
           f"run ended FINISHED, {len(points):,} of {logged:,} stored")


async def test_a_bad_metric_key_costs_only_its_own_series(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    client = sdk_client(tmp_path / "spool")
    run = trackd.start_run(unique("bad-key"), capture_env=False, system_metrics=False, client=client)
    refused = 0
    for step in range(1_000):
        run.log_metric("train/loss", 1.0, step=step)
        try:
            run.log_metric("k" * 251, 1.0, step=step)
        except InvalidMetric as exc:
            refused += 1
            assert isinstance(exc, ValueError) and "251 characters; the limit is 250" in str(exc)
        run.log_metric("train/acc", 0.5, step=step)
    info = await asyncio.to_thread(run.end)
    client.close()
    assert info.status == "FINISHED" and refused == 1_000
    assert len(await stored(stack, run.id)) == 2_000

    # A spool an older SDK left, with the bad key in its first batch: sync delivers the rest,
    # names the refused series, and is done (it used to retry that batch for ever).
    old = trackd.start_run(unique("bad-key-spool"), capture_env=False, system_metrics=False, client=client)
    stream = uuid.uuid4().hex
    spool = Spool(tmp_path / "old-spool" / stream, run_id=old.id, stream_id=stream)
    spool.append(ingest_pb2.StreamMetricsRequest(run_id=old.id, series=[
        series("good", list(range(1_000)), [1.0] * 1_000), series("k" * 251, [0], [1.0])]).SerializeToString())
    spool.append(ingest_pb2.StreamMetricsRequest(run_id=old.id, series=[
        series("good", list(range(1_000, 2_000)), [1.0] * 1_000)]).SerializeToString())
    spool.close()
    started = time.monotonic()
    result = await asyncio.to_thread(sync_process, stack, tmp_path / "old-spool", "--timeout", "60")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused by the server" in result.stdout and "the limit is 250" in result.stdout, result.stdout
    points = await stored(stack, old.id)
    assert sorted(s for _, s, _ in points) == list(range(2_000))
    assert not any((tmp_path / "old-spool").iterdir()), "the delivered spool is removed"
    client.call("run", client.runs.EndRun, run_pb2.EndRunRequest(run_id=old.id, status=run_pb2.RUN_STATUS_FINISHED))
    figure(f"SDK: 1,000 calls with a 251-character key raised InvalidMetric at the call, run ended FINISHED, "
           f"2,000 of 2,000 good points stored; an old spool with the bad series: `trackd sync` exit 0 in "
           f"{took:.1f}s, 2,000 of 2,000 good points stored, the bad series named")


async def test_a_full_spool_raises_at_the_call_and_keeps_what_it_accepted(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, figure: Callable[[str], None]
) -> None:
    spool, limit = tmp_path / "spool", 4 * 1024 * 1024
    nowhere = f"{HOST}:{free_port()}"  # the ingest service unreachable for the whole run
    client = sdk_client(spool, ingest_target=nowhere, flush_timeout_s=1, spool_max_bytes=limit)
    run = trackd.start_run(unique("spool-full"), capture_env=False, system_metrics=False, client=client)
    logged, peak = 0, 0
    started = time.monotonic()
    with pytest.raises(SpoolFull, match="TRACKD_SPOOL_MAX_BYTES") as full:
        for step in range(20_000_000):
            run.log_metric("loss", 0.25, step=step)
            logged += 1
            if step % 10_000 == 0:
                peak = max(peak, sum(p.stat().st_size for p in spool.rglob("*.seg")))
    raised_after = time.monotonic() - started
    assert isinstance(full.value, trackd.errors.ResourceExhausted)
    assert peak <= limit
    with pytest.raises(trackd.errors.TrackdError, match="still spooled"):
        await asyncio.to_thread(run.end)  # gives up after 1 s: what it holds goes to disk, past the cap
    at_end = sum(p.stat().st_size for p in spool.rglob("*.seg"))
    result = await asyncio.to_thread(sync_process, stack, spool)
    assert result.returncode == 0, result.stdout + result.stderr
    points = await stored(stack, run.id)
    assert len(points) == logged and sorted(s for _, s, _ in points) == list(range(logged)), "every accepted point"
    client.call("run", client.runs.EndRun, run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_FINISHED))
    client.close()
    figure(f"ingest unreachable, TRACKD_SPOOL_MAX_BYTES={limit:,}: log_metric raised SpoolFull after {logged:,} "
           f"points ({raised_after:.1f}s); spool peak {peak:,} bytes while logging, {at_end:,} after run.end() "
           f"wrote the in-memory buffer; `trackd sync` delivered {len(points):,} of {logged:,}")
