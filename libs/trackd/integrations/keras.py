"""Keras 3 (any backend): `model.fit(..., callbacks=[TrackdCallback("my-experiment")])`.

When training begins fit's parameters (`epochs`, `steps`) are logged as params, the optimizer's
config under `optimizer.` and the model's name and parameter count under `model.`. Each epoch's
metrics (`loss`, `val_loss`, …) and `epoch` are logged at the global step, the optimizer's
iteration count; with `log_every_n_steps` the batch metrics too, every n steps. `log_model=True`
saves the trained model as `model.keras` when training ends and uploads it as the run's `model`
artifact, registered as a version of `registered_model_name` when one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackd._run import Run
from trackd.integrations._common import TrackedCallback, require

_Callback: Any = require("keras", package="keras").callbacks.Callback


class TrackdCallback(TrackedCallback, _Callback):  # type: ignore[misc]  # keras.callbacks.Callback (imported at run time)
    """Log a Keras `fit` to trackd.

    `run`: log into this run; else into the active run of `trackd.init()`; else a run started in
    `project`/`experiment` when training begins, named `run_name`, with `tags`. A run the
    callback started stays open after `fit()` (a later `fit()` continues it); `callback.finish()`
    ends it, else interpreter exit does.
    """

    def __init__(self, experiment: str = "default", *, project: str = "default", run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, run: Run | None = None, log_model: bool = False,
                 registered_model_name: str | None = None, log_every_n_steps: int | None = None) -> None:
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps is at least 1, not {log_every_n_steps}")
        self._track(run=run, experiment=experiment, project=project, run_name=run_name, tags=tags,
                    log_model=log_model, registered_model_name=registered_model_name)
        self._every = log_every_n_steps
        self._params_logged = False

    def _global_step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._params_logged:
            return
        params: dict[str, Any] = {k: v for k, v in (self.params or {}).items() if k != "verbose"}
        params["model"] = {"name": self.model.name, "parameters": self.model.count_params()}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            params["optimizer"] = {"class": type(optimizer).__name__, **optimizer.get_config()}
        self._target.log_params(params)
        self._params_logged = True

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._every is not None and logs:
            step = self._global_step()
            if step % self._every == 0:
                self._target.log_metrics(logs, step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._target.log_metrics({**(logs or {}), "epoch": epoch}, self._global_step())

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._log_model:
            def save(directory: Path) -> Path:
                path = directory / "model.keras"
                self.model.save(path)
                return path

            self._target.log_model(save, registered_name=self._registered_model_name)
        self._target.flush()
