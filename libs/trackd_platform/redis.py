"""Redis / Valkey client factory."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from trackd_platform.config import RedisSettings

# A pooled connection Redis closed (a restart, a failover) fails once when next used: sent again at
# once on a new connection. `from_url` gives no retry at all (unlike `Redis(...)`), so every dead
# connection in the pool used to fail its caller — ingest's latest-metric cache tripped its breaker
# (live points not published for 2 s) for each one, up to a minute after Valkey came back.
# Timeouts are not retried: a Redis that does not answer costs its callers one timeout, not more.
RETRY = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))


def create_redis(settings: RedisSettings) -> aioredis.Redis:
    """A client with bounded timeouts, so a Redis outage degrades callers instead of hanging them."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10, retry=RETRY
    )
    return client
