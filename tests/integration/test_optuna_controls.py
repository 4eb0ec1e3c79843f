"""trackd's own controls on a study made by unchanged Optuna code through GrpcStorageProxy
(services/hpo/optuna_controls.py): enqueue adds a trial Optuna's next `ask` runs with the given
params (as Optuna's own `enqueue_trial`); pause and resume, and trackd's workers, are refused
with FAILED_PRECONDITION saying Optuna's clients run the study; best trials are Optuna's; stop
makes the study STOPPED, so Optuna's next trial fails with that error, while a trial already running may still end."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import optuna
import pytest
import trackd
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState
from trackd_platform.stack import HOST, EmbeddedStack

pytestmark = pytest.mark.integration


def objective(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", 0.0, 1.0) - 0.5) ** 2 + trial.suggest_int("k", 1, 3)


def test_trackd_controls_on_an_optuna_study(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = unique("optuna-controls")
    study = optuna.create_study(study_name=name, storage=GrpcStorageProxy(host=HOST, port=stack.ports.optuna),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=2)

    for refused in (trackd.hpo.pause_study, trackd.hpo.resume_study,
                    lambda n: trackd.hpo.optimize(lambda t: 1.0, n, n_trials=1, processes=False,
                                                  show_progress=False)):
        with pytest.raises(trackd.errors.FailedPrecondition, match="Optuna's clients sample and run its trials"):
            refused(name)
    assert trackd.hpo.get_study(name).state == "RUNNING"

    # enqueued from trackd: Optuna's next ask runs it with those params (k, left out, is sampled)
    enqueued = trackd.hpo.enqueue_trial(name, {"x": 0.25})
    assert (enqueued.number, enqueued.state, enqueued.params) == (2, "WAITING", {"x": 0.25})
    for outside in ({"x": 2.0}, {"k": 1.5}, {"x": [1]}):
        with pytest.raises(trackd.errors.InvalidArgument, match="param"):
            trackd.hpo.enqueue_trial(name, outside)
    study.optimize(objective, n_trials=1)
    ran = study.trials[2]
    assert ran.state == TrialState.COMPLETE and ran.params["x"] == 0.25 and ran.params["k"] in (1, 2, 3)
    [listed] = [t for t in trackd.hpo.list_trials(name) if t.number == 2]
    assert listed.state == "COMPLETE" and listed.params == ran.params
    assert [t.number for t in trackd.hpo.best_trials(name)] == [study.best_trial.number]  # as Optuna picks it

    # stopped: Optuna's next trial is refused, saying why; the one running may still end
    running = study.ask()
    trackd.hpo.enqueue_trial(name, {"x": 0.75})  # waiting: not started after the stop either
    info = trackd.hpo.stop_study(name)
    assert info.state == "STOPPED" and trackd.get_run(info.run_id).status == "KILLED"
    with pytest.raises(grpc.RpcError) as caught:
        study.optimize(objective, n_trials=1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "was stopped in trackd" in (caught.value.details() or "")
    study.tell(running, 0.5)
    states = [t.state for t in optuna.load_study(study_name=name, storage=study._storage).trials]
    assert states == [TrialState.COMPLETE] * 4 + [TrialState.WAITING]
    with pytest.raises(trackd.errors.FailedPrecondition, match="stopped"):
        trackd.hpo.enqueue_trial(name, {"x": 0.5})
