"""S3 client factory (aioboto3)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
from botocore.config import Config

from trackd_platform.config import S3Settings

MAX_CONNECTIONS = 64  # botocore's default is 10


@contextlib.asynccontextmanager
async def s3_client(settings: S3Settings) -> AsyncIterator[Any]:
    """An S3 client for the configured endpoint, with bounded timeouts and retries. Its pool holds
    up to MAX_CONNECTIONS connections; callers never keep one while they wait on anything else
    (a download reads ranges whole before handing them on), so slow clients cannot drain it."""
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        config=Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 3},
            signature_version="s3v4",  # presigned URLs too (botocore presigns with SigV2 otherwise)
            max_pool_connections=MAX_CONNECTIONS,
            s3={"addressing_style": "path"},
        ),
    ) as client:
        yield client


async def ensure_bucket(client: Any, bucket: str) -> None:
    try:
        await client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=bucket)
