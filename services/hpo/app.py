"""Wiring of the hpo service: config → pool → the controller lease (one active replica) → stores →
sampling, reaper, controller → servicer → serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import prometheus_client
from trackd_api.events.v1 import events_pb2
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.run.v1 import run_pb2
from trackd_platform.config import StoresConfig
from trackd_platform.event_contract import RUN_ENDED, authentic, to_event
from trackd_platform.ids import parse_id
from trackd_platform.kafka import create_consumer, records
from trackd_platform.redis import create_redis
from trackd_platform.server import configure_logging
from trackd_platform.telemetry import RUN_ID, continue_trace
from trackd_platform.wiring import wire

from .access import RULES
from .api import HpoServicer
from .controller import Controller
from .leader import Leadership
from .leases import Reaper
from .optuna_storage import RULES as OPTUNA_RULES
from .optuna_storage import add_optuna_storage
from .queue import ReadyQueue
from .runs import RunsClient
from .sampling import Sampling
from .store import StudyStore

REAP_INTERVAL_S = 2.0
LEASE_WAIT = "the controller lease (another hpo replica holds it, or PostgreSQL is unreachable)"

log = logging.getLogger(__name__)


async def serve(config: StoresConfig) -> None:
    redis = create_redis(config.redis)  # the ready queues, and per-token write limits (docs/auth.md)
    server, pool = await wire(config.server, config.postgres, RULES | OPTUNA_RULES, redis=redis)
    leadership = Leadership(pool)  # one active controller: the others wait here, NOT_SERVING
    await server.until_ready(LEASE_WAIT,
                             leadership.take)
    server.add_closer(leadership.release)  # before the pool closes (closers run in reverse)
    store = StudyStore(pool)
    runs = RunsClient(config.run_target, config.server)
    server.add_closer(runs.close)
    sampling = Sampling(store, ReadyQueue(redis))
    reaper = Reaper(store, sampling, runs, registry=server.registry)
    controller = Controller(store, runs, sampling, reaper, lease_s=config.hpo_lease_s)

    async def take_over() -> None:
        """Before answering as the controller (started, or the lease taken back): no worker could
        heartbeat while no controller answered, so running trials' leases start again from now;
        the ready queues are rebuilt from PostgreSQL."""
        if renewed := await store.renew_all_leases(config.hpo_lease_s):
            log.info("renewed the leases of %d running trials on taking over", renewed)
        await sampling.recover()

    await server.until_ready("Valkey (the studies' trial queues)", take_over)
    optuna = add_optuna_storage(server, pool, config)  # Optuna's GrpcStorageProxy, on TRACKD_OPTUNA_PORT too
    server.add_servicer(
        hpo_pb2_grpc.add_HpoServiceServicer_to_server,
        HpoServicer(controller, store, optuna),
        hpo_pb2.DESCRIPTOR.services_by_name["HpoService"].full_name,
    )

    def while_leading(work: Callable[[], Awaitable[None]], what: str) -> Callable[[], Coroutine[Any, Any, None]]:
        """A background loop doing `work` every REAP_INTERVAL_S while this replica is the active
        controller; a failure is logged and tried again next time."""
        async def loop() -> None:
            while True:
                try:
                    if leadership.held:
                        await work()
                except Exception:
                    log.exception("%s failed; retrying", what)
                await asyncio.sleep(REAP_INTERVAL_S)
        return loop

    # Ending the marked runs of ended trials has a loop of its own: a reaping pass waits for every
    # active study's lock and sampler in turn, and would hold it up.
    reap = while_leading(reaper.reap_all, "reaping leases")
    end_marked_runs = while_leading(reaper.end_runs, "ending trials' runs")

    forged = prometheus_client.Counter(
        "trackd_hpo_forged_events_total", "run.ended events ignored for a missing or wrong trackd-signature",
        registry=server.registry)

    async def follow_run_ended() -> None:
        """`run.ended` FAILED / CRASHED for a running trial: the retry policy, at once rather than
        at lease expiry (which stays the backstop for events missed while this was down)."""
        while True:
            try:
                consumer = await create_consumer(config.kafka, (RUN_ENDED,), group_id=None, from_beginning=False)
                try:
                    async for message in records(consumer, assigned=True):
                        if not authentic(received := to_event(message), config.kafka.event_key):
                            forged.inc()
                            log.warning("ignored a run.ended event for run %s without a valid trackd-signature "
                                        "(offset %d): not written by trackd's run service", received.key,
                                        received.offset)
                            continue
                        event = events_pb2.RunEnded.FromString(message.value or b"")
                        if leadership.held and event.status in (run_pb2.RUN_STATUS_FAILED,
                                                                run_pb2.RUN_STATUS_CRASHED):
                            with continue_trace(received.headers, "run.ended process",
                                                attributes={RUN_ID: event.run_id}):
                                await reaper.run_ended(parse_id("run_id", event.run_id))
                finally:
                    await consumer.stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following run.ended failed; reconnecting")
                await asyncio.sleep(2.0)

    async def lead() -> None:
        """Hold the controller lease. Lost (PostgreSQL crashed or unreachable): step down in-process
        — stop answering, drop the in-memory engines, end the lock's session — then take the lease
        again (another replica may have it first) and recover from PostgreSQL before answering."""
        while True:
            await leadership.hold()
            await server.close_gate("the controller lease (lost: PostgreSQL restarting or unreachable)")
            sampling.forget_all()
            await leadership.drop()
            await server.until_ready(LEASE_WAIT,
                                     leadership.take)
            await server.until_ready("Valkey (the studies' trial queues)", take_over)
            await server.reopen()

    server.add_background(lead)
    server.add_background(reap)
    server.add_background(end_marked_runs)
    server.add_background(follow_run_ended)
    await server.run_until_signal()


def main() -> None:
    configure_logging("hpo")
    asyncio.run(serve(StoresConfig.from_env(service="hpo")))
