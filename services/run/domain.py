"""Run service domain: entities, limits and lifecycle rules. Pure Python, no I/O.

Limits (documented in README.md, enforced with INVALID_ARGUMENT):
names of projects, experiments and runs 1–250 characters; param and tag keys 1–250 characters;
param values up to 6,000 characters; tag values up to 5,000; notes up to 100,000; at most 1,000
params or tags in one request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trackd_platform.errors import FailedPrecondition, InvalidArgument
from trackd_platform.ids import format_id, optional_id, parse_id
from trackd_platform.run_records import NAME_MAX, Run, RunStatus, View, parse_view, validate_name
from trackd_platform.vocabulary import CLIENT_END_STATUSES

# re-exported: the run service's id helpers and the run read model it writes (trackd_platform)
__all__ = ["NAME_MAX", "Run", "RunStatus", "View", "format_id", "optional_id", "parse_id", "parse_view",
           "validate_name"]

KEY_MAX = 250
PARAM_VALUE_MAX = 6_000
TAG_VALUE_MAX = 5_000
NOTES_MAX = 100_000
ITEMS_PER_REQUEST_MAX = 1_000



@dataclass(frozen=True)
class Project:
    id: uuid.UUID
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class Experiment:
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    tags: dict[str, str]
    archived: bool
    created_at: datetime


@dataclass(frozen=True)
class NewRun:
    """What StartRun asks for, validated."""

    experiment_id: uuid.UUID | None
    project_name: str
    experiment_name: str
    name: str
    params: dict[str, str]
    tags: dict[str, str]
    source: dict[str, Any]
    environment: dict[str, Any]
    parent_run_id: uuid.UUID | None
    user: str
    notes: str
    start_time: datetime | None = None  # the client's; None: the server's clock
    unattended: bool = False  # no heartbeats expected: never CRASHED for silence
    resume_key: str = ""  # the first start with it creates the run, later ones resume it
    run_id: uuid.UUID | None = None  # the client's (an offline run synced later); None: the server picks


def _validate_items(kind: str, items: Mapping[str, str], value_max: int) -> dict[str, str]:
    if len(items) > ITEMS_PER_REQUEST_MAX:
        raise InvalidArgument(
            f"{len(items)} {kind}s in one request; the limit is {ITEMS_PER_REQUEST_MAX}: send them in batches"
        )
    for key, value in items.items():
        if not key or not key.strip():
            raise InvalidArgument(f"{kind} keys must not be empty")
        if len(key) > KEY_MAX:
            raise InvalidArgument(f"{kind} key {key[:40]!r}… is {len(key)} characters; the limit is {KEY_MAX}")
        if len(value) > value_max:
            raise InvalidArgument(
                f"{kind} {key!r} has a value of {len(value)} characters; the limit is {value_max}"
            )
    return dict(items)


def validate_params(params: Mapping[str, str]) -> dict[str, str]:
    return _validate_items("param", params, PARAM_VALUE_MAX)


def validate_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return _validate_items("tag", tags, TAG_VALUE_MAX)


def validate_notes(notes: str) -> str:
    if len(notes) > NOTES_MAX:
        raise InvalidArgument(f"notes are {len(notes)} characters; the limit is {NOTES_MAX}")
    return notes


def new_params(existing: Mapping[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    """The params of `incoming` not logged yet. Params are immutable: a key logged again with
    the same value is a no-op, with another value an error (nothing is written)."""
    conflicts = [k for k, v in incoming.items() if k in existing and existing[k] != v]
    if conflicts:
        key = sorted(conflicts)[0]
        raise InvalidArgument(
            f"param {key!r} is already {existing[key]!r} and params cannot change "
            f"(got {incoming[key]!r}); log it under another key or start a new run"
        )
    return {k: v for k, v in incoming.items() if k not in existing}


def require_running(run: Run, action: str) -> None:
    if run.status is not RunStatus.RUNNING:
        raise FailedPrecondition(f"cannot {action}: run {format_id(run.id)} is {run.status.name}, not RUNNING")


def check_end(run: Run, status: RunStatus) -> None:
    """A RUNNING run ends once. A CRASHED run may still be ended by its client: CRASHED is the
    server's guess (heartbeats stopped, e.g. during an outage), the client's word is final."""
    if status not in CLIENT_END_STATUSES:
        raise InvalidArgument(f"a run ends FINISHED, FAILED or KILLED, not {status.name}")
    if run.status is not RunStatus.CRASHED:
        require_running(run, f"end it {status.name}")


def check_resume(run: Run) -> None:
    """A RUNNING run (its process replaced, e.g. after preemption) or a CRASHED one (CRASHED is
    the server's guess; the client's word is final) may be resumed; an ended run may not."""
    if run.deleted:
        raise FailedPrecondition(f"cannot resume run {format_id(run.id)}: it is deleted; restore it first")
    if run.status not in (RunStatus.RUNNING, RunStatus.CRASHED):
        raise FailedPrecondition(f"cannot resume run {format_id(run.id)}: it ended {run.status.name}; "
                                 "only a RUNNING or CRASHED run can be resumed: start a new run")


def validate_resume_key(key: str) -> str:
    if key and (not key.strip() or len(key) > NAME_MAX):
        raise InvalidArgument(f"resume_key is 1–{NAME_MAX} characters, not blank")
    return key


def check_end_time(run: Run, end_time: datetime | None) -> None:
    """A client's end time (None: the server's clock) is not before the run's start."""
    if end_time is not None and end_time < run.start_time:
        raise InvalidArgument(f"end_time {end_time.isoformat()} is before the run's start_time "
                              f"{run.start_time.isoformat()}")


def parse_status(number: int) -> RunStatus:
    try:
        return RunStatus(number)
    except ValueError:
        raise InvalidArgument("status is required: FINISHED, FAILED or KILLED") from None


@dataclass
class CrashGrace:
    """When the crash detector may mark runs CRASHED. While PostgreSQL cannot be written, no
    heartbeat can land either: a run is judged only once the database has been writable for a
    whole heartbeat timeout, so an outage (or this service's own restart) longer than the timeout
    does not turn every live run CRASHED. Times are the caller's monotonic seconds."""

    timeout_s: float
    writable_since: float | None = None

    def failed(self) -> None:
        """A write to PostgreSQL failed: heartbeats may be failing too."""
        self.writable_since = None

    def may_judge(self, now: float) -> bool:
        """Called before each check; the first call after a failure (or at start) starts the clock."""
        if self.writable_since is None:
            self.writable_since = now
        return now - self.writable_since >= self.timeout_s
