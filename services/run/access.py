"""Who may call what on the run service (docs/auth.md): RunService and TokenService."""

from __future__ import annotations

from trackd_platform.access import (
    Rule,
    all_of,
    either,
    global_only,
    ids,
    keep,
    names,
    own_project,
    project_name_or_own,
    project_or_own,
    rules_for,
)
from trackd_platform.auth import Role

READ, WRITE, ADMIN = Role.READ, Role.WRITE, Role.ADMIN
_run = ids("run", "run_id")
_experiment = ids("experiment", "experiment_id")
# by name, a project that does not exist yet would be created: only the global admin may
_project_named = names("project_name", "project_name", default="default", unknown_is_global=True)

RUN_RULES = {
    "CreateProject": Rule(ADMIN, global_only),
    "GetProject": Rule(READ, either("project_id", ids("project", "project_id"),
                                    names("project_name", "name", unknown_is_global=True))),
    "ListProjects": Rule(READ, keep=keep("projects", "id")),
    "CreateExperiment": Rule(WRITE, ids("project", "project_id")),
    "GetExperiment": Rule(READ, either("experiment_id", _experiment, _project_named)),
    "ListExperiments": Rule(READ, project_or_own("project_id")),
    "UpdateExperiment": Rule(WRITE, _experiment),
    "ArchiveExperiment": Rule(WRITE, _experiment),
    "UnarchiveExperiment": Rule(WRITE, _experiment),
    # run_id: the run resumed (its project; the request's experiment fields are ignored then)
    "StartRun": Rule(WRITE, all_of(either("run_id", _run, either("experiment_id", _experiment, _project_named)),
                                   ids("run", "parent_run_id"))),
    "GetRun": Rule(READ, _run),
    "ListRuns": Rule(READ, all_of(ids("experiment", "experiment_ids"), ids("run", "parent_run_id")),
                     keep=keep("runs", "project_id")),
    "EndRun": Rule(WRITE, _run),
    "UpdateRun": Rule(WRITE, _run),
    "LogParams": Rule(WRITE, _run),
    "SetTags": Rule(WRITE, _run),
    "DeleteTags": Rule(WRITE, _run),
    "SetNotes": Rule(WRITE, _run),
    "Heartbeat": Rule(WRITE, _run),
    "DeleteRun": Rule(ADMIN, _run),
    "RestoreRun": Rule(ADMIN, _run),
}

DATA_RULES = {
    "AppendLogs": Rule(WRITE, _run),
    "ReadLogs": Rule(READ, _run),
    "LogMedia": Rule(WRITE, _run),
    "ListMedia": Rule(READ, _run),
    "LogInputs": Rule(WRITE, _run),
    "ListInputs": Rule(READ, _run),
    "FindRunsByInput": Rule(READ, keep=keep("inputs", "run_id", "run")),  # only the runs the caller may read
}

TOKEN_RULES = {
    "CreateToken": Rule(ADMIN, project_name_or_own("project")),
    "ListTokens": Rule(ADMIN, project_name_or_own("project")),
    "RevokeToken": Rule(ADMIN, ids("token", "token_id")),
    "WhoAmI": Rule(READ, own_project),  # any valid token: READ on its own project
}

RULES = {**rules_for("trackd.run.v1.RunService", RUN_RULES),
         **rules_for("trackd.run.v1.RunDataService", DATA_RULES),
         **rules_for("trackd.auth.v1.TokenService", TOKEN_RULES)}
