"""The server bootstrap's keepalive and idle-connection settings, through a real grpc.aio server on
port 0: a peer that vanishes without closing its connection (its packets stop, as when a VM is
killed or a NAT entry dropped) no longer holds its calls open — the server's pings go unanswered
and it ends them — while a live peer's quiet stream stays open; and a connection with no call
for `max_connection_idle_s` is closed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.config import ServerSettings, TelemetrySettings
from trackd_platform.server import GrpcServer


class FreezingProxy:
    """Forwards 127.0.0.1:<port> to a server until `freeze()`: then nothing passes either way, and
    both connections stay open (nobody sends a FIN or RST)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def freeze(self) -> None:
        self._frozen.set()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(16384):
                if self._frozen.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on, hold the socket
                writer.write(data)
                await writer.drain()


class Watches(query_pb2_grpc.QueryServiceServicer):
    def __init__(self) -> None:
        self.open = 0

    async def WatchRun(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.open += 1
        try:
            yield query_pb2.WatchRunResponse()
            await asyncio.Event().wait()  # a quiet stream: no points
        finally:
            self.open -= 1


@pytest.fixture
async def served() -> AsyncIterator[tuple[GrpcServer, Watches]]:
    settings = ServerSettings(name="query", host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.1,
                              telemetry=TelemetrySettings(service_name="test", otlp_endpoint=""),
                              keepalive_s=1.0, max_connection_idle_s=1.0)
    watches = Watches()
    server = GrpcServer(settings)
    server.add_servicer(query_pb2_grpc.add_QueryServiceServicer_to_server, watches, "trackd.query.v1.QueryService")
    await server.start()
    yield server, watches
    await server.stop()


async def test_the_calls_of_a_vanished_peer_are_ended_and_a_live_peers_quiet_stream_is_kept(
    served: tuple[GrpcServer, Watches],
) -> None:
    server, watches = served
    async with FreezingProxy(server.port) as proxy, grpc.aio.insecure_channel(proxy.address) as vanishing, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as live:
        request = query_pb2.WatchRunRequest(run_id=uuid.uuid4().hex)
        lost = query_pb2_grpc.QueryServiceStub(vanishing).WatchRun(request)
        kept = query_pb2_grpc.QueryServiceStub(live).WatchRun(request)
        await lost.read()
        await kept.read()
        assert watches.open == 2
        proxy.freeze()
        for _ in range(150):  # keepalive 1 s + ping timeout 1 s; 15 s at most on a loaded host
            if watches.open == 1:
                break
            await asyncio.sleep(0.1)
        assert watches.open == 1, "the vanished peer's call was ended"
        await asyncio.sleep(3)  # several keepalive rounds: the live peer answers its pings
        assert watches.open == 1 and not kept.done()
        kept.cancel()
        lost.cancel()


async def test_a_connection_without_calls_is_closed_after_the_idle_time(served: tuple[GrpcServer, Watches]) -> None:
    server, watches = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = query_pb2_grpc.QueryServiceStub(channel).WatchRun(query_pb2.WatchRunRequest(run_id="r"))
        await call.read()
        await asyncio.sleep(2.5)  # a call open: not idle, whatever the time
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        call.cancel()
        for _ in range(150):
            if channel.get_state() != grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.1)
        assert channel.get_state() == grpc.ChannelConnectivity.IDLE  # the server's GOAWAY
