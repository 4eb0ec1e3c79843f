"""MLflow load generator for bench/ingest.py. Runs inside bench/.venv-anchors (never the project's
venv) and prints one JSON object on stdout.

    batch:  N threads, one run each, `MlflowClient.log_batch(run_id, metrics=[1,000 Metric])` in a loop
    single: one thread, the fluent API, `mlflow.log_metric(...)` in a loop
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

BATCH = 1_000


def batch_load(uri: str, seconds: float, threads: int, start_at: float = 0.0) -> dict:
    """`start_at` (epoch seconds): the load begins then, so that several such processes load at once."""
    client = MlflowClient(tracking_uri=uri)
    # the process id too: `--processes` starts several loads in the same millisecond
    experiment_id = client.create_experiment(f"bench-batch-{int(time.time() * 1000)}-{os.getpid()}")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(threads)]
    sent = [0] * threads
    errors: list[str] = []
    barrier = threading.Barrier(threads + 1)
    deadline = 0.0

    def work(index: int) -> None:
        run_id, step = run_ids[index], 0
        barrier.wait()
        while time.perf_counter() < deadline:
            now = int(time.time() * 1000)
            metrics = [Metric("loss", 1.0 / (step + j + 1), now, step + j) for j in range(BATCH)]
            try:
                client.log_batch(run_id, metrics=metrics)
            except Exception as exc:  # report, don't hide: the count comes from the database anyway
                errors.append(repr(exc)[:300])
                return
            step += BATCH
            sent[index] += BATCH

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    start = time.perf_counter()
    deadline = start + seconds
    barrier.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    for run_id in run_ids:
        client.set_terminated(run_id)
    return {"mode": "batch", "run_ids": run_ids, "points_sent": sum(sent), "elapsed_s": elapsed,
            "errors": errors[:5]}


def single_load(uri: str, seconds: float) -> dict:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"bench-single-{int(time.time() * 1000)}")
    calls = 0
    with mlflow.start_run() as run:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            mlflow.log_metric("loss", 1.0 / (calls + 1), step=calls)
            calls += 1
        elapsed = time.perf_counter() - start
    return {"mode": "single", "run_id": run.info.run_id, "calls": calls, "elapsed_s": elapsed,
            "calls_per_s": calls / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--mode", choices=("batch", "single"), default="batch")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--start-at", type=float, default=0.0, help="batch: epoch seconds to begin at")
    args = parser.parse_args()
    if args.mode == "batch":
        result = batch_load(args.uri, args.seconds, args.threads, args.start_at)
    else:
        result = single_load(args.uri, args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
