"""The module-level API for scripts that pass no handle around: `trackd.init()` starts (or
resumes) the process's active run, `trackd.log()` and `trackd.finish()` act on it.

Under a distributed launcher (torchrun: RANK / WORLD_SIZE in the environment, or an initialized
`torch.distributed`, read without importing torch when the script has not) only rank 0 logs:
on the other ranks `init()` returns None and `log()` / `finish()` do nothing. With
`all_ranks=True` every rank logs, its system metrics as `system/rank{N}/…`: the ranks share one
run when they can name it alike (a `resume_key`, else the launcher's job id), else each rank
starts its own run tagged `rank`. A shared run is ended by rank 0's `finish()`; the other ranks'
`finish()` delivers their points and detaches.
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trackd._client import Client
from trackd._run import Run, RunInfo, start_run
from trackd._settings import LaunchEnv
from trackd.errors import FailedPrecondition


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    job_id: str = ""


def current_rank() -> Rank | None:
    """This process's rank: from `torch.distributed` when the script imported and initialized
    it, else from the launcher's environment; None outside a distributed job."""
    launched = LaunchEnv.from_env()
    job_id = launched.job_id if launched else ""
    dist: Any = sys.modules.get("torch.distributed")  # never imported here
    if dist is not None and dist.is_available() and dist.is_initialized():
        return Rank(int(dist.get_rank()), int(dist.get_world_size()), job_id)
    return Rank(launched.rank, launched.world_size, job_id) if launched else None


class _Active:
    """The process's active run and whether this process logs at all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.run: Run | None = None
        self.silent = False  # a rank that does not log: log() and finish() do nothing
        self.shared = False  # a run the ranks share: only rank 0 ends it
        self.rank: Rank | None = None
        self.exit_hook = False


_active = _Active()


def init(
    experiment: str = "default",
    *,
    project: str = "default",
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    notes: str = "",
    parent: Run | str | None = None,
    capture_env: bool = True,
    system_metrics: bool = True,
    experiment_id: str | None = None,
    run_id: str | None = None,
    resume_key: str | None = None,
    all_ranks: bool = False,
    client: Client | None = None,
) -> Run | None:
    """`start_run()` with the same arguments, making the run the process's active one for
    `trackd.log()` and `trackd.finish()` (a run active before is finished first). Returns the
    run, or None on a rank other than 0 of a distributed job unless `all_ranks`. The active run
    is finished at interpreter exit if the script did not: FAILED after an uncaught exception."""
    with _active.lock:
        previous = _active.run
    if previous is not None:
        finish()
    rank = current_rank()
    silent = rank is not None and rank.rank != 0 and not all_ranks
    shared = False
    if rank is not None and all_ranks:
        resume_key = resume_key or rank.job_id or None
        shared = resume_key is not None or run_id is not None
        if not shared:
            tags = {**(tags or {}), "rank": rank.rank}
    run = None if silent else start_run(
        experiment, project=project, name=name, params=params, tags=tags, notes=notes, parent=parent,
        capture_env=capture_env, system_metrics=system_metrics, experiment_id=experiment_id, run_id=run_id,
        resume_key=resume_key, rank=rank.rank if rank is not None and all_ranks else None, client=client)
    with _active.lock:
        _active.run, _active.silent, _active.shared, _active.rank = run, silent, shared, rank
        if not _active.exit_hook:
            atexit.register(_at_exit)
            _active.exit_hook = True
    return run


def log(data: Mapping[str, float], step: int | None = None, *, context: str | None = None,
        timestamp: float | None = None) -> None:
    """`run.log_metrics(data, step)` on the active run (`step=None`: each key's next step).
    FailedPrecondition when `trackd.init()` was not called; nothing on a rank that does not log."""
    run = _current()
    if run is not None:
        run.log_metrics(data, step, context=context, timestamp=timestamp)


def finish(status: str = "FINISHED") -> RunInfo | None:
    """End the active run (FINISHED, FAILED or KILLED) and clear it; the run's final state, or
    None on a rank that does not end it (it only delivers its points). Nothing when none is active."""
    with _active.lock:
        run, shared, rank = _active.run, _active.shared, _active.rank
        _active.run, _active.silent, _active.shared = None, False, False
    if run is None:
        return None
    if shared and rank is not None and rank.rank != 0:
        run.detach()
        return None
    return run.end(status)


def active_run() -> Run | None:
    """The run `trackd.init()` made active (None when there is none, or this rank does not log)."""
    return _active.run


def _current() -> Run | None:
    with _active.lock:
        if _active.run is None and not _active.silent:
            raise FailedPrecondition("no active run: call trackd.init() first")
        return _active.run


def _at_exit() -> None:
    if _active.run is not None:
        failed = getattr(sys, "last_value", None) is not None  # set by an uncaught exception
        finish("FAILED" if failed else "FINISHED")
