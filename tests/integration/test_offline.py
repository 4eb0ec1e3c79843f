"""Offline runs on the real stack: a run made entirely offline (params, tags, notes, metrics,
artifacts, its end), uploaded by `trackd sync`, reads through the SDK as the same run made online,
with its own id and its original start, end and point times; sync leaves the journal of a live
writer alone and adds nothing twice when run again, or after an interruption midway."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd import _capture, _sync
from trackd._client import Client
from trackd._offline import journals
from trackd._settings import ClientSettings
from trackd.cli import app
from trackd.errors import TrackdError
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


def offline_client(spool: Path) -> Client:
    return Client(dataclasses.replace(ClientSettings.from_env(), offline=True, spool_dir=str(spool)))


def make_run(client: Client | None, experiment: str, files: Path, *, capture_env: bool = False) -> trackd.Run:
    """The same run, online (client None) or offline."""
    files.mkdir(exist_ok=True)
    (files / "weights.bin").write_bytes(bytes(range(256)) * 64)
    run = trackd.start_run(experiment, name="twin", params={"lr": 0.01, "model": {"depth": 4}}, tags={"t": "1"},
                           notes="first", capture_env=capture_env, system_metrics=False, client=client)
    run.log_params({"batch_size": 32})
    run.set_tags({"t": "2", "stage": "baseline"})
    run.set_notes("second")
    for step in range(300):
        run.log_metrics({"loss": 1 / (step + 1), "acc": step / 300}, step=step)
    run.log_metric("val", 0.5, step=7, context="eval")
    run.log_artifact(files / "weights.bin", "model/weights.bin", metadata={"epoch": 3})
    run.log_text("hello", "notes/readme.txt")
    return run


def stored(run_id: str) -> dict[str, object]:
    """What the SDK reads of a run, its id and times left out."""
    info = dataclasses.asdict(trackd.get_run(run_id))
    for field in ("id", "start_time", "end_time", "duration_s"):
        info.pop(field)
    histories = {(key, context): [(p.step, p.value) for p in trackd.get_metric_history(run_id, key, context=context)]
                 for key, context in (("loss", None), ("acc", None), ("val", "eval"))}
    artifacts = [(a.path, a.size, a.sha256, a.type, a.metadata) for a in trackd.list_artifacts(run_id, recursive=True)]
    return {"info": info, "metrics": histories, "artifacts": artifacts}


def sync(directory: Path) -> str:
    result = CliRunner().invoke(app, ["sync", str(directory)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.output


def checkout_with_a_change(repo: Path) -> Path:
    """A git checkout whose train.py has an uncommitted change: the entry point captured."""
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    (repo / "train.py").write_text("lr = 0.1\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    (repo / "train.py").write_text("lr = 0.01\n")
    return repo / "train.py"


def test_a_run_made_offline_and_synced_is_the_run_made_online(
        stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(checkout_with_a_change(tmp_path / "repo"))])
    # the package scan (seconds) is not what this test is about
    monkeypatch.setattr(_capture, "capture_environment", lambda: {"python_version": "3.11.9", "cpu_count": 2})
    experiment = unique("offline-twin")
    with make_run(None, experiment, tmp_path / "files", capture_env=True) as online:
        pass
    with make_run(offline_client(tmp_path / "spool"), experiment, tmp_path / "files", capture_env=True) as offline:
        pass
    recorded = offline.info  # what the offline process saw: its id and its clock's times
    (journal,) = journals(tmp_path / "spool")
    output = sync(journal)
    assert f"uploaded offline run {offline.id}" in output and not journals(tmp_path / "spool")

    synced = trackd.get_run(offline.id)
    assert synced.id == offline.id != online.id and synced.status == "FINISHED"
    assert (synced.start_time, synced.end_time) == (recorded.start_time, recorded.end_time)
    assert synced.duration_s == pytest.approx(recorded.duration_s, abs=0.002)
    assert recorded.end_time is not None and recorded.start_time is not None
    points = trackd.get_metric_history(offline.id, "loss")
    start_ms, end_ms = (int(t.timestamp() * 1000) for t in (recorded.start_time, recorded.end_time))
    # the times the points were logged at, offline — not when they were uploaded
    assert all(start_ms - 1 <= p.timestamp <= end_ms + 1 for p in points), (points[0], start_ms, end_ms)
    assert stored(offline.id) == stored(online.id)
    # captured to reproduce it: the source with its uncommitted diff, kept as an artifact
    assert synced.source["dirty"] and synced.source["diff_artifact"] == "source/uncommitted.diff"
    assert synced.environment["python_version"] == "3.11.9" and synced.environment["cpu_count"] == 2
    diff = trackd.download_artifacts(offline.id, "source/uncommitted.diff", tmp_path / "got")[0].read_text()
    assert "-lr = 0.1\n+lr = 0.01" in diff
    assert [r.id for r in trackd.list_runs(experiment)] == [offline.id, online.id]  # newest first, by start time


def test_sync_skips_a_live_writer_and_adds_nothing_twice(
        stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    run = make_run(offline_client(spool), unique("offline-resync"), tmp_path / "files")
    output = sync(spool)  # the writer is alive: its journal is left alone
    assert "still open in a live process" in output and "left alone" in output, output
    with pytest.raises(trackd.errors.NotFound):
        trackd.get_run(run.id)
    recorded = run.end()
    (journal,) = journals(spool)
    backup = tmp_path / "backup"
    shutil.copytree(journal, backup)

    def interrupted(*args: object) -> None:
        raise TrackdError("the network went away")

    with monkeypatch.context() as patch:  # everything uploaded but the end, then the sync dies
        patch.setattr(_sync, "_end", interrupted)
        result = CliRunner().invoke(app, ["sync", str(spool)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "not synced" in result.output and journals(spool), result.output
    assert trackd.get_run(run.id).status == "RUNNING"
    shutil.rmtree(journal / "metrics", ignore_errors=True)  # as if no acknowledgement had come: all again
    shutil.copytree(backup / "metrics", journal / "metrics")
    assert f"uploaded offline run {run.id}" in sync(spool)
    once = stored(run.id)
    assert [s for s, _ in once["metrics"][("loss", None)]] == list(range(300))  # type: ignore[index]
    info = trackd.get_run(run.id)
    assert (info.status, info.start_time, info.end_time) == ("FINISHED", recorded.start_time, recorded.end_time)

    assert "nothing to sync" in sync(spool)  # a second sync: nothing left
    shutil.copytree(backup, journal)  # the whole journal again (its deletion lost): nothing is added
    sync(spool)
    assert stored(run.id) == once and not journals(spool)


async def test_start_run_with_a_client_run_id(stack: EmbeddedStack, runs: run_pb2_grpc.RunServiceStub,
                                              unique: Callable[[str], str]) -> None:
    request = run_pb2.StartRunRequest(project_name="default", experiment_name=unique("client-id"),
                                      client_run_id=uuid.uuid4().hex)
    started = await runs.StartRun(request)
    assert started.run.id == request.client_run_id and not started.resumed
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await runs.StartRun(request)
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for bad in (run_pb2.StartRunRequest(client_run_id="x" * 32, experiment_name="e"),
                run_pb2.StartRunRequest(client_run_id=request.client_run_id, resume_key="k", experiment_name="e"),
                run_pb2.StartRunRequest(client_run_id=request.client_run_id, run_id=request.client_run_id)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await runs.StartRun(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
