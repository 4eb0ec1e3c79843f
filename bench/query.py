"""Metric history and run search, side by side with MLflow, on this machine, in one run (`make bench-query`).

1. one run's series: trackd holds 1,000,000 points, written through IngestService.LogMetrics in
   batches of 50,000; GetMetricHistory(max_points=1000) (median, p95) and the full ExportMetric
   stream. MLflow holds 100,000 points (log_batch of 1,000 through its server): get_metric_history
   of every point and the UI's sampled endpoint (max_results=1000). A 1M-point series is out of
   MLflow's reach (see the notes printed); trackd also returns its own 100k-point series whole.
2. 100,000 finished runs, 20 params and 10 metrics each, in one experiment, the same values in
   both systems, bulk-loaded with SQL (COPY, then VACUUM ANALYZE as autovacuum would): the first
   page of 100 of `metrics.m0 > 0.5 AND params.p0 = 'v3'` ordered by `metrics.m1 DESC`.

Every timing follows one untimed warm-up call; MLflow is measured by bench/_mlflow_query.py in
bench/.venv-anchors against an MLflow server on the same PostgreSQL. The search's SQL is printed
with its `EXPLAIN (ANALYZE, BUFFERS)` (the page query trackd ran, compiled by
services/query/search_sql.py). Figures go to bench/results/query.json; `--no-mlflow` measures
trackd alone (quicker, while working on it) and writes bench/results/query-trackd.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
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
from _query_data import (
    FILTER,
    METRICS,
    ORDER_BY,
    PAGE,
    PARAMS,
    SEARCH_EXPERIMENT,
    SERIES_KEY,
    T0_MS,
    search_values,
    series,
)
from rich.table import Table
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.stack import EmbeddedStack, StackPorts

RESULTS = BENCH / "results" / "query.json"
TRACKD_ONLY_RESULTS = BENCH / "results" / "query-trackd.json"
INGEST_BATCH = 50_000
SMALL_KEY = f"{SERIES_KEY}_100k"  # trackd's copy of the series MLflow holds
GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    samples_s: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def p95_s(self) -> float:
        ordered = sorted(self.samples_s)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "p95_s": self.p95_s, "samples_s": self.samples_s}

    def show(self, *, median_only: bool = False) -> str:
        median = _duration(self.median_s)
        return median if median_only else f"{median} / p95 {_duration(self.p95_s)}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def timed(call: Callable[[], T], calls: int) -> tuple[Timing, T]:
    """One warm-up call, then `calls` timed ones; returns the timing and the last result."""
    result = call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    return Timing(samples), result


# -- the search data set, loaded with SQL into both systems ------------------------------------

@dataclass(frozen=True)
class SearchData:
    run_ids: list[uuid.UUID]
    start_ms: list[int]
    params: list[list[int]]  # params[i][k]: p{k} of run i is "v{n}"
    metrics: list[list[float]]  # metrics[i][k]: m{k} of run i, logged once at step 0

    @classmethod
    def generate(cls, runs: int) -> SearchData:
        params, metrics = search_values(runs)
        return cls([uuid.uuid4() for _ in range(runs)], [T0_MS + i * 60_000 for i in range(runs)],
                   params.tolist(), metrics.tolist())

    def end_ms(self, i: int) -> int:
        return self.start_ms[i] + 3_600_000

    def param_rows(self) -> list[tuple[int, str, str]]:
        return [(i, f"p{k}", f"v{n}") for i, row in enumerate(self.params) for k, n in enumerate(row)]

    def metric_rows(self) -> list[tuple[int, str, float]]:
        return [(i, f"m{k}", v) for i, row in enumerate(self.metrics) for k, v in enumerate(row)]


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def load_trackd(dsn: str, data: SearchData) -> None:
    """Runs, params, metric_series (the summaries search reads, with the run's params) and one chunk
    per series."""
    ids = data.run_ids
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO projects (id, name) VALUES ($1, 'default') ON CONFLICT (name) DO NOTHING",
                               uuid.uuid4())
            experiment = uuid.uuid4()
            await conn.execute("INSERT INTO experiments (id, project_id, name) "
                               "SELECT $1, id, $2 FROM projects WHERE name = 'default'", experiment, SEARCH_EXPERIMENT)
            await conn.copy_records_to_table(
                "runs", columns=("id", "experiment_id", "name", "status", "start_time", "end_time", "last_heartbeat",
                                 "user_name"),
                records=[(run, experiment, f"run-{i}", 2, _time(data.start_ms[i]), _time(data.end_ms(i)),
                          _time(data.end_ms(i)), "bench") for i, run in enumerate(ids)])
            await conn.copy_records_to_table("run_params", columns=("run_id", "key", "value"),
                                             records=[(ids[i], k, v) for i, k, v in data.param_rows()])
            # each series carries its run's params, as the ingest service writes them (migration 0022)
            run_params = [json.dumps({f"p{k}": f"v{n}" for k, n in enumerate(row)}) for row in data.params]
            await conn.copy_records_to_table(
                "metric_series", columns=("run_id", "key", "context", "last_step", "last_value", "last_ts",
                                          "min_value", "max_value", "points", "run_params"),
                records=[(ids[i], k, 0, 0, v, data.end_ms(i), v, v, 1, run_params[i])
                         for i, k, v in data.metric_rows()])
            series_ids = {(r["run_id"], r["key"]): r["id"] for r in await conn.fetch(
                "SELECT id, run_id, key FROM metric_series WHERE run_id = ANY($1::uuid[])", ids)}
            zero = struct.pack("<q", 0)
            await conn.copy_records_to_table(
                "metric_chunks", columns=("run_id", "series_id", "first_step", "last_step", "points", "steps", "vals",
                                          "timestamps"),
                records=[(ids[i], series_ids[ids[i], k], 0, 0, 1, zero, struct.pack("<d", v),
                          struct.pack("<q", data.end_ms(i))) for i, k, v in data.metric_rows()])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def load_mlflow(dsn: str, experiment_id: int, data: SearchData) -> None:
    """The rows MLflow's SqlAlchemyStore writes for the same runs (create_run's tags included)."""
    hexes = [run.hex for run in data.run_ids]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "runs", columns=("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id",
                                 "status", "start_time", "end_time", "source_version", "lifecycle_stage",
                                 "artifact_uri", "experiment_id"),
                records=[(h, f"run-{i}", "LOCAL", "bench", "", "bench", "FINISHED", data.start_ms[i], data.end_ms(i),
                          "", "active", f"mlflow-artifacts:/{experiment_id}/{h}/artifacts", experiment_id)
                         for i, h in enumerate(hexes)])
            await conn.copy_records_to_table("params", columns=("key", "value", "run_uuid"),
                                             records=[(k, v, hexes[i]) for i, k, v in data.param_rows()])
            tags = {"mlflow.user": "bench", "mlflow.source.name": "bench", "mlflow.source.type": "LOCAL"}
            await conn.copy_records_to_table(
                "tags", columns=("key", "value", "run_uuid"),
                records=[row for i, h in enumerate(hexes)
                         for row in [("mlflow.runName", f"run-{i}", h), *((k, v, h) for k, v in tags.items())]])
            metric_rows = [(k, v, data.end_ms(i), 0, False, hexes[i]) for i, k, v in data.metric_rows()]
            for table in ("metrics", "latest_metrics"):
                await conn.copy_records_to_table(
                    table, columns=("key", "value", "timestamp", "step", "is_nan", "run_uuid"), records=metric_rows)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


# -- trackd ------------------------------------------------------------------------------------

def log_series(ingest_target: str, points: int, small_points: int) -> tuple[str, float]:
    """A run holding SERIES_KEY (`points` points, timed) and SMALL_KEY, written through
    IngestService.LogMetrics in batches of INGEST_BATCH points; (run id, seconds for SERIES_KEY)."""
    import trackd

    run = trackd.start_run("bench-series", capture_env=False, system_metrics=False)
    with grpc.insecure_channel(ingest_target, options=GRPC_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        def write(key: str, count: int) -> float:
            steps, values, stamps = series(count)
            start = time.perf_counter()
            for first in range(0, count, INGEST_BATCH):
                part = slice(first, first + INGEST_BATCH)
                stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ingest_pb2.MetricSeries(
                    key=key, steps=steps[part].tolist(), values=values[part].tolist(),
                    timestamps_ms=stamps[part].tolist())]), timeout=120)
            return time.perf_counter() - start

        elapsed = write(SERIES_KEY, points)
        write(SMALL_KEY, small_points)
    run.end()
    return run.id, elapsed


def measure_trackd(target: str, run_id: str, args: argparse.Namespace) -> dict[str, Any]:
    with grpc.insecure_channel(target, options=GRPC_OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = query_pb2_grpc.QueryServiceStub(channel)

        def history(key: str, max_points: int) -> query_pb2.GetMetricHistoryResponse:
            return stub.GetMetricHistory(query_pb2.GetMetricHistoryRequest(
                run_id=run_id, key=key, max_points=max_points), timeout=120)

        def export() -> int:
            parts = stub.ExportMetric(query_pb2.ExportMetricRequest(run_id=run_id, key=SERIES_KEY), timeout=600)
            return sum(len(part.series.steps) for part in parts)

        def search() -> query_pb2.SearchRunsResponse:
            return stub.SearchRuns(query_pb2.SearchRunsRequest(
                selection=query_pb2.RunSelection(experiment_names=[SEARCH_EXPERIMENT], filter=FILTER),
                order_by=[ORDER_BY], page_size=PAGE), timeout=120)

        sampled, reply = timed(lambda: history(SERIES_KEY, 1000), args.history_calls)
        exported, export_points = timed(export, args.export_calls)
        small, small_reply = timed(lambda: history(SMALL_KEY, 0), args.export_calls)
        searched, page = timed(search, args.search_calls)
    return {
        "sampled": {**sampled.to_json(), "points": len(reply.series.steps), "total_points": reply.total_points},
        "export": {**exported.to_json(), "points": export_points},
        "small_history": {**small.to_json(), "points": len(small_reply.series.steps)},
        "search": {**searched.to_json(), "run_ids": [r.run.id for r in page.results]},
    }


async def explain_search(dsn: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the first page query SearchRuns runs for the bench's search
    (the query service compiles the same SQL), after one untimed run of it."""
    from trackd_platform.run_records import View
    from trackd_services.query.grammar import parse_filter, parse_order_by
    from trackd_services.query.search_sql import compile_search

    conn = await asyncpg.connect(dsn)
    try:
        experiment = await conn.fetchval("SELECT id FROM experiments WHERE name = $1", SEARCH_EXPERIMENT)
        search = compile_search(parse_filter(FILTER), parse_order_by([ORDER_BY]), experiment_ids=[experiment],
                                view=View.ACTIVE_ONLY, limit=PAGE, page_token="")
        sql_text, args = search.parts[0]
        await conn.fetch(sql_text, *args)
        plan = [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql_text}", *args)]
        return [sql_text, *plan]
    finally:
        await conn.close()


