"""PyTorch Lightning: `Trainer(logger=TrackdLogger("my-experiment"))`.

Lightning's Logger API: `log_hyperparams` logs the module's (and datamodule's) saved
hyperparameters as params, `log_metrics` every `self.log(...)` value at Lightning's global step,
`finalize` (the end of `fit`, `validate`, `test`) delivers the points, and ends the run FAILED
when the stage raised. A run the logger started stays open otherwise, so `trainer.test()` after
`fit()` logs into it; `logger.finish()` ends it, else interpreter exit does. `log_model=True`
uploads the best checkpoint (else the last) of the ModelCheckpoint callback as the run's `model`
artifact when fitting ends; `log_model="all"` uploads every checkpoint under `checkpoints/` as it is saved.
Only rank 0 of a distributed job logs. Works with `lightning` and with `pytorch_lightning`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from trackd._run import Run
from trackd.integrations._common import RunTarget, require

_logger_module = require("lightning.pytorch.loggers.logger", "pytorch_lightning.loggers.logger",
                         package="lightning")
_utilities = require(_logger_module.__name__.replace(".loggers.logger", ".utilities"), package="lightning")
_Logger: Any = _logger_module.Logger


def _rank() -> int:
    return int(getattr(_utilities.rank_zero_only, "rank", 0) or 0)


class TrackdLogger(_Logger):  # type: ignore[misc]  # Lightning's Logger (typed Any: imported at run time)
    """Log a Lightning run to trackd.

    `run`: log into this run (left open at the end); else into the active run of `trackd.init()`
    (also left open); else a run started in `project`/`experiment` on first use, named
    `run_name`, with `tags`, and ended by `finalize`. `prefix` goes before every metric key.
    """

    def __init__(self, experiment: str = "default", *, project: str = "default", run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, run: Run | None = None,
                 log_model: bool | Literal["all"] = False, prefix: str = "") -> None:
        super().__init__()
        self._target = RunTarget(run, experiment=experiment, project=project, name=run_name, tags=tags)
        self._log_model = log_model
        self._prefix = prefix
        self._checkpoint: Any = None
        self._uploaded: set[tuple[str, str]] = set()

    @property
    def name(self) -> str:
        return self._target.experiment

    @property
    def version(self) -> str:
        """The run's id (Lightning names its checkpoint directory after it)."""
        return self._target.run.id if _rank() == 0 else ""

    @property
    def experiment(self) -> Run | None:
        """The trackd run (None on ranks other than 0)."""
        return self._target.run if _rank() == 0 else None

    @property
    def save_dir(self) -> str | None:
        return None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if _rank() != 0:
            return
        if isinstance(params, argparse.Namespace):
            params = vars(params)
        values = {str(k): (getattr(v, "__name__", repr(v)) if callable(v) else v) for k, v in dict(params).items()}
        self._target.log_params(values)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if _rank() != 0:
            return
        self._target.log_metrics(metrics, 0 if step is None else step, prefix=self._prefix)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._checkpoint = checkpoint_callback
        if self._log_model == "all" and _rank() == 0:
            for path in (checkpoint_callback.last_model_path, checkpoint_callback.best_model_path):
                if path and os.path.isfile(path) and ("checkpoint", path) not in self._uploaded:
                    self._target.run.log_artifact(path, f"checkpoints/{Path(path).name}", type="model")
                    self._uploaded.add(("checkpoint", path))

    def finalize(self, status: str) -> None:
        if _rank() != 0 or not self._target.started:
            return
        if status == "failed":
            self._target.finish("FAILED")
            return
        if self._log_model and self._checkpoint is not None:
            best = self._checkpoint.best_model_path or self._checkpoint.last_model_path
            if best and os.path.isfile(best) and ("model", best) not in self._uploaded:
                self._target.run.log_model(best, artifact_path=f"model/{Path(best).name}")
                self._uploaded.add(("model", best))
        self._target.flush()

    def finish(self, status: str = "FINISHED") -> None:
        """End the run the logger started (a run it was given is left open)."""
        self._target.finish(status)
