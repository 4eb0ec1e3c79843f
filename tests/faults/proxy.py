"""A TCP proxy that cuts the connection after a chosen number of client bytes: a client that
disconnects in the middle of a message, which no gRPC client can be made to do on purpose."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """Forwards 127.0.0.1:<listen_port> (0: any free port) to `target`. Once `cut_at` client→server bytes have been
    forwarded, both connections are aborted (RST, as a crashed client's kernel would)."""

    def __init__(self, host: str, port: int, *, listen_port: int = 0) -> None:
        self._target = (host, port)
        self._listen_port = listen_port
        self.forwarded = 0  # client → server bytes so far, over all connections
        self.cut_at: int | None = None
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._listen_port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._abort()

    def _abort(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._writers += [client_writer, server_writer]
        upstream = asyncio.create_task(self._pipe(client_reader, server_writer, count=True))
        downstream = asyncio.create_task(self._pipe(server_reader, client_writer, count=False))
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_writer, server_writer):
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(16384):
                if count and self.cut_at is not None and self.forwarded + len(data) >= self.cut_at:
                    writer.write(data[: self.cut_at - self.forwarded])
                    await writer.drain()
                    self.forwarded = self.cut_at
                    self.cut.set()
                    self._abort()
                    return
                if count:
                    self.forwarded += len(data)
                writer.write(data)
                await writer.drain()
