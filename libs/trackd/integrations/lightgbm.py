"""LightGBM: `lightgbm.train(params, train_set, valid_sets=[valid], callbacks=[TrackdCallback("my-experiment")])`,
or `LGBMRegressor().fit(..., callbacks=[TrackdCallback(...)])`.

At the first iteration the training params are logged (as LightGBM holds them, aliases
resolved by LightGBM itself); after every iteration each evaluation result is logged as
`<data>-<metric>` (`valid_0-l2`) at the iteration (0-based). When the last iteration is done,
`log_model=True` saves the booster as `model.txt` and uploads it as the run's `model` artifact
(`lightgbm.Booster(model_file=...)` loads it), registered as a version of
`registered_model_name` when one is given. Training stopped early (the `early_stopping`
callback) does not reach its last iteration: call `callback.log_model(booster)` after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackd._run import Run
from trackd.integrations._common import TrackedCallback, require

require("lightgbm", package="lightgbm")


class TrackdCallback(TrackedCallback):
    """Log a LightGBM training to trackd: a LightGBM callback (called after each iteration).

    `run`: log into this run; else into the active run of `trackd.init()`; else a run started in
    `project`/`experiment` at the first iteration, named `run_name`, with `tags`. A run the
    callback started stays open after training; `callback.finish()` ends it, else interpreter
    exit does.
    """

    order = 25  # after LightGBM's record_evaluation (20), before early_stopping (30) stops the loop
    before_iteration = False

    def __init__(self, experiment: str = "default", *, project: str = "default", run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, run: Run | None = None, log_model: bool = False,
                 registered_model_name: str | None = None) -> None:
        self._track(run=run, experiment=experiment, project=project, run_name=run_name, tags=tags,
                    log_model=log_model, registered_model_name=registered_model_name)
        self._params_logged = False

    def __call__(self, env: Any) -> None:
        if not self._params_logged:
            self._target.log_params(dict(env.params))
            self._params_logged = True
        points: dict[str, Any] = {}
        for result in env.evaluation_result_list or ():
            data, metric, value = result[0], result[1], result[2]  # (data, metric, value, higher-is-better[, std])
            points[f"{data}-{metric}"] = value
        self._target.log_metrics(points, env.iteration)
        if env.iteration == env.end_iteration - 1:
            if self._log_model:
                self.log_model(env.model)
            self._target.flush()

    def log_model(self, booster: Any) -> None:
        """Upload `booster` (a lightgbm.Booster) as the run's `model` artifact, `model/model.txt`."""
        def save(directory: Path) -> Path:
            path = directory / "model.txt"
            booster.save_model(str(path))
            return path

        self._target.log_model(save, registered_name=self._registered_model_name)
