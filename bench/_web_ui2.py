"""The web UI benchmark's second part (bench/web.py runs it; `--only compare,parcoords,study` alone):
the pages of issue 16 on one embedded stack, in headless Chromium (Playwright).

5. The compare page of 20 runs × 1,000,000 points (one key, `loss`, written through LogMetrics in
   100,000-point batches, 4 runs at a time): navigation start → body[data-charts-ready='1'] (every
   run's line handed to uPlot; compare.js sets it after the last GetMetricHistoryBulk answer) and
   → #compare[data-ready='1'] (also parallel coordinates, the scatter and the contour drawn).
6. Parallel coordinates over 10,000 runs: the web UI draws them for a study's trials (the study
   page below) and for up to 100 compared runs, so the 10,000 are measured as parts:
   GetParallelCoordinates over an experiment of 10,000 runs × 6 params + a metric (SQL-loaded),
   timed over gRPC; and parcoords.js (the compare and study pages' drawing) drawing those rows in
   Chromium, timed inside the page from `new ParallelCoordinates` to the end of `setData` (the
   canvas drawn), and two animation frames later (painted). The figure is their sum. Also the
   study page's own parallel coordinates of its 10,000 trials (figure[data-draw-ms]).
7. The study page of a 10,000-trial study (random sampler, 5 params, the ended trials bulk-loaded
   into PostgreSQL as trackd.hpo.optimize leaves them): navigation start → #study[data-ready='1'] (the
   trials table — the rows in view of all 10,000 sorted, checked after the timing to reach the
   last trial when scrolled —, optimization history, parallel coordinates, intermediate values
   drawn; the fANOVA bars arrive on their own and are reported apart when in by then).

Each browser load is in a fresh context (cold HTTP cache) after one warm-up load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
from _common import BENCH, console, start_stack
from query import GRPC_OPTIONS, Timing, timed
from rich.table import Table
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc

PARTS = ("compare", "parcoords", "study")
RESULTS = BENCH / "results" / "web2.json"
BATCH = 100_000  # points a LogMetrics call (its limit)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 900}
PARCOORDS_EXPERIMENT = "bench-parcoords"
# records when each selector first matches (name → performance.now()), and two frames after the last
PROBE = """
(() => {
  const wanted = %s;
  window.__marks = {};
  const check = (observer) => {
    for (const [name, selector] of Object.entries(wanted)) {
      if (window.__marks[name] !== undefined || !document.querySelector(selector)) continue;
      window.__marks[name] = performance.now();
    }
    if (Object.keys(window.__marks).length === Object.keys(wanted).length && window.__paintedAt === undefined) {
      window.__paintedAt = -1;
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__paintedAt = performance.now(); }));
      observer.disconnect();
    }
  };
  new MutationObserver((records, observer) => check(observer))
    .observe(document, {subtree: true, childList: true, attributes: true});
})();
"""
DRAW_PARCOORDS = """async (data) => {
  const { ParallelCoordinates } = await import('/static/js/parcoords.js');
  document.body.replaceChildren();
  const holder = document.createElement('div');
  holder.style.width = '1200px';
  const canvas = document.createElement('canvas');
  holder.append(canvas);
  document.body.append(holder);
  data.colors = Object.fromEntries(data.ids.map((id, i) => [id, `hsl(${Math.round((i * 137.508) % 360)}, 62%, 46%)`]));
  const start = performance.now();
  const chart = new ParallelCoordinates(canvas, { height: 300 });
  chart.setData(data);
  const drawn = performance.now();
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return { draw_ms: drawn - start, painted_ms: performance.now() - start, lines: data.ids.length,
           axes: data.axes.length, highlighted: Number(canvas.dataset.highlighted) };
}"""


def _browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=shutil.which("chromium-headless-shell") or shutil.which("chromium"),
                             args=CHROMIUM_ARGS)


def load_pages(url: str, marks: dict[str, str], loads: int, extra: str = "() => ({})",
               timeout_ms: int = 120_000) -> dict[str, Any]:
    """Navigation start → each of `marks` (name → CSS selector), fresh context per load, one warm-up."""
    from playwright.sync_api import sync_playwright

    found = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            for _ in range(loads + 1):
                context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                page = context.new_page()
                said: list[str] = []
                page.on("console", lambda message, said=said: said.append(f"{message.type}: {message.text}"))
                page.on("pageerror", lambda error, said=said: said.append(f"error: {error}"))
                page.add_init_script(PROBE % json.dumps(marks))
                page.goto(url)
                try:
                    page.wait_for_function("() => window.__paintedAt > 0", timeout=timeout_ms)
                except Exception as exc:  # what the page shows and said, for the report
                    state = page.evaluate("() => [window.__marks, document.getElementById('live-state')?.textContent]")
                    raise RuntimeError(f"{url}: not drawn in {timeout_ms / 1000:.0f} s ({exc.__class__.__name__}); "
                                       f"marks and status {state}; console {said[-5:]}") from None
                load = page.evaluate("() => ({marks: window.__marks, painted_ms: window.__paintedAt, "
                                     "html_ms: performance.getEntriesByType('navigation')[0].responseEnd})")
                load.update(page.evaluate(extra))
                found.append(load)
                context.close()
        finally:
            browser.close()
    timed_loads = found[1:]
    return {"marks": {name: Timing([f["marks"][name] / 1000 for f in timed_loads]).to_json() for name in marks},
            "painted": Timing([f["painted_ms"] / 1000 for f in timed_loads]).to_json(), "loads": timed_loads}


# -- 5. the compare page ------------------------------------------------------------------------

def log_compare_runs(ingest_target: str, runs: int, points: int) -> tuple[list[str], float]:
    """`runs` FINISHED runs, each with params and a `points`-point `loss`; (ids, seconds writing)."""
    import trackd

    started = [trackd.start_run("bench-compare", name=f"compare-{i:02d}", capture_env=False, system_metrics=False,
                                params={"lr": f"{10 ** (-4 + 3 * i / max(1, runs - 1)):.2e}", "batch": 2 ** (4 + i % 5),
                                        "layers": 2 + i % 4, "seed": i})
               for i in range(runs)]
    steps = np.arange(points, dtype=np.int64)

    def write(i: int) -> None:
        values = 1.0 / (1.0 + steps / (800.0 + 40 * i)) + 0.01 * np.sin(steps * (0.3 + i / 100))
        with grpc.insecure_channel(ingest_target, options=GRPC_OPTIONS) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            for first in range(0, points, BATCH):
                part = slice(first, first + BATCH)
                stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=started[i].id, series=[ingest_pb2.MetricSeries(
                    key="loss", steps=steps[part].tolist(), values=values[part].tolist())]), timeout=300)

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(runs)))
    elapsed = time.perf_counter() - start
    for run in started:
        run.end()
    return [run.id for run in started], elapsed


COMPARE_EXTRA = """() => ({
  charts: document.querySelectorAll('#charts .uplot').length,
  lines: [...document.querySelectorAll('#charts figure.chart')].reduce((n, f) => n + Number(f.dataset.lines || 0), 0),
  points: [...document.querySelectorAll('#charts figure.chart')].reduce((n, f) => n + Number(f.dataset.points || 0), 0),
  series_ms: performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/compare/series'))
    .map((e) => [e.startTime, e.responseEnd, e.encodedBodySize]),
})"""


def measure_compare(web_url: str, ingest: str, runs: int, points: int, loads: int) -> dict[str, Any]:
    ids, write_s = log_compare_runs(ingest, runs, points)
    found = load_pages(f"{web_url}/compare?runs={','.join(ids)}",
                       {"charts": "body[data-charts-ready='1']", "page": "#compare[data-ready='1']"}, loads,
                       COMPARE_EXTRA)
    return {"runs": runs, "points": points, "write_s": write_s, **found}


# -- 6. parallel coordinates over 10,000 runs -----------------------------------------------------

async def _load_parcoords_runs(dsn: str, runs: int) -> None:
    """`runs` FINISHED runs in PARCOORDS_EXPERIMENT: lr, dropout (floats), batch, layers (ints),
    optimizer, activation (categories) and `val_loss`, bulk-loaded as bench/query.py loads its set."""
    rng = np.random.default_rng(7)
    ids = [uuid.uuid4() for _ in range(runs)]
    lr = 10 ** rng.uniform(-5, -1, runs)
    dropout, batch, layers = rng.uniform(0, 0.6, runs), 2 ** rng.integers(4, 10, runs), rng.integers(1, 9, runs)
    optimizer, activation = rng.integers(0, 3, runs), rng.integers(0, 4, runs)
    loss = 0.3 + 0.1 * np.abs(np.log10(lr) + 2.5) + 0.2 * (dropout - 0.3) ** 2 + rng.normal(0, 0.02, runs)
    now = time.time()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO projects (id, name) VALUES ($1, 'default') ON CONFLICT (name) DO NOTHING",
                               uuid.uuid4())
            experiment = uuid.uuid4()
            await conn.execute("INSERT INTO experiments (id, project_id, name) SELECT $1, id, $2 FROM projects "
                               "WHERE name = 'default'", experiment, PARCOORDS_EXPERIMENT)
            from datetime import UTC, datetime
            at = [datetime.fromtimestamp(now - runs + i, UTC) for i in range(runs)]
            await conn.copy_records_to_table(
                "runs", columns=("id", "experiment_id", "name", "status", "start_time", "end_time", "last_heartbeat",
                                 "user_name"),
                records=[(run, experiment, f"pc-{i}", 2, at[i], at[i], at[i], "bench") for i, run in enumerate(ids)])
            params = [(run, k, v) for i, run in enumerate(ids) for k, v in (
                ("lr", f"{lr[i]:.3e}"), ("dropout", f"{dropout[i]:.3f}"), ("batch", str(batch[i])),
                ("layers", str(layers[i])), ("optimizer", ("adam", "sgd", "adamw")[optimizer[i]]),
                ("activation", ("relu", "gelu", "tanh", "silu")[activation[i]]))]
            await conn.copy_records_to_table("run_params", columns=("run_id", "key", "value"), records=params)
            ms = [int(a.timestamp() * 1000) for a in at]
            await conn.copy_records_to_table(
                "metric_series", columns=("run_id", "key", "context", "last_step", "last_value", "last_ts",
                                          "min_value", "max_value", "points"),
                records=[(run, "val_loss", 0, 0, float(loss[i]), ms[i], float(loss[i]), float(loss[i]), 1)
                         for i, run in enumerate(ids)])
            series_ids = {r["run_id"]: r["id"] for r in await conn.fetch(
                "SELECT id, run_id FROM metric_series WHERE run_id = ANY($1::uuid[])", ids)}
            zero = struct.pack("<q", 0)
            await conn.copy_records_to_table(
                "metric_chunks", columns=("run_id", "series_id", "first_step", "last_step", "points", "steps", "vals",
                                          "timestamps"),
                records=[(run, series_ids[run], 0, 0, 1, zero, struct.pack("<d", float(loss[i])),
                          struct.pack("<q", ms[i])) for i, run in enumerate(ids)])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def measure_parcoords(dsn: str, web_url: str, query_target: str, runs: int, calls: int, loads: int) -> dict[str, Any]:
    import asyncio

    from playwright.sync_api import sync_playwright

    asyncio.run(_load_parcoords_runs(dsn, runs))
    with grpc.insecure_channel(query_target, options=GRPC_OPTIONS) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        request = query_pb2.GetParallelCoordinatesRequest(
            selection=query_pb2.RunSelection(experiment_names=[PARCOORDS_EXPERIMENT]), metric="val_loss")
        grpc_t, found = timed(lambda: stub.GetParallelCoordinates(request, timeout=120), calls)
    data = {"ids": list(found.run_ids), "axes": [
        {"name": a.name, "values": [_finite(v) for v in a.values], "categories": list(a.categories)}
        for a in found.axes]}
    draws = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            for _ in range(loads + 1):
                context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                page = context.new_page()
                page.goto(f"{web_url}/")
                draws.append(page.evaluate(DRAW_PARCOORDS, data))
                context.close()
        finally:
            browser.close()
    draws = draws[1:]
    return {"runs": len(data["ids"]), "axes": len(data["axes"]), "grpc": grpc_t.to_json(),
            "json_bytes": len(json.dumps(data)),
            "draw": Timing([d["draw_ms"] / 1000 for d in draws]).to_json(),
            "painted": Timing([d["painted_ms"] / 1000 for d in draws]).to_json(), "draws": draws}


# -- 7. the study page of a 10,000-trial study -----------------------------------------------------

SPACE = {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
         "dropout": {"type": "float", "low": 0.0, "high": 0.6},
         "layers": {"type": "int", "low": 1, "high": 8},
         "width": {"type": "int", "low": 16, "high": 1024, "log": True},
         "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]}}


def _objective(p: dict[str, Any]) -> float:
    return (0.3 + 0.1 * abs(math.log10(p["lr"]) + 2.5) + 0.2 * (p["dropout"] - 0.3) ** 2 + 0.01 * abs(p["layers"] - 4)
            + (0.05 if p["optimizer"] == "sgd" else 0.0))


def _trial_params(rng: np.random.Generator) -> dict[str, Any]:
    return {"lr": float(10 ** rng.uniform(-5, -1)), "dropout": float(rng.uniform(0, 0.6)),
            "layers": int(rng.integers(1, 9)), "width": int(2 ** rng.uniform(4, 10)),
            "optimizer": ("adam", "sgd", "adamw")[int(rng.integers(0, 3))]}


async def _seed_trials(dsn: str, study_id: str, trials: int, steps: int) -> None:
    """`trials` ended trials of the study, each with its run and `steps` intermediate values of
    `val_loss` in it (as `Trial.report` logs them): 85 % COMPLETE, 12 % PRUNED (cut short), 3 % FAIL;
    bulk-loaded (COPY) as the parcoords runs are."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(11)
    study = uuid.UUID(study_id)
    now = time.time()
    conn = await asyncpg.connect(dsn)
    try:
        experiment = await conn.fetchval("SELECT experiment_id FROM studies WHERE id = $1", study)
        trial_rows, run_rows, series_rows, curves = [], [], [], {}
        for n in range(trials):
            params = _trial_params(rng)
            final = _objective(params) + float(rng.normal(0, 0.02))
            roll = rng.uniform()
            state = 3 if roll < 0.85 else 4 if roll < 0.97 else 5  # COMPLETE, PRUNED, FAIL
            reported = steps if state == 3 else int(rng.integers(1, steps)) if state == 4 else 0
            at = now - 2 * (trials - n)
            start, end = datetime.fromtimestamp(at, UTC), datetime.fromtimestamp(at + 1.5, UTC)
            run = uuid.uuid4()
            run_rows.append((run, experiment, f"bench-web-study-{n}", 2, start, end, end, "bench"))
            trial_rows.append((uuid.uuid4(), study, n, state, json.dumps(params), [final] if state == 3 else None, run,
                               f"w{n % 8}", start, end))
            if reported:
                vals = [final + 0.6 * math.exp(-s / 4) + float(rng.normal(0, 0.005)) for s in range(reported)]
                curves[run] = vals
                ms = int(end.timestamp() * 1000)
                series_rows.append((run, "val_loss", 0, reported - 1, vals[-1], ms, min(vals), max(vals), reported))
        async with conn.transaction():
            await conn.copy_records_to_table("runs", columns=(
                "id", "experiment_id", "name", "status", "start_time", "end_time", "last_heartbeat", "user_name"),
                records=run_rows)
            await conn.copy_records_to_table("trials", columns=(
                "id", "study_id", "number", "state", "params", "objective_values", "run_id", "worker", "started_at",
                "ended_at"), records=trial_rows)
            await conn.copy_records_to_table("metric_series", columns=(
                "run_id", "key", "context", "last_step", "last_value", "last_ts", "min_value", "max_value", "points"),
                records=series_rows)
            series_ids = {r["run_id"]: r["id"] for r in await conn.fetch(
                "SELECT id, run_id FROM metric_series WHERE run_id = ANY($1::uuid[])", list(curves))}
            # ended as StopStudy ends it, here beside the trials: a StopStudy would have the hpo
            # service rebuild its Optuna mirror of the 10,000 trials first
            await conn.execute("UPDATE studies SET state = $2 WHERE id = $1", study, hpo_pb2.STUDY_STATE_STOPPED)
            await conn.copy_records_to_table("metric_chunks", columns=(
                "run_id", "series_id", "first_step", "last_step", "points", "steps", "vals", "timestamps"),
                records=[(run, series_ids[run], 0, len(v) - 1, len(v), struct.pack(f"<{len(v)}q", *range(len(v))),
                          struct.pack(f"<{len(v)}d", *v), struct.pack(f"<{len(v)}q", *[int(now * 1000)] * len(v)))
                         for run, v in curves.items()])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def seed_study(dsn: str, hpo_target: str, trials: int, steps: int) -> tuple[str, float]:
    """A study created paused through CreateStudy, its `trials` ended trials bulk-loaded into
    PostgreSQL and the study STOPPED, so its page does not poll; (study id, seconds)."""
    import asyncio

    start = time.perf_counter()
    with grpc.insecure_channel(hpo_target) as channel:
        stub = hpo_pb2_grpc.HpoServiceStub(channel)
        study_id = stub.CreateStudy(hpo_pb2.CreateStudyRequest(
            name=f"bench-web-study-{uuid.uuid4().hex[:8]}", objectives=[hpo_pb2.Objective(
                metric="val_loss", direction=hpo_pb2.DIRECTION_MINIMIZE)], search_space_json=json.dumps(SPACE),
            sampler="random", max_trials=trials, seed=1, paused=True), timeout=60).study.id
    asyncio.run(_seed_trials(dsn, study_id, trials, steps))
    return study_id, time.perf_counter() - start


