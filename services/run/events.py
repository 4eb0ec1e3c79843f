"""Run lifecycle events as published on Kafka (`trackd.events.v1`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from trackd_api.events.v1 import events_pb2
from trackd_platform.timestamps import timestamp

from .domain import Run, format_id


def run_started(run: Run, event_id: uuid.UUID, *, resumed: bool = False) -> bytes:
    event = events_pb2.RunStarted(
        event_id=str(event_id),
        run_id=format_id(run.id),
        experiment_id=format_id(run.experiment_id),
        project_id=format_id(run.project_id),
        name=run.name,
        start_time=timestamp(run.start_time),
        parent_run_id=format_id(run.parent_run_id) if run.parent_run_id else "",
        params=run.params,
        tags=run.tags,
        user=run.user,
        resumed=resumed,
    )
    return event.SerializeToString()


def run_ended(run: Run, event_id: uuid.UUID) -> bytes:
    event = events_pb2.RunEnded(
        event_id=str(event_id),
        run_id=format_id(run.id),
        experiment_id=format_id(run.experiment_id),
        project_id=format_id(run.project_id),
        status=run.status.proto,
        start_time=timestamp(run.start_time),
        end_time=timestamp(run.end_time),
        duration_ms=run.duration_ms(run.end_time or datetime.now(UTC)),
    )
    return event.SerializeToString()
