"""Offline runs without any server: the journal a run leaves (start, params, tags, notes,
metrics, artifacts, end), its lock while the writer lives, and TRACKD_MODE=auto falling back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trackd
from trackd._client import Client
from trackd._offline import Journal, OfflineRun, journals
from trackd._settings import ClientSettings
from trackd._spool import SpoolInUse
from trackd.errors import FailedPrecondition, InvalidArgument


def offline_client(spool: Path, mode: str = "offline") -> Client:
    # nothing listens on port 1: TRACKD_MODE=auto finds the servers unreachable
    return Client(ClientSettings.from_env({"TRACKD_MODE": mode, "TRACKD_SPOOL_DIR": str(spool),
                                           "TRACKD_TARGET": "127.0.0.1:1", "TRACKD_RPC_TIMEOUT_S": "0.3"}))


def test_an_offline_run_is_journaled_whole(tmp_path: Path) -> None:
    client = offline_client(tmp_path / "spool")
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01" * 100)
    run = trackd.start_run("exp", name="twin", params={"lr": 0.1}, tags={"a": 1}, capture_env=False,
                           system_metrics=False, client=client)
    assert isinstance(run, OfflineRun) and len(run.id) == 32
    (directory,) = journals(tmp_path / "spool")
    assert directory.name == run.id
    with pytest.raises(SpoolInUse):  # the writer holds its journal: sync leaves it alone
        Journal(directory)
    run.log_params({"model": {"hidden": 8}})
    with pytest.raises(InvalidArgument, match="params cannot change"):
        run.log_params({"lr": 0.2})
    run.set_tags({"a": 2})
    run.set_notes("offline")
    for step in range(5):
        run.log_metric("loss", 1 / (step + 1))
    assert run.last_step("loss") == 4 and run.flush()
    run.log_artifact(tmp_path / "weights.bin", "model/weights.bin")
    run.log_text("hello", "notes.txt")
    with pytest.raises(FailedPrecondition, match="needs the servers"):
        run.log_model(tmp_path / "weights.bin", "m")
    info = run.end()
    assert info.status == "FINISHED" and info.end_time is not None and info.start_time is not None
    assert info.end_time >= info.start_time and info.params == {"lr": "0.1", "model.hidden": "8"}
    assert info.tags == {"a": "2"} and info.notes == "offline" and info.name == "twin"

    journal = Journal(directory)  # released at the end
    try:
        start = journal.start_request()
        assert start.client_run_id == run.id and start.experiment_name == "exp" and start.start_time.seconds
        assert [op["op"] for op in journal.ops()] == ["params", "tags", "notes", "artifact", "artifact", "end"]
        assert journal.file(journal.ops()[3]["file"]).read_bytes() == b"\x00\x01" * 100
        assert list((directory / "metrics").iterdir()), "the metric spool stays for sync"
    finally:
        journal.close()


def test_a_torn_last_record_is_left_out(tmp_path: Path) -> None:
    run = trackd.start_run("exp", capture_env=False, system_metrics=False, client=offline_client(tmp_path))
    run.set_tags({"k": "v"})
    run.detach()  # the process goes away without ending the run
    with open(run.journal_directory / "ops.jsonl", "a") as f:
        f.write('{"op":"tags","ta')
    journal = Journal(run.journal_directory)
    try:
        assert journal.ops() == [{"op": "tags", "tags": {"k": "v"}}]
    finally:
        journal.close()


def test_auto_goes_offline_when_the_servers_cannot_be_reached(tmp_path: Path) -> None:
    client = offline_client(tmp_path, mode="auto")
    with trackd.start_run("exp", capture_env=False, system_metrics=False, client=client) as run:
        assert isinstance(run, OfflineRun)
    assert json.loads((run.journal_directory / "ops.jsonl").read_text().splitlines()[-1])["status"] == "FINISHED"
    with pytest.raises(FailedPrecondition, match="needs the servers"):
        trackd.start_run("exp", resume_key="job-1", capture_env=False, client=client)
    with pytest.raises(InvalidArgument, match="use online or offline, or auto"):
        ClientSettings.from_env({"TRACKD_MODE": "sometimes"})
