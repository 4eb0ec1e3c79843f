"""MLflow side of bench/query.py. Runs inside bench/.venv-anchors (never the project's venv), talks
to an MLflow server over REST and prints one JSON object on stdout.

    setup:   create the search experiment, and a run holding a --points series logged with
             `MlflowClient.log_batch` (1,000 points a call)
    measure: time `get_metric_history` (whole series), the UI's sampled history endpoint
             (get-history-bulk-interval, max_results=1000) and `search_runs` (first page)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from _query_data import FILTER, ORDER_BY, PAGE, SEARCH_EXPERIMENT, SERIES_KEY, series  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

BATCH = 1_000


def setup(client: MlflowClient, points: int) -> dict:
    search_experiment = client.create_experiment(SEARCH_EXPERIMENT)
    run_id = client.create_run(client.create_experiment("bench-series")).info.run_id
    steps, values, stamps = series(points)
    start = time.perf_counter()
    for first in range(0, points, BATCH):
        client.log_batch(run_id, metrics=[Metric(SERIES_KEY, float(values[i]), int(stamps[i]), int(steps[i]))
                                          for i in range(first, min(first + BATCH, points))])
    elapsed = time.perf_counter() - start
    client.set_terminated(run_id)
    return {"search_experiment_id": search_experiment, "series_run_id": run_id, "log_s": elapsed}


def timed(call: Callable[[], object], calls: int) -> tuple[dict, object]:
    """One warm-up call, then `calls` timed ones: (median / p95 / all seconds, the last result)."""
    result = call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_s": statistics.median(samples), "p95_s": p95, "samples_s": samples}, result


def measure(client: MlflowClient, uri: str, run_id: str, experiment_id: str, history_calls: int,
            sampled_calls: int, search_calls: int) -> dict:
    history, points = timed(lambda: client.get_metric_history(run_id, SERIES_KEY), history_calls)
    query = urllib.parse.urlencode({"run_ids": run_id, "metric_key": SERIES_KEY, "max_results": 1000})

    def sampled_history() -> int:
        url = f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{query}"
        with urllib.request.urlopen(url, timeout=120) as response:
            return len(json.loads(response.read())["metrics"])

    sampled, sampled_points = timed(sampled_history, sampled_calls)
    search, page = timed(lambda: client.search_runs([experiment_id], filter_string=FILTER, order_by=[ORDER_BY],
                                                    max_results=PAGE), search_calls)
    return {
        "history": {**history, "points": len(points)},  # type: ignore[arg-type]
        "sampled": {**sampled, "points": sampled_points},
        "search": {**search, "run_ids": [run.info.run_id for run in page]},  # type: ignore[attr-defined]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("setup", "measure"))
    parser.add_argument("--uri", required=True)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--experiment-id", default="")
    parser.add_argument("--history-calls", type=int, default=3)
    parser.add_argument("--sampled-calls", type=int, default=20)
    parser.add_argument("--search-calls", type=int, default=10)
    args = parser.parse_args()
    client = MlflowClient(tracking_uri=args.uri)
    if args.mode == "setup":
        result = setup(client, args.points)
    else:
        result = measure(client, args.uri, args.run_id, args.experiment_id, args.history_calls,
                         args.sampled_calls, args.search_calls)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
