"""The query service on the real stack: the search grammar, ordering and paging, injection
attempts, metric history and downsampling, the latest-metric fallback, analysis, WatchRun."""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

import asyncpg
import grpc
import pytest
import trackd
from trackd.errors import FailedPrecondition, InvalidArgument, NotFound
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

# name → (params, tags, metrics as {key: [values by step]}, end status)
RUNS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, list[float]], str]] = {
    "a": ({"lr": "1e-4", "model": "bert-base"}, {"priority": "p0"}, {"val_auc": [0.5, 0.9], "loss": [2, 1]},
          "FINISHED"),
    "b": ({"lr": "3e-4", "model": "bert-large"}, {"priority": "p1"}, {"val_auc": [0.7, 0.8], "loss": [3, 0.5]},
          "FINISHED"),
    "c": ({"lr": "1e-3", "model": "gpt2"}, {}, {"val_auc": [0.95], "loss": [0.2]}, "FAILED"),
    "d": ({"lr": "3e-4", "model": "BERT-tiny"}, {"priority": "p0"}, {"loss": [5.0]}, "FINISHED"),
    "e": ({"model": "o'brien; DROP TABLE runs; --"}, {"note": "x\\y"}, {"val_auc": [math.nan]}, "KILLED"),
}


@pytest.fixture(scope="module")
def dataset(stack: EmbeddedStack) -> Iterator[tuple[str, dict[str, str]]]:
    experiment = f"query-{time.time_ns()}"
    ids = {}
    for name, (params, tags, metrics, status) in RUNS.items():
        with trackd.start_run(experiment=experiment, name=name, params=params, system_metrics=False) as run:
            run.set_tags(tags)
            for key, values in metrics.items():
                for step, value in enumerate(values):
                    run.log_metric(key, value, step=step)
            run.end(status)
        ids[name] = run.info.id
    yield experiment, ids


def names(experiment: str, ids: dict[str, str], filter: str, order_by: tuple[str, ...] = ()) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[r.id] for r in trackd.search_runs(experiment, filter, order_by)]


@pytest.mark.parametrize(("filter", "expected"), [
    ("metrics.val_auc > 0.85", {"a", "c"}),
    ("metrics.val_auc >= 0.8 AND metrics.val_auc <= 0.9", {"a", "b"}),
    ("metrics.val_auc != 0.9", {"b", "c", "e"}),  # NaN != 0.9 (IEEE); d has no val_auc
    ("metrics.val_auc = 0.8", {"b"}),
    ("metrics.val_auc < 0.85", {"b"}),
    ("min(metrics.loss) < 0.6", {"b", "c"}),
    ("max(metrics.val_auc) >= 0.9", {"a", "c"}),
    ("params.lr = '3e-4'", {"b", "d"}),
    ("params.lr IN ('1e-4', '3e-4')", {"a", "b", "d"}),
    ("params.lr NOT IN ('1e-4', '3e-4')", {"c"}),
    ("params.lr < 0.0005", {"a", "b", "d"}),  # numeric when the literal is a number
    ("params.model LIKE 'bert%'", {"a", "b"}),
    ("params.model ILIKE 'bert%'", {"a", "b", "d"}),
    ("params.model NOT LIKE 'bert%'", {"c", "d", "e"}),
    ("tags.priority = 'p0'", {"a", "d"}),
    ("tags.priority IS NULL", {"c", "e"}),
    ("tags.priority IS NOT NULL", {"a", "b", "d"}),
    ("metrics.val_auc IS NULL", {"d"}),
    ("attributes.status = 'FINISHED'", {"a", "b", "d"}),
    ("attributes.status IN ('FAILED', 'KILLED')", {"c", "e"}),
    ("attributes.run_name = 'c' OR attributes.name = 'e'", {"c", "e"}),
    ("attributes.end_time IS NOT NULL AND attributes.duration >= 0", {"a", "b", "c", "d", "e"}),
    ("(metrics.val_auc > 0.85 OR tags.priority = 'p0') AND params.lr IN ('1e-4', '3e-4')", {"a", "d"}),
    ("NOT (metrics.val_auc > 0.85)", {"b", "d", "e"}),
    ("NOT metrics.val_auc > 0.85 AND NOT tags.priority IS NULL", {"b", "d"}),
    ("metrics.val_auc > 0.85 OR (params.model LIKE '%tiny' AND NOT attributes.status = 'FAILED')", {"a", "c", "d"}),
    ("params.model = 'o''brien; DROP TABLE runs; --'", {"e"}),
    ("params.model = \"o'brien; DROP TABLE runs; --\"", {"e"}),
    ("tags.note = 'x\\\\y'", {"e"}),
    ("params.`lr` = '1e-3'", {"c"}),
])
def test_each_operator_and_boolean_form(dataset: tuple[str, dict[str, str]], filter: str, expected: set[str]) -> None:
    experiment, ids = dataset
    assert set(names(experiment, ids, filter)) == expected


