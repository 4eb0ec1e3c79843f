"""The server bootstrap's edge, through a real grpc.aio server on port 0 and a real stub: the
error hierarchy becomes status codes, anything else a generic INTERNAL, health and reflection
are served, and the server survives every failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform import errors
from trackd_platform.config import ServerSettings, TelemetrySettings
from trackd_platform.server import GrpcServer
from trackd_services.run.api import RunServicer


class FailingStore:
    """Raises whatever the test sets; a stand-in for RunStore in a pure edge test."""

    error: BaseException = errors.NotFound("run 00 does not exist")

    async def get_run(self, run_id: Any) -> Any:
        raise self.error


@pytest.fixture
async def served() -> AsyncIterator[tuple[FailingStore, grpc.aio.Channel]]:
    settings = ServerSettings(name="run", host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.1,
                              telemetry=TelemetrySettings(service_name="test", otlp_endpoint=""))
    store = FailingStore()
    server = GrpcServer(settings)
    server.add_servicer(run_pb2_grpc.add_RunServiceServicer_to_server, RunServicer(store),  # type: ignore[arg-type]
                        "trackd.run.v1.RunService")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield store, channel
    await server.stop()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound("gone"), grpc.StatusCode.NOT_FOUND),
        (errors.InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.AlreadyExists("dup"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPrecondition("state"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ResourceExhausted("slow down"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("later"), grpc.StatusCode.UNAVAILABLE),
        (errors.Aborted("race"), grpc.StatusCode.ABORTED),
    ],
)
async def test_domain_errors_become_their_status(
    served: tuple[FailingStore, grpc.aio.Channel], error: errors.TrackdError, code: grpc.StatusCode
) -> None:
    store, channel = served
    store.error = error
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_pb2_grpc.RunServiceStub(channel).GetRun(run_pb2.GetRunRequest(run_id="a" * 32))
    assert caught.value.code() == code
    assert caught.value.details() == str(error)


async def test_an_unexpected_error_is_internal_without_leaking_details(
    served: tuple[FailingStore, grpc.aio.Channel],
) -> None:
    store, channel = served
    store.error = KeyError("password=hunter2")
    stub = run_pb2_grpc.RunServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetRun(run_pb2.GetRunRequest(run_id="a" * 32))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in caught.value.details() and "trace id" in caught.value.details()
    # The request was refused before reaching the store: bad input is never INTERNAL.
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetRun(run_pb2.GetRunRequest(run_id="nope"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_serves_every_registered_service(served: tuple[FailingStore, grpc.aio.Channel]) -> None:
    _, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "trackd.run.v1.RunService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("raw", [b"\x0a\x03\xff\xfe\xfd", b"\x0a\x09ab", b"\xff\xff\xff\xff"],
                         ids=["bad-utf8", "truncated", "corrupt"])
async def test_an_unparsable_request_is_invalid_argument_not_unknown(
    served: tuple[FailingStore, grpc.aio.Channel], raw: bytes
) -> None:
    _, channel = served
    get_run = channel.unary_unary("/trackd.run.v1.RunService/GetRun")  # raw bytes, no serializer
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_run(raw)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "could not be parsed" in caught.value.details()


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connect call failed"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.InterfaceError("connection is closed"),
], ids=lambda e: type(e).__name__)
async def test_postgresql_being_down_is_unavailable_not_internal(
    served: tuple[FailingStore, grpc.aio.Channel], error: BaseException
) -> None:
    store, channel = served
    store.error = error
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_pb2_grpc.RunServiceStub(channel).GetRun(run_pb2.GetRunRequest(run_id="a" * 32))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_postgres_out_of_disk_or_read_only_is_not_internal() -> None:
    import asyncpg
    import grpc
    from trackd_platform.server import status_of

    code, message = status_of(asyncpg.DiskFullError("could not extend file \"base/16384/16400\""))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "out of disk space" in message
    code, message = status_of(asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"))
    assert code == grpc.StatusCode.UNAVAILABLE and "read-only" in message
