"""Redis key names shared by the services that write and read them. Each embeds the run id in a
hash tag, so one run's keys stay on one Redis Cluster slot."""

from __future__ import annotations

import uuid


def latest_metrics(run_id: uuid.UUID) -> str:
    """Hash: field "<key>\\t<context>" → JSON summary (step, value, ts, min, max, count)."""
    return f"trackd:{{{run_id.hex}}}:latest"


def committed_points(run_id: uuid.UUID) -> str:
    """Pub/sub channel: serialized trackd.ingest.v1.LogMetricsRequest per committed batch."""
    return f"trackd:{{{run_id.hex}}}:points"
