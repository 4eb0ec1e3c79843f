"""The words the SDK, the CLI and every service share: run statuses, metric contexts, study and
trial states. Each is an IntEnum whose numbers are the proto enum's (`trackd.run.v1.RunStatus`,
`trackd.ingest.v1.MetricContext`, `trackd.hpo.v1.StudyState` / `TrialState`) and the database
columns'; the member names are the proto names without their prefix.

Light: this module imports only the generated messages and the standard library, so the client
package and the servers both import it (tests/unit/test_vocabulary.py checks it against the
protos)."""

from __future__ import annotations

import enum

from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.run.v1 import run_pb2


class RunStatus(enum.IntEnum):
    """A run's status (`runs.status`). UNSPECIFIED (0) is no status and has no member."""

    RUNNING = run_pb2.RUN_STATUS_RUNNING
    FINISHED = run_pb2.RUN_STATUS_FINISHED
    FAILED = run_pb2.RUN_STATUS_FAILED
    KILLED = run_pb2.RUN_STATUS_KILLED
    CRASHED = run_pb2.RUN_STATUS_CRASHED

    @property
    def terminal(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def proto(self) -> run_pb2.RunStatus:
        """As a field of a generated message takes it."""
        return self.value


# What a client may end its run with (CRASHED is the server's verdict on a silent run).
CLIENT_END_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})


class MetricContext(enum.IntEnum):
    """The context a metric series was logged in (`metric_series.context`); NONE is no context."""

    NONE = ingest_pb2.METRIC_CONTEXT_UNSPECIFIED
    TRAIN = ingest_pb2.METRIC_CONTEXT_TRAIN
    EVAL = ingest_pb2.METRIC_CONTEXT_EVAL
    TEST = ingest_pb2.METRIC_CONTEXT_TEST

    @property
    def label(self) -> str:
        """How users name it: "" (no context), "train", "eval" or "test"."""
        return "" if self is MetricContext.NONE else self.name.lower()

    @property
    def proto(self) -> ingest_pb2.MetricContext:
        """As a field of a generated message takes it."""
        return self.value


CONTEXTS: dict[int, str] = {int(c): c.label for c in MetricContext}  # a context's number → its name
CONTEXT_NUMBERS: dict[str, int] = {c.label: int(c) for c in MetricContext}  # "eval" → 2


class StudyState(enum.IntEnum):
    """A study's state (`studies.state`)."""

    CREATED = hpo_pb2.STUDY_STATE_CREATED
    RUNNING = hpo_pb2.STUDY_STATE_RUNNING
    PAUSED = hpo_pb2.STUDY_STATE_PAUSED
    STOPPED = hpo_pb2.STUDY_STATE_STOPPED
    FINISHED = hpo_pb2.STUDY_STATE_FINISHED  # every trial it may run has ended

    @property
    def ended(self) -> bool:
        return self in (StudyState.STOPPED, StudyState.FINISHED)


class TrialState(enum.IntEnum):
    """A trial's state (`trials.state`); COMPLETE, PRUNED and FAIL are final."""

    WAITING = hpo_pb2.TRIAL_STATE_WAITING  # sampled, not leased to a worker (or back for a retry)
    RUNNING = hpo_pb2.TRIAL_STATE_RUNNING  # leased to a worker
    COMPLETE = hpo_pb2.TRIAL_STATE_COMPLETE
    PRUNED = hpo_pb2.TRIAL_STATE_PRUNED
    FAIL = hpo_pb2.TRIAL_STATE_FAIL

    @property
    def ended(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