async def search_stages(dsn: str, calls: int) -> dict[str, float]:
    """Where a SearchRuns call's time goes, stage by stage, p50 of `calls` in this process (after
    one untimed call): the query service's own code on a pool like its own — experiment lookup,
    the page query (search_sql.py) with its runs' params and latest metrics (one statement), the
    reply's conversion and serialization — and the client's parse of the reply. The RPC's wall
    time less their sum is gRPC, the interceptors and the event loop."""
    from trackd_platform.config import PostgresSettings
    from trackd_platform.db import create_pool
    from trackd_platform.run_records import View
    from trackd_services.query.grammar import parse_filter, parse_order_by
    from trackd_services.query.search_page import search_reply
    from trackd_services.query.store import QueryStore, Selection

    pool = await create_pool(PostgresSettings(dsn=dsn, pool_max=2))
    store = QueryStore(pool)
    stages: dict[str, list[float]] = {}
    try:
        for call in range(calls + 1):
            clock = [time.perf_counter()]
            ids = await store.experiment_ids([], [SEARCH_EXPERIMENT], "")
            clock.append(time.perf_counter())
            rows, _token = await store.search(Selection(ids, parse_filter(FILTER), View.ACTIVE_ONLY),
                                              parse_order_by([ORDER_BY]), limit=PAGE, page_token="")
            clock.append(time.perf_counter())
            reply = search_reply(rows, "", now_us=time.time_ns() // 1000)
            clock.append(time.perf_counter())
            data = reply.SerializeToString()
            clock.append(time.perf_counter())
            query_pb2.SearchRunsResponse.FromString(data)
            clock.append(time.perf_counter())
            names = ("experiment lookup", "page query with its runs' rows", "reply conversion",
                     "reply serialization", "client parse")
            for name, start, end in zip(names, clock[:-1], clock[1:], strict=True):
                if call:
                    stages.setdefault(name, []).append(end - start)
    finally:
        await pool.close()
    return {name: statistics.median(samples) for name, samples in stages.items()}


def watch_latency(ingest_target: str, query_target: str, calls: int) -> Timing:
    """Seconds from a LogMetrics acknowledgement to the point arriving on a WatchRun stream."""
    import queue
    import threading

    import trackd

    run = trackd.start_run("bench-watch", capture_env=False, system_metrics=False)
    arrived: queue.Queue[tuple[int, float]] = queue.Queue()
    with grpc.insecure_channel(query_target) as qc, grpc.insecure_channel(ingest_target) as ic:
        stream = query_pb2_grpc.QueryServiceStub(qc).WatchRun(query_pb2.WatchRunRequest(run_id=run.id))

        def listen() -> None:
            try:
                for response in stream:
                    for s in response.series:
                        for step in s.steps:
                            arrived.put((step, time.perf_counter()))
            except grpc.RpcError:
                pass  # cancelled below

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(0.5)  # let the subscription settle
        ingest = ingest_pb2_grpc.IngestServiceStub(ic)
        samples = []
        for step in range(calls):
            ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ingest_pb2.MetricSeries(
                key="live", steps=[step], values=[float(step)])]), timeout=10)
            acknowledged = time.perf_counter()
            got, at = arrived.get(timeout=10)
            assert got == step, (got, step)
            samples.append(at - acknowledged)
        stream.cancel()
    run.end()
    return Timing(samples)


