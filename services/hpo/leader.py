"""Exactly one active HPO controller: a leader lease in PostgreSQL. Each study's Optuna engine is
an in-memory mirror of its trials; two replicas serving at once would each sample from a mirror
that misses what the other told it (as during a rolling update). So a replica serves only while
it holds the lease: a session-level advisory lock on a connection of its own.

- A replica that does not get it waits (calls are UNAVAILABLE, health NOT_SERVING, clients retry)
  and takes over as soon as the lock is free: the holder exited, was SIGKILLed (its connection
  closes with it), or lost PostgreSQL.
- The holder renews the lease by checking its connection every `check_s`. Once a check fails or
  takes longer than `timeout_s` (PostgreSQL crashed, restarted, unreachable), it steps down at
  once, in-process (app.py): it stops answering, drops its in-memory state, ends the lock's session,
  then waits for the lease like any other replica and recovers from PostgreSQL when it has it.
  PostgreSQL drops a silent holder's session (and the lock) only after TCP keepalives fail, which
  is set to take longer than the holder takes to step down, so two replicas never act as
  controller at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# The advisory lock's key (64-bit): hashtextextended('trackd:hpo:controller', 0) would do, a
# literal keeps it visible in pg_locks.
LOCK_KEY = 0x7472_6B64_6870_6F31  # "trkdhpo1"
# PostgreSQL ends a silent holder's session after idle + interval × count s: 5 + 2 × 3 = 11 s,
# well past the holder's own step-down (at most check_s + timeout_s: 4 s).
_KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}


class NotLeader(Exception):
    """Another replica holds the controller lease."""


class Leadership:
    def __init__(self, pool: asyncpg.Pool, *, check_s: float = 1.0, timeout_s: float = 3.0,
                 poll_s: float = 0.5) -> None:
        self._pool = pool
        self.check_s = check_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s  # a standby asks for the lease this often: it takes over within this
        self._conn: Any = None  # the pool connection holding the lock, while it is held

    async def acquire(self) -> None:
        """Take the lease, or raise NotLeader (the caller retries: `server.until_ready`)."""
        conn = await self._pool.acquire()
        try:
            for name, value in _KEEPALIVES.items():
                await conn.execute(f"SET {name} = {value}")
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        except BaseException:
            await self._pool.release(conn)
            raise
        if not got:
            await self._pool.release(conn)
            raise NotLeader("another hpo replica is the active controller: this one takes over when it stops")
        self._conn = conn
        log.info("this hpo replica holds the controller lease")

    async def take(self) -> None:
        """Take the lease, polling every `poll_s` while another replica holds it (a standby's
        normal state, so quietly); other failures (PostgreSQL not up) raise, for the caller's
        back-off (`server.until_ready`)."""
        while True:
            try:
                await self.acquire()
                return
            except NotLeader:
                await asyncio.sleep(self.poll_s)

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def hold(self) -> None:
        """Renew the lease while serving; return once it could not be renewed: the caller steps
        down (stops serving and drops its state), then calls `drop()`."""
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), timeout=self.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — whatever failed, the lease may be gone
                log.critical("the controller lease could not be renewed (%s): stepping down", exc)
                return

    async def drop(self) -> None:
        """After stepping down: end the lock's session (if PostgreSQL still had it, the lock is
        free for whichever replica takes it next, this one included)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def release(self) -> None:
        """At shutdown: free the lease for the next replica at once."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            await conn.execute("SELECT pg_advisory_unlock_all()")
        finally:
            await self._pool.release(conn)
