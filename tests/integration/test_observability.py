"""Observability on the real stack: what `/metrics` shows after real traffic, and one trace from an
RPC on the run service, through the outbox and Kafka, into the hpo service's run.ended consumer.

Traces are read the way a collector would: this test serves OTLP (the collector's TraceService)
and starts its own run and hpo processes with OTEL_EXPORTER_OTLP_ENDPOINT pointing at it, on the
session's infrastructure. Waits are bounded loops for something to arrive, never timing claims.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import trackd
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.processes import Managed, free_port
from trackd_platform.stack import EmbeddedStack, grpc_serving
from trackd_platform.telemetry import RUN_ID

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def ended_calls(stack: EmbeddedStack, service: str, method: str) -> float:
    """How many calls of `method` ("ArtifactService/UploadArtifact") the service has ended: each is
    counted once its handler has let go (answered, failed, or cancelled and cleaned up)."""
    return value(scrape(stack.metrics_port(service)), "trackd_rpc_total", method=f"/trackd.{service}.v1.{method}")


async def until_ended(stack: EmbeddedStack, service: str, method: str, count: float, timeout_s: float = 30) -> float:
    """`ended_calls` once it reaches `count`, or after `timeout_s`: a call cut on the client's side
    goes on in the server for a while (its cancellation arrives asynchronously, S3 calls under
    way finish), so what it leaves behind can be judged only after that."""
    for _ in range(int(timeout_s * 10)):
        if (ended := ended_calls(stack, service, method)) >= count:
            return ended
        await asyncio.sleep(0.1)
    return ended_calls(stack, service, method)


def scrape_ingest(stack: EmbeddedStack) -> Samples:
    """Every ingest replica's samples, summed by series."""
    total: Samples = {}
    for replica in range(stack.ingest_replicas):
        for key, v in scrape(stack.metrics_port("ingest", replica)).items():
            total[key] = total.get(key, 0.0) + v
    return total


