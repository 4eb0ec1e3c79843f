"""Page tokens and configuration parsing."""

from __future__ import annotations

import pytest
from trackd._settings import ClientSettings
from trackd_platform import paging
from trackd_platform.config import PostgresSettings, RunServiceConfig, S3Settings
from trackd_platform.errors import InvalidArgument


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    token = paging.encode_token(["2026-01-01T00:00:00+00:00", "ab"])
    assert paging.decode_token(token, arity=2) == ["2026-01-01T00:00:00+00:00", "ab"]
    assert paging.decode_token("", arity=2) is None
    for bad in ("%%%", "bm90IGpzb24", paging.encode_token(["only one"]), paging.encode_token({"a": 1})):  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="page_token is malformed"):
            paging.decode_token(bad, arity=2)


def test_page_size_bounds() -> None:
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(1000) == 1000
    for bad in (-1, 1001):
        with pytest.raises(InvalidArgument):
            paging.page_size(bad)


def test_config_from_env() -> None:
    config = RunServiceConfig.from_env({"TRACKD_GRPC_PORT": "6000", "TRACKD_HEARTBEAT_TIMEOUT_S": "7.5",
                                        "TRACKD_PG_DSN": "postgresql://u:secret@db/x"})
    assert config.server.port == 6000 and config.server.metrics_port == 7000
    assert config.heartbeat_timeout_s == 7.5
    assert "secret" not in repr(config) and "secret" not in repr(config.postgres)
    assert config.postgres == PostgresSettings(dsn="postgresql://u:secret@db/x", pool_max=10)
    with pytest.raises(InvalidArgument, match="TRACKD_GRPC_PORT='x' is not a number"):
        RunServiceConfig.from_env({"TRACKD_GRPC_PORT": "x"})
    assert "hunter2" not in repr(S3Settings.from_env({"TRACKD_S3_SECRET_KEY": "hunter2"}))


def test_client_addressing() -> None:
    assert ClientSettings.from_env({}).target("ingest") == "localhost:50052"
    gateway = ClientSettings.from_env({"TRACKD_TARGET": "gw:8080", "TRACKD_INGEST_TARGET": "ipv4:a:1,b:2"})
    assert gateway.target("run") == "gw:8080"
    assert gateway.target("ingest") == "ipv4:a:1,b:2"


def test_the_sdk_settings_live_in_the_sdk_and_the_web_calls_as_the_sdk_addresses() -> None:
    from trackd import _settings
    from trackd_platform import config

    sdk_only = {"TRACKD_HEARTBEAT_INTERVAL_S", "TRACKD_RPC_TIMEOUT_S", "TRACKD_SPOOL_DIR", "TRACKD_MODE",
                "TRACKD_FLUSH_TIMEOUT_S", "TRACKD_SYSTEM_METRICS_INTERVAL_S", "TRACKD_SPOOL_MAX_BYTES"}
    assert sdk_only <= _settings.ENV_NAMES and not sdk_only & config.ENV_NAMES
    offline = ClientSettings.from_env({"TRACKD_MODE": "Offline", "TRACKD_SPOOL_DIR": "/spool",
                                       "TRACKD_TOKEN": "s3cret"})
    assert offline.offline and offline.spool_dir == "/spool" and "s3cret" not in repr(offline)
    with pytest.raises(InvalidArgument, match="TRACKD_MODE='x': use online or offline"):
        ClientSettings.from_env({"TRACKD_MODE": "x"})
    with pytest.raises(InvalidArgument, match="must be at least 1048576"):
        ClientSettings.from_env({"TRACKD_SPOOL_MAX_BYTES": "1000"})
    env = {"TRACKD_TARGET": "gw:8080", "TRACKD_TOKEN": "s3cret", "TRACKD_TLS_CA_FILE": "/ca.pem"}
    web = config.WebConfig.from_env(env).client
    assert web.targets == ClientSettings.from_env(env).targets == config.service_targets(env)
    assert web.tls_ca_file == "/ca.pem" and web.token == "s3cret" and "s3cret" not in repr(web)
    assert config.StoresConfig.from_env(env, service="query").run_target == "gw:8080"
