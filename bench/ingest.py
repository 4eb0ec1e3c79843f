"""Metric ingest, side by side with MLflow, on this machine, in one run (`make bench-ingest`).

1. durable ingest throughput: MLflow server (2 workers, `log_batch` of 1,000 points) vs trackd
   (one ingest replica, `run.log_metric` per point), the same PostgreSQL, the same wall time and
   number of client threads; points are counted in the databases afterwards.
2. bytes per point on disk, indexes and TOAST included; and the stored columns alone (steps,
   timestamps, values and overview as trackd_platform.chunks packs them) of a realistic series
   (float32-origin loss values, millisecond timestamps, regular steps) and of random float64.
3. SDK cost of one `run.log_metric` in the training thread (median, p99) vs MLflow's fluent
   `mlflow.log_metric` calls per second.

The anchor (MLflow 3.x + psycopg) lives in its own virtualenv, bench/.venv-anchors, created on
first use; its load generator is bench/_mlflow_load.py. Figures go to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import (
    BENCH,
    anchor_json,
    console,
    ensure_anchors,
    sql,
    start_mlflow,
    start_stack,
    stop_mlflow,
    with_database,
)
from rich.table import Table
from trackd_platform.stack import EmbeddedStack, StackPorts

RESULTS = BENCH / "results" / "ingest.json"


# -- MLflow ------------------------------------------------------------------------------------

def start_mlflow_server(pg_dsn: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    backend = with_database(pg_dsn, "mlflow_bench").replace("postgresql://", "postgresql+psycopg://", 1)
    (tmp / "mlartifacts").mkdir()
    # uvicorn kills a worker that misses a 5 s health check: on a loaded machine the workers are
    # still importing MLflow then, and the server never comes up
    return start_mlflow(["--backend-store-uri", backend, "--workers", "2",
                         "--artifacts-destination", str(tmp / "mlartifacts"),
                         "--uvicorn-opts", "--timeout-worker-healthcheck 120"], tmp, timeout_s=600)


def mlflow_load(uri: str, mode: str, seconds: float, threads: int) -> dict:
    return anchor_json("_mlflow_load.py", "--uri", uri, "--mode", mode, "--seconds", str(seconds),
                       "--threads", str(threads))


# -- trackd ------------------------------------------------------------------------------------

def trackd_load(seconds: float, threads: int) -> tuple[list[str], int, float]:
    """Each thread: log_metric as fast as it can for `seconds`, then end() (which flushes).
    Returns the run ids, the points logged and the wall time from the first log call to the last end()."""
    import trackd

    runs = [trackd.start_run("bench-ingest", name=f"ingest-{i}", capture_env=False, system_metrics=False)
            for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    ends: list[float] = []
    logged: list[int] = []
    errors: list[BaseException] = []
    start = deadline = 0.0

    def work(run: trackd.Run) -> None:
        step = 0
        barrier.wait()
        try:
            while time.perf_counter() < deadline:
                for _ in range(1_000):
                    run.log_metric("loss", 1.0 / (step + 1), step=step)
                    step += 1
            logged.append(step)
            run.end()
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)
        ends.append(time.perf_counter())

    workers = [threading.Thread(target=work, args=(run,)) for run in runs]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    deadline = start + seconds
    barrier.wait()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"trackd load failed: {errors[0]!r}")
    return [run.id for run in runs], sum(logged), max(ends) - start


def sdk_cost(calls: int) -> dict:
    """perf_counter_ns around each log_metric, with the batcher and streamer threads running."""
    import trackd

    run = trackd.start_run("bench-sdk", capture_env=False, system_metrics=False)
    for step in range(1_000):  # warm-up: the first call starts the writer's threads and spool
        run.log_metric("warmup", float(step), step=step)
    samples = [0] * calls
    clock = time.perf_counter_ns
    for step in range(calls):
        t0 = clock()
        run.log_metric("loss", 1.0 / (step + 1), step=step)
        samples[step] = clock() - t0
    run.end()
    samples.sort()
    return {"calls": calls, "median_us": statistics.median(samples) / 1000,
            "p99_us": samples[int(calls * 0.99)] / 1000, "max_us": samples[-1] / 1000}


def column_bytes(points_per_chunk: int) -> dict[str, float]:
    """Bytes a point of the packed columns (no row or index overhead), chunk by chunk."""
    import numpy as np
    from trackd_platform.chunks import pack_floats, pack_ints, pack_overview

    n = min(1_000_000, 2_000 * points_per_chunk)
    rng = np.random.default_rng(0)
    steps = np.arange(n, dtype=np.int64)
    stamps = 1_796_000_000_000 + np.cumsum(rng.integers(80, 120, n))
    loss = (2.5 * np.exp(-steps / (n / 5)) + 0.3 + rng.normal(0, 0.05, n)).astype(np.float32).astype(np.float64)
    noise = rng.integers(0, 2**64 - 1, n, dtype=np.uint64).view(np.float64)
    sizes: dict[str, float] = {}
    for name, values in (("realistic", loss), ("random_float64", noise)):
        total = 0
        for i in range(0, n, points_per_chunk):
            s, v, t = steps[i:i + points_per_chunk], values[i:i + points_per_chunk], stamps[i:i + points_per_chunk]
            total += len(pack_ints(s)) + len(pack_floats(v)) + len(pack_ints(t)) + len(pack_overview(s, v, t) or b"")
        sizes[name] = total / n
    return sizes


# -- the benchmark -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of each ingest load")
    parser.add_argument("--threads", type=int, default=4, help="client threads of each ingest load")
    parser.add_argument("--sdk-calls", type=int, default=200_000, help="log_metric calls timed")
    parser.add_argument("--single-seconds", type=float, default=10.0, help="MLflow log_metric loop")
    args = parser.parse_args()

    ensure_anchors()
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    mlflow_proc: subprocess.Popen[bytes] | None = None
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool"), "TRACKD_FLUSH_TIMEOUT_S": "600"})
        sql(stack.pg_dsn, "CREATE DATABASE mlflow_bench")
        mlflow_dsn = with_database(stack.pg_dsn, "mlflow_bench")
        with console.status("starting the MLflow server (2 workers; migrations on first start)…"):
            mlflow_proc, uri = start_mlflow_server(stack.pg_dsn, tmp)

        with console.status(f"MLflow: log_batch×1000, {args.threads} threads, {args.seconds:.0f} s…"):
            ml = mlflow_load(uri, "batch", args.seconds, args.threads)
        ml_points = int(sql(mlflow_dsn, "SELECT count(*) FROM metrics"))  # type: ignore[arg-type]
        ml_bytes = int(sql(mlflow_dsn, "SELECT pg_total_relation_size('metrics')"))  # type: ignore[arg-type]

        with console.status(f"trackd: log_metric, {args.threads} threads, {args.seconds:.0f} s, then end()…"):
            run_ids, td_logged, td_elapsed = trackd_load(args.seconds, args.threads)
        td_points = int(sql(stack.pg_dsn, "SELECT coalesce(sum(points), 0) FROM metric_chunks "
                            "WHERE run_id = ANY($1::uuid[])", [uuid.UUID(r) for r in run_ids]))  # type: ignore[arg-type]
        td_all = int(sql(stack.pg_dsn, "SELECT coalesce(sum(points), 0) FROM metric_chunks"))  # type: ignore[arg-type]
        td_bytes = int(sql(stack.pg_dsn, "SELECT pg_total_relation_size('metric_chunks') "  # type: ignore[arg-type]
                           "+ pg_total_relation_size('metric_series')"))
        td_chunks = int(sql(stack.pg_dsn, "SELECT count(*) FROM metric_chunks"))  # type: ignore[arg-type]

        with console.status(f"trackd: timing {args.sdk_calls:,} log_metric calls…"):
            sdk = sdk_cost(args.sdk_calls)
        with console.status(f"MLflow: fluent log_metric for {args.single_seconds:.0f} s…"):
            single = mlflow_load(uri, "single", args.single_seconds, 1)
        failed = False
    finally:
        if mlflow_proc is not None:
            stop_mlflow(mlflow_proc)
        stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    chunk_points = max(td_all // max(td_chunks, 1), 1)
    columns = column_bytes(chunk_points)
    ml_rate = ml_points / ml["elapsed_s"]
    td_rate = td_points / td_elapsed
    results = {
        "seconds": args.seconds, "threads": args.threads,
        "mlflow": {"points": ml_points, "points_sent": ml["points_sent"], "elapsed_s": ml["elapsed_s"],
                   "points_per_s": ml_rate, "bytes": ml_bytes, "bytes_per_point": ml_bytes / max(ml_points, 1),
                   "log_metric_calls_per_s": single["calls_per_s"], "errors": ml["errors"]},
        "trackd": {"points": td_points, "points_logged": td_logged, "elapsed_s": td_elapsed, "points_per_s": td_rate,
                   "bytes": td_bytes, "bytes_per_point": td_bytes / max(td_all, 1),
                   "column_bytes_per_point": columns, "points_per_chunk": chunk_points,
                   "log_metric_median_us": sdk["median_us"], "log_metric_p99_us": sdk["p99_us"],
                   "log_metric_max_us": sdk["max_us"], "log_metric_calls_timed": sdk["calls"]},
        "ratio": td_rate / ml_rate if ml_rate else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"Metric ingest — {args.threads} client threads, {args.seconds:.0f} s each, "
                        f"same PostgreSQL ({os.cpu_count()} cores)")
    table.add_column("figure")
    table.add_column("MLflow (server, 2 workers)", justify="right")
    table.add_column("trackd (1 ingest replica)", justify="right")
    table.add_column("target", justify="right")
    table.add_row("durable ingest, points/s", f"{ml_rate:,.0f}\n[dim]log_batch×1000, {ml_points:,} pts[/]",
                  f"{td_rate:,.0f}\n[dim]log_metric, {td_points:,} of {td_logged:,} pts, incl. flush[/]", "")
    table.add_row("ratio trackd / MLflow", "1×", f"{results['ratio']:,.1f}×", "≥ 100×")
    table.add_row("bytes per point on disk (with indexes)", f"{ml_bytes / max(ml_points, 1):,.1f}",
                  f"{td_bytes / max(td_all, 1):,.1f}", "≤ 32")
    table.add_row(f"stored columns, bytes per point\n[dim]{chunk_points:,}-point chunks, no row overhead[/]", "",
                  f"realistic {columns['realistic']:.2f}\nrandom float64 {columns['random_float64']:.2f}",
                  "≤ 4 realistic")
    table.add_row("single log_metric call", f"{single['calls_per_s']:,.1f} calls/s\n[dim]mlflow.log_metric[/]",
                  f"median {sdk['median_us']:.2f} µs\np99 {sdk['p99_us']:.2f} µs",
                  "median ≤ 5 µs")
    console.print(table)
    if ml["errors"]:
        console.print(f"[yellow]MLflow client errors: {ml['errors']}[/]")
    console.print(f"[dim]written to {RESULTS.relative_to(BENCH.parent)}[/]")


if __name__ == "__main__":
    main()
