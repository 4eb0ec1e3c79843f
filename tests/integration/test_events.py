"""run.started / run.ended on the real broker: contract, crashes, trace propagation. (The broker
outage drill is in tests/faults/test_broker_outage.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import trackd
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trackd_api.events.v1 import events_pb2
from trackd_api.run.v1 import run_pb2
from trackd_api.run.v1.run_pb2_grpc import RunServiceStub
from trackd_platform.stack import EmbeddedStack

from tests.integration.conftest import HEARTBEAT_TIMEOUT_S, collect_events

pytestmark = pytest.mark.integration


async def start(runs: RunServiceStub, experiment: str) -> run_pb2.Run:
    response = await runs.StartRun(run_pb2.StartRunRequest(project_name="events", experiment_name=experiment))
    return response.run


async def test_both_events_with_key_headers_and_value(
    stack: EmbeddedStack, runs: RunServiceStub, unique: Callable[[str], str]
) -> None:
    run = await start(runs, unique("contract"))
    await runs.EndRun(run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_KILLED))
    events = await collect_events(stack.kafka_bootstrap, lambda e: e.key == run.id, 2)
    by_topic = {e.topic: e for e in events}
    assert set(by_topic) == {"run.started", "run.ended"}, events
    for event in events:
        assert event.headers["content-type"] == "application/x-protobuf"
        assert event.headers["ce_id"] and event.headers["traceparent"].startswith("00-")
    assert by_topic["run.started"].headers["ce_type"] == "trackd.events.v1.RunStarted"
    assert by_topic["run.ended"].headers["ce_type"] == "trackd.events.v1.RunEnded"
    started = events_pb2.RunStarted.FromString(by_topic["run.started"].value)
    ended = events_pb2.RunEnded.FromString(by_topic["run.ended"].value)
    assert started.run_id == ended.run_id == run.id and started.experiment_id == run.experiment_id
    assert ended.status == run_pb2.RUN_STATUS_KILLED
    assert started.event_id == by_topic["run.started"].headers["ce_id"]
    assert ended.event_id != started.event_id


async def test_a_run_without_heartbeats_is_crashed(
    stack: EmbeddedStack, runs: RunServiceStub, unique: Callable[[str], str]
) -> None:
    run = await start(runs, unique("crash"))
    await asyncio.sleep(HEARTBEAT_TIMEOUT_S + 2.5)
    got = (await runs.GetRun(run_pb2.GetRunRequest(run_id=run.id))).run
    assert got.status == run_pb2.RUN_STATUS_CRASHED
    events = await collect_events(stack.kafka_bootstrap, lambda e: e.key == run.id, 1, topics=("run.ended",))
    assert len(events) == 1
    assert events_pb2.RunEnded.FromString(events[0].value).status == run_pb2.RUN_STATUS_CRASHED


async def test_sdk_heartbeats_keep_a_long_run_alive(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    run = trackd.start_run(unique("alive"), project="events", capture_env=False)
    await asyncio.sleep(HEARTBEAT_TIMEOUT_S + 2.5)
    assert trackd.get_run(run.id).status == "RUNNING"
    assert run.end().status == "FINISHED"


async def test_a_trace_started_in_the_sdk_reaches_the_kafka_headers(
    stack: EmbeddedStack, unique: Callable[[str], str]
) -> None:
    exporter = InMemorySpanExporter()
    # the global provider can be set once per process: an in-process service of an earlier test
    # (tests/faults/artifact_service.py) may have set it already
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("trainer").start_as_current_span("train") as span:
        run = trackd.start_run(unique("traced"), project="events", capture_env=False)
        run.end()
    trace_id = format(span.get_span_context().trace_id, "032x")
    events = await collect_events(stack.kafka_bootstrap, lambda e: e.key == run.id, 2)
    assert len(events) == 2
    for event in events:
        assert event.headers["traceparent"].split("-")[1] == trace_id, event.topic
    client_spans = [s for s in exporter.get_finished_spans() if s.name.endswith("StartRun")]
    assert client_spans and client_spans[0].context.trace_id == span.get_span_context().trace_id