STUDY_EXTRA = """async () => ({
  rows: document.querySelectorAll('#trials-table tbody tr:not(.spacer)').length,
  table_rows: Number(document.getElementById('trials-table').dataset.rows || 0),
  // the table draws the rows in view: scrolled to its end, the last trial's row is drawn
  last_row: await (async () => {
    const box = document.querySelector('.study-trials');
    box.scrollTop = box.scrollHeight;
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
    return [...document.querySelectorAll('#trials-table tbody tr:not(.spacer)')].pop()?.id ?? null;
  })(),
  parcoords_lines: Number(document.getElementById('parcoords-chart').dataset.lines || 0),
  parcoords_draw_ms: Number(document.getElementById('parcoords-chart').dataset.drawMs || NaN),
  history_points: Number(document.getElementById('history-chart').dataset.points || 0),
  importance_params: document.getElementById('importance-chart').dataset.params ?? null,
  api_ms: performance.getEntriesByType('resource').filter((e) => /\\/api\\/studies\\/[^/]+$/.test(e.name))
    .map((e) => [e.startTime, e.responseEnd, e.encodedBodySize])[0] || null,
  steps: Object.fromEntries(performance.getEntriesByType('mark')
    .filter((m) => m.name.startsWith('study:')).map((m) => [m.name.slice(6), Math.round(m.startTime)])),
  intermediate_ms: performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/intermediate'))
    .map((e) => [e.startTime, e.responseEnd, e.encodedBodySize])[0] || null,
})"""


