"""Server streams and clients that stop reading: a bound on how long one message may wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

log = logging.getLogger(__name__)


class SlowReader:
    """Ends a server stream whose client stops taking messages. Call `waiting()` before yielding a
    message and `taken()` once the generator resumes; if a message waits `limit_s` seconds (0:
    never), the call is ended with DEADLINE_EXCEEDED — saying what to do `then` — and the generator
    is closed, freeing what it holds.

    gRPC queues a status behind the messages the client has not read, so the status is sent from a
    task of its own (the client sees it once it reads again, or never, if it has gone: keepalive
    then closes the connection); the task driving the stream is cancelled to end the generator."""

    def __init__(self, context: Any, limit_s: float, *, call: str, then: str) -> None:
        self._context = context
        self._limit_s = limit_s
        self._call = call
        self._then = then
        self._driver = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None

    def waiting(self) -> None:
        if self._limit_s > 0 and self._context is not None:
            self._timer = asyncio.get_running_loop().call_later(self._limit_s, self._expire)

    def taken(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        log.info("a %s client took no message for %.0f s: ending the call", self._call, self._limit_s)
        asyncio.ensure_future(self._end())
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()

    async def _end(self) -> None:
        with contextlib.suppress(BaseException):  # AbortError once sent; nothing to do if the peer is gone
            await self._context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                      f"the client took no message for {self._limit_s:g} s; the {self._call} "
                                      f"call was ended ({self._then})")
