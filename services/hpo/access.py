"""Who may call what on the hpo service (docs/auth.md): a study, and its trials, belong to the
project of the study's experiment."""

from __future__ import annotations

from trackd_platform.access import Rule, either, ids, keep, names, rules_for
from trackd_platform.auth import Role

READ, WRITE = Role.READ, Role.WRITE
_study = ids("study", "study_id")
_trial = ids("trial", "trial_id")

RULES = rules_for("trackd.hpo.v1.HpoService", {
    # a study's experiment (and project, by name) is created when missing: a new project is admin only
    "CreateStudy": Rule(WRITE, names("project_name", "project", default="default", unknown_is_global=True)),
    "GetStudy": Rule(READ, either("study_id", _study, names("study_name", "name"))),
    "ListStudies": Rule(READ, keep=keep("studies", "experiment_id", "experiment")),
    "StartStudy": Rule(WRITE, _study),
    "PauseStudy": Rule(WRITE, _study),
    "StopStudy": Rule(WRITE, _study),
    "EnqueueTrial": Rule(WRITE, _study),
    "ListTrials": Rule(READ, _study),
    "GetBestTrials": Rule(READ, _study),
    "AcquireTrial": Rule(WRITE, _study),
    "HeartbeatTrial": Rule(WRITE, _trial),
    "ReportIntermediate": Rule(WRITE, _trial),
    "CompleteTrial": Rule(WRITE, _trial),
    "FailTrial": Rule(WRITE, _trial),
    "SuggestParam": Rule(WRITE, _trial),
})
