"""HPO controller overhead and concurrent workers, side by side with Optuna's RDB storage on the
same PostgreSQL, on this machine, in one run (`make bench-hpo`).

1. controller overhead: a TPE study over 5 floats (the sphere function) with `--trials` completed
   trials of random configurations (10,000 by default; trackd: written into PostgreSQL while the
   study is paused, its engine rebuilt from them when it resumes), then `--timed` timed ask+tell
   pairs, one after the other from one client, with TPE fitted to all those trials. trackd:
   AcquireTrial + CompleteTrial on a gRPC stub, with
   `--train-ms` of "training" between them (not counted) during which the controller samples the
   next trial ahead, as it does for real workers — TPE over 10,000 trials takes about a second on
   this machine, so the default training time is 2 s; also pairs back to back, where the worker
   waits for the sampler. Optuna 5: as many trials of random configurations written into a
   `postgresql+psycopg://` RDBStorage — the rows `study.add_trial` writes, in one transaction
   (`_optuna_rdb.py write_trials`; add_trial takes ~60 ms a trial at 10,000, and
   `_optuna_rdb.py verify-fill` checks that Optuna reads both studies identically and samples the
   same next trial from them) — then study.ask() with the 5 suggest_float calls + study.tell()
   (TPESampler(seed=0)) on the study loaded afresh: its sampling is always on the worker's path.
2. the same ask+tell through Optuna's gRPC storage proxy (`GrpcStorageProxy`, unchanged Optuna code:
   ask + suggest_float + tell, TPESampler(seed=0) in the client), at the same number of completed
   trials: against trackd's StorageService (TRACKD_OPTUNA_PORT; its trials written into PostgreSQL
   as in 1., after one added through the proxy) and against Optuna's own `run_grpc_proxy_server`
   over the RDBStorage of 1. (bench/_optuna_proxy.py).
3. 32 concurrent workers, each with its own gRPC channel (Optuna: its own RDBStorage), looping over a
   cheap objective until 640 trials are complete; trials per second, and a check that no trial was
   lost or duplicated (exactly 640 trials, numbers 0..639, all COMPLETE).

Optuna runs in bench/.venv-anchors (bench/_optuna_rdb.py), which has the psycopg driver. Figures go
to bench/results/hpo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from _common import BENCH, anchor_json, console, ensure_anchors, sql, start_stack, with_database
from rich.table import Table
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.processes import Managed, free_port, port_open
from trackd_platform.stack import EmbeddedStack, StackPorts

RESULTS = BENCH / "results" / "hpo.json"
LOW, HIGH = -5.0, 5.0
ENDED = (hpo_pb2.STUDY_STATE_FINISHED, hpo_pb2.STUDY_STATE_STOPPED)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def sphere(params_json: str) -> float:
    return float(sum(v * v for v in json.loads(params_json).values()))


def create_study(name: str, params: int, *, max_trials: int, parallelism: int, startup: int = 10) -> str:
    import trackd.hpo

    space = {f"x{i}": {"type": "float", "low": LOW, "high": HIGH} for i in range(params)}
    return trackd.hpo.create_study(name, search_space=space, sampler="tpe", direction="minimize", seed=1,
                                   sampler_options={"n_startup_trials": startup},
                                   max_trials=max_trials, parallelism=parallelism).id


def ask_tell(stub: hpo_pb2_grpc.HpoServiceStub, study_id: str, worker: str,
             train_s: float = 0.0) -> tuple[hpo_pb2.Trial | None, float]:
    """One AcquireTrial (+ `train_s` of "training" + CompleteTrial of the sphere function when a
    trial was handed out). Returns the trial and the time spent in the two calls."""
    start = time.perf_counter()
    got = stub.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study_id, worker=worker), timeout=60)
    spent = time.perf_counter() - start
    if not got.HasField("trial"):
        return (None if got.study.state in ENDED else hpo_pb2.Trial()), spent  # empty: parallelism reached
    time.sleep(train_s)
    start = time.perf_counter()
    stub.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=got.trial.id, worker=worker,
                                                    values=[sphere(got.trial.params_json)]), timeout=60)
    return got.trial, spent + time.perf_counter() - start


def _write_trials(dsn: str, seed: int, params: int, trials: int, sql: str, study: Any) -> None:
    """`trials` COMPLETE trials of random configurations (seeded) written by `sql`, whose arguments are
    `study`, the state, and the trials' numbers, params as JSON and sphere values."""
    import asyncio
    import random

    import asyncpg

    rng = random.Random(seed)
    configs = [{f"x{i}": rng.uniform(LOW, HIGH) for i in range(params)} for _ in range(trials)]

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql, study, hpo_pb2.TRIAL_STATE_COMPLETE, list(range(trials)),
                               [json.dumps(c) for c in configs], [sum(v * v for v in c.values()) for c in configs])
        finally:
            await conn.close()
    asyncio.run(go())


