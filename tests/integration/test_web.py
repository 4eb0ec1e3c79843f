"""The web service over plain HTTP against the real stack: what the query service returns for a
page (only the asked columns), bad input (400/404, never 500), CSRF, security headers, downloads,
and one WatchRun subscription shared by many live viewers."""

from __future__ import annotations

import asyncio
import re
import uuid

import grpc
import httpx
import pytest
import trackd
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration


@pytest.fixture
async def query(stack: EmbeddedStack) -> query_pb2_grpc.QueryServiceStub:
    channel = grpc.aio.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"])
    yield query_pb2_grpc.QueryServiceStub(channel)
    await channel.close()


@pytest.fixture
async def http(stack: EmbeddedStack) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=stack.web_url, timeout=30) as client:
        yield client


def _run_with_many_params(experiment: str) -> trackd.Run:
    run = trackd.start_run(experiment=experiment, params={f"p{i}": str(i) for i in range(300)},
                           tags={"team": "a", "other": "b"}, system_metrics=False)
    run.log_metric("loss", 0.5, step=1)
    run.log_metric("acc", 0.9, step=1)
    run.end()
    return run


async def test_search_runs_returns_only_the_asked_columns_and_never_the_package_list(
        query: query_pb2_grpc.QueryServiceStub) -> None:
    experiment = f"columns-{uuid.uuid4().hex[:8]}"
    run = _run_with_many_params(experiment)
    assert len(trackd.get_run(run.id).environment.get("packages", {})) > 10
    selection = query_pb2.RunSelection(experiment_names=[experiment])
    narrow = await query.SearchRuns(query_pb2.SearchRunsRequest(selection=selection, columns=query_pb2.RunColumns(
        param_keys=["p7", "missing"], tag_keys=["team"], metric_keys=["acc"])), timeout=10)
    found = narrow.results[0]
    assert dict(found.run.params) == {"p7": "7"} and dict(found.run.tags) == {"team": "a"}
    assert [m.key for m in found.metrics] == ["acc"]
    assert not found.run.environment.packages and not found.run.environment.python_version
    whole = (await query.SearchRuns(query_pb2.SearchRunsRequest(selection=selection), timeout=10)).results[0]
    assert len(whole.run.params) == 300 and {m.key for m in whole.metrics} == {"acc", "loss"}
    assert whole.run.environment.python_version and not whole.run.environment.packages
    assert narrow.ByteSize() * 10 < whole.ByteSize()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await query.SearchRuns(query_pb2.SearchRunsRequest(selection=selection, columns=query_pb2.RunColumns(
            param_keys=[f"k{i}" for i in range(101)])), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_run_keys_and_experiment_stats(query: query_pb2_grpc.QueryServiceStub) -> None:
    experiment = f"keys-{uuid.uuid4().hex[:8]}"
    _run_with_many_params(experiment)
    live = trackd.start_run(experiment=experiment, params={"extra": "1"}, system_metrics=False)
    try:
        keys = await query.ListRunKeys(query_pb2.ListRunKeysRequest(
            selection=query_pb2.RunSelection(experiment_names=[experiment])), timeout=10)
        assert len(keys.param_keys) == 301 and "extra" in keys.param_keys
        assert list(keys.tag_keys) == ["other", "team"] and keys.runs_scanned == 2
        assert [(m.key, m.context) for m in keys.metric_keys] == [("acc", 0), ("loss", 0)]
        stats = await query.GetExperimentStats(query_pb2.GetExperimentStatsRequest(
            experiment_ids=[live.experiment_id, uuid.uuid4().hex]), timeout=10)
        assert [(s.runs, s.running_runs) for s in stats.stats] == [(2, 1), (0, 0)]
        assert stats.stats[0].HasField("last_activity_time") and not stats.stats[1].HasField("last_activity_time")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await query.GetExperimentStats(query_pb2.GetExperimentStatsRequest(experiment_ids=["nope"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        live.end()


# an id no test creates: fixed, so that pytest-xdist workers collect the same test ids
UNKNOWN = "5f0c6a1e-0000-4000-8000-00000000beef"


@pytest.mark.parametrize(("path", "status"), [
    ("/experiments/not-a-uuid", 404), (f"/experiments/{UNKNOWN}", 404), (f"/runs/{UNKNOWN}", 404),
    (f"/studies/{UNKNOWN}", 404), ("/studies/no-such-study", 404),
    (f"/api/runs/{UNKNOWN}/history?key=loss", 404), ("/api/runs/x/history?key=loss&width=abc", 400),
    ("/api/runs/x/history?key=loss&width=99999999", 400), ("/api/runs/x/history?key=loss&context=bogus", 400),
    ("/api/runs/x/history", 400), (f"/api/runs/{UNKNOWN}/live", 404),
    (f"/runs/{UNKNOWN}/artifacts/preview?path=a.txt", 404), (f"/runs/{UNKNOWN}/artifacts/file", 400),
    ("/go?q=" + UNKNOWN.replace("-", ""), 404), ("/experiments/x?page_size=-5&view=%00", 404),
])
async def test_bad_input_is_a_4xx_that_says_why(http: httpx.AsyncClient, path: str, status: int) -> None:
    response = await http.get(path)
    assert response.status_code == status, response.text[:300]
    if path.startswith("/api/"):
        assert response.json()["message"]
    else:
        assert "error-message" in response.text


async def test_a_malformed_filter_or_page_token_is_400_on_the_page(http: httpx.AsyncClient) -> None:
    run = _run_with_many_params(f"bad-{uuid.uuid4().hex[:8]}")
    for query_string in ("filter=metrics.loss+%3E", "page_token=Zm9yZ2Vk", "order_by=metrics.loss+SIDEWAYS",
                         "filter=" + "(" * 500 + "metrics.loss > 1" + ")" * 500):
        response = await http.get(f"/experiments/{run.experiment_id}?{query_string}")
        assert response.status_code == 400, query_string
        assert 'id="filter-error"' in response.text


async def test_writes_need_the_csrf_token_of_the_page(http: httpx.AsyncClient) -> None:
    run = _run_with_many_params(f"csrf-{uuid.uuid4().hex[:8]}")
    forged = await http.post(f"/runs/{run.id}/tags", data={"key": "k", "value": "v"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    page = await http.get(f"/runs/{run.id}?tab=overview")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token and http.cookies.get("trackd_csrf") == token.group(1)
    other_site = await http.post(f"/runs/{run.id}/tags", data={"key": "k", "value": "v", "csrf": token.group(1)},
                                 headers={"origin": "http://evil.example"})
    assert other_site.status_code == 403
    assert "k" not in trackd.get_run(run.id).tags
    ok = await http.post(f"/runs/{run.id}/tags", data={"key": "k", "value": "v", "csrf": token.group(1)})
    assert ok.status_code == 303
    assert trackd.get_run(run.id).tags["k"] == "v"


async def test_pages_carry_a_csp_without_inline_scripts(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text)
    assert (await http.get("/healthz")).text == "ok"
    assert "trackd_web_requests_total" in (await http.get("/metrics")).text


async def test_html_and_svg_artifacts_are_attachments_never_pages(http: httpx.AsyncClient, tmp_path) -> None:
    with trackd.start_run(experiment=f"files-{uuid.uuid4().hex[:8]}", system_metrics=False) as run:
        run.log_text("<script>alert(1)</script>", "page.html")
        run.log_text("<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "pic.svg")
        payload = bytes(range(256)) * 4096
        (tmp_path / "weights.bin").write_bytes(payload)
        run.log_artifact(tmp_path / "weights.bin")
    for path in ("page.html", "pic.svg"):
        response = await http.get(f"/runs/{run.id}/artifacts/file", params={"path": path})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in response.headers["content-security-policy"]
    download = await http.get(f"/runs/{run.id}/artifacts/file", params={"path": "weights.bin"})
    assert download.content == payload and int(download.headers["content-length"]) == len(payload)


async def test_many_viewers_of_one_run_share_one_subscription(stack: EmbeddedStack, http: httpx.AsyncClient) -> None:
    run = trackd.start_run(experiment=f"viewers-{uuid.uuid4().hex[:8]}", system_metrics=False)
    viewers, received = 50, []

    async def view() -> list[int]:
        steps: list[int] = []
        async with http.stream("GET", f"/api/runs/{run.id}/live") as response:
            assert response.status_code == 200
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "ready":
                        ready.release()
                elif line.startswith("data: ") and event == "points":
                    steps += [int(s) for s in re.findall(r'"steps":\[([0-9,]+)\]', line)[0].split(",")]
                elif line.startswith("data: ") and event == "status" and '"ended":true' in line:
                    return steps
        return steps

    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(view()) for _ in range(viewers)]
    for _ in range(viewers):
        await asyncio.wait_for(ready.acquire(), 30)
    metrics = (await http.get("/metrics")).text
    assert re.search(r"^trackd_web_live_subscriptions 1\.0$", metrics, re.M), "one WatchRun for every viewer"
    assert re.search(rf"^trackd_web_live_viewers {viewers}\.0$", metrics, re.M)
    async with grpc.aio.insecure_channel(stack.client_env()["TRACKD_INGEST_TARGET"]) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        for step in range(5):
            await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ingest_pb2.MetricSeries(
                key="loss", steps=[step], values=[1.0 / (step + 1)], timestamps_ms=[step])]), timeout=10)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(run.end)
    received = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(steps == [0, 1, 2, 3, 4] for steps in received), "every viewer got every point, once, in order"
    for _ in range(50):
        if re.search(r"^trackd_web_live_subscriptions 0\.0$", (await http.get("/metrics")).text, re.M):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the subscription outlived its viewers")


async def test_an_aggregation_that_cannot_fit_is_refused_before_any_point_is_read(
        stack: EmbeddedStack, query: query_pb2_grpc.QueryServiceStub) -> None:
    run = trackd.start_run(experiment=f"agg-{uuid.uuid4().hex[:8]}", system_metrics=False)
    async with grpc.aio.insecure_channel(stack.client_env()["TRACKD_INGEST_TARGET"]) as channel:
        await ingest_pb2_grpc.IngestServiceStub(channel).LogMetrics(ingest_pb2.LogMetricsRequest(
            run_id=run.id, series=[ingest_pb2.MetricSeries(key="loss", steps=[0, 50_000_000], values=[1.0, 0.5],
                                                           timestamps_ms=[1, 2])]), timeout=10)
    run.end()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await query.AggregateMetric(query_pb2.AggregateMetricRequest(run_ids=[run.id], key="loss", bucket_width=1),
                                    timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "50,000,001 buckets" in refused.value.details()
    fine = await query.AggregateMetric(query_pb2.AggregateMetricRequest(run_ids=[run.id], key="loss"), timeout=10)
    assert sum(b.count for b in fine.buckets) == 2