def measure_study(dsn: str, web_url: str, hpo_target: str, trials: int, steps: int, loads: int) -> dict[str, Any]:
    study_id, seed_s = seed_study(dsn, hpo_target, trials, steps)
    found = load_pages(f"{web_url}/studies/{study_id}", {"page": "#study[data-ready='1']"}, loads, STUDY_EXTRA)
    for load in found["loads"]:  # every trial in the table, the last one reached by scrolling
        if load["table_rows"] != trials or load["last_row"] != f"trial-{trials - 1}":
            raise RuntimeError(f"the trials table holds {load['table_rows']:,} of {trials:,} trials; scrolled to "
                               f"its end it shows {load['last_row']}, not trial-{trials - 1}")
    return {"wanted_trials": trials, "trials": trials, "steps": steps, "seed_s": seed_s, **found}


# -- running and printing -------------------------------------------------------------------------

def run(parts: set[str], stack: Any, args: Any) -> dict[str, Any]:
    """The parts named in `parts` on a started stack; their figures."""
    web, ingest = stack.web_url, f"127.0.0.1:{stack.service_port('ingest')}"
    query, hpo = f"127.0.0.1:{stack.service_port('query')}", f"127.0.0.1:{stack.service_port('hpo')}"
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("compare", f"{args.compare_runs} runs × {args.compare_points:,} points and their compare page…",
         lambda: measure_compare(web, ingest, args.compare_runs, args.compare_points, args.loads)),
        ("parcoords", f"{args.parcoords_runs:,} runs for parallel coordinates…",
         lambda: measure_parcoords(stack.pg_dsn, web, query, args.parcoords_runs, args.calls, args.loads)),
        ("study", f"a {args.study_trials:,}-trial study and its page…",
         lambda: measure_study(stack.pg_dsn, web, hpo, args.study_trials, args.study_steps, args.loads)),
    ]
    found: dict[str, Any] = {}
    for name, what, measure in steps:
        if name in parts:
            with console.status(f"trackd: {what}"):
                try:
                    found[name] = measure()
                except Exception as exc:  # noqa: BLE001 — reported in the table; the other parts still run
                    console.print(f"[red]{name} failed: {exc}[/]")
                    found[name] = {"error": str(exc)[:3000]}
    return found


