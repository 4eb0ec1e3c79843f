"""Redis / Valkey client factory."""

from __future__ import annotations

import redis.asyncio as aioredis

from trackd_platform.config import RedisSettings


def create_redis(settings: RedisSettings) -> aioredis.Redis:
    """A client with bounded timeouts, so a Redis outage degrades callers instead of hanging them."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    return client