def fill(dsn: str, study_id: str, params: int, trials: int) -> None:
    """`trials` COMPLETE trials of random configurations written straight into PostgreSQL (as
    Optuna's side writes its own): params as the hpo store writes them."""
    import uuid

    _write_trials(dsn, 0, params, trials,
                  """INSERT INTO trials (id, study_id, number, state, params, objective_values, started_at, ended_at)
                   SELECT gen_random_uuid(), $1, n, $2, to_jsonb(p), ARRAY[v], now(), now()
                   FROM unnest($3::int[], $4::text[], $5::float8[]) AS u(n, p, v)""", uuid.UUID(study_id))


def fill_optuna(dsn: str, study: str, params: int, trials: int) -> float:
    """`trials` more COMPLETE trials for the Optuna study `study` that trackd's StorageService
    holds (created through the proxy, with one trial whose distributions the others copy), written
    straight into PostgreSQL as `fill` does, with their Optuna rows. Returns the seconds taken."""
    start = time.perf_counter()
    _write_trials(dsn, 1, params, trials,
                  """WITH os AS (SELECT o.id, o.study_id FROM optuna_studies o JOIN studies s ON s.id = o.study_id
                               WHERE s.name = $1),
                        d AS (SELECT distributions FROM optuna_trials WHERE optuna_study_id = (SELECT id FROM os)
                              ORDER BY id LIMIT 1),
                        first AS (SELECT coalesce(max(number) + 1, 0) AS n FROM trials
                                  WHERE study_id = (SELECT study_id FROM os)),
                        new AS (INSERT INTO trials (id, study_id, number, state, params, objective_values,
                                                    started_at, ended_at)
                                SELECT gen_random_uuid(), os.study_id, first.n + u.i, $2, u.p::jsonb, ARRAY[u.v],
                                       now(), now()
                                FROM os, first, unnest($3::int[], $4::text[], $5::float8[]) AS u(i, p, v)
                                RETURNING id, params)
                   INSERT INTO optuna_trials (trial_id, optuna_study_id, params, distributions)
                   SELECT new.id, os.id, new.params, d.distributions FROM new, os, d""", study)
    return time.perf_counter() - start


