"""Errors the SDK raises: the platform hierarchy, converted once from gRPC status codes."""

from __future__ import annotations

import grpc
from trackd_platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TrackdError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Aborted", "AlreadyExists", "FailedPrecondition", "InvalidArgument", "NotFound",
    "PermissionDenied", "ResourceExhausted", "TrackdError", "Unauthenticated", "Unavailable", "from_rpc_error",
]

_BY_CODE: dict[grpc.StatusCode, type[TrackdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def from_rpc_error(error: grpc.RpcError, target: str) -> TrackdError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        details = (f"cannot reach trackd at {target} ({details}); is `make up` running, "
                   "or is TRACKD_TARGET / TRACKD_<SERVICE>_TARGET set right?")
    return _BY_CODE.get(code, TrackdError)(details)