# -- MLflow ------------------------------------------------------------------------------------

def mlflow_helper(*args: str) -> dict[str, Any]:
    return anchor_json("_mlflow_query.py", *args)


# -- the benchmark -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points of trackd's series")
    parser.add_argument("--mlflow-points", type=int, default=100_000, help="points of MLflow's series")
    parser.add_argument("--runs", type=int, default=100_000, help="runs of the search experiment")
    parser.add_argument("--history-calls", type=int, default=20, help="timed GetMetricHistory(max_points=1000)")
    parser.add_argument("--export-calls", type=int, default=3, help="timed full exports / full histories")
    parser.add_argument("--search-calls", type=int, default=10, help="timed searches, each system")
    parser.add_argument("--show", action="store_true", help=f"print the table of {RESULTS.name} and exit")
    parser.add_argument("--no-mlflow", action="store_true", help="trackd alone: no MLflow server, no anchor figures")
    args = parser.parse_args()
    if args.show:
        print_table(json.loads(RESULTS.read_text()))
        return
    if args.no_mlflow:
        trackd_only(args)
        return

    ensure_anchors()
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    mlflow_proc: subprocess.Popen[bytes] | None = None
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        sql(stack.pg_dsn, "CREATE DATABASE mlflow_bench")
        mlflow_dsn = with_database(stack.pg_dsn, "mlflow_bench")
        with console.status("starting the MLflow server (2 workers; migrations on first start)…"):
            (tmp / "mlartifacts").mkdir()
            mlflow_proc, uri = start_mlflow(
                ["--backend-store-uri", mlflow_dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                 "--workers", "2", "--artifacts-destination", str(tmp / "mlartifacts"),
                 "--uvicorn-opts", "--timeout-worker-healthcheck 120"], tmp, timeout_s=600)  # see ingest.py

        with console.status(f"trackd: {args.points:,}-point series through LogMetrics…"):
            run_id, td_log_s = log_series(f"127.0.0.1:{stack.service_port('ingest')}", args.points,
                                          args.mlflow_points)
        with console.status(f"MLflow: {args.mlflow_points:,}-point series through log_batch…"):
            setup = mlflow_helper("setup", "--uri", uri, "--points", str(args.mlflow_points))
        with console.status(f"generating {args.runs:,} runs and loading them into both databases…"):
            data = SearchData.generate(args.runs)
            start = time.perf_counter()
            asyncio.run(load_trackd(stack.pg_dsn, data))
            td_load_s = time.perf_counter() - start
            start = time.perf_counter()
            asyncio.run(load_mlflow(mlflow_dsn, int(setup["search_experiment_id"]), data))
            ml_load_s = time.perf_counter() - start

        with console.status("trackd: GetMetricHistory, ExportMetric, SearchRuns…"):
            td = measure_trackd(f"127.0.0.1:{stack.service_port('query')}", run_id, args)
            td["search_plan"] = asyncio.run(explain_search(stack.pg_dsn))
            td["search_stages_s"] = asyncio.run(search_stages(stack.pg_dsn, args.search_calls))
        with console.status("trackd: WatchRun delivery after the ingest acknowledgement…"):
            td["watch"] = watch_latency(f"127.0.0.1:{stack.service_port('ingest')}",
                                        f"127.0.0.1:{stack.service_port('query')}", args.history_calls).to_json()
        with console.status("MLflow: get_metric_history, sampled history, search_runs…"):
            ml = mlflow_helper("measure", "--uri", uri, "--run-id", setup["series_run_id"],
                               "--experiment-id", str(setup["search_experiment_id"]),
                               "--history-calls", str(args.export_calls), "--sampled-calls", str(args.history_calls),
                               "--search-calls", str(args.search_calls))
        failed = False
    finally:
        if mlflow_proc is not None:
            stop_mlflow(mlflow_proc)
        stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    same_page = [uuid.UUID(i) for i in td["search"]["run_ids"]] == [uuid.UUID(i) for i in ml["search"]["run_ids"]]
    results = {
        "points": args.points, "mlflow_points": args.mlflow_points, "runs": args.runs, "filter": FILTER,
        "order_by": ORDER_BY, "same_first_page": same_page,
        "trackd": {**td, "log_series_s": td_log_s, "load_s": td_load_s},
        "mlflow": {**ml, "log_series_s": setup["log_s"], "load_s": ml_load_s},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def trackd_only(args: argparse.Namespace) -> None:
    """The trackd half of the benchmark alone (`--no-mlflow`)."""
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        with console.status(f"trackd: {args.points:,}-point series through LogMetrics…"):
            run_id, td_log_s = log_series(f"127.0.0.1:{stack.service_port('ingest')}", args.points,
                                          args.mlflow_points)
        with console.status(f"generating {args.runs:,} runs and loading them…"):
            asyncio.run(load_trackd(stack.pg_dsn, SearchData.generate(args.runs)))
        with console.status("trackd: GetMetricHistory, ExportMetric, SearchRuns…"):
            td = measure_trackd(f"127.0.0.1:{stack.service_port('query')}", run_id, args)
            td["search_plan"] = asyncio.run(explain_search(stack.pg_dsn))
            td["search_stages_s"] = asyncio.run(search_stages(stack.pg_dsn, args.search_calls))
        failed = False
    finally:
        stack.stop(discard=not failed)
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    td["log_series_s"] = td_log_s
    TRACKD_ONLY_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    figures = {"points": args.points, "runs": args.runs, "trackd": td}
    TRACKD_ONLY_RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for name in ("sampled", "export", "small_history", "search"):
        timing = Timing(td[name]["samples_s"])
        console.print(f"{name}: p50 {_duration(timing.median_s)}, p95 {_duration(timing.p95_s)} "
                      f"({len(timing.samples_s)} calls)")
    console.print("\n".join(td["search_plan"]), markup=False, highlight=False)
    print_stages(td)


def print_stages(td: dict[str, Any]) -> None:
    """The search's stages (search_stages) beside the RPC's p50."""
    if "search_stages_s" not in td:
        return
    stages = td["search_stages_s"]
    rpc = Timing(td["search"]["samples_s"]).median_s
    parts = ", ".join(f"{name} {_duration(seconds)}" for name, seconds in stages.items())
    console.print(f"SearchRuns p50 {_duration(rpc)}; its stages in-process (p50 each): {parts}; "
                  f"the rest (gRPC, interceptors, event loop) ≈ {_duration(max(0.0, rpc - sum(stages.values())))}",
                  markup=False, highlight=False)


def print_table(r: dict[str, Any]) -> None:
    td, ml = r["trackd"], r["mlflow"]
    t = {f"{system}_{name}": Timing(found["samples_s"]) for system, figures in (("td", td), ("ml", ml))
         for name, found in figures.items() if isinstance(found, dict) and "samples_s" in found}
    points, ml_points = f"{r['points']:,}", f"{r['mlflow_points']:,}"

    def cell(timing: Timing, *notes: str) -> str:
        p95 = _duration(timing.p95_s)
        return "\n".join([_duration(timing.median_s), f"[dim]p95 {p95}, {len(timing.samples_s)} calls", *notes]) + "[/]"

    table = Table(title=f"Metric history and run search — same PostgreSQL, same machine ({os.cpu_count()} cores)")
    table.add_column("measurement (median)", ratio=3, overflow="fold")
    table.add_column("trackd", justify="right", ratio=2, overflow="fold")
    table.add_column("MLflow (server, 2 workers)", justify="right", ratio=2, overflow="fold")
    table.add_column("target", justify="right", ratio=1, overflow="fold")
    table.add_row("one series, at most 1,000 points",
                  cell(t["td_sampled"], "GetMetricHistory", "max_points=1000",
                       f"{points} pts → {td['sampled']['points']:,}"),
                  cell(t["ml_sampled"], "get-history-bulk-interval", "max_results=1000 (the UI's)",
                       f"{ml_points} pts → {ml['sampled']['points']:,}"), "≤ 20 ms")
    table.add_row(f"one series, all {points} points",
                  cell(t["td_export"], "ExportMetric stream", f"{td['export']['points']:,} pts"),
                  "not measured\n[dim]out of MLflow's reach: see below[/]", "≤ 150 ms")
    table.add_row(f"one series, all {ml_points} points",
                  cell(t["td_small_history"], "GetMetricHistory", "max_points=0",
                       f"{td['small_history']['points']:,} pts"),
                  cell(t["ml_history"], "get_metric_history", f"{ml['history']['points']:,} pts"),
                  "[dim]MLflow anchor ≈ 6.1 s[/]")
    table.add_row(f"search {r['runs']:,} runs, first page of {PAGE}\n[dim]{r['filter']}\norder by {r['order_by']}[/]",
                  cell(t["td_search"], "SearchRuns", f"{len(td['search']['run_ids'])} runs"),
                  cell(t["ml_search"], "search_runs", f"{len(ml['search']['run_ids'])} runs"), "≤ 20 ms")
    if "td_watch" in t:
        table.add_row("a committed point reaches a WatchRun stream\n[dim]after the LogMetrics acknowledgement[/]",
                      cell(t["td_watch"], "Redis pub/sub → WatchRun", "(< 0: before the ack itself)"),
                      "[dim]no live tail[/]", "≤ 1 s")
    same = "yes" if r["same_first_page"] else "[red]NO[/]"
    if "search_plan" in td:
        console.print("trackd's search page query and its EXPLAIN (ANALYZE, BUFFERS):", style="bold")
        console.print("\n".join(td["search_plan"]), markup=False, highlight=False)
    print_stages(td)
    table.add_row("both return the same first page (ids, in order)", same, same, "")
    console.print(table)
    ml_rate = r["mlflow_points"] / ml["log_series_s"]
    ml_extrapolated = r["points"] / r["mlflow_points"] * t["ml_history"].median_s
    console.print(
        f"[dim]Search: {r['runs']:,} FINISHED runs × {PARAMS} params × {METRICS} metrics (one point each) in one "
        f"experiment, the same values in both systems, bulk-loaded with SQL (COPY; trackd {td['load_s']:.0f} s, "
        f"MLflow {ml['load_s']:.0f} s), then VACUUM ANALYZE.\n"
        f"Series: trackd's written through IngestService.LogMetrics, {INGEST_BATCH:,} points a call "
        f"({r['points'] / td['log_series_s']:,.0f} points/s); MLflow's through its REST server, log_batch of 1,000 "
        f"({ml_rate:,.0f} points/s). MLflow cannot reasonably hold or return a {points}-point series: logging it "
        f"at that rate takes {r['points'] / ml_rate / 60:,.0f} min, and get_metric_history materializes every point "
        f"as a row, a JSON object and a Python object (≈ {ml_extrapolated:,.0f} s "
        f"extrapolated linearly; not measured).\n"
        f"Each timing follows one untimed warm-up call. Figures in {RESULTS.relative_to(BENCH.parent)}.[/]")


if __name__ == "__main__":
    main()
