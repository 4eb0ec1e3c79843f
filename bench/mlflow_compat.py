"""trackd's MLflow API beside an MLflow server, driven by the same MLflow client code, on the same
PostgreSQL, in one run (`make bench-mlflow-compat`).

1. durable ingest: `MlflowClient.log_batch(run_id, metrics=[1,000 Metric])` in a loop from 4
   threads (one run each) for 20 s (bench/_mlflow_load.py's `batch` mode), once against the MLflow
   server (2 workers) and once against trackd's web service; the points are counted in each
   database afterwards (MLflow's `metrics` rows; the points of trackd's `metric_chunks`), not as
   sent, over the load's wall time. Target: trackd ≥ 5× the MLflow server. Then the same load
   from 4 client processes of one thread each (`--processes`; 0 skips it): in one process the
   MLflow client's own CPU (its JSON building, under one GIL) caps what it can send. The ceiling
   row runs the 4-thread load against a server that answers at once and stores nothing
   (bench/_instant_mlflow.py): the most any server can be sent by this client code on this host.
2. `search_runs` over 100,000 FINISHED runs × 20 params × 10 metrics in one experiment (bench/query.py's
   data set, the same values in both systems, bulk-loaded with SQL COPY by query.py's loaders): the
   first page of 100 of `metrics.m0 > 0.5 AND params.p0 = 'v3'` ordered by `metrics.m1 DESC`, one
   warm-up then 10 timed calls through MlflowClient (bench/_mlflow_compat.py); both must return the
   same runs in the same order. Target: trackd faster (p50).

Both MLflow-client sides run in bench/.venv-anchors. Figures go to bench/results/mlflow_compat.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from _query_data import FILTER, ORDER_BY, PAGE
from query import SearchData, load_mlflow, load_trackd
from rich.table import Table
from trackd_platform.processes import Managed, free_port
from trackd_platform.stack import EmbeddedStack, StackPorts

RESULTS = BENCH / "results" / "mlflow_compat.json"


def ingest(uri: str, seconds: float, threads: int) -> dict[str, Any]:
    return anchor_json("_mlflow_load.py", "--uri", uri, "--mode", "batch", "--seconds", str(seconds),
                       "--threads", str(threads))


def ingest_processes(uri: str, seconds: float, processes: int) -> dict[str, Any]:
    """The same load from `processes` client processes of one thread each, started together: the
    MLflow client spends ~1 ms of CPU per 1,000-metric batch building its JSON, so 4 threads of one
    process (one GIL) cap what any server can be sent at about one core's worth."""
    start_at = time.time() + 15  # the processes import MLflow and create their runs meanwhile
    with ThreadPoolExecutor(processes) as pool:
        loads = list(pool.map(lambda _: anchor_json(
            "_mlflow_load.py", "--uri", uri, "--mode", "batch", "--seconds", str(seconds), "--threads", "1",
            "--start-at", str(start_at)), range(processes)))
    return {"run_ids": [r for load in loads for r in load["run_ids"]],
            "points_sent": sum(load["points_sent"] for load in loads),
            "elapsed_s": max(load["elapsed_s"] for load in loads),
            "errors": [e for load in loads for e in load["errors"]]}


def ceiling(tmp: Path, seconds: float, threads: int) -> dict[str, Any]:
    """The same load against bench/_instant_mlflow.py: what the client code sends when the server
    costs it nothing."""
    port = free_port()
    server = Managed(name="instant-mlflow", argv=[sys.executable, str(BENCH / "_instant_mlflow.py"), str(port)],
                     log_path=tmp / "instant-mlflow.log", ready=lambda: _answers(f"http://127.0.0.1:{port}/health"))
    server.start()
    try:
        server.wait_ready(30)
        load = ingest(f"http://127.0.0.1:{port}", seconds, threads)
    finally:
        server.stop()
    return {**load, "points_per_s": load["points_sent"] / load["elapsed_s"]}


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except OSError:
        return False


def mlflow_points(dsn: str, run_ids: list[str]) -> int:
    return int(sql(dsn, "SELECT count(*) FROM metrics WHERE run_uuid = ANY($1::text[])",  # type: ignore[arg-type]
                   run_ids))


