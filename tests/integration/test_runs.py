"""The run lifecycle and every bad input, through a real gRPC stub against the real stack."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from trackd_api.run.v1 import run_pb2
from trackd_api.run.v1.run_pb2_grpc import RunServiceStub

pytestmark = pytest.mark.integration


async def status_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        assert error.details(), "errors must say what went wrong"
        return error.code()
    raise AssertionError("the call succeeded, an error was expected")


async def start(runs: RunServiceStub, experiment: str, **fields: object) -> run_pb2.Run:
    response = await runs.StartRun(
        run_pb2.StartRunRequest(project_name="itest", experiment_name=experiment, **fields)
    )
    return response.run


async def test_run_lifecycle(runs: RunServiceStub, unique: Callable[[str], str]) -> None:
    experiment = unique("lifecycle")
    run = await start(runs, experiment, name="first", params={"lr": "0.001"}, tags={"team": "nlp"},
                      source=run_pb2.Source(commit="abc123", branch="main", dirty=True),
                      environment=run_pb2.Environment(python_version="3.11.7", cpu_count=2))
    assert run.status == run_pb2.RUN_STATUS_RUNNING
    assert len(run.id) == 32 and run.name == "first"

    await runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"batch": "32", "lr": "0.001"}))
    await runs.SetTags(run_pb2.SetTagsRequest(run_id=run.id, tags={"team": "vision", "stage": "a"}))
    await runs.DeleteTags(run_pb2.DeleteTagsRequest(run_id=run.id, keys=["stage"]))
    await runs.SetNotes(run_pb2.SetNotesRequest(run_id=run.id, notes="baseline"))
    child = await start(runs, experiment, parent_run_id=run.id)
    beat = await runs.Heartbeat(run_pb2.HeartbeatRequest(run_id=run.id))
    assert beat.status == run_pb2.RUN_STATUS_RUNNING

    ended = (await runs.EndRun(run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_FINISHED))).run
    assert ended.status == run_pb2.RUN_STATUS_FINISHED
    assert ended.end_time.ToDatetime() >= ended.start_time.ToDatetime()
    assert ended.duration_ms >= 0

    got = (await runs.GetRun(run_pb2.GetRunRequest(run_id=run.id))).run
    assert dict(got.params) == {"lr": "0.001", "batch": "32"}
    assert dict(got.tags) == {"team": "vision"}
    assert got.notes == "baseline"
    assert got.source.commit == "abc123" and got.source.dirty
    assert got.environment.cpu_count == 2
    children = await runs.ListRuns(run_pb2.ListRunsRequest(parent_run_id=run.id))
    assert [r.id for r in children.runs] == [child.id]
    assert children.runs[0].parent_run_id == run.id

    # Tags stay mutable after the end; params and status do not.
    await runs.SetTags(run_pb2.SetTagsRequest(run_id=run.id, tags={"reviewed": "yes"}))
    assert await status_of(runs.EndRun(run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_FAILED))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert await status_of(runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"new": "1"}))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    after = (await runs.GetRun(run_pb2.GetRunRequest(run_id=run.id))).run
    assert after.status == run_pb2.RUN_STATUS_FINISHED and "new" not in after.params


async def test_params_are_immutable_and_batches_all_or_nothing(
    runs: RunServiceStub, unique: Callable[[str], str]
) -> None:
    run = await start(runs, unique("params"), params={"lr": "0.1"})
    await runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"lr": "0.1"}))  # same: no-op
    code = await status_of(runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"lr": "0.2", "wd": "0"})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    got = (await runs.GetRun(run_pb2.GetRunRequest(run_id=run.id))).run
    assert dict(got.params) == {"lr": "0.1"}, "a refused batch must write nothing"


async def test_soft_delete_restore_and_views(runs: RunServiceStub, unique: Callable[[str], str]) -> None:
    experiment = unique("views")
    kept, dropped = await start(runs, experiment), await start(runs, experiment)
    await runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=dropped.id))
    ids = [kept.experiment_id]

    async def listed(view: int) -> set[str]:
        response = await runs.ListRuns(run_pb2.ListRunsRequest(experiment_ids=ids, view_type=view))
        return {r.id for r in response.runs}

    assert await listed(run_pb2.VIEW_TYPE_ACTIVE_ONLY) == {kept.id}
    assert await listed(run_pb2.VIEW_TYPE_UNSPECIFIED) == {kept.id}
    assert await listed(run_pb2.VIEW_TYPE_DELETED_ONLY) == {dropped.id}
    assert await listed(run_pb2.VIEW_TYPE_ALL) == {kept.id, dropped.id}
    assert await status_of(runs.SetTags(run_pb2.SetTagsRequest(run_id=dropped.id, tags={"a": "b"}))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    await runs.RestoreRun(run_pb2.RestoreRunRequest(run_id=dropped.id))
    assert await listed(run_pb2.VIEW_TYPE_ACTIVE_ONLY) == {kept.id, dropped.id}


async def test_paging_is_stable_and_complete(runs: RunServiceStub, unique: Callable[[str], str]) -> None:
    experiment = unique("paging")
    created = [await start(runs, experiment, name=f"r{i}") for i in range(7)]
    ids = [created[0].experiment_id]
    seen: list[str] = []
    token = ""
    while True:
        page = await runs.ListRuns(run_pb2.ListRunsRequest(experiment_ids=ids, page_size=3, page_token=token))
        assert len(page.runs) <= 3
        seen += [r.id for r in page.runs]
        if len(seen) == 3:  # a run added mid-way appears on no later page, and shifts nothing
            await start(runs, experiment, name="late")
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.id for r in reversed(created)], "newest first, each run exactly once"

    experiments = await runs.ListExperiments(run_pb2.ListExperimentsRequest(page_size=1))
    assert len(experiments.experiments) == 1 and experiments.next_page_token


async def test_bad_input_is_refused_with_the_right_status(runs: RunServiceStub, unique: Callable[[str], str]) -> None:
    bad, experiment = grpc.StatusCode, unique("bad")
    run = await start(runs, experiment)
    unknown = "0" * 32
    cases = {
        "empty project name": (runs.CreateProject(run_pb2.CreateProjectRequest(name="")), bad.INVALID_ARGUMENT),
        "long project name": (runs.CreateProject(run_pb2.CreateProjectRequest(name="p" * 251)), bad.INVALID_ARGUMENT),
        "empty experiment": (runs.StartRun(run_pb2.StartRunRequest(project_name="itest")), bad.INVALID_ARGUMENT),
        "long param key": (runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"k" * 251: "v"})),
                           bad.INVALID_ARGUMENT),
        "empty param key": (runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"": "v"})),
                            bad.INVALID_ARGUMENT),
        "long param value": (runs.LogParams(run_pb2.LogParamsRequest(run_id=run.id, params={"k": "v" * 6001})),
                             bad.INVALID_ARGUMENT),
        "long tag value": (runs.SetTags(run_pb2.SetTagsRequest(run_id=run.id, tags={"k": "v" * 5001})),
                           bad.INVALID_ARGUMENT),
        "too many params": (runs.LogParams(run_pb2.LogParamsRequest(
            run_id=run.id, params={f"k{i}": "v" for i in range(1001)})), bad.INVALID_ARGUMENT),
        "unspecified end status": (runs.EndRun(run_pb2.EndRunRequest(run_id=run.id)), bad.INVALID_ARGUMENT),
        "client cannot crash a run": (runs.EndRun(run_pb2.EndRunRequest(
            run_id=run.id, status=run_pb2.RUN_STATUS_CRASHED)), bad.INVALID_ARGUMENT),
        "malformed run id": (runs.GetRun(run_pb2.GetRunRequest(run_id="not-an-id")), bad.INVALID_ARGUMENT),
        "missing run id": (runs.GetRun(run_pb2.GetRunRequest()), bad.INVALID_ARGUMENT),
        "unknown run": (runs.GetRun(run_pb2.GetRunRequest(run_id=unknown)), bad.NOT_FOUND),
        "unknown run end": (runs.EndRun(run_pb2.EndRunRequest(run_id=unknown, status=run_pb2.RUN_STATUS_FINISHED)),
                            bad.NOT_FOUND),
        "unknown heartbeat": (runs.Heartbeat(run_pb2.HeartbeatRequest(run_id=unknown)), bad.NOT_FOUND),
        "unknown experiment": (runs.StartRun(run_pb2.StartRunRequest(experiment_id=unknown)), bad.NOT_FOUND),
        "unknown parent": (runs.StartRun(run_pb2.StartRunRequest(project_name="itest", experiment_name=experiment,
                                                                parent_run_id=unknown)), bad.NOT_FOUND),
        "unknown project": (runs.GetProject(run_pb2.GetProjectRequest(name=unique("nope"))), bad.NOT_FOUND),
        "malformed page token": (runs.ListRuns(run_pb2.ListRunsRequest(page_token="garbage!")), bad.INVALID_ARGUMENT),
        "forged page token": (runs.ListRuns(run_pb2.ListRunsRequest(page_token="WyJ4IiwieSJd")), bad.INVALID_ARGUMENT),
        "page too large": (runs.ListRuns(run_pb2.ListRunsRequest(page_size=5000)), bad.INVALID_ARGUMENT),
        "unknown view": (runs.ListRuns(run_pb2.ListRunsRequest(view_type=42)), bad.INVALID_ARGUMENT),
    }
    for name, (call, expected) in cases.items():
        assert await status_of(call) == expected, name

    project = unique("dup")
    created = (await runs.CreateProject(run_pb2.CreateProjectRequest(name=project))).project
    assert await status_of(runs.CreateProject(run_pb2.CreateProjectRequest(name=project))) == bad.ALREADY_EXISTS
    await runs.CreateExperiment(run_pb2.CreateExperimentRequest(project_id=created.id, name="e"))
    assert await status_of(runs.CreateExperiment(run_pb2.CreateExperimentRequest(project_id=created.id, name="e"))) \
        == bad.ALREADY_EXISTS

    # Nothing partial: a refused StartRun leaves no run behind; the server is still serving.
    refused = runs.StartRun(run_pb2.StartRunRequest(project_name="itest", experiment_name=experiment,
                                                    params={"ok": "1", "bad": "x" * 6001}))
    assert await status_of(refused) == bad.INVALID_ARGUMENT
    listed = await runs.ListRuns(run_pb2.ListRunsRequest(experiment_ids=[run.experiment_id]))
    assert [r.id for r in listed.runs] == [run.id]
    params = (await runs.GetRun(run_pb2.GetRunRequest(run_id=run.id))).run.params
    assert dict(params) == {}


async def test_experiments_update_and_archive(runs: RunServiceStub, unique: Callable[[str], str]) -> None:
    project = (await runs.CreateProject(run_pb2.CreateProjectRequest(name=unique("proj")))).project
    experiment = (await runs.CreateExperiment(run_pb2.CreateExperimentRequest(
        project_id=project.id, name="exp", description="d1", tags={"a": "1"}))).experiment
    updated = (await runs.UpdateExperiment(run_pb2.UpdateExperimentRequest(
        experiment_id=experiment.id, description="d2", tags={"b": "2"}))).experiment
    assert updated.description == "d2" and dict(updated.tags) == {"a": "1", "b": "2"}
    await runs.ArchiveExperiment(run_pb2.ArchiveExperimentRequest(experiment_id=experiment.id))
    visible = await runs.ListExperiments(run_pb2.ListExperimentsRequest(project_id=project.id))
    assert list(visible.experiments) == []
    everything = await runs.ListExperiments(run_pb2.ListExperimentsRequest(project_id=project.id,
                                                                          include_archived=True))
    assert [e.archived for e in everything.experiments] == [True]
    by_name = await runs.GetExperiment(run_pb2.GetExperimentRequest(project_name=project.name, name="exp"))
    assert by_name.experiment.id == experiment.id
