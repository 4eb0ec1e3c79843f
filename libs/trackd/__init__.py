"""trackd: experiment tracking and hyperparameter optimization.

    import trackd
    with trackd.start_run(experiment="lr-sweep", params={"lr": 1e-4}) as run:
        run.set_tags({"stage": "baseline"})
"""

from trackd import errors, events, hpo
from trackd._active import active_run, finish, init, log
from trackd._client import Client
from trackd._query import (
    Comparison,
    Point,
    aggregate_metric,
    compare_runs,
    contour,
    export_metric,
    get_latest_metrics,
    get_metric_histories,
    get_metric_history,
    iter_search,
    parallel_coordinates,
    param_importance,
    runs_to_frame,
    search_runs,
    summarize_experiment,
    watch_run,
)
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

__all__ = ["Client", "Comparison", "ModelVersion", "Point", "Run", "RunInfo", "active_run", "aggregate_metric",
           "compare_runs", "finish", "init", "log",
           "contour", "download_artifacts", "errors", "events", "export_metric", "hpo", "get_latest_metrics",
           "get_metric_histories", "get_metric_history", "get_model_version", "get_run", "iter_runs", "iter_search",
           "list_artifacts", "list_model_versions", "list_runs", "parallel_coordinates", "param_importance",
           "register_model", "runs_to_frame", "search_runs", "set_model_alias", "start_run", "summarize_experiment",
           "watch_run"]