def trackd_points(dsn: str, run_ids: list[str]) -> int:
    return int(sql(dsn, "SELECT coalesce(sum(points), 0) FROM metric_chunks "  # type: ignore[arg-type]
                        "WHERE run_id = ANY($1::uuid[])", [uuid.UUID(r) for r in run_ids]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of each ingest load")
    parser.add_argument("--threads", type=int, default=4, help="client threads of each ingest load")
    parser.add_argument("--runs", type=int, default=100_000, help="runs of the search experiment")
    parser.add_argument("--search-calls", type=int, default=10, help="timed searches, each system")
    parser.add_argument("--processes", type=int, default=4,
                        help="also the same load from this many one-thread client processes (0: not)")
    parser.add_argument("--show", action="store_true", help=f"print the table of {RESULTS.name} and exit")
    args = parser.parse_args()
    if args.show:
        print_table(json.loads(RESULTS.read_text()))
        return

    ensure_anchors()
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    mlflow_proc: subprocess.Popen[bytes] | None = None
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        sql(stack.pg_dsn, "CREATE DATABASE mlflow_bench")
        mlflow_dsn = with_database(stack.pg_dsn, "mlflow_bench")
        with console.status("starting the MLflow server (2 workers; migrations on first start)…"):
            (tmp / "mlartifacts").mkdir()
            mlflow_proc, uri = start_mlflow(
                ["--backend-store-uri", mlflow_dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                 "--workers", "2", "--artifacts-destination", str(tmp / "mlartifacts"),
                 # a busy machine starts a worker in more than uvicorn's 5 s, and it is killed and restarted
                 "--uvicorn-opts", "--timeout-worker-healthcheck 120"], tmp, timeout_s=600)

        load = f"log_batch×1000, {args.threads} threads, {args.seconds:.0f} s"
        with console.status(f"MLflow server: {load}…"):
            ml = ingest(uri, args.seconds, args.threads)
        ml_points = mlflow_points(mlflow_dsn, ml["run_ids"])
        with console.status(f"trackd's MLflow API: {load}…"):
            td = ingest(stack.web_url, args.seconds, args.threads)
        td_points = trackd_points(stack.pg_dsn, td["run_ids"])
        with console.status(f"the client's ceiling: {load} against a server that answers at once…"):
            top = ceiling(tmp, args.seconds, args.threads)
        by_process: dict[str, Any] = {}
        if args.processes:
            for name, target, count in (("mlflow", uri, mlflow_dsn), ("trackd", stack.web_url, stack.pg_dsn)):
                with console.status(f"{name}: the same load from {args.processes} client processes…"):
                    load_p = ingest_processes(target, args.seconds, args.processes)
                points = (mlflow_points if name == "mlflow" else trackd_points)(count, load_p["run_ids"])
                by_process[name] = {**load_p, "points": points, "points_per_s": points / load_p["elapsed_s"]}

        data = SearchData.generate(args.runs)
        with console.status(f"loading {args.runs:,} runs into both systems (COPY)…"):
            t0 = time.perf_counter()
            asyncio.run(load_trackd(stack.pg_dsn, data))
            td_load_s = time.perf_counter() - t0
            experiment_id = anchor_json("_mlflow_query.py", "setup", "--uri", uri, "--points", "0")[
                "search_experiment_id"]
            t0 = time.perf_counter()
            asyncio.run(load_mlflow(mlflow_dsn, int(experiment_id), data))
            ml_load_s = time.perf_counter() - t0
        calls = str(args.search_calls)
        with console.status(f"search_runs, first page of {PAGE}, {args.search_calls} calls each…"):
            ml_search = anchor_json("_mlflow_compat.py", "--uri", uri, "--calls", calls)
            td_search = anchor_json("_mlflow_compat.py", "--uri", stack.web_url, "--calls", calls)
        failed = False
    finally:
        if mlflow_proc is not None:
            stop_mlflow(mlflow_proc)
        stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ml_rate, td_rate = ml_points / ml["elapsed_s"], td_points / td["elapsed_s"]
    results = {
        "seconds": args.seconds, "threads": args.threads, "runs": args.runs, "filter": FILTER, "order_by": ORDER_BY,
        "cores": os.cpu_count(),
        "mlflow": {"points": ml_points, "points_sent": ml["points_sent"], "elapsed_s": ml["elapsed_s"],
                   "points_per_s": ml_rate, "errors": ml["errors"], "load_s": ml_load_s, "search": ml_search},
        "trackd": {"points": td_points, "points_sent": td["points_sent"], "elapsed_s": td["elapsed_s"],
                   "points_per_s": td_rate, "errors": td["errors"], "load_s": td_load_s, "search": td_search},
        "ingest_ratio": td_rate / ml_rate if ml_rate else None,
        "search_ratio": ml_search["median_s"] / td_search["median_s"] if td_search["median_s"] else None,
        "same_page": ml_search["run_names"] == td_search["run_names"],
        "processes": args.processes, "by_process": by_process,
        "ceiling": {"points_sent": top["points_sent"], "elapsed_s": top["elapsed_s"],
                    "points_per_s": top["points_per_s"], "errors": top["errors"]},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r: dict[str, Any]) -> None:
    ml, td = r["mlflow"], r["trackd"]
    table = Table(title=f"The same MLflow client code against an MLflow server and trackd — same PostgreSQL "
                        f"({r['cores']} cores)")
    table.add_column("figure")
    table.add_column("MLflow server (2 workers)", justify="right")
    table.add_column("trackd (web service's MLflow API)", justify="right")
    table.add_column("target", justify="right")
    table.add_row(f"durable ingest, points/s\n[dim]log_batch×1000, {r['threads']} threads, {r['seconds']:.0f} s[/]",
                  f"{ml['points_per_s']:,.0f}\n[dim]{ml['points']:,} of {ml['points_sent']:,} sent[/]",
                  f"{td['points_per_s']:,.0f}\n[dim]{td['points']:,} of {td['points_sent']:,} sent[/]", "")
    ok = "✓" if (r["ingest_ratio"] or 0) >= 5 else "✗"
    table.add_row("ratio trackd / MLflow", "1×", f"{r['ingest_ratio']:,.1f}× {ok}", "≥ 5×")
    if top := r.get("ceiling"):
        table.add_row("the client's own ceiling, points/s\n[dim]the same load against a server that answers at "
                      "once and stores nothing (_instant_mlflow.py)[/]",
                      f"at most {top['points_per_s'] / ml['points_per_s']:,.1f}× this\n[dim]for any server[/]",
                      f"{top['points_per_s']:,.0f} sent\n[dim]trackd: {td['points_per_s'] / top['points_per_s']:.0%} "
                      f"of it[/]", "")
    if p := r.get("by_process"):
        pm, pt = p["mlflow"], p["trackd"]
        table.add_row(f"the same from {r['processes']} client processes\n[dim]one thread each: the client is not "
                      f"held to one core by its GIL[/]",
                      f"{pm['points_per_s']:,.0f}\n[dim]{pm['points']:,} of {pm['points_sent']:,} sent[/]",
                      f"{pt['points_per_s']:,.0f}\n[dim]{pt['points']:,} of {pt['points_sent']:,} sent[/]", "")
        table.add_row("ratio trackd / MLflow", "1×", f"{pt['points_per_s'] / pm['points_per_s']:,.1f}×", "")
    ms, ts = ml["search"], td["search"]
    ok = "✓" if ts["median_s"] < ms["median_s"] else "✗"
    table.add_row(f"search_runs over {r['runs']:,} runs, first page of {PAGE}\n"
                  f"[dim]{r['filter']} / {r['order_by']}[/]",
                  f"p50 {ms['median_s'] * 1000:,.1f} ms\n[dim]p95 {ms['p95_s'] * 1000:,.1f} ms[/]",
                  f"p50 {ts['median_s'] * 1000:,.1f} ms {ok}\n[dim]p95 {ts['p95_s'] * 1000:,.1f} ms; "
                  f"{r['search_ratio']:,.1f}× faster[/]", "faster")
    console.print(table)
    console.print(f"[dim]same first page in both: {r['same_page']}; loaded with COPY in {ml['load_s']:.0f} s (MLflow) "
                  f"and {td['load_s']:.0f} s (trackd)[/]")
    for name, side in (("MLflow", ml), ("trackd", td)):
        if side["errors"]:
            console.print(f"[yellow]{name} client errors: {side['errors']}[/]")


if __name__ == "__main__":
    main()
