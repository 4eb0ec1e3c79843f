"""The launcher: every service healthy, restarts after a crash, replicas migrating at once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import asyncpg
import pytest
from trackd_platform.db import migrations
from trackd_platform.processes import Managed, free_port
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving

pytestmark = pytest.mark.integration


def test_every_service_serves_health(stack: EmbeddedStack) -> None:
    for name in ("run", "ingest", "artifact", "query", "hpo"):
        assert grpc_serving(f"{HOST}:{stack.service_port(name)}"), name


def test_every_service_exports_prometheus_metrics(stack: EmbeddedStack) -> None:
    import urllib.request

    grpc_serving(f"{HOST}:{stack.service_port('run')}")  # at least one RPC counted
    for name in ("run", "ingest", "artifact", "query", "hpo"):
        port = stack.metrics_port(name)
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "trackd_rpc_seconds" in body, name
    with urllib.request.urlopen(f"http://{HOST}:{stack.metrics_port('run')}/metrics", timeout=5) as r:
        assert 'trackd_rpc_total{code="OK",method="/grpc.health.v1.Health/Check"}' in r.read().decode()


def test_a_dead_service_is_restarted(stack: EmbeddedStack, caplog: pytest.LogCaptureFixture) -> None:
    query = stack.services["query"]
    before = query.restarts
    query.kill()
    assert not grpc_serving(f"{HOST}:{stack.service_port('query')}")
    for _ in range(200):
        if query.restarts > before and grpc_serving(f"{HOST}:{stack.service_port('query')}"):
            break
        time.sleep(0.1)
    assert query.restarts == before + 1
    assert grpc_serving(f"{HOST}:{stack.service_port('query')}")
    assert any("restarting query" in r.getMessage() for r in caplog.records)


def test_two_replicas_start_at_once_on_a_fresh_database(stack: EmbeddedStack, tmp_path: object) -> None:
    database = f"fresh_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(stack.pg_dsn)
        await conn.execute(f"CREATE DATABASE {database}")
        await conn.close()

    asyncio.run(create())
    dsn = stack.pg_dsn.rsplit("/", 1)[0] + f"/{database}"
    replicas = []
    for i in range(2):
        port = free_port()
        replicas.append(Managed(
            name=f"run-replica-{i}",
            argv=[sys.executable, "-m", "trackd_services.run"],
            env={**os.environ, **stack.infra_env(), "TRACKD_PG_DSN": dsn, "TRACKD_GRPC_HOST": HOST,
                 "TRACKD_GRPC_PORT": str(port), "TRACKD_METRICS_PORT": "0"},
            log_path=stack.home / "logs" / f"replica-{database}-{i}.log",
            ready=lambda port=port: grpc_serving(f"{HOST}:{port}"),
        ))
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready(60)

        async def applied() -> list[int]:
            conn = await asyncpg.connect(dsn)
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            await conn.close()
            return [r["version"] for r in rows]

        assert asyncio.run(applied()) == [v for v, _, _ in migrations()]
    finally:
        for replica in replicas:
            replica.stop()


def test_every_listener_of_the_embedded_stack_is_on_loopback(stack: EmbeddedStack) -> None:
    import ipaddress

    import psutil

    exposed = []
    for managed in [*stack.infra.values(), *stack.services.values(), *([stack.web] if stack.web else [])]:
        assert managed.pid is not None
        process = psutil.Process(managed.pid)
        for proc in [process, *process.children(recursive=True)]:
            for conn in proc.net_connections(kind="inet"):
                ip = ipaddress.ip_address(conn.laddr.ip)
                loopback = ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)
                if conn.status == psutil.CONN_LISTEN and not loopback:
                    exposed.append((managed.name, conn.laddr.ip, conn.laddr.port))
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_embedded_stores_require_the_credentials_generated_into_trackd_home(stack: EmbeddedStack) -> None:
    import urllib.error
    import urllib.request

    import boto3
    import redis

    from tests.stores import s3

    assert (stack.home / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert (stack.home / "stack.json").stat().st_mode & 0o777 == 0o600  # it holds them too
    secrets = json.loads((stack.home / "credentials.json").read_text())
    assert all(len(v) >= 16 for v in secrets.values()) and len(set(secrets.values())) == 5

    async def postgres() -> None:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres@{HOST}:{stack.ports.postgres}/trackd")
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres:postgres@{HOST}:{stack.ports.postgres}/trackd")
        conn = await asyncpg.connect(stack.pg_dsn)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()

    asyncio.run(postgres())
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=HOST, port=stack.ports.valkey, socket_timeout=5).get("anything")
    assert redis.Redis.from_url(stack.redis_url, socket_timeout=5).ping()

    def status(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    assert status(f"{stack.s3_endpoint}/trackd-artifacts/") == 403  # unsigned
    guessed = boto3.client("s3", endpoint_url=stack.s3_endpoint, aws_access_key_id="trackd",
                           aws_secret_access_key="trackd", region_name="us-east-1")
    with pytest.raises(guessed.exceptions.ClientError, match="InvalidAccessKeyId"):
        guessed.list_objects_v2(Bucket="trackd-artifacts")
    client = s3(stack)
    key = f"probe/{uuid.uuid4().hex}"
    client.put_object(Bucket="trackd-artifacts", Key=key, Body=b"hello")
    signed = client.generate_presigned_url("get_object", Params={"Bucket": "trackd-artifacts", "Key": key},
                                           ExpiresIn=2)
    assert status(signed) == 200
    assert status(signed.replace(key, key + "-other")) == 403  # scoped to its object
    time.sleep(3)
    assert status(signed) == 403  # expired
    client.delete_object(Bucket="trackd-artifacts", Key=key)
    banner = " ".join(address for _, address, _ in stack.describe())
    assert secrets["postgres_password"] not in banner and secrets["valkey_password"] not in banner
