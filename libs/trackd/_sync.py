"""Uploading an offline run's journal (trackd._offline) under its own id and times: what
`trackd sync` does for each journal.

Every step is idempotent, so a second sync, or one interrupted midway and run again, adds
nothing twice: the run is created with StartRun's `client_run_id` (ALREADY_EXISTS the second
time: the run is picked up where it is; a CRASHED one is resumed), params logged again with
their values are no-ops, tags and notes are set again in their order, metric batches carry
their stream id and sequence (the server drops those it committed), an artifact uploaded again
with the same content is a no-op, and the end comes last — a run already ended by an earlier
sync means everything before it was done. The journal is deleted once its run is uploaded.

A journal whose writer is alive (its lock is held) is skipped. One whose writer died without
ending the run is uploaded and left RUNNING with heartbeats expected: the run service marks it
CRASHED after TRACKD_HEARTBEAT_TIMEOUT_S, as it would an online run whose process died."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import RunStatus

from trackd import _artifacts
from trackd._client import Client
from trackd._metrics import CONTEXT_NAMES, MetricWriter
from trackd._offline import METRICS, Journal
from trackd._spool import SpoolInUse, leftover
from trackd.errors import AlreadyExists, FailedPrecondition, TrackdError

ENDED = {RunStatus.FINISHED.proto, RunStatus.FAILED.proto, RunStatus.KILLED.proto}


@dataclass
class Synced:
    """What syncing one journal did: `outcome` is synced, busy (a live process holds it), gone
    (synced meanwhile by another) or failed (`message` says why; the journal is kept)."""

    run_id: str
    outcome: str
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def sync_journal(client: Client, directory: Path, *, timeout_s: float = 600.0, progress: bool = True) -> Synced:
    """Upload the offline run journaled in `directory`, then delete the journal."""
    try:
        journal = Journal(directory)
    except SpoolInUse:
        return Synced(directory.name, "busy")
    except FileNotFoundError:
        return Synced(directory.name, "gone")
    try:
        request = journal.start_request()
        run_id = request.client_run_id
        ops = journal.ops()
        end = next((op for op in ops if op["op"] == "end"), None)
        streams = leftover(directory / METRICS)
        steps = 1 + len(ops) + len(streams)
        with tqdm(total=steps, desc=f"run {run_id[:8]}", unit="step", disable=not progress) as bar:
            if _start(client, request, ended=end is not None):
                journal.remove()
                return Synced(run_id, "synced", "ended by an earlier sync")
            bar.update()
            for op in ops:
                if op["op"] != "end":
                    _apply(client, run_id, journal, op)
                bar.update()
            result = Synced(run_id, "synced")
            for stream in streams:
                if failure := _send_metrics(client, run_id, stream, timeout_s, result, bar):
                    return Synced(run_id, "failed", failure, result.warnings)
                bar.update()
            if end is not None:
                _end(client, run_id, end)
            else:
                result.message = ("its process died before ending it: uploaded RUNNING; the server marks it "
                                  "CRASHED when no heartbeat comes")
        journal.remove()
        return result
    except TrackdError as exc:
        return Synced(directory.name, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        journal.close()


def _start(client: Client, request: run_pb2.StartRunRequest, *, ended: bool) -> bool:
    """Create the run under its own id; True when an earlier sync ended it already. A journal
    with its end starts the run unattended: a slow sync must not see it marked CRASHED."""
    request.unattended = ended
    try:
        client.call("run", client.runs.StartRun, request)
        return False
    except AlreadyExists:
        pass
    run = client.call("run", client.runs.GetRun, run_pb2.GetRunRequest(run_id=request.client_run_id)).run
    if run.status in ENDED:
        return True
    if run.status == RunStatus.CRASHED.proto:  # an interrupted sync's run, judged dead: resume it
        client.call("run", client.runs.StartRun, run_pb2.StartRunRequest(run_id=request.client_run_id))
    return False


def _apply(client: Client, run_id: str, journal: Journal, op: dict[str, Any]) -> None:
    kind = op["op"]
    if kind == "params":
        client.call("run", client.runs.LogParams, run_pb2.LogParamsRequest(run_id=run_id, params=op["params"]))
    elif kind == "tags":
        client.call("run", client.runs.SetTags, run_pb2.SetTagsRequest(run_id=run_id, tags=op["tags"]))
    elif kind == "notes":
        client.call("run", client.runs.SetNotes, run_pb2.SetNotesRequest(run_id=run_id, notes=str(op["notes"])))
    elif kind == "artifact":
        metadata = op.get("metadata")
        _artifacts.upload(client, run_id, journal.file(str(op["file"])), str(op["path"]), type=str(op["type"]),
                          metadata=metadata if isinstance(metadata, dict) else None)
    else:
        raise FailedPrecondition(f"the journal {journal.directory} holds a record this SDK does not know: {kind!r}")


def _send_metrics(client: Client, run_id: str, stream: Path, timeout_s: float, result: Synced,
                  bar: tqdm[Any]) -> str | None:
    """Deliver one metric stream of the journal (its batches counted on `bar`); why not, when it
    could not be."""
    try:
        writer = MetricWriter(run_id, client.channel("ingest"), spool_root=stream.parent, stream_id=stream.name,
                              resume=True)
    except FileNotFoundError:
        return None
    total = writer.spool.pending()
    bar.total = (bar.total or 0) + total
    deadline = time.monotonic() + timeout_s
    sent = 0
    while writer.spool.pending() and time.monotonic() < deadline and not writer.failure:
        writer.flush(0.5)
        bar.update(total - writer.spool.pending() - sent)
        sent = total - writer.spool.pending()
    left = writer.close(5)
    bar.update(total - left - sent)
    for (key, context), reason in writer.rejected.items():
        result.warnings.append(f"metric {key!r} ({CONTEXT_NAMES.get(context, context)}) refused by the server, "
                               f"not stored: {reason}")
    if left:
        why = (f"the server refused them: {writer.failure}" if writer.failure else
               f"not acknowledged in {timeout_s:.0f}s")
        return f"{left} metric batches not delivered ({why}); kept in {stream}"
    return None


def _end(client: Client, run_id: str, end: dict[str, Any]) -> None:
    request = run_pb2.EndRunRequest(run_id=run_id, status=RunStatus[str(end["status"])].proto)
    end_time_ns = end.get("end_time_ns")
    if isinstance(end_time_ns, int):
        request.end_time.FromNanoseconds(end_time_ns)
    client.call("run", client.runs.EndRun, request)
