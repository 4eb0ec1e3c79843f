"""Per-token write limits: a token bucket in Redis, shared by every replica of every service.

One Lua script refills and takes atomically, on the Redis server's clock (no skew between
replicas). A bucket holds at most `burst` tokens and refills at `rate` per second; a write takes
one. When Redis is unreachable writes are let through (a warning is logged): limits protect the
system, they must not take it down.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - last) * rate / 1000)
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait_ms
"""


@dataclass(frozen=True)
class Limit:
    rate: float  # writes per second
    burst: float

    @classmethod
    def of(cls, writes_per_s: float, burst: float) -> Limit | None:
        """None when unlimited (writes_per_s = 0); burst 0 means one second's worth (at least 1)."""
        if writes_per_s <= 0:
            return None
        return cls(writes_per_s, burst if burst >= 1 else max(1.0, math.ceil(writes_per_s)))


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, limit: Limit) -> None:
        self._limit = limit
        self._take = redis.register_script(_TAKE)

    async def take(self, key: str) -> int:
        """Take one write from `key`'s bucket: 0 when allowed, else how many ms until one is free
        (nothing is taken then)."""
        try:
            wait_ms = await self._take(keys=[f"trackd:ratelimit:{{{key}}}"],
                                       args=[self._limit.rate, self._limit.burst])
        except (RedisError, OSError) as exc:
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return 0
        return int(wait_ms)