def proxy_overhead(stack: EmbeddedStack, url: str, params: int, trials: int, timed: int,
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """ask+tell through GrpcStorageProxy at `trials` completed trials: against trackd's
    StorageService (a study created and given its first trial through the proxy, the others
    written by `fill_optuna`), and against Optuna's run_grpc_proxy_server over `url`'s
    RDBStorage, timing the study _optuna_rdb.py filled there ("bench-overhead")."""
    common = ["--params", str(params), "--timed", str(timed)]
    trackd_port = ["--host", "127.0.0.1", "--port", str(stack.ports.optuna), "--study", "bench-proxy"]
    anchor_json("_optuna_proxy.py", "trackd", *trackd_port, "--params", str(params), "--trials", "1",
                "--timed", "0")
    fill_s = fill_optuna(stack.pg_dsn, "bench-proxy", params, trials - 1)
    on_trackd = anchor_json("_optuna_proxy.py", "trackd", *trackd_port, "--existing", *common)
    on_rdb = anchor_json("_optuna_proxy.py", "grpc-rdb", "--url", url, "--study", "bench-overhead", "--existing",
                         *common)
    return {**on_trackd, "fill_s": fill_s}, on_rdb


def trackd_overhead(target: str, dsn: str, params: int, trials: int, timed: int, train_s: float,
                    name: str = "bench-overhead") -> dict[str, Any]:
    """One worker (parallelism 1): a study created paused, `trials` COMPLETE trials written into
    PostgreSQL, the study resumed (its engine rebuilt from them), then `timed` pairs with
    `train_s` of training between AcquireTrial and CompleteTrial (the controller samples the
    next trial meanwhile), then `timed` pairs back to back (the sampler on the worker's path)."""
    with grpc.insecure_channel(target) as channel:
        stub = hpo_pb2_grpc.HpoServiceStub(channel)
        space = {f"x{i}": {"type": "float", "low": LOW, "high": HIGH} for i in range(params)}
        study_id = stub.CreateStudy(hpo_pb2.CreateStudyRequest(
            name=name, search_space_json=json.dumps(space), sampler="tpe", seed=1, paused=True,
            objectives=[hpo_pb2.Objective(metric="value", direction=hpo_pb2.DIRECTION_MINIMIZE)]), timeout=60).study.id
        start = time.perf_counter()
        fill(dsn, study_id, params, trials)
        stub.StartStudy(hpo_pb2.StartStudyRequest(study_id=study_id), timeout=120)
        fill_s = time.perf_counter() - start

        def one(pause: float) -> float:
            trial, spent = ask_tell(stub, study_id, "bench-0", pause)
            assert trial is not None and trial.id, "parallelism 1, one client: a trial every time"
            return spent

        one(train_s)  # the first: sampled on demand when the study resumed
        samples = [one(train_s) for _ in range(timed)]
        back_to_back = [one(0.0) for _ in range(timed)]
    return {"fill_s": fill_s, "samples_s": samples, "back_to_back_s": back_to_back, "train_s": train_s}


def floor(tmp: Path, dsn: str, timed: int, train_s: float) -> dict[str, Any]:
    """The same timed pairs, with the same training time, against bench/_hpo_floor.py: a bare gRPC
    server whose two calls do nothing (`transport_s`); that does one durable write to the same
    PostgreSQL in CompleteTrial (`result_s`: the least any controller that acknowledges only stored
    results can do); and one in each call (`write_s`: also a claim that survives a crash)."""
    found: dict[str, Any] = {}
    for key, extra in (("transport_s", []), ("result_s", ["--dsn", dsn, "--write-in", "CompleteTrial"]),
                       ("write_s", ["--dsn", dsn])):
        port = free_port()
        server = Managed(name="hpo-floor", argv=[sys.executable, str(BENCH / "_hpo_floor.py"), str(port), *extra],
                         log_path=tmp / "hpo-floor.log", ready=lambda port=port: port_open("127.0.0.1", port))
        server.start()
        try:
            server.wait_ready(30)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = hpo_pb2_grpc.HpoServiceStub(channel)
                ask_tell(stub, "floor", "bench-0")  # connects
                found[key] = [ask_tell(stub, "floor", "bench-0", train_s)[1] for _ in range(timed)]
        finally:
            server.stop()
    return found


def list_trials(stub: hpo_pb2_grpc.HpoServiceStub, study_id: str) -> list[hpo_pb2.Trial]:
    trials: list[hpo_pb2.Trial] = []
    token = ""
    while True:
        page = stub.ListTrials(hpo_pb2.ListTrialsRequest(study_id=study_id, page_size=1000, page_token=token),
                               timeout=60)
        trials += page.trials
        token = page.next_page_token
        if not token:
            return trials


def trackd_concurrent(target: str, params: int, trials: int, workers: int) -> dict[str, Any]:
    study_id = create_study("bench-concurrent", params, max_trials=trials, parallelism=workers)
    done, empty, errors = [0] * workers, [0] * workers, []

    def worker(i: int) -> None:
        try:
            with grpc.insecure_channel(target) as channel:
                stub = hpo_pb2_grpc.HpoServiceStub(channel)
                while (trial := ask_tell(stub, study_id, f"bench-{i}")[0]) is not None:
                    if trial.id:
                        done[i] += 1
                    else:
                        empty[i] += 1
                        time.sleep(0.002)
        except Exception as exc:  # reported, not swallowed
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    with grpc.insecure_channel(target) as channel:
        found = list_trials(hpo_pb2_grpc.HpoServiceStub(channel), study_id)
    return {"elapsed_s": elapsed, "trials": len(found), "acquired": sum(done), "empty_acquires": sum(empty),
            "complete": sum(t.state == hpo_pb2.TRIAL_STATE_COMPLETE for t in found),
            "numbers_ok": sorted(t.number for t in found) == list(range(trials)), "errors": errors[:5]}


def ensure_grpc_in_anchors() -> None:
    """GrpcStorageProxy needs grpcio in the anchors venv (its import name is not its package name,
    which ensure_anchors assumes)."""
    python = BENCH / ".venv-anchors" / "bin" / "python"
    if subprocess.run([str(python), "-c", "import grpc"], capture_output=True).returncode != 0:
        console.print("[dim]installing grpcio into bench/.venv-anchors…[/]")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "grpcio"], check=True)


