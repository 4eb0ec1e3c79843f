"""TLS credentials for gRPC: servers serve TLS when a certificate and key are configured
(`TRACKD_TLS_CERT_FILE`, `TRACKD_TLS_KEY_FILE`); clients — the SDK, the CLI, services calling
services, the stack's readiness probe — verify servers against `TRACKD_TLS_CA_FILE`."""

from __future__ import annotations

from pathlib import Path

import grpc

from trackd_platform.config import TlsSettings
from trackd_platform.errors import InvalidArgument


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{name}={path!r} cannot be read: {exc.strerror}") from None


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """The server's certificate chain and private key (PEM)."""
    pair = (_read("TRACKD_TLS_KEY_FILE", tls.key_file), _read("TRACKD_TLS_CERT_FILE", tls.cert_file))
    return grpc.ssl_server_credentials([pair])


def channel_credentials(ca_file: str) -> grpc.ChannelCredentials:
    """Trust the servers whose certificates `ca_file` (PEM) signed."""
    return grpc.ssl_channel_credentials(root_certificates=_read("TRACKD_TLS_CA_FILE", ca_file))
