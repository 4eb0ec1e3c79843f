"""The real embedded stack (PostgreSQL, Valkey, Tansu, SeaweedFS and the five services), started
once per session on free ports by the same launcher `trackd up` uses. Shared by tests/integration,
tests/faults and tests/fuzz: one stack per session whichever of them run (unit tests never start it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from trackd_api.run.v1 import run_pb2_grpc
from trackd_platform.kafka import TOPICS, Event, to_event
from trackd_platform.stack import EmbeddedStack, StackPorts

HEARTBEAT_TIMEOUT_S = 4.0
HPO_LEASE_S = 5.0
INGEST_STREAM_IDLE_S = 5.0  # a metric stream that sends nothing this long is ended (default 60 s)
QUERY_SLOW_READER_S = 3.0  # an ExportMetric client that takes no message this long is ended (default 60 s)

# The CLI's rich consoles take their width when its modules are imported: the same width for every
# test whatever imported them first (pytest-xdist workers start with COLUMNS=80), wide enough for ids.
os.environ["COLUMNS"] = "250"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record one line of figures (points stored, recovery times, memory) for the session summary:
    the numbers docs/reliability.md quotes. Kept in the test's report, so that they reach the
    terminal from pytest-xdist's workers too."""
    return lambda line: request.node.user_properties.append(("figure", f"{request.node.name}: {line}"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        FIGURES.extend(value for name, value in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures the drills and long tests measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


FIGURES: list[str] = []


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    home = Path(tmp_path_factory.mktemp("trackd-home"))
    stack = EmbeddedStack(
        home,
        ports=StackPorts.free(),
        service_env={
            "TRACKD_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
            "TRACKD_CRASH_CHECK_INTERVAL_S": "0.5",
            "TRACKD_SHUTDOWN_GRACE_S": "2",
            "TRACKD_HPO_LEASE_S": str(HPO_LEASE_S),
            "TRACKD_INGEST_STREAM_IDLE_S": str(INGEST_STREAM_IDLE_S),
            "TRACKD_QUERY_SLOW_READER_S": str(QUERY_SLOW_READER_S),
        },
    )
    stack.start()
    saved = dict(os.environ)
    os.environ.update(stack.client_env())
    os.environ["TRACKD_HEARTBEAT_INTERVAL_S"] = "1"
    try:
        yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.stop(discard=True)  # its data goes with the test's tmp dir: no clean S3 stop


AUTH_ADMIN_SECRET = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A second stack with TRACKD_AUTH=on (admin secret AUTH_ADMIN_SECRET), shared by the tests of
    sign-in and of streams under revoked tokens; started on first use. (tests/integration/test_auth.py
    starts one of its own: TLS and a tight rate limit.)"""
    stack = EmbeddedStack(Path(tmp_path_factory.mktemp("trackd-auth-on")), ports=StackPorts.free(), service_env={
        "TRACKD_AUTH": "on", "TRACKD_ADMIN_TOKEN": AUTH_ADMIN_SECRET, "TRACKD_SHUTDOWN_GRACE_S": "2"})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop(discard=True)  # its data goes with the test's tmp dir: no clean S3 stop


@pytest.fixture
async def runs(stack: EmbeddedStack) -> AsyncIterator[run_pb2_grpc.RunServiceStub]:
    async with grpc.aio.insecure_channel(stack.client_env()["TRACKD_RUN_TARGET"]) as channel:
        yield run_pb2_grpc.RunServiceStub(channel)


@pytest.fixture
def unique() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


async def collect_events(
    bootstrap: str,
    wanted: Callable[[Event], bool],
    count: int,
    *,
    timeout_s: float = 30.0,
    topics: tuple[str, ...] = TOPICS,
) -> list[Event]:
    """Read every partition of `topics` from the beginning until `count` wanted events arrived.
    Every broker call has a deadline; a consumer that stalls (a broker just restarted) is
    replaced."""
    found: dict[tuple[str, int, int], Event] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(found) < count and loop.time() < deadline:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            request_timeout_ms=5000,
        )
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                await consumer.start()
                await _read(consumer, topics, wanted, count, found)
        except (TimeoutError, KafkaError):
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
    return list(found.values())


async def _read(
    consumer: AIOKafkaConsumer, topics: tuple[str, ...], wanted: Callable[[Event], bool], count: int,
    found: dict[tuple[str, int, int], Event],
) -> None:
    assigned: set[TopicPartition] = set()
    while len(found) < count:
        await asyncio.wait_for(consumer._client.force_metadata_update(), 5)
        partitions = {TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())}
        if partitions != assigned:
            consumer.assign(sorted(partitions))
            await asyncio.wait_for(consumer.seek_to_beginning(*partitions), 5)
            assigned = partitions
        batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 5)
        for messages in batch.values():
            for event in map(to_event, messages):
                if wanted(event):
                    found[(event.topic, event.partition, event.offset)] = event