def save(found: dict[str, Any], load_at_start: float) -> None:
    results = {"cores": os.cpu_count(), "load_average_at_start": load_at_start, **found}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def run_alone(parts: set[str], args: Any) -> None:
    """The parts named in `parts` on a stack of their own."""
    load_at_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = None
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services, web)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        found = run(parts, stack, args)
        failed = False
    finally:
        if stack is not None:
            stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    save(found, load_at_start)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _span(entry: list[float] | None) -> str:
    """A Resource Timing [start, end, bytes] as "start→end ms"."""
    return f"{entry[0]:,.0f}→{entry[1]:,.0f} ms" if entry else "—"


def _steps(steps: dict[str, float] | None) -> str:
    """study.js's performance marks, in the order they came, as "name ms → …"."""
    return " → ".join(f"{name} {at:,.0f}" for name, at in sorted((steps or {}).items(), key=lambda s: s[1])) or "—"


def _verdict(seconds: float, target: float) -> str:
    return f"{'[green]✓' if seconds <= target else '[red]✗'} ≤ {_s(target)}[/]"


def print_table(r: dict[str, Any]) -> None:
    table = Table(title=f"Web UI, part 2 — headless Chromium, {r['cores']} cores, load average "
                        f"{r['load_average_at_start']:.1f} at the start")
    table.add_column("measurement (p50)", ratio=3, overflow="fold")
    table.add_column("trackd", justify="right", ratio=3, overflow="fold")
    table.add_column("target", justify="right", ratio=1, overflow="fold")
    median = lambda found: Timing(found["samples_s"]).median_s  # noqa: E731
    for name in PARTS:
        if "error" in r.get(name, {}):
            table.add_row(name, f"[red]failed: {r.pop(name)['error'][:600]}[/]", "[red]✗[/]")
    if c := r.get("compare"):
        last = c["loads"][-1]
        charts = median(c["marks"]["charts"])
        table.add_row(
            f"compare page, {c['runs']} runs × {c['points']:,} points, drawn\n[dim]navigation start → "
            f"body\\[data-charts-ready='1'], fresh context each load, {len(c['loads'])} loads[/]",
            f"{_s(charts)}\n[dim]p95 {_s(Timing(c['marks']['charts']['samples_s']).p95_s)}; {last['charts']} chart, "
            f"{last['lines']} lines, {last['points']:,} points drawn\nwhole page (parcoords, scatter, contour) "
            f"{_s(median(c['marks']['page']))}; painted {_s(median(c['painted']))}\n"
            f"written in {c['write_s']:.0f} s ({c['runs'] * c['points'] / c['write_s']:,.0f} points/s)[/]",
            _verdict(charts, 2.0))
    if pc := r.get("parcoords"):
        total = median(pc["grpc"]) + median(pc["draw"])
        table.add_row(
            f"parallel coordinates, {pc['runs']:,} runs × {pc['axes'] - 1} params + a metric\n[dim]GetParallel"
            f"Coordinates (gRPC) + parcoords.js drawing the rows in Chromium[/]",
            f"{_s(total)}\n[dim]GetParallelCoordinates {_s(median(pc['grpc']))} ({len(pc['grpc']['samples_s'])} "
            f"calls); drawn {_s(median(pc['draw']))}, painted {_s(median(pc['painted']))} ({len(pc['draws'])} "
            f"loads); {pc['json_bytes'] / 1024:,.0f} KiB as JSON[/]",
            _verdict(total, 1.0))
    if st := r.get("study"):
        page = median(st["marks"]["page"])
        last = st["loads"][-1]
        scaled = "" if st["trials"] >= st["wanted_trials"] else f" [red](only {st['trials']:,} of " \
                                                               f"{st['wanted_trials']:,} in the time)[/]"
        table.add_row(
            f"study page, {st['trials']:,} trials{scaled}\n[dim]navigation start → #study\\[data-ready='1'], "
            f"{len(st['loads'])} loads[/]",
            f"{_s(page)}\n[dim]p95 {_s(Timing(st['marks']['page']['samples_s']).p95_s)}; table of "
            f"{last['table_rows']:,} trials ({last['rows']} rows in view), {last['history_points']:,} history "
            f"points, parallel coordinates of {last['parcoords_lines']:,} "
            f"trials drawn in {last['parcoords_draw_ms']:,.0f} ms\nstudy.js marks (ms) {_steps(last.get('steps'))}\n"
            f"HTML (with the trials) by {last['html_ms']:,.0f} ms, "
            f"…/intermediate {_span(last['intermediate_ms'])}; painted "
            f"{_s(median(st['painted']))}; {st['trials']:,} trials × {st['steps']} intermediate values bulk-loaded in "
            f"{st['seed_s']:.0f} s[/]",
            _verdict(page, 1.5))
    console.print(table)
