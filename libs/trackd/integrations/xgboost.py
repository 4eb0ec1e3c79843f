"""XGBoost: `xgboost.train(params, dtrain, evals=[(dvalid, "valid")], callbacks=[TrackdCallback("my-experiment")])`,
or `XGBClassifier(callbacks=[TrackdCallback(...)])`.

Before training the booster's training parameters are logged as params (`eta`, `max_depth`,
`objective`, the evaluation metrics, … as XGBoost's own config reports them, or the `params`
given); after every boosting round each evaluation result is logged as `<data>-<metric>`
(`valid-rmse`) at the round (0-based). `log_model=True` saves the booster as `model.ubj` after
training and uploads it as the run's `model` artifact (`xgboost.Booster(model_file=...)` loads
it), registered as a version of `registered_model_name` when one is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackd._run import Run
from trackd.integrations._common import TrackedCallback, require

_TrainingCallback: Any = require("xgboost", package="xgboost").callback.TrainingCallback

# The sections of Booster.save_config()'s JSON that hold what a user sets (the rest is internal state)
_CONFIG_SECTIONS = ("learner_train_param", "gradient_booster", "objective")


def booster_params(booster: Any) -> dict[str, Any]:
    """A booster's training parameters, flat (`max_depth`, `eta`, `objective`, `eval_metric`),
    from XGBoost's own config: what training used, defaults included."""
    learner = json.loads(booster.save_config())["learner"]
    params: dict[str, Any] = {}

    def leaves(section: Any) -> None:
        for key, value in section.items():
            if isinstance(value, dict):
                leaves(value)
            elif key.endswith("_param") or not isinstance(value, list):
                params.setdefault(key, value)

    for name in _CONFIG_SECTIONS:
        if isinstance(learner.get(name), dict):
            leaves(learner[name])
    metrics = [m.get("name") for m in learner.get("metrics", []) if isinstance(m, dict)]
    if metrics:
        params["eval_metric"] = ",".join(str(m) for m in metrics)
    return params


class TrackdCallback(TrackedCallback, _TrainingCallback):  # type: ignore[misc]  # xgboost's TrainingCallback (run time)
    """Log an XGBoost training to trackd.

    `run`: log into this run; else into the active run of `trackd.init()`; else a run started in
    `project`/`experiment` when training begins, named `run_name`, with `tags`. `params`: the
    params to log instead of the booster's config. A run the callback started stays open after
    training; `callback.finish()` ends it, else interpreter exit does.
    """

    def __init__(self, experiment: str = "default", *, project: str = "default", run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, run: Run | None = None,
                 params: Mapping[str, Any] | None = None, log_model: bool = False,
                 registered_model_name: str | None = None) -> None:
        super().__init__()
        self._track(run=run, experiment=experiment, project=project, run_name=run_name, tags=tags,
                    log_model=log_model, registered_model_name=registered_model_name)
        self._params = params

    def before_training(self, model: Any) -> Any:
        self._target.log_params(self._params if self._params is not None else booster_params(model))
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Mapping[str, Mapping[str, Any]]) -> bool:
        points: dict[str, Any] = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if history:
                    last = history[-1]
                    points[f"{data}-{metric}"] = last[0] if isinstance(last, tuple) else last  # (mean, std) in cv
        self._target.log_metrics(points, epoch)
        return False  # never stops the training

    def after_training(self, model: Any) -> Any:
        if self._log_model:
            def save(directory: Path) -> Path:
                path = directory / "model.ubj"
                model.save_model(path)
                return path

            self._target.log_model(save, registered_name=self._registered_model_name)
        self._target.flush()
        return model
