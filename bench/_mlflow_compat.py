"""MLflow client side of bench/mlflow_compat.py's search part. Runs inside bench/.venv-anchors
(never the project's venv), against an MLflow server or trackd's MLflow API alike, and prints one
JSON object on stdout: `search_runs` of the search experiment (found by name), the first page of
`_query_data.FILTER` ordered by `_query_data.ORDER_BY`, one warm-up call then `--calls` timed ones.
(The ingest part reuses bench/_mlflow_load.py's `batch` mode.)"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from _query_data import FILTER, ORDER_BY, PAGE, SEARCH_EXPERIMENT  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


def search(uri: str, calls: int) -> dict:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(SEARCH_EXPERIMENT)
    if experiment is None:
        raise SystemExit(f"no experiment {SEARCH_EXPERIMENT!r} at {uri}")

    def page() -> list:
        return list(client.search_runs([experiment.experiment_id], filter_string=FILTER, order_by=[ORDER_BY],
                                       max_results=PAGE))

    found = page()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        found = page()
        samples.append(time.perf_counter() - start)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_s": statistics.median(samples), "p95_s": p95,
            "samples_s": samples, "run_names": [run.info.run_name for run in found],
            "m1": [run.data.metrics.get("m1") for run in found]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(search(args.uri, args.calls)))


if __name__ == "__main__":
    main()
