"""Fault drill: Valkey (Redis) stopped. Ingest keeps acknowledging (the cache is queued for repair
in PostgreSQL), the query service answers latest metrics from PostgreSQL, HPO studies hand out
and take back trials (its ready queue falls back to PostgreSQL); once Valkey is back the cache is
repaired without anyone's help."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
import redis
import trackd
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack

from tests.metric_points import series

pytestmark = pytest.mark.integration


@pytest.fixture
async def channels(stack: EmbeddedStack) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    opened = {s: grpc.aio.insecure_channel(f"{HOST}:{stack.service_port(s)}") for s in ("ingest", "query", "hpo")}
    yield opened
    for channel in opened.values():
        await channel.close()


def latest(stack: EmbeddedStack, run_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(stack.redis_url)
    return {k.decode(): v.decode() for k, v in client.hgetall(f"trackd:{{{run_id}}}:latest").items()}


async def test_ingest_query_and_hpo_go_on_while_redis_is_down_and_the_cache_is_repaired(
    stack: EmbeddedStack, channels: dict[str, grpc.aio.Channel], unique: Callable[[str], str],
    figure: Callable[[str], None],
) -> None:
    ingest = ingest_pb2_grpc.IngestServiceStub(channels["ingest"])
    query = query_pb2_grpc.QueryServiceStub(channels["query"])
    hpo = hpo_pb2_grpc.HpoServiceStub(channels["hpo"])
    run = trackd.start_run(unique("redis"), capture_env=False, system_metrics=False)
    await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[series("acc", [0], [0.5])]))
    study = trackd.hpo.create_study(unique("redis-study"), metric="loss", sampler="random", max_trials=3,
                                    search_space={"x": {"type": "float", "low": 0, "high": 1}})
    valkey = stack.infra["valkey"]
    valkey.stop()
    try:
        for step in range(1, 4):
            response = await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(
                run_id=run.id, series=[series("acc", [step], [0.5 + step / 10])]), timeout=10)
            assert response.points_written == 1
        fallback = await query.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=run.id), timeout=10)
        assert not fallback.from_cache
        assert [(m.key, m.step, m.value, m.count) for m in fallback.metrics] == [("acc", 3, 0.8, 4)]
        completed = 0
        while (reply := await hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w"),
                                               timeout=30)).HasField("trial"):
            await hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=reply.trial.id, worker="w",
                                                                 values=[0.5]), timeout=30)
            completed += 1
        assert completed == 3
    finally:
        valkey.start()
        valkey.wait_ready(30)
    back = time.monotonic()
    while '"count": 4' not in latest(stack, run.id).get("acc\t0", ""):
        assert time.monotonic() - back < 60, "the cache was not repaired"
        await asyncio.sleep(0.2)
    repaired_after = time.monotonic() - back
    summary = json.loads(latest(stack, run.id)["acc\t0"])
    assert summary["count"] == 4 and summary["step"] == "3" and float(summary["value"]) == 0.8
    assert float(summary["min"]) == 0.5 and float(summary["max"]) == 0.8
    # the hash is written before the run's repair mark in PostgreSQL is cleared: served from the
    # cache once both are done
    while not (cached := await query.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=run.id),
                                                      timeout=10)).from_cache:
        assert time.monotonic() - back < 60, "latest metrics were not served from the repaired cache"
        await asyncio.sleep(0.2)
    assert [(m.key, m.count) for m in cached.metrics] == [("acc", 4)]
    assert trackd.hpo.get_study(study.name).state == "FINISHED"
    run.end()
    figure(f"3 points acknowledged and 3 trials run while Valkey was down; latest-metric cache repaired "
           f"{repaired_after:.1f}s after it was back")
