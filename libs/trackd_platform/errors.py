"""The one error hierarchy. Domain and store code raise these; the gRPC edge maps them to status
codes once (`trackd_platform.server`). Messages are shown to users: say what to do next."""

from __future__ import annotations


class TrackdError(Exception):
    """Base of every error trackd means to report to a caller."""


class InvalidArgument(TrackdError):
    """The request is malformed or breaks a documented limit."""


class NotFound(TrackdError):
    """The addressed entity does not exist."""


class AlreadyExists(TrackdError):
    """An entity with this identity exists already."""


class FailedPrecondition(TrackdError):
    """The entity is not in a state that allows this operation."""


class Aborted(TrackdError):
    """A concurrent change won; the caller may retry."""


class Unavailable(TrackdError):
    """A dependency is unreachable; the caller may retry later."""


class ResourceExhausted(TrackdError):
    """A quota or a bound was hit; slow down or send less."""


class Unauthenticated(TrackdError):
    """No valid credentials: send `authorization: Bearer <token>` (docs/auth.md)."""


class PermissionDenied(TrackdError):
    """The caller's token does not allow this operation on this project."""
