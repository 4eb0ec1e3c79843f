"""Who may call what on the ingest service (docs/auth.md): writing metrics needs WRITE on the
run's project; a stream is checked on each batch."""

from __future__ import annotations

from trackd_platform.access import Rule, ids, rules_for
from trackd_platform.auth import Role

RULES = rules_for("trackd.ingest.v1.IngestService", {
    "StreamMetrics": Rule(Role.WRITE, ids("run", "run_id")),
    "LogMetrics": Rule(Role.WRITE, ids("run", "run_id")),
})
