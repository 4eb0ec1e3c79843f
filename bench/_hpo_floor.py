"""The floor under any HPO controller's AcquireTrial + CompleteTrial on this machine (bench/hpo.py):
a bare grpc.aio server of trackd's HpoService whose two calls do nothing but, with `--dsn`, one
durable PostgreSQL write (an UPDATE committed with the server's fsync) in the calls `--write-in`
names: CompleteTrial's is the least any controller can do (a result is acknowledged only once it
is stored), AcquireTrial's is what one that survives its own crash needs for the claim. The bench times it with the same
client, the same pairs and the same training time as trackd's, so what is left of trackd's figure
above it is trackd's own work. Serves on 127.0.0.1:`port` until stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg
import grpc
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc

TABLE = "bench_hpo_floor"


class Floor(hpo_pb2_grpc.HpoServiceServicer):
    def __init__(self, pool: asyncpg.Pool | None, write_in: set[str]) -> None:
        self._pool = pool
        self._write_in = write_in

    async def _write(self, call: str) -> None:
        if self._pool is not None and call in self._write_in:
            await self._pool.execute(f"UPDATE {TABLE} SET calls = calls + 1 WHERE id = 1")

    async def AcquireTrial(self, request: hpo_pb2.AcquireTrialRequest, context: Any) -> hpo_pb2.AcquireTrialResponse:
        await self._write("AcquireTrial")
        return hpo_pb2.AcquireTrialResponse(trial=hpo_pb2.Trial(id="floor", params_json='{"x0": 0.0}'))

    async def CompleteTrial(self, request: hpo_pb2.CompleteTrialRequest,
                            context: Any) -> hpo_pb2.CompleteTrialResponse:
        await self._write("CompleteTrial")
        return hpo_pb2.CompleteTrialResponse(trial=hpo_pb2.Trial(id=request.trial_id))


async def serve(port: int, dsn: str, write_in: set[str]) -> None:
    pool = None
    if dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        await pool.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, calls bigint NOT NULL)")
        await pool.execute(f"INSERT INTO {TABLE} VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    server = grpc.aio.server()
    hpo_pb2_grpc.add_HpoServiceServicer_to_server(Floor(pool, write_in), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--dsn", default="", help="PostgreSQL to write to (none: no write)")
    parser.add_argument("--write-in", default="AcquireTrial,CompleteTrial", help="the calls that write, by name")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.dsn, set(args.write_in.split(","))))


if __name__ == "__main__":
    sys.exit(main())
