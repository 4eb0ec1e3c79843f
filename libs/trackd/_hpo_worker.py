"""The worker side of a study, shared by `trackd hpo worker` (a subprocess per trial) and
`trackd.hpo.optimize` (a Python function per trial): acquire trials under a lease, heartbeat
while one runs, stop when the study ends or this worker's budget is spent.

Run as `python -m trackd._hpo_worker STUDY N_TRIALS WORKER` with a cloudpickled objective on
stdin, it is one of `optimize`'s worker processes."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import StudyState, TrialState

from trackd import hpo
from trackd._client import Client
from trackd.errors import Aborted, NotFound, TrackdError

POLL_S = 1.0
LEASE_LOST = "ABORTED (the lease expired and the trial went to another worker)"
ENDED = frozenset(s for s in StudyState if s.ended)

log = logging.getLogger("trackd.hpo")


class Lease:
    """What the heartbeat learnt about the trial's lease: `lost` once the controller answered
    ABORTED (the lease expired and the trial went to another worker) or NOT_FOUND; `trial_ended`
    when it said stop because the trial had ended already (its process ended it itself)."""

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.trial_ended = threading.Event()


@contextmanager
def heartbeats(client: Client, trial: hpo_pb2.Trial, lease_s: int, on_stop: Callable[[], None], *,
               lease: Lease | None = None) -> Iterator[Lease]:
    """Keep the trial's lease, and so its run, alive while the block runs (HeartbeatTrial
    heartbeats the run too); `on_stop` when the controller says the trial should stop (pruned
    elsewhere, study stopped) or the lease is lost — then the trial is no longer this worker's
    to report, and `Lease.lost` is set. While the controller is unreachable the run is
    heartbeated here directly, so an outage longer than the run service's heartbeat timeout does
    not get a live trial's run marked CRASHED."""
    done = threading.Event()
    lease = lease or Lease()

    def beat() -> None:
        while not done.wait(max(1.0, lease_s / 3)):
            try:
                reply = client.call("hpo", client.hpo.HeartbeatTrial, hpo_pb2.HeartbeatTrialRequest(
                    trial_id=trial.id, worker=trial.worker))
            except (Aborted, NotFound) as exc:
                log.warning("trial %s: the lease is lost (%s); stopping it", trial.number, exc)
                lease.lost.set()
                on_stop()
                return
            except TrackdError:  # the controller may be restarting: the lease outlives a few misses
                if trial.run_id:
                    with contextlib.suppress(TrackdError):  # ended already, or the run service is down too
                        client.call("run", client.runs.Heartbeat, run_pb2.HeartbeatRequest(run_id=trial.run_id))
                continue
            if reply.should_stop:
                if reply.trial_ended:
                    lease.trial_ended.set()
                on_stop()
                return

    threading.Thread(target=beat, daemon=True).start()
    try:
        yield lease
    finally:
        done.set()


def run_slots(client: Client, study_id: str, worker: str, run: Callable[[hpo_pb2.Trial, int], object], *,
              n_trials: int = 0, slots: int = 1) -> int:
    """Acquire and run trials in `slots` threads (worker names `worker/<slot>`) until the study
    ends or `n_trials` (0: no limit) were started here. Returns how many were started; the
    first error a slot met is raised after all slots stopped."""
    started = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def slot(index: int) -> None:
        nonlocal started
        try:
            while True:
                with lock:
                    if n_trials and started >= n_trials:
                        return
                reply = hpo.call(client, "AcquireTrial", hpo_pb2.AcquireTrialRequest(
                    study_id=study_id, worker=f"{worker}/{index}"))
                if not reply.HasField("trial"):
                    if reply.study.state in ENDED:
                        return
                    time.sleep(POLL_S)
                    continue
                with lock:
                    started += 1
                run(reply.trial, reply.lease_s)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(slots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return started


def call_objective(client: Client, objective: Callable[[hpo.Trial], Any], space: dict[str, Any] | None,
                   trial: hpo_pb2.Trial, lease_s: int) -> str:
    """One trial in this process: COMPLETE with what the objective returns, PRUNED when it
    raises TrialPruned, FAIL (traceback on stderr) when it raises anything else — or LEASE_LOST,
    reporting nothing, once the trial is another worker's (its lease expired meanwhile). `space`:
    the study's declared search space, None when it is define-by-run."""
    current = hpo.Trial(trial.id, trial.run_id, trial.worker, json.loads(trial.params_json), client=client,
                        space=space, define_by_run=space is None)
    with heartbeats(client, trial, lease_s, on_stop=current.request_stop) as lease:
        try:
            value = objective(current)
        except Aborted:  # a report found the lease gone
            return LEASE_LOST
        except hpo.TrialPruned:
            return _ended(lease, current.prune, TrialState.PRUNED.name)
        except Exception as exc:
            if not lease.lost.is_set():
                traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}"
            return _ended(lease, lambda: current.fail(reason), TrialState.FAIL.name)
    if value is None:
        return _ended(lease, lambda: current.fail("the objective returned None: return the value to optimize"),
                      TrialState.FAIL.name)
    return _ended(lease, lambda: current.complete(value), TrialState.COMPLETE.name)


def _ended(lease: Lease, end: Callable[[], object], outcome: str) -> str:
    """End the trial with `end`, unless it is no longer this worker's."""
    if lease.lost.is_set():
        return LEASE_LOST
    try:
        end()
    except Aborted:
        return LEASE_LOST
    return outcome


def main() -> None:
    import cloudpickle

    study, n_trials, worker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    objective = cloudpickle.loads(sys.stdin.buffer.read())
    client = Client()
    info = hpo.call(client, "GetStudy", hpo_pb2.GetStudyRequest(name=study)).study
    space = None if info.define_by_run else json.loads(info.search_space_json or "{}")
    run_slots(client, info.id, worker, lambda t, lease: print(f"trial {t.number}: "
                                                              f"{call_objective(client, objective, space, t, lease)}",
                                                              flush=True), n_trials=n_trials)


if __name__ == "__main__":
    main()
