"""Wiring of the artifact service: config → pool, S3 → stores → servicers and the sweeper → serve."""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

import asyncpg
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc, registry_pb2, registry_pb2_grpc
from trackd_platform.config import StoresConfig
from trackd_platform.redis import create_redis
from trackd_platform.s3 import ensure_bucket, s3_client
from trackd_platform.server import GrpcServer, configure_logging
from trackd_platform.wiring import wire

from .access import RULES
from .api import ArtifactServicer
from .blobs import BlobStore
from .registry import RegistryStore
from .registry_api import RegistryServicer
from .store import ArtifactStore
from .sweeper import Sweeper
from .uploads import Uploads

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def install(server: GrpcServer, config: StoresConfig, pool: asyncpg.Pool, s3: Any) -> Sweeper:
    """The artifact and model registry servicers on `server`, and the sweeper as its background
    task (returned too, for tests that sweep on their own schedule)."""
    artifacts, blobs = ArtifactStore(pool), BlobStore(s3, config.s3.bucket)
    settings = config.artifact
    uploads = Uploads(artifacts, blobs, direct_upload_grace_s=settings.direct_upload_grace_s)
    server.add_servicer(
        artifact_pb2_grpc.add_ArtifactServiceServicer_to_server,
        ArtifactServicer(artifacts, blobs, uploads, slow_reader_s=settings.slow_reader_s),
        artifact_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    )
    server.add_servicer(
        registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server,
        RegistryServicer(RegistryStore(pool), pool),
        registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"].full_name,
    )
    sweeper = Sweeper(artifacts, blobs, settings)
    server.add_background(sweeper.run)
    return sweeper


async def serve(config: StoresConfig) -> None:
    redis = create_redis(config.redis)
    server, pool = await wire(config.server, config.postgres, RULES, redis=redis)
    async with s3_client(config.s3) as s3:
        await server.until_ready(f"S3 at {config.s3.endpoint}", lambda: ensure_bucket(s3, config.s3.bucket))
        install(server, config, pool, s3)
        await server.run_until_signal()


def return_large_buffers() -> None:
    """Keep glibc's mmap threshold at 128 KiB. By default glibc raises it after a large block is
    freed (up to 32 MiB); from then on the 8 MiB part buffers and 1 MiB messages of every upload
    and download come from the heap and stay there after use, and the process's RSS drifts by
    tens of MB with the interleaving of calls (seen: 41–70 MB of growth over one 300 MB round
    trip). With the threshold fixed, each such buffer is mmapped and returned to the system when
    freed. Not glibc (musl, macOS): nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def main() -> None:
    configure_logging("artifact")
    return_large_buffers()
    asyncio.run(serve(StoresConfig.from_env(service="artifact")))
