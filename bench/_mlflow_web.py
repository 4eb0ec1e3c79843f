"""MLflow side of bench/web.py. Runs inside bench/.venv-anchors (never the project's venv), talks to
an MLflow server over REST and prints one JSON object on stdout. The data is set up by
bench/_mlflow_query.py's `setup` and bench/query.py's SQL load, as for bench/query.py.

    measure: the first page of 100 runs ordered by metrics.m1 DESC (no filter) through
             `MlflowClient.search_runs`, and as the request MLflow's own UI sends for its runs
             table (POST ajax-api/2.0/mlflow/runs/search); the UI's sampled history endpoint
             (get-history-bulk-interval, max_results=1000) of the series setup logged
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
import urllib.request

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from _mlflow_query import timed  # noqa: E402
from _query_data import ORDER_BY, PAGE, SERIES_KEY  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


def measure(client: MlflowClient, uri: str, run_id: str, experiment_id: str, search_calls: int,
            sampled_calls: int) -> dict:
    search, page = timed(lambda: client.search_runs([experiment_id], order_by=[ORDER_BY], max_results=PAGE),
                         search_calls)
    body = json.dumps({"experiment_ids": [experiment_id], "max_results": PAGE, "order_by": [ORDER_BY],
                       "run_view_type": "ACTIVE_ONLY"}).encode()

    def ui_search() -> list[str]:
        request = urllib.request.Request(f"{uri}/ajax-api/2.0/mlflow/runs/search", data=body, method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return [run["info"]["run_id"] for run in json.loads(response.read())["runs"]]

    ui, ui_ids = timed(ui_search, search_calls)
    query = urllib.parse.urlencode({"run_ids": run_id, "metric_key": SERIES_KEY, "max_results": 1000})

    def sampled_history() -> int:
        with urllib.request.urlopen(f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{query}",
                                    timeout=120) as response:
            return len(json.loads(response.read())["metrics"])

    sampled, sampled_points = timed(sampled_history, sampled_calls)
    return {
        "search": {**search, "run_ids": [run.info.run_id for run in page]},  # type: ignore[attr-defined]
        "ui_search": {**ui, "run_ids": ui_ids},
        "sampled": {**sampled, "points": sampled_points},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--experiment-id", required=True)
    parser.add_argument("--search-calls", type=int, default=20)
    parser.add_argument("--sampled-calls", type=int, default=20)
    args = parser.parse_args()
    client = MlflowClient(tracking_uri=args.uri)
    print(json.dumps(measure(client, args.uri, args.run_id, args.experiment_id, args.search_calls,
                             args.sampled_calls)))


if __name__ == "__main__":
    main()