def test_order_by_puts_missing_values_last_in_both_directions(dataset: tuple[str, dict[str, str]]) -> None:
    experiment, ids = dataset
    # latest val_auc: a 0.9, b 0.8, c 0.95, e NaN (sorts as missing), d missing
    assert names(experiment, ids, "", ("metrics.val_auc DESC",))[:3] == ["c", "a", "b"]
    assert set(names(experiment, ids, "", ("metrics.val_auc DESC",))[3:]) == {"d", "e"}
    assert names(experiment, ids, "", ("metrics.val_auc ASC",))[:3] == ["b", "a", "c"]
    assert names(experiment, ids, "", ("tags.priority", "attributes.name DESC")) == ["d", "a", "b", "e", "c"]


@pytest.mark.parametrize("filter", [
    "'; DROP TABLE runs; --", "metrics.x > 1; DROP TABLE runs", "params.a = 'unterminated", "metrics.x >",
    "metrics.x > 'text'", "params.a LIKE 5", "attributes.nope = 1", "attributes.status = 'DONE'", "foo = 1",
    "(metrics.x > 1", "metrics.x > 1)", "metrics.x > 1 AND", "params.a = 'x' OR OR", "params.\u00e9\u00e8 ~ 1",
    "min(params.a) > 1", "metrics.x IN (1, 'a')", "attributes.run_id = 'not-an-id'", "metrics.x@nope > 1",
])
def test_bad_filters_are_invalid_argument_with_a_position(dataset: tuple[str, dict[str, str]], filter: str) -> None:
    experiment, _ = dataset
    with pytest.raises(InvalidArgument) as caught:
        trackd.search_runs(experiment, filter)
    message = str(caught.value)
    assert "character" in message or "IN list" in message or "compares" in message, message


def test_injection_shaped_values_are_plain_data(dataset: tuple[str, dict[str, str]]) -> None:
    experiment, ids = dataset
    for value in ["'; DROP TABLE runs; --", "\\", "\\'", "%", "_", "\u202e\u0000x", "😀", "' OR '1'='1"]:
        quoted = "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
        if "\x00" in value:  # PostgreSQL text cannot hold NUL, so no value has one
            with pytest.raises(InvalidArgument, match="NUL"):
                names(experiment, ids, f"params.model = {quoted}")
            continue
        assert names(experiment, ids, f"params.model = {quoted}") == []
        if value.endswith("\\"):  # LIKE's escape character cannot end a pattern
            with pytest.raises(InvalidArgument):
                names(experiment, ids, f"tags.note LIKE {quoted}")
        else:
            assert names(experiment, ids, f"tags.note LIKE {quoted}") == ([] if value != "%" else ["e"])
    assert len(trackd.search_runs(experiment)) == len(RUNS)  # the table is still there


