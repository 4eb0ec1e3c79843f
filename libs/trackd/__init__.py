"""trackd: experiment tracking and hyperparameter optimization.

    import trackd
    with trackd.start_run(experiment="lr-sweep", params={"lr": 1e-4}) as run:
        run.set_tags({"stage": "baseline"})
"""

from trackd import errors, events
from trackd._client import Client
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

__all__ = ["Client", "Run", "RunInfo", "download_artifacts", "errors", "events", "get_run", "iter_runs",
           "list_artifacts", "list_runs", "start_run"]