def optuna_helper(*args: str) -> dict[str, Any]:
    return anchor_json("_optuna_rdb.py", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000,
                        help="completed trials before the timed ask+tell pairs")
    parser.add_argument("--timed", type=int, default=30, help="timed ask+tell pairs")
    parser.add_argument("--params", type=int, default=5, help="floats in the search space")
    parser.add_argument("--train-ms", type=float, default=2000.0,
                        help="trackd: training time between AcquireTrial and CompleteTrial in the timed pairs")
    parser.add_argument("--workers", type=int, default=32, help="concurrent workers (0: skip that part)")
    parser.add_argument("--no-proxy", action="store_true", help="skip the GrpcStorageProxy part")
    parser.add_argument("--concurrent-trials", type=int, default=640, help="trials of the concurrent study")
    parser.add_argument("--show", action="store_true", help=f"print the table of {RESULTS.name} and exit")
    args = parser.parse_args()
    if args.show:
        print_table(json.loads(RESULTS.read_text()))
        return

    ensure_anchors("optuna", "psycopg")
    ensure_grpc_in_anchors()
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    stack = EmbeddedStack(tmp / "stack", ports=StackPorts.free())
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        sql(stack.pg_dsn, "CREATE DATABASE optuna_bench")
        url = with_database(stack.pg_dsn, "optuna_bench").replace("postgresql://", "postgresql+psycopg://", 1)
        target = f"127.0.0.1:{stack.service_port('hpo')}"
        common = ["--url", url, "--params", str(args.params)]

        with console.status(f"trackd: {args.trials:,} TPE trials, then {args.timed} timed AcquireTrial+CompleteTrial…"):
            td = {"overhead": trackd_overhead(target, stack.pg_dsn, args.params, args.trials, args.timed,
                                              args.train_ms / 1000)}
        with console.status(f"the floor: {args.timed} timed pairs against a bare gRPC server…"):
            td["floor"] = floor(tmp, stack.pg_dsn, args.timed, args.train_ms / 1000)
        with console.status(f"Optuna: {args.trials:,} TPE trials on RDBStorage, then {args.timed} timed ask+tell…"):
            op = {"overhead": optuna_helper("overhead", *common, "--study", "bench-overhead",
                                            "--trials", str(args.trials), "--timed", str(args.timed))}
        if not args.no_proxy:
            with console.status(f"GrpcStorageProxy: trackd's StorageService, then Optuna's proxy server over RDB, "
                                f"at {args.trials:,} trials, {args.timed} timed ask+tell…"):
                td["proxy"], op["proxy"] = proxy_overhead(stack, url, args.params, args.trials, args.timed)
        if args.workers:
            with console.status(f"trackd: {args.workers} workers, {args.concurrent_trials} trials…"):
                td["concurrent"] = trackd_concurrent(target, args.params, args.concurrent_trials, args.workers)
            with console.status(f"Optuna: {args.workers} threads, {args.concurrent_trials} trials…"):
                op["concurrent"] = optuna_helper("concurrent", *common, "--study", "bench-concurrent", "--trials",
                                                 str(args.concurrent_trials), "--workers", str(args.workers))
        failed = False
    finally:
        stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results = {"trials": args.trials, "timed": args.timed, "params": args.params, "workers": args.workers,
               "concurrent_trials": args.concurrent_trials, "trackd": td, "optuna": op}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r: dict[str, Any]) -> None:
    def latency(found: dict[str, Any]) -> str:
        s = found["samples_s"]
        return (f"p50 {ms(statistics.median(s))}\n[dim]p95 {ms(percentile(s, 0.95))}, {len(s)} pairs\n"
                f"fill: {r['trials'] / found['fill_s']:,.0f} trials/s (written, then read back)[/]")

    def proxy_latency(found: dict[str, Any]) -> str:
        s = found["samples_s"]
        return f"p50 {ms(statistics.median(s))}\n[dim]p95 {ms(percentile(s, 0.95))}, {len(s)} pairs[/]"

    def rate(found: dict[str, Any]) -> str:
        ok = (found["trials"] == found["complete"] == r["concurrent_trials"] and found["numbers_ok"]
              and not found["errors"])
        check = "[green]no trial lost[/]" if ok else f"[red]LOST / FAILED: {found['errors'] or ''}[/]"
        return (f"{r['concurrent_trials'] / found['elapsed_s']:,.1f} trials/s\n"
                f"[dim]{found['elapsed_s']:,.1f} s, {found['complete']}/{found['trials']} COMPLETE[/]\n{check}")

    td, op = r["trackd"], r["optuna"]
    table = Table(title=f"HPO controller — same PostgreSQL, same machine ({os.cpu_count()} cores)")
    table.add_column("measurement", ratio=3, overflow="fold")
    table.add_column("trackd", justify="right", ratio=2, overflow="fold")
    table.add_column(f"Optuna {op['overhead'].get('optuna', '')} RDB", justify="right", ratio=2, overflow="fold")
    table.add_column("target", justify="right", ratio=1, overflow="fold")
    over = td["overhead"]
    table.add_row(f"ask+tell, TPE, {r['params']} floats, at {r['trials']:,} completed trials\n"
                  "[dim]trackd: AcquireTrial + CompleteTrial (gRPC), the trial sampled ahead while the previous "
                  f"one trains ({over.get('train_s', 0) * 1000:.0f} ms, not counted); "
                  "Optuna: ask + suggest_float + tell[/]",
                  latency(over), latency(op["overhead"]), "p50 ≤ 5 ms")
    if "back_to_back_s" in over:
        table.add_row("the same, back to back (no training time: the worker waits for the sampler)",
                      latency({"samples_s": over["back_to_back_s"], "fill_s": over["fill_s"]}), "", "")
    if bare := td.get("floor"):
        write = statistics.median(bare["write_s"])
        table.add_row("the floor: the same pairs, the same training time, against a bare gRPC server of "
                      "HpoService (bench/_hpo_floor.py)\n[dim]its calls doing nothing; one durable PostgreSQL "
                      "write in CompleteTrial (a result acknowledged once stored: the least a controller can do); "
                      "one in each call (a claim that survives a crash too)[/]",
                      f"nothing: {ms(statistics.median(bare['transport_s']))}\n"
                      f"result stored: {ms(statistics.median(bare['result_s']))}\n"
                      f"claim and result: {ms(write)}\n[dim]p50 of {len(bare['write_s'])} pairs; "
                      f"trackd above it: {ms(statistics.median(over['samples_s']) - write)}[/]", "", "")
    if "proxy" in td:
        rdb = op["proxy"]
        table.add_row(f"ask+tell through GrpcStorageProxy, at {r['trials']:,} completed trials\n"
                      "[dim]unchanged Optuna code: ask + suggest_float + tell, TPE in the client; trackd: its "
                      "StorageService; Optuna: run_grpc_proxy_server over the RDB study above "
                      f"({rdb.get('trials_before', 0):,} trials)[/]",
                      proxy_latency(td["proxy"]), proxy_latency(rdb), "")
    if "concurrent" not in td:
        table.add_row("concurrent workers: not run (--workers 0)", "", "", "")
    else:
        table.add_row(f"{r['workers']} concurrent workers, {r['concurrent_trials']} trials, TPE\n"
                      "[dim]each with its own channel (Optuna: its own RDBStorage)[/]",
                      rate(td["concurrent"]) + f"\n[dim]{td['concurrent']['empty_acquires']:,} empty acquires[/]",
                      rate(op["concurrent"]), "no trial lost")
    console.print(table)
    console.print(f"[dim]Objective: the sphere function over x_i ∈ [{LOW:g}, {HIGH:g}]. Timed pairs run one after "
                  f"the other from one client after the fill. Figures in {RESULTS.relative_to(BENCH.parent)}.[/]")


if __name__ == "__main__":
    main()
