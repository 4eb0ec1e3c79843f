"""trackd: experiment tracking and hyperparameter optimization.

    import trackd
    with trackd.start_run(experiment="lr-sweep", params={"lr": 1e-4}) as run:
        run.set_tags({"stage": "baseline"})
"""

from trackd import errors, events
from trackd._client import Client
from trackd._registry import ModelVersion, get_model_version, list_model_versions, register_model, set_model_alias
from trackd._run import (
    Run,
    RunInfo,
    download_artifacts,
    get_run,
    iter_runs,
    list_artifacts,
    list_runs,
    start_run,
)

__all__ = ["Client", "ModelVersion", "Run", "RunInfo", "download_artifacts", "errors", "events",
           "get_model_version", "get_run", "iter_runs", "list_artifacts", "list_model_versions", "list_runs",
           "register_model", "set_model_alias", "start_run"]
