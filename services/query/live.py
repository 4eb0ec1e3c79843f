"""Live points for WatchRun: one Redis pub/sub connection per query replica, multiplexing a
subscription per watched run, however many callers watch it.

Ingest publishes each committed batch on `trackd:{RUN}:points`. The hub subscribes to a run's
channel when its first watcher arrives and unsubscribes when the last leaves. One task owns the
pub/sub connection: it sends the (un)subscribe commands and reads the messages, parses each
message once and hands it to every watcher's bounded queue. A watcher that falls QUEUE_SIZE
batches behind is ended (RESOURCE_EXHAUSTED: resume with from_step), so a slow caller never
holds memory or the others back. Losing Redis ends every watch with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import prometheus_client
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.cache_keys import committed_points
from trackd_platform.errors import ResourceExhausted, TrackdError, Unavailable

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024  # batches a watcher may lag behind
SUBSCRIBE_TIMEOUT_S = 5.0
READ_SLICE_S = 0.05  # how long one read waits before the owner task looks for (un)subscriptions to send

Item: TypeAlias = ingest_pb2.LogMetricsRequest | TrackdError


@dataclass
class _Channel:
    name: str
    watchers: set[asyncio.Queue[Item]] = field(default_factory=set)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)


class PointsHub:
    def __init__(self, redis: aioredis.Redis, *, max_watchers: int,
                 registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self._redis = redis
        self._max_watchers = max_watchers
        self._channels: dict[str, _Channel] = {}
        self._commands: list[tuple[str, str]] = []  # ("subscribe" | "unsubscribe", channel), in order
        self._wake = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._watchers = prometheus_client.Gauge(
            "trackd_query_watchers", "Open WatchRun calls on this replica", registry=registry)
        self._subscriptions = prometheus_client.Gauge(
            "trackd_query_watch_subscriptions", "Runs this replica is subscribed to in Redis", registry=registry)

    @property
    def watchers(self) -> int:
        return sum(len(c.watchers) for c in self._channels.values())

    async def join(self, run_id: uuid.UUID) -> asyncio.Queue[Item]:
        """A queue of the run's committed batches from the moment this returns (the channel is
        subscribed by then); a TrackdError in it ends the watch. Always pair with `leave`."""
        if self.watchers >= self._max_watchers:
            raise ResourceExhausted(f"this query replica serves at most {self._max_watchers} WatchRun calls; "
                                    "retry shortly or on another replica")
        name = committed_points(run_id)
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name)
            self._send("subscribe", name)
        channel.watchers.add(queue)
        self._watchers.inc()
        try:
            await asyncio.wait_for(channel.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            self.leave(run_id, queue)
            raise Unavailable("Redis did not confirm the subscription in time; retry shortly") from None
        except BaseException:
            self.leave(run_id, queue)
            raise
        return queue

    def leave(self, run_id: uuid.UUID, queue: asyncio.Queue[Item]) -> None:
        """Synchronous, so it runs even while the caller's task is being cancelled."""
        name = committed_points(run_id)
        channel = self._channels.get(name)
        if channel is None or queue not in channel.watchers:
            return
        self._watchers.dec()
        channel.watchers.discard(queue)
        if not channel.watchers:
            del self._channels[name]
            self._send("unsubscribe", name)

    def _send(self, command: str, name: str) -> None:
        self._subscriptions.set(len(self._channels))
        self._commands.append((command, name))
        self._wake.set()
        if self._owner is None or self._owner.done():
            self._owner = asyncio.get_running_loop().create_task(self._own())

    async def _own(self) -> None:
        """The pub/sub connection's only user: sends the queued commands, reads the messages."""
        pubsub = self._redis.pubsub()
        try:
            while self._channels or self._commands:
                while self._commands:
                    command, name = self._commands.pop(0)
                    if command == "subscribe" and name in self._channels:
                        await pubsub.subscribe(name)
                    elif command == "unsubscribe" and name not in self._channels and pubsub.subscribed:
                        await pubsub.unsubscribe(name)
                if not pubsub.subscribed:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                message = await pubsub.get_message(timeout=READ_SLICE_S)
                if message is not None:
                    self._handle(message)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, RedisError, OSError, RuntimeError, AttributeError) as exc:
            log.warning("lost the Redis pub/sub connection (%s): ending %d watches", exc, self.watchers)
            lost = Unavailable(f"lost Redis while watching ({exc}); resume with from_step")
            for channel in self._channels.values():
                for queue in channel.watchers:
                    _put_last(queue, lost)
            self._channels.clear()
            self._commands.clear()
            self._subscriptions.set(0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _handle(self, message: dict[str, object]) -> None:
        channel = self._channels.get(_text(message.get("channel")))
        if channel is None:
            return
        if message["type"] == "subscribe":
            channel.subscribed.set()
        elif message["type"] == "message":
            # the hub's connection does not decode responses: a message's data is the published bytes
            batch = ingest_pb2.LogMetricsRequest.FromString(cast(bytes, message["data"]))
            for queue in channel.watchers:
                try:
                    queue.put_nowait(batch)
                except asyncio.QueueFull:  # it ends at the error, then leaves
                    _put_last(queue, ResourceExhausted(
                        f"this watch fell {QUEUE_SIZE} batches behind; resume with from_step"))

    async def close(self) -> None:
        if self._owner is not None:
            self._owner.cancel()
            await asyncio.gather(self._owner, return_exceptions=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _put_last(queue: asyncio.Queue[Item], error: TrackdError) -> None:
    """Make `error` the next thing the watcher reads, dropping what it had not read."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(error)
