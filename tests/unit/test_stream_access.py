"""The access interceptor re-checks calls that stay open, through a real grpc.aio server on port 0
with the edge and access interceptors and a real stub: a server stream that is only waiting, a
bidirectional stream between two messages and a client stream all end with UNAUTHENTICATED once
their token is revoked, and the servicer's clean-up runs. (The same on the real stack, with the
5 s token cache: tests/faults/test_stream_auth.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.access import AccessInterceptor, Check, Rule, rules_for
from trackd_platform.auth import Principal, Role, Target
from trackd_platform.config import AuthSettings, ServerSettings, TelemetrySettings
from trackd_platform.errors import Unauthenticated
from trackd_platform.server import GrpcServer

PROJECT = uuid.uuid4()
RECHECK_S = 0.2


class Tokens:
    """A TokenStore whose tokens the test revokes."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.lookups = 0

    async def authenticate(self, secret: str) -> Principal:
        self.lookups += 1
        await asyncio.sleep(0.01)  # a lookup takes a while: concurrent ones must share it
        if secret in self.revoked:
            raise Unauthenticated("the token is unknown, expired or revoked")
        return Principal(key=secret, project_id=PROJECT, role=Role.WRITE)


async def in_project(request: Any, check: Check) -> list[Target]:
    return [PROJECT]


RULES = {
    **rules_for("trackd.query.v1.QueryService", {"WatchRun": Rule(Role.READ, in_project)}),
    **rules_for("trackd.ingest.v1.IngestService", {"StreamMetrics": Rule(Role.WRITE, in_project)}),
    **rules_for("trackd.artifact.v1.ArtifactService", {"UploadArtifact": Rule(Role.WRITE, in_project)}),
}


class Servicers(query_pb2_grpc.QueryServiceServicer, ingest_pb2_grpc.IngestServiceServicer,
                artifact_pb2_grpc.ArtifactServiceServicer):
    """Streams that wait as the real ones do (for points, for batches, for chunks)."""

    def __init__(self) -> None:
        self.open = 0
        self.committed: list[int] = []

    async def WatchRun(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.open += 1
        try:
            yield query_pb2.WatchRunResponse()
            await asyncio.Event().wait()  # no points, ever
        finally:
            self.open -= 1

    async def StreamMetrics(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        self.open += 1
        try:
            async for request in requests:
                self.committed.append(request.sequence)
                yield ingest_pb2.StreamMetricsResponse(sequence=request.sequence)
        finally:
            self.open -= 1

    async def UploadArtifact(self, requests: AsyncIterator[Any], context: Any) -> Any:
        self.open += 1
        try:
            async for _ in requests:
                pass
            return artifact_pb2.UploadArtifactResponse()
        finally:
            self.open -= 1


@pytest.fixture
async def served() -> AsyncIterator[tuple[Tokens, Servicers, grpc.aio.Channel]]:
    settings = ServerSettings(name="test", host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.1,
                              telemetry=TelemetrySettings(service_name="test", otlp_endpoint=""))
    tokens, servicers = Tokens(), Servicers()
    access = AccessInterceptor(RULES, auth=AuthSettings(enabled=True, admin_token="admin-" + "x" * 20),
                               tokens=tokens, owners=None, limiter=None, recheck_s=RECHECK_S)  # type: ignore[arg-type]
    server = GrpcServer(settings, interceptors=[access])
    server.add_servicer(query_pb2_grpc.add_QueryServiceServicer_to_server, servicers, "trackd.query.v1.QueryService")
    server.add_servicer(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicers,
                        "trackd.ingest.v1.IngestService")
    server.add_servicer(artifact_pb2_grpc.add_ArtifactServiceServicer_to_server, servicers,
                        "trackd.artifact.v1.ArtifactService")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield tokens, servicers, channel
    await server.stop()


def bearer(secret: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {secret}"),)


async def test_a_waiting_server_stream_ends_unauthenticated_once_its_token_is_revoked(
    served: tuple[Tokens, Servicers, grpc.aio.Channel],
) -> None:
    tokens, servicers, channel = served
    watch = query_pb2_grpc.QueryServiceStub(channel).WatchRun(
        query_pb2.WatchRunRequest(run_id=uuid.uuid4().hex), metadata=bearer("t1"))
    await watch.read()  # open, and waiting
    await asyncio.sleep(RECHECK_S * 3)
    assert not watch.done(), "a valid token's stream stays open"
    tokens.revoked.add("t1")
    async with asyncio.timeout(RECHECK_S * 5):
        assert await watch.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in await watch.details()
    await asyncio.sleep(0.1)
    assert servicers.open == 0, "the servicer's clean-up ran"


async def test_a_bidirectional_stream_commits_nothing_after_the_revocation(
    served: tuple[Tokens, Servicers, grpc.aio.Channel],
) -> None:
    tokens, servicers, channel = served
    call = ingest_pb2_grpc.IngestServiceStub(channel).StreamMetrics(metadata=bearer("t2"))
    await call.write(ingest_pb2.StreamMetricsRequest(sequence=1))
    assert (await call.read()).sequence == 1
    tokens.revoked.add("t2")
    # the next batch, sent at once, is refused before the servicer sees it
    await call.write(ingest_pb2.StreamMetricsRequest(sequence=2))
    async with asyncio.timeout(RECHECK_S * 5):
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
    assert servicers.committed == [1]
    # and one that sends nothing more ends too
    idle = ingest_pb2_grpc.IngestServiceStub(channel).StreamMetrics(metadata=bearer("t3"))
    await idle.write(ingest_pb2.StreamMetricsRequest(sequence=1))
    await idle.read()
    tokens.revoked.add("t3")
    async with asyncio.timeout(RECHECK_S * 5):
        assert await idle.code() == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(0.1)
    assert servicers.open == 0


async def test_a_client_stream_that_waits_ends_too(served: tuple[Tokens, Servicers, grpc.aio.Channel]) -> None:
    tokens, servicers, channel = served
    upload = artifact_pb2_grpc.ArtifactServiceStub(channel).UploadArtifact(metadata=bearer("t4"))
    await upload.write(artifact_pb2.UploadArtifactRequest())
    await asyncio.sleep(RECHECK_S * 3)
    assert not upload.done()
    tokens.revoked.add("t4")
    async with asyncio.timeout(RECHECK_S * 5):
        assert await upload.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_streams_of_one_token_share_a_lookup(served: tuple[Tokens, Servicers, grpc.aio.Channel]) -> None:
    tokens, _, channel = served
    stub = query_pb2_grpc.QueryServiceStub(channel)
    watches = [stub.WatchRun(query_pb2.WatchRunRequest(run_id=uuid.uuid4().hex), metadata=bearer("t5"))
               for _ in range(50)]
    for watch in watches:
        await watch.read()
    before = tokens.lookups
    await asyncio.sleep(RECHECK_S * 5)
    # 50 streams re-checked ~4 times each: without sharing ~200 lookups (this fake caches nothing)
    assert tokens.lookups - before < 100
    for watch in watches:
        watch.cancel()
