"""Who may call what on the query service (docs/auth.md): READ on the project of every run or
experiment a request reads. A selection of "every experiment" is narrowed to the caller's own
project, so search and analysis results never include another project's runs."""

from __future__ import annotations

from typing import Any

from trackd_platform.access import Check, Rule, ids, names, rules_for
from trackd_platform.auth import Role, Target

READ = Role.READ
_run = ids("run", "run_id")
_runs = ids("run", "run_ids")
_experiments = ids("experiment", "experiment_ids")
_project = names("project_name", "project", default="default", unknown_is_global=True)


async def selection(request: Any, check: Check) -> list[Target]:
    selection = request.selection
    targets = await _experiments(selection, check)
    if not selection.experiment_ids and not selection.experiment_names and not selection.project:
        if check.principal.admin:
            return targets
        assert check.principal.project_id is not None
        selection.project = await check.owners.project_name(check.principal.project_id) or ""
        return targets + [check.principal.project_id]
    if selection.experiment_names or selection.project:
        targets += await _project(selection, check)
    return targets


RULES = rules_for("trackd.query.v1.QueryService", {
    "SearchRuns": Rule(READ, selection),
    "GetMetricHistory": Rule(READ, _run),
    "GetMetricHistoryBulk": Rule(READ, _runs),
    "AggregateMetric": Rule(READ, _runs),
    "ExportMetric": Rule(READ, _run),
    "GetLatestMetrics": Rule(READ, _run),
    "CompareRuns": Rule(READ, _runs),
    "SummarizeExperiment": Rule(READ, selection),
    "GetParamImportance": Rule(READ, selection),
    "GetParallelCoordinates": Rule(READ, selection),
    "GetContour": Rule(READ, selection),
    "WatchRun": Rule(READ, _run),
    "ListRunKeys": Rule(READ, selection),
    "GetExperimentStats": Rule(READ, ids("experiment", "experiment_ids")),
})
