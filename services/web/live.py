"""Live updates for browsers: one WatchRun subscription per watched run per web replica, however
many browsers watch it, fanned out to each viewer's bounded queue as ready-made Server-Sent Events.

A feed also polls its run's status (once per feed, not per viewer) so a run that ends — CRASHED
included — changes every viewer's badge. A viewer that cannot keep up (its queue full) is
dropped; its browser reconnects and reloads the history, so it loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import prometheus_client
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2

from .backends import PAGE_TIMEOUT_S, Backends, Caller
from .views import ENDED, series_json, status_name

log = logging.getLogger(__name__)

VIEWER_QUEUE = 2048  # events a viewer may lag behind before it is dropped
STATUS_POLL_S = 3.0
RETRY_S = 1.0
READY_TIMEOUT_S = 10.0

CLOSE = "close"  # the sentinel a viewer's queue ends with
KEEPALIVE = ": keep-alive\n\n"
KEEPALIVE_S = 15.0


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, allow_nan=False, separators=(',', ':'))}\n\n"


class TooManyViewers(Exception):
    pass


class NotSubscribed(Exception):
    pass


@dataclass
class _Feed:
    run_id: str
    caller: Caller
    viewers: set[asyncio.Queue[str]] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    last_steps: dict[tuple[str, int], int] = field(default_factory=dict)


class LiveHub:
    def __init__(self, backends: Backends, *, max_viewers: int, registry: prometheus_client.CollectorRegistry) -> None:
        self._backends = backends
        self._max_viewers = max_viewers
        self._feeds: dict[str, _Feed] = {}
        self._viewers = prometheus_client.Gauge(
            "trackd_web_live_viewers", "Browsers receiving live updates from this replica", registry=registry)
        self._subscriptions = prometheus_client.Gauge(
            "trackd_web_live_subscriptions", "WatchRun subscriptions this replica holds (one per watched run)",
            registry=registry)
        self._dropped = prometheus_client.Counter(
            "trackd_web_live_dropped_viewers", "Viewers dropped because they could not keep up", registry=registry)

    @property
    def subscriptions(self) -> int:
        return len(self._feeds)

    @property
    def viewers(self) -> int:
        return sum(len(f.viewers) for f in self._feeds.values())

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str, caller: Caller, status: str) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of SSE-formatted events for one viewer of `run_id`, starting with `ready` once
        the shared subscription is in place (every point committed after it arrives)."""
        if self.viewers >= self._max_viewers:
            raise TooManyViewers(f"this web replica serves at most {self._max_viewers} live viewers")
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = _Feed(run_id, caller, status=status)
            feed.tasks = [asyncio.create_task(self._follow(feed)), asyncio.create_task(self._poll_status(feed))]
            self._subscriptions.set(len(self._feeds))
        queue: asyncio.Queue[str] = asyncio.Queue(VIEWER_QUEUE)
        feed.viewers.add(queue)
        self._viewers.inc()
        try:
            try:
                await asyncio.wait_for(feed.ready.wait(), READY_TIMEOUT_S)
            except TimeoutError:  # a `ready` now could hide points committed before the subscription
                raise NotSubscribed(f"the query service did not start the live feed within {READY_TIMEOUT_S:.0f}s; "
                                    "reload the page") from None
            queue.put_nowait(sse("ready", {"status": feed.status}))
            yield queue
        finally:
            feed.viewers.discard(queue)
            self._viewers.dec()
            if not feed.viewers and self._feeds.get(run_id) is feed:
                await self._stop(feed)

    async def _stop(self, feed: _Feed) -> None:
        self._feeds.pop(feed.run_id, None)
        self._subscriptions.set(len(self._feeds))
        for task in feed.tasks:
            task.cancel()
        await asyncio.gather(*feed.tasks, return_exceptions=True)

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            self._broadcast(feed, CLOSE)
            await self._stop(feed)

    def _broadcast(self, feed: _Feed, event: str) -> None:
        for queue in list(feed.viewers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # too slow: drop it (its browser reconnects and reloads)
                feed.viewers.discard(queue)
                self._dropped.inc()
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(CLOSE)

    async def _follow(self, feed: _Feed) -> None:
        """The run's WatchRun stream, resumed after a failure from the lowest step seen (viewers
        drop points at or below the last step they hold)."""
        while True:
            request = query_pb2.WatchRunRequest(run_id=feed.run_id)
            if feed.last_steps:
                request.from_step = min(feed.last_steps.values()) + 1
            call = self._backends.query.WatchRun(request, metadata=feed.caller.metadata)
            try:
                await call.initial_metadata()
                feed.ready.set()
                async for response in call:
                    for s in response.series:
                        if len(s.steps):
                            name = (s.key, s.context)
                            feed.last_steps[name] = max(feed.last_steps.get(name, s.steps[-1]), s.steps[-1])
                    self._broadcast(feed, sse("points", {"series": [series_json(s) for s in response.series]}))
                await self._refresh_status(feed)  # the stream ends once the run has ended
                self._broadcast(feed, CLOSE)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.UNAUTHENTICATED):
                    self._broadcast(feed, sse("error", {"message": error.details()}))
                    self._broadcast(feed, CLOSE)
                    return
                log.warning("WatchRun of %s failed (%s); resuming in %.0fs", feed.run_id, error.code(), RETRY_S)
                feed.ready.set()  # viewers wait no longer: they see what arrives after the resume
                await asyncio.sleep(RETRY_S)
            finally:
                call.cancel()

    async def _poll_status(self, feed: _Feed) -> None:
        """The run's status every STATUS_POLL_S, and a keep-alive comment to every viewer every
        KEEPALIVE_S (it also finds out, by failing, that a browser left)."""
        loop = asyncio.get_running_loop()
        kept_alive = loop.time()
        while True:
            await asyncio.sleep(STATUS_POLL_S)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._refresh_status(feed)
            if loop.time() - kept_alive >= KEEPALIVE_S:
                kept_alive = loop.time()
                self._broadcast(feed, KEEPALIVE)

    async def _refresh_status(self, feed: _Feed) -> None:
        response = await self._backends.runs.GetRun(run_pb2.GetRunRequest(run_id=feed.run_id),
                                                    metadata=feed.caller.metadata, timeout=PAGE_TIMEOUT_S)
        status = status_name(response.run.status)
        if status != feed.status:
            feed.status = status
            self._broadcast(feed, sse("status", {"status": status, "ended": status in ENDED,
                                                 "duration_ms": response.run.duration_ms}))