def test_pages_do_not_shift_while_runs_are_added(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("paging")
    for i in range(7):
        with trackd.start_run(experiment=experiment, system_metrics=False) as run:
            run.log_metric("score", float(i % 3), step=0)
    order = ["metrics.score DESC"]
    client = trackd.Client()
    selection = query_pb2.RunSelection(experiment_names=[experiment])
    first = client.query.SearchRuns(query_pb2.SearchRunsRequest(selection=selection, order_by=order, page_size=3))
    before = [r.id for r in trackd.search_runs(experiment, "", order)]
    for i in range(4):  # new runs land before and after the cursor
        with trackd.start_run(experiment=experiment, system_metrics=False) as run:
            run.log_metric("score", [5.0, -1.0][i % 2], step=0)
    seen = [r.run.id for r in first.results]
    token = first.next_page_token
    while token:
        page = client.query.SearchRuns(query_pb2.SearchRunsRequest(
            selection=selection, order_by=order, page_size=3, page_token=token))
        seen += [r.run.id for r in page.results]
        token = page.next_page_token
    original = [i for i in seen if i in before]
    assert original == before  # each old run once, in the same order
    assert len(seen) == len(set(seen)) == 7 + 2  # and only the new ones sorting after the cursor
    with pytest.raises(grpc.RpcError) as caught:
        client.query.SearchRuns(query_pb2.SearchRunsRequest(
            selection=selection, order_by=["metrics.score ASC"], page_size=3, page_token=first.next_page_token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    client.close()


def _write(stack: EmbeddedStack, run_id: str, key: str, steps: list[int], values: list[float]) -> None:
    with grpc.insecure_channel(stack.client_env()["TRACKD_INGEST_TARGET"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for start in range(0, len(steps), 50_000):
            stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run_id, series=[ingest_pb2.MetricSeries(
                key=key, steps=steps[start:start + 50_000], values=values[start:start + 50_000])]), timeout=60)


def test_history_downsampling_keeps_extremes_and_the_last_point(stack: EmbeddedStack,
                                                                unique: Callable[[str], str]) -> None:
    n = 200_000
    values = [math.sin(i / 500) for i in range(n)]
    values[12_345], values[150_001], values[-1] = 7.5, -9.25, 0.125  # spikes LTTB alone could miss
    values[777] = math.nan
    with trackd.start_run(experiment=unique("history"), system_metrics=False) as run:
        # written out of order: the second half first
        _write(stack, run.info.id, "wave", list(range(n // 2, n)), values[n // 2:])
        _write(stack, run.info.id, "wave", list(range(n // 2)), values[: n // 2])
    full = trackd.get_metric_history(run.info.id, "wave")
    assert [p.step for p in full] == list(range(n))
    assert full[12_345].value == 7.5 and math.isnan(full[777].value)
    small = trackd.get_metric_history(run.info.id, "wave", max_points=500)
    assert 400 <= len(small) <= 500
    steps = [p.step for p in small]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == n - 1
    assert max(p.value for p in small if not math.isnan(p.value)) == 7.5
    assert min(p.value for p in small if not math.isnan(p.value)) == -9.25
    assert small[-1].value == 0.125
    assert trackd.get_metric_history(run.info.id, "wave", max_points=500) == small  # deterministic
    assert all(p.value == values[p.step] for p in small if not math.isnan(p.value))  # real points only
    # a range cutting two chunks: those are read whole, the chunks inside it through their overviews
    with grpc.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]) as channel:
        ranged = query_pb2_grpc.QueryServiceStub(channel).GetMetricHistory(query_pb2.GetMetricHistoryRequest(
            run_id=run.info.id, key="wave", max_points=500, start_step=10_000, end_step=190_000), timeout=30)
    assert ranged.total_points == 180_001 and ranged.downsampled and len(ranged.series.steps) == 500
    assert (ranged.series.steps[0], ranged.series.steps[-1]) == (10_000, 190_000)
    assert max(ranged.series.values) == 7.5 and min(ranged.series.values) == -9.25
    assert all(values[s] == v for s, v in zip(ranged.series.steps, ranged.series.values, strict=True))
    window = trackd.get_metric_history(run.info.id, "wave", start_step=100, end_step=199)
    assert [p.step for p in window] == list(range(100, 200))
    exported = [p for part in trackd.export_metric(run.info.id, "wave") for p in part]
    assert [p.step for p in exported] == list(range(n))
    assert trackd.get_metric_history(run.info.id, "missing") == []
    with pytest.raises(NotFound):
        trackd.get_metric_history("0" * 32, "wave")


# float64 bit patterns a float comparison would blur (NaN payloads, signalling NaNs, ±Inf, -0.0,
# subnormals, the extremes): stored compressed, they must come back with the same bits
SPECIAL_BITS = [0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0000, 0x7FF8_0000_0000_0001, 0x7FFF_FFFF_FFFF_FFFF,
                0xFFF0_0000_DEAD_BEEF, 0x7FF0_0000_0000_0001, 0x7FF4_0000_0000_0000, 0x7FF0_0000_0000_0000,
                0xFFF0_0000_0000_0000, 0x8000_0000_0000_0000, 0x0000_0000_0000_0001, 0x000F_FFFF_FFFF_FFFF,
                0x8000_0000_0000_0001, 0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF]


def _bits(values: Iterable[float]) -> list[int]:
    return [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values]


def test_special_float_values_come_back_bit_for_bit(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    """A loss curve with every special value in it (a compressed chunk) and the special values
    alone (a chunk too short to compress) read back with their exact bits, whole and exported."""
    specials = [struct.unpack("<d", struct.pack("<Q", b))[0] for b in SPECIAL_BITS]
    curve = [struct.unpack("<f", struct.pack("<f", 2.5 / (i + 1)))[0] for i in range(2_000)]
    mixed = curve[:1_000] + specials + curve[1_000:]
    with trackd.start_run(experiment=unique("bits"), system_metrics=False) as run:
        _write(stack, run.info.id, "mixed", list(range(len(mixed))), mixed)
        _write(stack, run.info.id, "alone", list(range(len(specials))), specials)
    with grpc.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for key, sent in (("mixed", mixed), ("alone", specials)):
            history = stub.GetMetricHistory(query_pb2.GetMetricHistoryRequest(run_id=run.info.id, key=key),
                                            timeout=30)
            assert list(history.series.steps) == list(range(len(sent)))
            assert _bits(history.series.values) == _bits(sent), key
            parts = stub.ExportMetric(query_pb2.ExportMetricRequest(run_id=run.info.id, key=key), timeout=30)
            assert _bits(v for part in parts for v in part.series.values) == _bits(sent), key


def test_chunks_written_before_compression_read_bit_for_bit(stack: EmbeddedStack,
                                                           unique: Callable[[str], str]) -> None:
    """A chunk as every chunk was stored before pcodec (raw little-endian columns, no overview),
    special values included, reads back exactly."""
    specials = [struct.unpack("<d", struct.pack("<Q", b))[0] for b in SPECIAL_BITS]
    values = [i / 7 for i in range(200)] + specials
    steps = list(range(len(values)))
    with trackd.start_run(experiment=unique("old-chunks"), system_metrics=False) as run:
        pass

    async def insert() -> None:
        conn = await asyncpg.connect(stack.pg_dsn)
        try:
            series_id = await conn.fetchval(
                """INSERT INTO metric_series (run_id, key, context, last_step, last_value, last_ts, min_value,
                                              max_value, points)
                   VALUES ($1, 'old', 0, $2, 0, 1, 0, 0, $3) RETURNING id""",
                uuid.UUID(run.info.id), steps[-1], len(steps))
            await conn.execute(
                """INSERT INTO metric_chunks (run_id, series_id, first_step, last_step, points, steps, vals, timestamps)
                   VALUES ($1, $2, 0, $3, $4, $5, $6, $7)""",
                uuid.UUID(run.info.id), series_id, steps[-1], len(steps), struct.pack(f"<{len(steps)}q", *steps),
                struct.pack(f"<{len(values)}d", *values), struct.pack(f"<{len(steps)}q", *[1] * len(steps)))
        finally:
            await conn.close()

    asyncio.run(insert())
    with grpc.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        history = stub.GetMetricHistory(query_pb2.GetMetricHistoryRequest(run_id=run.info.id, key="old"), timeout=30)
        assert list(history.series.steps) == steps and _bits(history.series.values) == _bits(values)
        parts = stub.ExportMetric(query_pb2.ExportMetricRequest(run_id=run.info.id, key="old"), timeout=30)
        assert _bits(v for part in parts for v in part.series.values) == _bits(values)


def test_bulk_history_and_aggregation_across_seeds(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("seeds")
    ids = []
    for seed in range(3):
        with trackd.start_run(experiment=experiment, system_metrics=False) as run:
            for step in range(100):
                run.log_metric("acc", step / 100 + seed, step=step)
        ids.append(run.info.id)
    bulk = trackd.get_metric_histories(ids, ["acc", "absent"], max_points=10)
    assert set(bulk) == {(i, "acc") for i in ids}
    assert all(len(points) == 10 and points[-1].step == 99 for points in bulk.values())
    buckets = trackd.aggregate_metric(ids, "acc", bucket_width=10)
    assert len(buckets) == 10
    first = buckets[0]
    assert (first.start_step, first.end_step, first.count) == (0, 9, 30)
    assert first.min == 0.0 and first.max == pytest.approx(2.09)
    assert first.mean == pytest.approx(sum(s / 100 + seed for s in range(10) for seed in range(3)) / 30)
    assert buckets[-1].last == pytest.approx(0.99 + 2) or buckets[-1].last in (0.99, 1.99, 2.99)
    auto = trackd.aggregate_metric(ids, "acc", max_buckets=7)
    assert len(auto) <= 7 and sum(b.count for b in auto) == 300


def test_latest_metrics_come_from_redis_and_from_postgres_when_it_is_down(
        stack: EmbeddedStack, dataset: tuple[str, dict[str, str]]) -> None:
    _, ids = dataset
    channel = grpc.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"])
    stub = query_pb2_grpc.QueryServiceStub(channel)
    cached = stub.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=ids["b"]), timeout=10)
    assert cached.from_cache
    valkey = stack.infra["valkey"]
    valkey.stop()
    try:
        fallback = stub.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=ids["b"]), timeout=10)
    finally:
        valkey.start()
        valkey.wait_ready(30)
    assert not fallback.from_cache
    assert {(m.key, m.step, m.value, m.min, m.max, m.count) for m in fallback.metrics} == \
           {(m.key, m.step, m.value, m.min, m.max, m.count) for m in cached.metrics} == \
           {("loss", 1, 0.5, 0.5, 3.0, 2), ("val_auc", 1, 0.8, 0.7, 0.8, 2)}
    channel.close()


def test_compare_summarize_and_analysis(dataset: tuple[str, dict[str, str]]) -> None:
    experiment, ids = dataset
    comparison = trackd.compare_runs([ids["a"], ids["b"], ids["d"]])
    assert comparison.params["lr"] == ["1e-4", "3e-4", "3e-4"]
    assert set(comparison.differing_params) == {"lr", "model"}
    assert comparison.metrics["val_auc"] == [0.9, 0.8, None]
    summary = {s.name: s for s in trackd.summarize_experiment(experiment)}
    assert summary["loss"].direction == "min" and summary["loss"].best == 0.2
    assert summary["loss"].best_run_id == ids["c"] and summary["loss"].worst == 5.0
    assert summary["val_auc"].direction == "max" and summary["val_auc"].runs == 3  # NaN ignored
    assert summary["val_auc"].median == 0.9
    assert summary["val_auc"].mean == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    flipped = {s.name: s for s in trackd.summarize_experiment(experiment, directions={"val_auc": "min"})}
    assert flipped["val_auc"].best == 0.8 and flipped["val_auc"].best_run_id == ids["b"]


def test_importance_parallel_coordinates_and_contour(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("sweep")
    for lr in (0.001, 0.01, 0.1):
        for width in (32, 64, 128):
            for opt in ("adam", "sgd"):
                with trackd.start_run(experiment=experiment, system_metrics=False,
                                      params={"lr": lr, "width": width, "opt": opt}) as run:
                    run.log_metric("loss", 10 * lr + width / 1e6, step=0)  # lr drives the loss
    importances = trackd.param_importance(experiment, "loss")
    assert list(importances)[0] == "lr" and importances["lr"] > 0.8
    assert sum(importances.values()) == pytest.approx(1.0)
    run_ids, axes = trackd.parallel_coordinates(experiment, "loss", params=["lr", "opt"])
    assert len(run_ids) == 18 and [a.name for a in axes] == ["lr", "opt", "loss"]
    assert axes[1].categories == ["adam", "sgd"] and set(axes[1].values) == {0.0, 1.0}
    data = trackd.contour(experiment, "lr", "width", "loss")
    assert data.grid_x == [0.001, 0.01, 0.1] and data.grid_y == [32, 64, 128]
    assert data.grid_z[0][2] == pytest.approx(10 * 0.1 + 32 / 1e6)
    with pytest.raises(FailedPrecondition):
        trackd.param_importance(experiment, "no-such-metric")


def test_watch_run_receives_points_written_through_ingest(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    run = trackd.start_run(experiment=unique("watch"), system_metrics=False)
    for step in range(5):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.flush()
    received: list[tuple[str, trackd.Point]] = []
    done = threading.Event()

    def watch() -> None:
        for item in trackd.watch_run(run.info.id, from_step=3):
            received.append(item)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:  # the backlog: steps 3 and 4
        time.sleep(0.05)
    sent_at = {}
    for step in range(5, 10):
        sent_at[step] = time.monotonic()
        run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.flush()
    run.end()
    assert done.wait(15), f"the watch ends once the run has ended; got {received}"
    assert [p.step for _, p in received] == [3, 4, 5, 6, 7, 8, 9]
    assert all(name == "loss" for name, _ in received)
    assert received[-1][1].value == pytest.approx(0.1)


def test_cli_search_compare_and_watch(dataset: tuple[str, dict[str, str]]) -> None:
    from trackd.cli import app
    from typer.testing import CliRunner

    experiment, ids = dataset
    cli = CliRunner()
    found = cli.invoke(app, ["runs", "search", "metrics.val_auc > 0.85", "-e", experiment,
                             "--order-by", "metrics.val_auc DESC"], env={"COLUMNS": "250"})
    assert found.exit_code == 0, found.output
    assert "2 runs" in found.output and found.output.index(ids["c"]) < found.output.index(ids["a"])
    bad = cli.invoke(app, ["runs", "search", "metrics.val_auc >", "-e", experiment])
    assert bad.exit_code == 1 and "expected a value" in bad.output
    compared = cli.invoke(app, ["runs", "compare", ids["a"], ids["b"]], env={"COLUMNS": "250"})
    assert compared.exit_code == 0, compared.output
    assert "params.lr" in compared.output and "1e-4" in compared.output and "3e-4" in compared.output
    watched = cli.invoke(app, ["runs", "watch", ids["a"], "--from-step", "0"], env={"COLUMNS": "250"})
    assert watched.exit_code == 0, watched.output
    assert "watched 4 points" in watched.output  # val_auc and loss, two steps each; the run has ended


def test_views_several_experiments_and_a_frame(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    first, second = unique("exp-a"), unique("exp-b")
    ids = {}
    for experiment, name in [(first, "kept"), (first, "gone"), (second, "other")]:
        with trackd.start_run(experiment=experiment, name=name, params={"lr": 0.1}, system_metrics=False) as run:
            run.log_metric("acc", 0.5, step=0)
            run.log_metric("acc", 0.75, step=1, context="eval")
        ids[name] = run.info.id
    client = trackd.Client()
    client.call("run", client.runs.DeleteRun, run_pb2.DeleteRunRequest(run_id=ids["gone"]))
    assert {r.name for r in trackd.search_runs([first, second])} == {"kept", "other"}
    assert [r.name for r in trackd.search_runs(first, view="deleted")] == ["gone"]
    assert {r.name for r in trackd.search_runs(first, view="all")} == {"kept", "gone"}
    assert [r.name for r in trackd.search_runs(second, "metrics.acc@eval = 0.75 AND metrics.acc = 0.5")] == ["other"]
    with pytest.raises(NotFound, match="does not exist"):
        trackd.search_runs([first, "no-such-experiment"])
    frame = trackd.runs_to_frame(trackd.search_runs([first, second], order_by=["attributes.name"]))
    assert list(frame["name"]) == ["kept", "other"]
    assert list(frame["metrics.acc"]) == [0.5, 0.5] and list(frame["metrics.acc@eval"]) == [0.75, 0.75]
    assert list(frame["params.lr"]) == ["0.1", "0.1"]
    client.close()


def test_paging_by_a_metric_crosses_from_valued_runs_to_runs_without_one(
        stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("paging-metric")
    values = [0.3, 0.9, math.nan, 0.5, None, 0.1, None]
    ids = []
    for value in values:
        with trackd.start_run(experiment=experiment, system_metrics=False) as run:
            if value is not None:
                run.log_metric("score", value, step=0)
            run.log_metric("other", 1.0, step=0)
        ids.append(run.id)
    client = trackd._client.default_client()
    selection = query_pb2.RunSelection(experiment_names=[experiment])
    for descending in (True, False):
        valued = sorted((v, i) for v, i in zip(values, ids, strict=True) if v is not None and not math.isnan(v))
        if descending:
            valued = sorted(valued, key=lambda p: -p[0])
        expected = [i for _, i in valued] + sorted(i for v, i in zip(values, ids, strict=True)
                                                   if v is None or math.isnan(v))
        seen, token = [], ""
        while True:
            page = client.query.SearchRuns(query_pb2.SearchRunsRequest(
                selection=selection, order_by=[f"metrics.score {'DESC' if descending else 'ASC'}"], page_size=2,
                page_token=token), timeout=30)
            seen += [r.run.id for r in page.results]
            token = page.next_page_token
            if not token:
                break
        assert seen == expected, descending


def test_param_filters_ordered_by_a_metric_see_params_logged_late_and_large_ones(
        stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    """Ordered by a metric, a param filter reads the params each series row carries (migration
    0022): params logged after the series exist reach them, and a run whose params are too large
    to carry is still found (from run_params)."""
    experiment = unique("walked-params")
    ids = {}
    for name, score, params in (("late", 0.9, {}), ("large", 0.5, {"big": "x" * 2000}), ("early", 0.7, {"opt": "sgd"})):
        with trackd.start_run(experiment=experiment, name=name, params=params, system_metrics=False) as run:
            run.log_metric("score", score, step=0)
            if name == "late":
                assert run.flush(timeout_s=30)  # the series exists before the params are logged
                run.log_params({"opt": "adam"})
        ids[name] = run.id
    cases = {"params.opt = 'adam'": ["late"], "params.opt != 'adam'": ["early"], "params.opt IS NULL": ["large"],
             "params.big LIKE 'xx%'": ["large"], "params.big IS NOT NULL OR params.opt = 'sgd'": ["early", "large"],
             "NOT (params.opt IN ('adam', 'sgd'))": ["large"]}
    for filter, expected in cases.items():
        assert names(experiment, ids, filter, ("metrics.score DESC",)) == expected, filter


def test_a_series_created_while_params_are_logged_carries_them(stack: EmbeddedStack,
                                                               unique: Callable[[str], str]) -> None:
    """The search copy of a run's params (migration 0022) is exact even when the ingest service
    creates a series while the run service is logging params: the series waits for that commit."""
    import numpy as np
    from trackd_services.ingest.domain import Chunk
    from trackd_services.ingest.store import MetricStore

    with trackd.start_run(experiment=unique("params-race"), params={"a": "1"}, system_metrics=False) as run:
        run_id = uuid.UUID(run.info.id)

        async def race() -> tuple[bool, object]:
            pool = await asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=2)
            try:
                async with pool.acquire() as conn, conn.transaction():  # what RunStore.log_params does
                    await conn.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", run_id)
                    await conn.execute("INSERT INTO run_params (run_id, key, value) VALUES ($1, 'b', '2')", run_id)
                    steps = np.arange(3, dtype=np.int64)
                    write = asyncio.create_task(MetricStore(pool).commit(run_id, [Chunk("m", 0, steps, steps * 0.5,
                                                                                       steps)]))
                    await asyncio.sleep(0.5)
                    waited = not write.done()
                await write
                return waited, await pool.fetchval(
                    "SELECT run_params::text FROM metric_series WHERE run_id = $1 AND key = 'm'", run_id)
            finally:
                await pool.close()

        waited, copy = asyncio.run(race())
    assert waited and copy == '{"a": "1", "b": "2"}'


def test_search_results_hold_the_runs_get_run_returns(dataset: tuple[str, dict[str, str]]) -> None:
    """SearchRuns builds its runs from its own page query (search_page.py): each is GetRun's run,
    field for field (times, duration, source and environment as captured, notes), less the
    environment's packages."""
    experiment, ids = dataset
    client = trackd.Client()
    try:
        client.runs.SetNotes(run_pb2.SetNotesRequest(run_id=ids["a"], notes="searched *notes*"))
        page = client.query.SearchRuns(query_pb2.SearchRunsRequest(
            selection=query_pb2.RunSelection(experiment_names=[experiment])))
        assert {r.run.id for r in page.results} == set(ids.values())
        for result in page.results:
            expected = client.runs.GetRun(run_pb2.GetRunRequest(run_id=result.run.id)).run
            assert expected.environment.packages, "the SDK captured the environment"
            expected.environment.ClearField("packages")
            assert result.run.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
        assert next(r.run for r in page.results if r.run.id == ids["a"]).notes == "searched *notes*"
    finally:
        client.close()