async def eventually(probe: Callable[[], Any], *, timeout_s: float = 60.0) -> Any:
    """Call `probe` until it returns something truthy, at most `timeout_s`; returns the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await asyncio.to_thread(probe)
        if answer or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.5)


# -- /metrics -------------------------------------------------------------------------------------


async def test_ingest_metrics_count_the_points_and_batches_written(
    stack: EmbeddedStack, unique: Callable[[str], str]
) -> None:
    before = await asyncio.to_thread(scrape_ingest, stack)
    run = trackd.start_run(unique("metrics"), project="observability", capture_env=False, system_metrics=False)
    for step in range(1_000):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.end()
    after = await asyncio.to_thread(scrape_ingest, stack)

    assert value(after, "trackd_ingest_points_total") - value(before, "trackd_ingest_points_total") == 1_000
    committed = value(after, "trackd_ingest_batches_total", outcome="committed") - value(
        before, "trackd_ingest_batches_total", outcome="committed")
    assert committed >= 1
    # one batch-size observation per committed batch, adding up to the points
    assert value(after, "trackd_ingest_batch_points_count") - value(before, "trackd_ingest_batch_points_count") \
        == committed
    assert value(after, "trackd_ingest_batch_points_sum") - value(before, "trackd_ingest_batch_points_sum") == 1_000
    streamed = value(after, "trackd_rpc_total", method="/trackd.ingest.v1.IngestService/StreamMetrics", code="OK")
    logged = value(after, "trackd_rpc_total", method="/trackd.ingest.v1.IngestService/LogMetrics", code="OK")
    assert streamed + logged > 0


async def test_query_counts_latest_metric_cache_hits_and_misses(
    stack: EmbeddedStack, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("cache"), project="observability", capture_env=False, system_metrics=False)
    run.log_metric("acc", 0.5, step=0)
    run.end()
    port = stack.metrics_port("query")
    before = await asyncio.to_thread(scrape, port)
    answers = []
    async with grpc.aio.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for _ in range(3):
            answers.append(await stub.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=run.id), timeout=10))
    after = await asyncio.to_thread(scrape, port)
    assert all(a.metrics and a.metrics[0].key == "acc" for a in answers)
    hits = sum(a.from_cache for a in answers)
    assert value(after, "trackd_query_latest_cache_total", result="hit") - value(
        before, "trackd_query_latest_cache_total", result="hit") == hits
    assert value(after, "trackd_query_latest_cache_total", result="miss") - value(
        before, "trackd_query_latest_cache_total", result="miss") == len(answers) - hits
    calls = "/trackd.query.v1.QueryService/GetLatestMetrics"
    assert value(after, "trackd_rpc_total", method=calls, code="OK") - value(
        before, "trackd_rpc_total", method=calls, code="OK") == len(answers)
    assert value(after, "trackd_rpc_seconds_count", method=calls) - value(
        before, "trackd_rpc_seconds_count", method=calls) == len(answers)


async def test_the_outbox_relay_counts_published_events_and_ended_runs(
    stack: EmbeddedStack, unique: Callable[[str], str]
) -> None:
    port = stack.metrics_port("run")
    before = await asyncio.to_thread(scrape, port)
    failed = trackd.start_run(unique("fails"), project="observability", capture_env=False, system_metrics=False)
    failed.end("FAILED")

    def published() -> Samples | None:
        now = scrape(port)
        done = value(now, "trackd_runs_ended_total", status="FAILED") > value(
            before, "trackd_runs_ended_total", status="FAILED")
        return now if done else None

    after = await eventually(published)
    assert after, "trackd_runs_ended_total{status=FAILED} did not count the failed run"
    assert value(after, "trackd_outbox_published_total", topic="run.ended") > value(
        before, "trackd_outbox_published_total", topic="run.ended")
    assert value(after, "trackd_outbox_published_total", topic="run.started") > value(
        before, "trackd_outbox_published_total", topic="run.started")
    # the active relay reports its backlog; with the broker up it drains to (almost) nothing
    assert ("trackd_outbox_backlog", ()) in after and 0 <= after[("trackd_outbox_backlog", ())] < 100


# -- one trace across run, Kafka and hpo ----------------------------------------------------------


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP trace endpoint of a collector: keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        found = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                found += [(service, span) for span in scope.spans]
        with self._lock:
            self.spans += found
        return trace_service_pb2.ExportTraceServiceResponse()

    def in_trace(self, trace_id: bytes) -> list[tuple[str, trace_pb2.Span]]:
        with self._lock:
            return [(service, span) for service, span in self.spans if span.trace_id == trace_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[_Receiver, int]]:
    """Served on threads of its own, so it answers while no event loop runs: the traced processes
    flush their last spans here when they stop (in fixture teardown), and must not wait out an
    export deadline then."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    found = _Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def traced_services(
    stack: EmbeddedStack, receiver: tuple[_Receiver, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A run and an hpo process of their own, exporting traces to the receiver; {service: target}.
    One hpo replica is the active controller at a time (its lease): the stack's steps aside meanwhile."""
    _, otlp_port = receiver
    logs = tmp_path_factory.mktemp("traced")
    ports = {"run": free_port(), "hpo": free_port()}
    started = []
    stack_hpo = stack.services["hpo"]
    stack_hpo.stop()
    try:
        for service in ("run", "hpo"):
            env = {
                **os.environ, **stack.infra_env(), "TRACKD_GRPC_HOST": "127.0.0.1",
                "TRACKD_GRPC_PORT": str(ports[service]), "TRACKD_METRICS_PORT": "0", "TRACKD_OPTUNA_PORT": "0",
                "TRACKD_RUN_TARGET": f"127.0.0.1:{ports['run']}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
                "OTEL_SERVICE_NAME": f"traced-{service}", "TRACKD_SHUTDOWN_GRACE_S": "1",
            }
            managed = Managed(
                name=f"traced-{service}", argv=[sys.executable, "-m", f"trackd_services.{service}"], env=env,
                log_path=logs / f"{service}.log", ready=lambda p=ports[service]: grpc_serving(f"127.0.0.1:{p}"),
            )
            managed.start()
            started.append(managed)
            managed.wait_ready(60)
        yield {service: f"127.0.0.1:{port}" for service, port in ports.items()}
    finally:
        for managed in started:
            managed.stop()
        stack_hpo.start()
        stack_hpo.wait_ready(60)


async def test_a_run_rpc_and_the_run_ended_it_causes_share_one_trace_into_hpo(
    receiver: tuple[_Receiver, int], traced_services: dict[str, str], unique: Callable[[str], str]
) -> None:
    spans, _ = receiver
    trace_id = secrets.token_bytes(16)
    # as a traced client sends it: W3C trace context in the call metadata
    metadata = (("traceparent", f"00-{trace_id.hex()}-{secrets.token_hex(8)}-01"),)
    experiment = unique("traced")
    run_ids = []

    def consumed() -> list[tuple[str, trace_pb2.Span]]:
        return [(s, span) for s, span in spans.in_trace(trace_id)
                if s == "traced-hpo" and span.kind == trace_pb2.Span.SPAN_KIND_CONSUMER]

    async with grpc.aio.insecure_channel(traced_services["run"]) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        # hpo's consumer starts at the end of run.ended once it is up: end runs until one is seen
        for _ in range(20):
            started = await stub.StartRun(run_pb2.StartRunRequest(
                experiment_name=experiment, project_name="observability"), metadata=metadata, timeout=10)
            run_ids.append(started.run.id)
            await stub.EndRun(run_pb2.EndRunRequest(
                run_id=started.run.id, status=run_pb2.RUN_STATUS_FAILED), metadata=metadata, timeout=10)
            if await eventually(consumed, timeout_s=3):
                break

    (service, consumer), *_ = consumed() or [("", None)]
    assert consumer is not None, (
        f"no consumer span of the hpo service in trace {trace_id.hex()}; spans in it: "
        f"{sorted({(s, span.name) for s, span in spans.in_trace(trace_id)})}"
    )
    assert consumer.name == "run.ended receive"
    key = {a.key: a.value.string_value for a in consumer.attributes}.get("messaging.kafka.message.key")
    assert key is None or key in run_ids

    # the run service's server spans carry the run ids they are about
    def about() -> set[tuple[str, str | None]]:
        return {
            (span.name, {a.key: a.value.string_value for a in span.attributes}.get(RUN_ID))
            for s, span in spans.in_trace(trace_id)
            if s == "traced-run" and span.kind == trace_pb2.Span.SPAN_KIND_SERVER
        }

    wanted = {("/trackd.run.v1.RunService/StartRun", run_ids[0]), ("/trackd.run.v1.RunService/EndRun", run_ids[0])}
    assert await eventually(lambda: wanted <= about()), about()


@pytest.fixture
def traced_web(stack: EmbeddedStack, receiver: tuple[_Receiver, int], traced_services: dict[str, str],
               tmp_path: Path) -> Iterator[str]:
    """A web process of its own, exporting traces, calling the traced run service; its base URL."""
    _, otlp_port = receiver
    port = free_port()
    env = {**os.environ, **stack.client_env(), "TRACKD_RUN_TARGET": traced_services["run"],
           "TRACKD_WEB_HOST": "127.0.0.1", "TRACKD_WEB_PORT": str(port),
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_SERVICE_NAME": "traced-web"}

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    web = Managed(name="traced-web", argv=[sys.executable, "-m", "trackd_services.web"], env=env,
                  log_path=tmp_path / "web.log", ready=ready)
    web.start()
    try:
        web.wait_ready(60)
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()


async def test_a_web_request_and_the_grpc_calls_it_makes_share_one_trace(
    receiver: tuple[_Receiver, int], traced_web: str, unique: Callable[[str], str]
) -> None:
    spans, _ = receiver
    run = trackd.start_run(unique("web-traced"), project="observability", capture_env=False, system_metrics=False)
    run.end()
    trace_id = secrets.token_bytes(16)
    request = urllib.request.Request(f"{traced_web}/runs/{run.id}?tab=overview", headers={
        "traceparent": f"00-{trace_id.hex()}-{secrets.token_hex(8)}-01"})

    def get() -> int:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    assert await asyncio.to_thread(get) == 200

    def services() -> set[tuple[str, str]]:
        return {(s, span.name) for s, span in spans.in_trace(trace_id) if span.kind == trace_pb2.Span.SPAN_KIND_SERVER}

    def complete() -> set[tuple[str, str]] | None:
        found = services()
        web = any(s == "traced-web" for s, _ in found)  # the web service's own span
        return found if web and ("traced-run", "/trackd.run.v1.RunService/GetRun") in found else None

    assert await eventually(complete, timeout_s=30), services()
