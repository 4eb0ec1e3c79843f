"""Hugging Face Trainer: `Trainer(..., callbacks=[TrackdCallback("my-experiment")])`.

When training begins the TrainingArguments are logged as params, and the model's config under
`model.` (`model.hidden_size`); every `on_log` (the training loss every `logging_steps`, the
evaluation metrics, the run summary) is logged at `state.global_step`. `log_model=True` saves
the trained model (and the tokenizer or processor the Trainer holds) with `save_pretrained` when
training ends and uploads it as the run's `model` artifact, registered as a version of
`registered_model_name` when one is given. Only the main process logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackd._run import Run
from trackd.integrations._common import TrackedCallback, require

_TrainerCallback: Any = require("transformers", package="transformers").TrainerCallback


class TrackdCallback(TrackedCallback, _TrainerCallback):  # type: ignore[misc]  # transformers' TrainerCallback (imported at run time)
    """Log a Trainer's run to trackd.

    `run`: log into this run; else into the active run of `trackd.init()`; else a run started in
    `project`/`experiment` when training begins, named `run_name` (default: the TrainingArguments'
    `run_name`), with `tags`. A run the callback started stays open after `train()` so that a
    `trainer.evaluate()` after it logs there too; `callback.finish()` ends it, else interpreter
    exit does.
    """

    def __init__(self, experiment: str = "default", *, project: str = "default", run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, run: Run | None = None, log_model: bool = False,
                 registered_model_name: str | None = None) -> None:
        self._track(run=run, experiment=experiment, project=project, run_name=run_name, tags=tags,
                    log_model=log_model, registered_model_name=registered_model_name)
        self._params_logged = False

    def _begin(self, args: Any, model: Any) -> None:
        if getattr(args, "run_name", None):
            self._target.default_name(str(args.run_name))
        if self._params_logged:
            return
        self._target.log_params(args.to_dict())
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            self._target.log_params(config.to_dict(), prefix="model.")
        self._params_logged = True

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._begin(args, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if not self._params_logged:  # trainer.evaluate() without train()
            self._begin(args, model)
        self._target.log_metrics(logs, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not self._target.started:
            return
        if self._log_model and model is not None:
            processor = kwargs.get("processing_class") or kwargs.get("tokenizer")

            def save(directory: Path) -> Path:
                model.save_pretrained(directory)
                if processor is not None and hasattr(processor, "save_pretrained"):
                    processor.save_pretrained(directory)
                return directory

            self._target.log_model(save, registered_name=self._registered_model_name)
        self._target.flush()
