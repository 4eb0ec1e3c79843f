"""What every integration shares: the run it writes to, and turning a framework's hyperparameters
and metrics into what trackd stores."""

from __future__ import annotations

import atexit
import importlib
import logging
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from trackd._active import active_run
from trackd._params import flatten
from trackd._run import Run, start_run

log = logging.getLogger("trackd.integrations")

PARAM_VALUE_MAX = 6_000  # the run service's limit on a param value (docs: Limits)
PARAMS_PER_CALL = 1_000  # the run service's limit on params in one request


def require(*modules: str, package: str) -> ModuleType:
    """The first of `modules` that imports, or ImportError saying what to install. The frameworks
    are imported by name at run time: `import trackd` and mypy never need them."""
    errors = []
    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            errors.append(str(exc))
    raise ImportError(f"this trackd integration needs {package} ({'; '.join(errors)}): pip install {package}")


def numeric(value: Any) -> float | None:
    """A metric value as a float: Python and numpy numbers, one-element arrays and tensors; None
    for anything else (strings, lists, bigger arrays), which a metric series cannot hold."""
    if isinstance(value, bool | int | float):
        return float(value)
    item = getattr(value, "item", None)
    if not callable(item):
        return None
    try:
        result = item()  # numpy / torch / jax: raises for more than one element
    except (TypeError, ValueError, RuntimeError):
        return None
    return float(result) if isinstance(result, bool | int | float) else None


class RunTarget:
    """The run an integration writes to: the `run` it was given, else the process's active run
    (`trackd.init()`), both left open; else one it starts on first use. A run it started stays
    open when training ends, so an evaluation after it logs there too; it ends with `finish()`
    or at interpreter exit (FAILED after an uncaught exception)."""

    def __init__(self, run: Run | None, *, experiment: str, project: str, name: str | None,
                 tags: Mapping[str, Any] | None, start: Mapping[str, Any] | None = None) -> None:
        self._run = run
        self._owned = False
        self._start: dict[str, Any] = {"project": project, "name": name, "tags": dict(tags or {}), **dict(start or {})}
        self.experiment = experiment

    @property
    def started(self) -> bool:
        return self._run is not None

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = active_run()
        if self._run is None:
            self._run = start_run(self.experiment, **self._start)
            self._owned = True
            atexit.register(self._at_exit)
        return self._run

    def default_name(self, name: str) -> None:
        """Name the run this target will start `name`, unless it was given one (or has a run)."""
        if self._run is None and self._start["name"] is None:
            self._start["name"] = name

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        """Flattened (`optimizer.lr`), values past the service's 6,000 characters cut with a
        warning, in requests of at most 1,000. A param is immutable: a key logged before keeps
        its first value (the conflict is a warning, training goes on)."""
        flat = flatten(params, prefix=prefix)
        for key, value in flat.items():
            if len(value) > PARAM_VALUE_MAX:
                log.warning("param %r is %d characters; trackd keeps the first %d", key, len(value), PARAM_VALUE_MAX)
                flat[key] = value[:PARAM_VALUE_MAX]
        items = list(flat.items())
        from trackd.errors import InvalidArgument

        for start in range(0, len(items), PARAMS_PER_CALL):
            try:
                self.run.log_params(dict(items[start:start + PARAMS_PER_CALL]))
            except InvalidArgument as exc:
                log.warning("params not logged: %s", exc)

    def log_metrics(self, metrics: Mapping[str, Any], step: int, *, prefix: str = "",
                    context: str | None = None) -> None:
        """The numeric values at `step` (others are skipped); returns at once."""
        points = {f"{prefix}{key}": v for key, value in metrics.items() if (v := numeric(value)) is not None}
        if points:
            self.run.log_metrics(points, step=int(step), context=context)

    def log_model(self, save: Callable[[Path], Path], *, artifact_path: str = "model",
                  registered_name: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """`save(directory)` writes the model into a temporary directory and returns the file or
        directory to upload: a directory's files are uploaded under `artifact_path`, a file as
        `artifact_path/<its name>` (type `model`); registered as a version of `registered_name`
        when one is given."""
        with tempfile.TemporaryDirectory(prefix="trackd-model-") as tmp:
            saved = save(Path(tmp))
            path = artifact_path if saved.is_dir() else f"{artifact_path}/{saved.name}"
            self.run.log_model(saved, registered_name, artifact_path=path, metadata=metadata)

    def flush(self) -> None:
        """Wait until the points logged so far are stored (bounded by TRACKD_FLUSH_TIMEOUT_S)."""
        if self._run is not None:
            self._run.flush()

    def finish(self, status: str = "FINISHED") -> None:
        """End the run if this integration started it (once); else deliver its points and leave it open."""
        if self._run is None:
            return
        if self._owned:
            self._owned = False
            atexit.unregister(self._at_exit)
            self._run.end(status)
        else:
            self._run.flush()

    def _at_exit(self) -> None:
        self.finish("FAILED" if getattr(sys, "last_value", None) is not None else "FINISHED")


class TrackedCallback:
    """What the callbacks share (mixed in before the framework's base class): the run they write
    to, whether to upload the model, its registered name, `run` and `finish()`."""

    _target: RunTarget

    def _track(self, *, run: Run | None, experiment: str, project: str, run_name: str | None,
               tags: Mapping[str, Any] | None, log_model: bool, registered_model_name: str | None) -> None:
        self._target = RunTarget(run, experiment=experiment, project=project, name=run_name, tags=tags)
        self._log_model = log_model
        self._registered_model_name = registered_model_name

    @property
    def run(self) -> Run:
        return self._target.run

    def finish(self, status: str = "FINISHED") -> None:
        """End the run the callback started (a run it was given is left open)."""
        self._target.finish(status)
