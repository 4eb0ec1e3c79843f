"""trackd: experiment tracking and hyperparameter optimization.

    import trackd
    with trackd.start_run(experiment="lr-sweep", params={"lr": 1e-4}) as run:
        run.set_tags({"stage": "baseline"})
"""

from trackd import errors, events, hpo
from trackd._active import active_run, finish, init, log
from trackd._client import Client
from trackd._history import MetricHistory, Point
from trackd._media import Histogram, Media, Table
from trackd._query import (
    Comparison,
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
from trackd._run_data import get_media, list_inputs, read_logs, runs_with_input

__all__ = [
    "Client", "Comparison", "Histogram", "Media", "MetricHistory", "ModelVersion", "Point", "Run", "RunInfo",
    "Table", "active_run", "aggregate_metric", "compare_runs", "contour", "download_artifacts", "errors", "events",
    "export_metric", "finish", "get_latest_metrics", "get_media", "get_metric_histories", "get_metric_history",
    "get_model_version", "get_run", "hpo", "init", "iter_runs", "iter_search", "list_artifacts", "list_inputs",
    "list_model_versions", "list_runs", "log", "parallel_coordinates", "param_importance", "read_logs",
    "register_model", "runs_to_frame", "runs_with_input", "search_runs", "set_model_alias", "start_run",
    "summarize_experiment", "watch_run"
]
