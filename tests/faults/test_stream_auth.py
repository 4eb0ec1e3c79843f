"""Long-lived streams against tokens, on a real stack of its own with TRACKD_AUTH=on: a token
revoked while its StreamMetrics and WatchRun are open ends both (UNAUTHENTICATED) within the
documented 5 s token-cache bound plus the 1 s re-check, and no batch is committed once the
revocation is visible; and one token holding idle streams gets its share of a replica's slots,
not all of them, so another token's trainer logs and ends at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd._client import Client
from trackd._settings import ClientSettings
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack

from tests.conftest import AUTH_ADMIN_SECRET
from tests.metric_points import series, stored

pytestmark = pytest.mark.integration
ADMIN = AUTH_ADMIN_SECRET  # the shared auth_stack's (tests/conftest.py)
PER_TOKEN = 128  # TRACKD_INGEST_MAX_STREAMS_PER_CALLER's default
BOUND_S = 5.0 + 1.0  # token cache + re-check interval (docs/auth.md)


def bearer(secret: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture
async def channels(auth_stack: EmbeddedStack) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    opened = {s: grpc.aio.insecure_channel(f"{HOST}:{auth_stack.service_port(s)}") for s in ("run", "ingest", "query")}
    yield opened
    for channel in opened.values():
        await channel.close()


async def project_with_run(channels: dict[str, grpc.aio.Channel], name: str) -> tuple[str, str, str]:
    """A project, a RUNNING run in it and a write token of it: (run id, token id, token secret)."""
    runs = run_pb2_grpc.RunServiceStub(channels["run"])
    await runs.CreateProject(run_pb2.CreateProjectRequest(name=name), metadata=bearer(ADMIN), timeout=30)
    run = (await runs.StartRun(run_pb2.StartRunRequest(project_name=name, experiment_name="e"),
                               metadata=bearer(ADMIN), timeout=30)).run
    made = await auth_pb2_grpc.TokenServiceStub(channels["run"]).CreateToken(auth_pb2.CreateTokenRequest(
        project=name, role=auth_pb2.ROLE_WRITE, name="trainer"), metadata=bearer(ADMIN), timeout=30)
    return run.id, made.token.id, made.secret


async def test_a_revoked_token_ends_its_open_metric_stream_and_watch(
    auth_stack: EmbeddedStack, channels: dict[str, grpc.aio.Channel], unique: Callable[[str], str],
    figure: Callable[[str], None],
) -> None:
    run_id, token_id, secret = await project_with_run(channels, unique("p"))
    ingest = ingest_pb2_grpc.IngestServiceStub(channels["ingest"])
    watch = query_pb2_grpc.QueryServiceStub(channels["query"]).WatchRun(
        query_pb2.WatchRunRequest(run_id=run_id), metadata=bearer(secret))
    await watch.initial_metadata()  # subscribed
    stream, stream_id = ingest.StreamMetrics(metadata=bearer(secret)), uuid.uuid4().hex
    acked: list[tuple[int, float]] = []  # (sequence, when)
    watched = 0

    async def send() -> None:  # a batch every 0.2 s, until the stream is ended
        sequence = 0
        while not stream.done():
            sequence += 1
            try:
                await stream.write(ingest_pb2.StreamMetricsRequest(
                    stream_id=stream_id, sequence=sequence, run_id=run_id,
                    series=[series("loss", [sequence], [1.0 / sequence])]))
                acked.append(((await stream.read()).sequence, time.monotonic()))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, AttributeError):
                return
            await asyncio.sleep(0.2)

    async def read_watch() -> None:
        nonlocal watched
        async for _ in watch:
            watched += 1

    sender, reader = asyncio.create_task(send()), asyncio.create_task(read_watch())
    await asyncio.sleep(2.0)
    assert acked and not stream.done() and not watch.done()

    await auth_pb2_grpc.TokenServiceStub(channels["run"]).RevokeToken(
        auth_pb2.RevokeTokenRequest(token_id=token_id), metadata=bearer(ADMIN), timeout=30)
    revoked = time.monotonic()
    visible = None  # when ingest first refuses a new call with the token
    probe = ingest_pb2.LogMetricsRequest(run_id=run_id)  # no series: INVALID_ARGUMENT if let in, nothing written
    async with asyncio.timeout(30):
        while visible is None or not (stream.done() and watch.done()):
            if visible is None:
                try:
                    await ingest.LogMetrics(probe, metadata=bearer(secret), timeout=10)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                        visible = time.monotonic()
            await asyncio.sleep(0.05)
    stream_code, watch_code = await stream.code(), await watch.code()
    stream_end = time.monotonic() - revoked  # at most this (polled)
    await asyncio.gather(sender, reader, return_exceptions=True)
    assert stream_code == grpc.StatusCode.UNAUTHENTICATED, await stream.details()
    assert watch_code == grpc.StatusCode.UNAUTHENTICATED, await watch.details()
    assert "revoked" in await stream.details()
    assert visible is not None
    late = [s for s, when in acked if when > visible + 0.05]
    assert not late, f"batches {late} committed after the revocation was visible"
    points = await stored(auth_stack, run_id)
    assert sorted(s for _, s, _ in points) == sorted(s for s, _ in acked), "committed = acknowledged"
    assert stream_end < BOUND_S + 4, f"ended {stream_end:.1f}s after the revocation"  # generous on a loaded host
    last_ack = max(when for _, when in acked) - revoked
    figure(f"token revoked with StreamMetrics (a batch per 0.2 s) and WatchRun open: refused to new calls after "
           f"{visible - revoked:.1f}s; both streams ended UNAUTHENTICATED within {stream_end:.1f}s; last batch "
           f"committed {last_ack:.1f}s after the revocation, none after it was visible; {len(points)} stored = "
           f"{len(acked)} acknowledged; {watched} live answers before the end")


async def test_one_token_gets_its_share_of_the_stream_slots_not_all(
    auth_stack: EmbeddedStack, channels: dict[str, grpc.aio.Channel], unique: Callable[[str], str],
    tmp_path: Path, figure: Callable[[str], None],
) -> None:
    _, _, hog = await project_with_run(channels, unique("hog"))
    ingest = ingest_pb2_grpc.IngestServiceStub(channels["ingest"])
    calls = [ingest.StreamMetrics(metadata=bearer(hog)) for _ in range(600)]
    try:
        await asyncio.gather(*(c.wait_for_connection() for c in calls))
        refused: list[grpc.aio.StreamStreamCall] = []
        for _ in range(300):  # until every call beyond the token's share is refused (60 s at most)
            refused = [c for c in calls if c.done() and await c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
            if len(refused) >= len(calls) - PER_TOKEN:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert sum(c.done() for c in calls) == len(refused), "the token's share stays open"
        details = {await c.details() for c in refused}
        assert len(calls) - len(refused) == PER_TOKEN
        assert all(f"TRACKD_INGEST_MAX_STREAMS_PER_CALLER={PER_TOKEN}" in d for d in details), details

        # another token's trainer is not kept waiting
        name = unique("trainer")
        _, _, secret = await project_with_run(channels, name)
        base = ClientSettings.from_env()
        targets = {s: f"{HOST}:{auth_stack.service_port(s)}" for s in base.targets}
        client = Client(ClientSettings(targets=targets, heartbeat_interval_s=1, rpc_timeout_s=30,
                                       kafka_bootstrap=auth_stack.kafka_bootstrap, spool_dir=str(tmp_path),
                                       flush_timeout_s=30, system_metrics_interval_s=0, token=secret))
        started = time.monotonic()
        run = await asyncio.to_thread(trackd.start_run, "e", project=name, capture_env=False, system_metrics=False,
                                      client=client)
        for step in range(1_000):
            run.log_metric("loss", 1.0, step=step)
        info = await asyncio.to_thread(run.end)
        took = time.monotonic() - started
        client.close()
        assert info.status == "FINISHED"
        assert len(await stored(auth_stack, run.id)) == 1_000
        assert not any(c.done() for c in calls if c not in refused), "the hog's streams are still open (idle 60 s)"
    finally:
        for call in calls:
            call.cancel()
    figure(f"one token opened 600 idle StreamMetrics calls: {len(calls) - len(refused)} admitted, {len(refused)} "
           f"refused RESOURCE_EXHAUSTED naming TRACKD_INGEST_MAX_STREAMS_PER_CALLER; another token's SDK run "
           f"logged 1,000 points and ended FINISHED in {took:.1f}s")
