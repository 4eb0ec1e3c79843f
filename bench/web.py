"""The web UI, side by side with MLflow where they compare, on this machine, in one run (`make bench-web`).

1. The experiment page over 100,000 finished runs × 20 params × 10 metrics (bench/query.py's data
   set, bulk-loaded with SQL the same way into both systems): GET /experiments/{id}?order_by=
   metrics.m1 DESC&page_size=100, timed end to end with httpx (one kept-alive connection, from
   sending the request to the last byte of the HTML). MLflow: `search_runs(max_results=100,
   order_by=["metrics.m1 DESC"])` and the request its UI sends for the runs table, on an MLflow
   server on the same PostgreSQL.
2. Chart data of a 1,000,000-point series at 1,000 px: GET /api/runs/{id}/history?key=…&width=1000
   (MLflow: the UI's get-history-bulk-interval of a 100,000-point series; it cannot hold 1M).
3. A run page with 200 metric keys × 1,000 points drawn in headless Chromium (Playwright): from
   navigation start to body[data-charts-ready='1'], each load in a fresh browser context.
4. 1,000 live viewers of one RUNNING run on one web replica: Server-Sent Events clients (raw
   asyncio streams, split over processes) wait for `ready`; then batches of points, one step each,
   go through IngestService.LogMetrics; each point's delay is its arrival at a viewer minus the
   LogMetrics acknowledgement (CLOCK_MONOTONIC, shared by the processes).

5–7. The compare page of 20 runs × 1,000,000 points, parallel coordinates over 10,000 runs and the
   page of a 10,000-trial study: bench/_web_ui2.py (`--only compare,parcoords,study` runs them alone).

Every timing follows one untimed warm-up call. Figures go to bench/results/web.json (parts 1–4) and
bench/results/web2.json (5–7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _web_ui2
import grpc
import httpx
import numpy as np
import psutil
import redis
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
from _query_data import ORDER_BY, PAGE, SEARCH_EXPERIMENT, SERIES_KEY
from _web_ui2 import CHROMIUM_ARGS, VIEWPORT
from query import GRPC_OPTIONS, SearchData, Timing, load_mlflow, load_trackd, log_series, timed
from rich.table import Table
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.stack import EmbeddedStack, StackPorts
from trackd_services.web.runs import DEFAULT_COLUMNS

RESULTS = BENCH / "results" / "web.json"
ALL_PARTS = ("part1", *_web_ui2.PARTS)  # part1: the four measurements above, together
ROW_ID = re.compile(r'<tr data-run-id="([0-9a-f-]{32,36})"')
# records when the page marks its charts drawn, and two animation frames later (painted)
READY_PROBE = """
new MutationObserver((records, observer) => {
  if (document.body && document.body.dataset.chartsReady === '1' && window.__readyAt === undefined) {
    window.__readyAt = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => { window.__paintedAt = performance.now(); }));
    observer.disconnect();
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-charts-ready']});
"""
PAGE_FIGURES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const api = performance.getEntriesByType('resource').find((e) => e.name.includes('/metrics?'));
  const figures = [...document.querySelectorAll('figure.chart')];
  return {ready_ms: window.__readyAt, painted_ms: window.__paintedAt, html_ms: nav.responseEnd,
          dom_ms: nav.domContentLoadedEventEnd, api_start_ms: api ? api.startTime : null,
          api_end_ms: api ? api.responseEnd : null, api_bytes: api ? api.encodedBodySize : null,
          charts: document.querySelectorAll('.uplot').length,
          points: figures.reduce((n, f) => n + Number(f.dataset.points || 0), 0)};
}"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


# -- 1. the experiment page ---------------------------------------------------------------------

def measure_page(web: httpx.Client, query_target: str, experiment_id: str, calls: int) -> dict[str, Any]:
    """The page over HTTP, and the two query-service calls it makes that scale with the runs."""
    url = f"/experiments/{experiment_id}"
    wanted = {"order_by": ORDER_BY, "page_size": str(PAGE)}

    def get() -> httpx.Response:
        response = web.get(url, params=wanted)
        response.raise_for_status()
        return response

    page, response = timed(get, calls)
    # the same columns named in the URL: the page then fetches the keys and the runs at once
    wanted |= {"params": ",".join(f"p{k}" for k in sorted(range(20), key=str)[:DEFAULT_COLUMNS]),
               "metrics": ",".join(f"m{k}" for k in range(DEFAULT_COLUMNS))}
    named, _ = timed(get, calls)
    with grpc.insecure_channel(query_target, options=GRPC_OPTIONS) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        selection = query_pb2.RunSelection(experiment_ids=[experiment_id])
        keys_t, keys = timed(lambda: stub.ListRunKeys(query_pb2.ListRunKeysRequest(selection=selection),
                                                      timeout=60), calls)
        # the columns the page shows when the URL names none
        columns = query_pb2.RunColumns(param_keys=keys.param_keys[:DEFAULT_COLUMNS],
                                       metric_keys=sorted({m.key for m in keys.metric_keys})[:DEFAULT_COLUMNS])
        search_t, _ = timed(lambda: stub.SearchRuns(query_pb2.SearchRunsRequest(
            selection=selection, order_by=[ORDER_BY], page_size=PAGE, columns=columns), timeout=60), calls)
    return {"http": {**page.to_json(), "bytes": len(response.content), "run_ids": ROW_ID.findall(response.text)},
            "http_named_columns": named.to_json(), "list_run_keys": keys_t.to_json(), "search_runs": search_t.to_json()}


# -- 2. chart data of one long series -----------------------------------------------------------

def measure_history(web: httpx.Client, query_target: str, run_id: str, calls: int) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        response = web.get(f"/api/runs/{run_id}/history", params={"key": SERIES_KEY, "context": "", "width": 1000})
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    http, body = timed(get, calls)
    with grpc.insecure_channel(query_target, options=GRPC_OPTIONS) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        direct, _ = timed(lambda: stub.GetMetricHistory(query_pb2.GetMetricHistoryRequest(
            run_id=run_id, key=SERIES_KEY, max_points=1000), timeout=60), calls)
    return {"http": {**http.to_json(), "points": len(body["steps"]), "total_points": body["total"]},
            "grpc": direct.to_json()}


# -- 3. a run page with many charts in headless Chromium ----------------------------------------

def log_chart_run(ingest_target: str, keys: int, points: int) -> str:
    """A FINISHED run of `keys` metric keys (10 groups) × `points` points each."""
    import trackd

    run = trackd.start_run("bench-web-charts", capture_env=False, system_metrics=False)
    steps = np.arange(points, dtype=np.int64)
    with grpc.insecure_channel(ingest_target, options=GRPC_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        series = [ingest_pb2.MetricSeries(key=f"group{k % 10}/metric_{k:03d}", steps=steps.tolist(),
                                          values=(np.exp(-steps / (200 + k)) + 0.02 * np.sin(steps * (k + 1) / 50)
                                                  ).tolist()) for k in range(keys)]
        for first in range(0, keys, 50):
            stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=series[first:first + 50]), timeout=120)
    run.end()
    return run.id


def measure_browser(url: str, loads: int) -> dict[str, Any]:
    """Navigation start → charts ready, each load in a fresh context (cold HTTP cache); one warm-up."""
    from playwright.sync_api import sync_playwright

    found = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium-headless-shell") or shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            for _ in range(loads + 1):
                context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                page = context.new_page()
                page.add_init_script(READY_PROBE)
                page.goto(url)
                page.wait_for_function("() => window.__paintedAt !== undefined", timeout=120_000)
                found.append(page.evaluate(PAGE_FIGURES))
                context.close()
        finally:
            browser.close()
    timed_loads = found[1:]
    return {"ready": Timing([f["ready_ms"] / 1000 for f in timed_loads]).to_json(),
            "painted": Timing([f["painted_ms"] / 1000 for f in timed_loads]).to_json(), "loads": timed_loads,
            "browser": "chromium-headless-shell" if shutil.which("chromium-headless-shell") else "chromium"}


# -- 4. live viewers ----------------------------------------------------------------------------

class _Viewer(asyncio.Protocol):
    """One Server-Sent Events client as a bare protocol (no stream or task per viewer, so the
    clients stay cheap beside the server): records (key, step, monotonic arrival) of every point."""

    def __init__(self, request: bytes, ready: asyncio.Future[float]) -> None:
        self.request = request
        self.ready = ready
        self.arrivals: list[tuple[str, int, float]] = []
        self.transport: asyncio.Transport | None = None
        self._raw = b""  # received, not yet de-chunked
        self._events = b""  # de-chunked, not yet split into events
        self._chunked: bool | None = None  # None until the response head is read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or RuntimeError("the stream ended before ready"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._raw += data
        if self._chunked is None:
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._raw = self._raw[:end].decode("latin-1"), self._raw[end + 4:]
            if " 200 " not in head.split("\r\n", 1)[0]:
                self.ready.set_exception(RuntimeError(head.split("\r\n", 1)[0]))
                assert self.transport is not None
                self.transport.close()
                return
            self._chunked = "transfer-encoding: chunked" in head.lower()
        if self._chunked:
            while (eol := self._raw.find(b"\r\n")) >= 0:
                size = int(self._raw[:eol].split(b";")[0], 16)
                if len(self._raw) < eol + size + 4:
                    break
                self._events += self._raw[eol + 2:eol + 2 + size]
                self._raw = self._raw[eol + size + 4:]
        else:
            self._events, self._raw = self._events + self._raw, b""
        while (cut := self._events.find(b"\n\n")) >= 0:
            event, self._events = self._events[:cut], self._events[cut + 2:]
            if event.startswith(b"event: points\ndata: "):
                for s in json.loads(event[20:])["series"]:
                    self.arrivals.extend((s["key"], step, now) for step in s["steps"])
            elif event.startswith(b"event: ready") and not self.ready.done():
                self.ready.set_result(now)


async def _viewers(pipe: Connection, host: str, port: int, path: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    viewers = [_Viewer(request, loop.create_future()) for _ in range(count)]
    start = time.monotonic()
    opened = await asyncio.gather(*(loop.create_connection(lambda v=v: v, host, port) for v in viewers),  # type: ignore[misc]
                                  return_exceptions=True)
    for viewer, result in zip(viewers, opened, strict=True):
        if isinstance(result, BaseException) and not viewer.ready.done():
            viewer.ready.set_exception(result)
    await asyncio.wait([v.ready for v in viewers], timeout=120)
    errors = [repr(v.ready.exception()) for v in viewers if v.ready.done() and v.ready.exception()]
    at = [v.ready.result() - start for v in viewers if v.ready.done() and not v.ready.exception()]
    pipe.send(("ready", len(at), max(at, default=0.0), errors[:5], len(errors)))
    cpu_start = time.process_time()
    while True:
        message = await asyncio.to_thread(pipe.recv)
        if message == "count":
            pipe.send(sum(len(v.arrivals) for v in viewers))
        elif message == "stop":
            break
    for viewer in viewers:
        if viewer.transport is not None:
            viewer.transport.close()
    pipe.send(([v.arrivals for v in viewers], time.process_time() - cpu_start))


def viewer_process(pipe: Connection, host: str, port: int, path: str, count: int) -> None:
    asyncio.run(_viewers(pipe, host, port, path, count))


def web_gauges(web: httpx.Client) -> dict[str, float]:
    text = web.get("/metrics").text
    return {name: float(value) for name, value in re.findall(
        r"^(trackd_web_live_(?:viewers|subscriptions)) (\S+)$", text, re.MULTILINE)}


def redis_clients(probe: redis.Redis) -> int:
    """Valkey's connected clients, this probe's own connection not counted."""
    return sum(1 for c in probe.client_list() if c.get("name") != "bench-probe")


def measure_live(stack: EmbeddedStack, web: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    import trackd

    assert stack.web is not None and stack.web.pid is not None
    web_process = psutil.Process(stack.web.pid)
    probe = redis.Redis.from_url(stack.redis_url)
    probe.client_setname("bench-probe")
    run = trackd.start_run("bench-web-live", capture_env=False, system_metrics=False)
    keys = [f"live/k{k}" for k in range(args.live_keys)]
    before = {"rss": web_process.memory_info().rss, "redis_clients": redis_clients(probe), **web_gauges(web)}

    host, port = stack.web_url.removeprefix("http://").split(":")
    path = f"/api/runs/{run.id}/live"
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that holds gRPC channels
    shares = [args.viewers // args.viewer_processes + (i < args.viewers % args.viewer_processes)
              for i in range(args.viewer_processes)]
    pipes, processes = [], []
    opened = time.monotonic()
    for share in shares:
        ours, theirs = spawn.Pipe()
        process = spawn.Process(target=viewer_process, args=(theirs, host, int(port), path, share), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    try:
        readies = [pipe.recv() for pipe in pipes]
        all_ready_s = time.monotonic() - opened
        ready = sum(r[1] for r in readies)
        errors = [e for r in readies for e in r[3]]
        connected = {"rss": web_process.memory_info().rss, "redis_clients": redis_clients(probe), **web_gauges(web)}

        cpu_before = web_process.cpu_times()
        acks: dict[int, float] = {}
        rpc_s = []
        with grpc.insecure_channel(f"127.0.0.1:{stack.service_port('ingest')}", options=GRPC_OPTIONS) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            grpc.channel_ready_future(channel).result(timeout=30)
            for step in range(args.batches):
                sent = time.monotonic()
                stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[
                    ingest_pb2.MetricSeries(key=k, steps=[step], values=[1.0 / (step + 1)]) for k in keys]),
                    timeout=10)
                acks[step] = time.monotonic()
                rpc_s.append(acks[step] - sent)
                time.sleep(max(0.0, args.interval - (time.monotonic() - sent)))
        expected = ready * args.batches * len(keys)
        deadline = time.monotonic() + args.live_timeout
        received = 0
        while time.monotonic() < deadline:
            for pipe in pipes:
                pipe.send("count")
            received = sum(pipe.recv() for pipe in pipes)
            if received >= expected:
                break
            time.sleep(0.2)
        delivered_s = time.monotonic() - acks[args.batches - 1]
        cpu_after = web_process.cpu_times()
        during = {"rss": web_process.memory_info().rss, "redis_clients": redis_clients(probe), **web_gauges(web)}
        for pipe in pipes:
            pipe.send("stop")
        collected = [pipe.recv() for pipe in pipes]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    run.end()
    time.sleep(1.0)
    after = {"rss": web_process.memory_info().rss, "redis_clients": redis_clients(probe), **web_gauges(web)}

    delays, points, duplicates = [], 0, 0
    for arrivals, _ in collected:
        for viewer in arrivals:
            seen = {(key, step): at for key, step, at in reversed(viewer)}  # the first arrival of each
            duplicates += len(viewer) - len(seen)
            points += len(seen)
            delays += [at - acks[step] for (_, step), at in seen.items()]
    ordered = np.sort(np.array(delays)) if delays else np.zeros(1)
    return {
        "viewers": args.viewers, "ready": ready, "ready_errors": errors, "all_ready_s": all_ready_s,
        "batches": args.batches, "keys": len(keys), "interval_s": args.interval,
        "expected_points": expected, "delivered_points": points, "duplicates": duplicates,
        "delay_s": {"p50": float(np.percentile(ordered, 50)), "p95": float(np.percentile(ordered, 95)),
                    "max": float(ordered[-1]), "min": float(ordered[0])},
        "log_metrics_rpc_s": Timing(rpc_s).to_json(), "delivered_within_s": delivered_s,
        "web_cpu_s": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        "client_cpu_s": [cpu for _, cpu in collected], "viewer_processes": len(shares),
        "before": before, "connected": connected, "during": during, "after": after,
    }


# -- the benchmark ------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs of the experiment page")
    parser.add_argument("--points", type=int, default=1_000_000, help="points of the charted series")
    parser.add_argument("--mlflow-points", type=int, default=100_000, help="points of MLflow's series")
    parser.add_argument("--calls", type=int, default=20, help="timed page and chart-data requests, each system")
    parser.add_argument("--chart-keys", type=int, default=200, help="metric keys of the run page")
    parser.add_argument("--chart-points", type=int, default=1_000, help="points of each of those keys")
    parser.add_argument("--loads", type=int, default=5, help="timed browser loads of the run page")
    parser.add_argument("--viewers", type=int, default=1_000, help="live viewers of one running run")
    parser.add_argument("--viewer-processes", type=int, default=2, help="processes the viewers are split over")
    parser.add_argument("--batches", type=int, default=20, help="live batches, one step each")
    parser.add_argument("--live-keys", type=int, default=1, help="metric keys in each live batch")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between live batches")
    parser.add_argument("--live-timeout", type=float, default=30.0, help="seconds to wait for the last points")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow anchor (quicker, for development)")
    parser.add_argument("--compare-runs", type=int, default=20, help="runs of the compare page")
    parser.add_argument("--compare-points", type=int, default=1_000_000, help="points of each compared run")
    parser.add_argument("--parcoords-runs", type=int, default=10_000, help="runs of the parallel coordinates")
    parser.add_argument("--study-trials", type=int, default=10_000, help="trials of the study page's study")
    parser.add_argument("--study-steps", type=int, default=20, help="intermediate values of each trial")
    parser.add_argument("--only", default=",".join(ALL_PARTS),
                        help=f"comma-separated parts to run, of {','.join(ALL_PARTS)} (default: all)")
    parser.add_argument("--show", action="store_true",
                        help=f"print the tables of {RESULTS.name} and {_web_ui2.RESULTS.name}")
    args = parser.parse_args()
    if args.show:
        for path, show in ((RESULTS, print_table), (_web_ui2.RESULTS, _web_ui2.print_table)):
            if path.exists():
                show(json.loads(path.read_text()))
        return
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - set(ALL_PARTS):
        parser.error(f"--only names parts of {', '.join(ALL_PARTS)}")
    if "part1" not in parts:
        _web_ui2.run_alone(parts, args)
        return

    if not args.no_mlflow:
        ensure_anchors()
    load_at_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    mlflow_proc: subprocess.Popen[bytes] | None = None
    ml: dict[str, Any] = {}
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services, web)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        ingest, query = f"127.0.0.1:{stack.service_port('ingest')}", f"127.0.0.1:{stack.service_port('query')}"
        if not args.no_mlflow:
            sql(stack.pg_dsn, "CREATE DATABASE mlflow_bench")
            mlflow_dsn = with_database(stack.pg_dsn, "mlflow_bench")
            with console.status("starting the MLflow server (2 workers; migrations on first start)…"):
                (tmp / "mlartifacts").mkdir()
                mlflow_proc, uri = start_mlflow(
                    ["--backend-store-uri", mlflow_dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                     "--workers", "2", "--artifacts-destination", str(tmp / "mlartifacts")], tmp)

        with console.status(f"trackd: {args.points:,}-point series through LogMetrics…"):
            series_run, _ = log_series(ingest, args.points, 1)
        if mlflow_proc is not None:
            with console.status(f"MLflow: {args.mlflow_points:,}-point series through log_batch…"):
                setup = anchor_json("_mlflow_query.py", "setup", "--uri", uri, "--points", str(args.mlflow_points))
        with console.status(f"generating {args.runs:,} runs and loading them into both databases…"):
            data = SearchData.generate(args.runs)
            asyncio.run(load_trackd(stack.pg_dsn, data))
            if mlflow_proc is not None:
                asyncio.run(load_mlflow(mlflow_dsn, int(setup["search_experiment_id"]), data))
        experiment_id = str(sql(stack.pg_dsn, "SELECT id::text FROM experiments WHERE name = $1", SEARCH_EXPERIMENT))

        td: dict[str, Any] = {}
        with httpx.Client(base_url=stack.web_url, timeout=120) as web:
            with console.status("trackd: the experiment page, the chart data…"):
                td["page"] = measure_page(web, query, experiment_id, args.calls)
                td["history"] = measure_history(web, query, series_run, args.calls)
            if mlflow_proc is not None:
                with console.status("MLflow: search_runs, the UI's runs search, the sampled history…"):
                    ml = anchor_json("_mlflow_web.py", "--uri", uri, "--run-id", setup["series_run_id"],
                                     "--experiment-id", str(setup["search_experiment_id"]),
                                     "--search-calls", str(args.calls), "--sampled-calls", str(args.calls))
                stop_mlflow(mlflow_proc)  # idle from here on: out of the way of the browser and the viewers
                mlflow_proc = None
            with console.status(f"trackd: a run page of {args.chart_keys} charts in headless Chromium…"):
                chart_run = log_chart_run(ingest, args.chart_keys, args.chart_points)
                td["browser"] = measure_browser(f"{stack.web_url}/runs/{chart_run}", args.loads)
            with console.status(f"trackd: {args.viewers:,} live viewers of one running run…"):
                td["live"] = measure_live(stack, web, args)
        part2 = _web_ui2.run(parts, stack, args) if parts & set(_web_ui2.PARTS) else {}
        failed = False
    finally:
        if mlflow_proc is not None:
            stop_mlflow(mlflow_proc)
        stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    td_page = [i.replace("-", "") for i in td["page"]["http"].pop("run_ids")]
    results = {
        "runs": args.runs, "order_by": ORDER_BY, "page_size": PAGE, "points": args.points,
        "mlflow_points": args.mlflow_points, "chart_keys": args.chart_keys, "chart_points": args.chart_points,
        "cores": os.cpu_count(), "load_average_at_start": load_at_start, "rows_on_page": len(td_page),
        "same_first_page": {name: td_page == ml[name].pop("run_ids") for name in ("search", "ui_search") if ml},
        "trackd": td, "mlflow": ml,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    if part2:
        _web_ui2.save(part2, load_at_start)



def print_table(r: dict[str, Any]) -> None:
    td, ml = r["trackd"], r["mlflow"]

    def cell(found: dict[str, Any], *notes: str) -> str:
        timing = Timing(found["samples_s"])
        return "\n".join([f"{_ms(timing.median_s)}", f"[dim]p95 {_ms(timing.p95_s)}, {len(timing.samples_s)} calls",
                          *notes]) + "[/]"

    table = Table(title=f"Web UI — same PostgreSQL, same machine ({r['cores']} cores)")
    table.add_column("measurement (p50)", ratio=3, overflow="fold")
    table.add_column("trackd (web service)", justify="right", ratio=3, overflow="fold")
    table.add_column("MLflow 3 (server, 2 workers)", justify="right", ratio=2, overflow="fold")
    table.add_column("target", justify="right", ratio=1, overflow="fold")
    page = td["page"]
    same = r["same_first_page"]
    table.add_row(
        f"experiment page, {r['runs']:,} runs × 20 params × 10 metrics\n[dim]first {r['page_size']} by "
        f"{r['order_by']}; HTTP request end to end (httpx, kept-alive)[/]",
        cell(page["http"], f"GET /experiments/{{id}}: {r['rows_on_page']} rows, "
                           f"{page['http']['bytes'] / 1024:,.0f} KiB",
             f"of it SearchRuns {_ms(Timing(page['search_runs']['samples_s']).median_s)}, "
             f"ListRunKeys {_ms(Timing(page['list_run_keys']['samples_s']).median_s)} (gRPC, alone)",
             f"columns named in the URL: {_ms(Timing(page['http_named_columns']['samples_s']).median_s)}"),
        (cell(ml["search"], "MlflowClient.search_runs") + "\n" + cell(ml["ui_search"], "its UI's POST runs/search")
         if ml else "[dim]not run[/]"),
        "≤ 150 ms")
    if same:
        table.add_row("the same first page (ids, in order)", "", ", ".join(
            f"{name}: {'yes' if ok else '[red]NO[/]'}" for name, ok in same.items()), "")
    history = td["history"]
    table.add_row(
        f"chart data, one {history['http']['total_points']:,}-point series at 1,000 px\n[dim]MinMaxLTTB in the "
        f"query service[/]",
        cell(history["http"], f"GET /api/runs/{{id}}/history → {history['http']['points']:,} pts",
             f"of it GetMetricHistory {_ms(Timing(history['grpc']['samples_s']).median_s)} (gRPC, alone)"),
        cell(ml["sampled"], f"get-history-bulk-interval, {r['mlflow_points']:,} pts → {ml['sampled']['points']:,}",
             "(1M points: out of its reach)") if ml else "[dim]not run[/]",
        "≤ 50 ms")
    browser = td["browser"]
    loads = browser["loads"]
    median = lambda name: float(np.median([load[name] for load in loads if load[name] is not None]))  # noqa: E731
    table.add_row(
        f"run page, {r['chart_keys']} metric keys × {r['chart_points']:,} points, drawn\n[dim]headless Chromium, "
        f"navigation start → body\\[data-charts-ready='1'], fresh context each load[/]",
        cell(browser["ready"], f"{loads[-1]['charts']} uPlot charts, {loads[-1]['points']:,} points",
             f"HTML {median('html_ms'):,.0f} ms · chart data {median('api_start_ms'):,.0f}→"
             f"{median('api_end_ms'):,.0f} ms ({loads[-1]['api_bytes'] / 1024:,.0f} KiB)",
             f"painted (2 frames later) {_ms(Timing(browser['painted']['samples_s']).median_s)}"),
        "[dim]n/a[/]", "≤ 1.5 s")
    live = td["live"]
    delay = live["delay_s"]
    ok = live["delivered_points"] == live["expected_points"] and live["ready"] == live["viewers"]
    table.add_row(
        f"{live['viewers']:,} live viewers of one RUNNING run, one web replica\n[dim]{live['batches']} batches of "
        f"{live['keys']} key × 1 step, one per {live['interval_s'] * 1000:.0f} ms; delay = arrival − LogMetrics "
        f"ack, per viewer per point[/]",
        f"p50 {_ms(delay['p50'])}\n[dim]p95 {_ms(delay['p95'])}, max {_ms(delay['max'])}\n"
        f"{'' if ok else '[red]'}{live['delivered_points']:,} of {live['expected_points']:,} points delivered"
        f"{'' if ok else '[/]'}, {live['duplicates']} twice\n"
        f"{live['ready']:,} ready in {live['all_ready_s']:.1f} s; web CPU {live['web_cpu_s']:.1f} s, clients "
        f"{sum(live['client_cpu_s']):.1f} s[/]",
        "[dim]n/a (no live tail: its UI polls)[/]", "p95 ≤ 1 s")
    b, d, a = live["before"], live["during"], live["after"]
    table.add_row(
        "web process RSS\n[dim]before / with the viewers / after they left[/]",
        f"{_mib(b['rss'])} / {_mib(d['rss'])} / {_mib(a['rss'])}", "", "")
    table.add_row(
        "trackd_web_live_subscriptions (viewers)\n[dim]before / with the viewers / after[/]",
        " / ".join(f"{s.get('trackd_web_live_subscriptions', 0):.0f} ({s.get('trackd_web_live_viewers', 0):.0f})"
                   for s in (b, d, a)), "", "1")
    table.add_row("Valkey connections (CLIENT LIST)\n[dim]before / with the viewers / after[/]",
                  f"{b['redis_clients']} / {d['redis_clients']} / {a['redis_clients']}", "", "")
    console.print(table)
    if live["ready_errors"]:
        console.print(f"[red]viewers that failed before ready: {live['ready_errors']}[/]")
    console.print(
        f"[dim]Experiment page: {r['runs']:,} FINISHED runs bulk-loaded with SQL (COPY, then VACUUM ANALYZE) into "
        f"both systems by bench/query.py's loaders, the same values; the page shows 6 params and 6 metrics (its "
        f"default columns) and calls GetExperiment, GetProject, ListRunKeys and SearchRuns. MLflow's search returns "
        f"every param, metric and tag of each run. Chart data: trackd's series written through LogMetrics; MLflow's "
        f"through log_batch. Live: LogMetrics acknowledgement to arrival at each of the viewers (raw asyncio "
        f"SSE clients in {live['viewer_processes']} processes). Each timing follows one untimed warm-up. Load "
        f"average at the start: {r['load_average_at_start']:.1f}. Figures in "
        f"{RESULTS.relative_to(BENCH.parent)}.[/]")


if __name__ == "__main__":
    main()
