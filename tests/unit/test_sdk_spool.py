"""The SDK's spool and metric writer without a server: a live spool is locked (and `trackd sync`
leaves it alone), points are checked at the call, and the spool's disk use is bounded with an
error at the call instead of a full disk or lost points. On the real stack:
tests/faults/test_streams_and_spool.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trackd
from trackd._metrics import InvalidMetric, MetricWriter, check_key, context_code, timestamp_ns
from trackd._spool import Spool, SpoolFull, SpoolInUse
from trackd_api.ingest.v1 import ingest_pb2
from typer.testing import CliRunner


def spooled_points(spool: Spool) -> list[tuple[str, int]]:
    points = []
    sequence = 0
    while (sequence := spool.next_unsent(sequence)) is not None:  # type: ignore[assignment]
        payload = spool.read(sequence)
        assert payload is not None
        for s in ingest_pb2.StreamMetricsRequest.FromString(payload).series:
            points += [(s.key, step) for step in s.steps]
    return points


def test_a_live_spool_is_locked_and_released_when_closed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s1", run_id="r", stream_id="s1")
    spool.append(b"batch")
    with pytest.raises(SpoolInUse, match="open in another live process"):
        Spool(tmp_path / "s1", run_id="r", stream_id="s1", create=False)
    spool.close()
    again = Spool(tmp_path / "s1", run_id="r", stream_id="s1", create=False)
    assert again.pending() == 1 and again.read(1) == b"batch"
    again.ack(1)
    again.close()
    assert not (tmp_path / "s1").exists(), "a delivered spool is removed"
    with pytest.raises(FileNotFoundError):
        Spool(tmp_path / "s1", run_id="r", stream_id="s1", create=False)


def test_the_spool_never_holds_more_than_its_limit(tmp_path: Path) -> None:
    limit = 1024 * 1024
    spool = Spool(tmp_path / "s", run_id="r", stream_id="s", max_bytes=limit)
    batch = os.urandom(10_000)
    appended = 0
    with pytest.raises(SpoolFull, match="TRACKD_SPOOL_MAX_BYTES=1048576"):
        while True:
            spool.append(batch)
            appended += 1
            assert spool.used_bytes <= limit
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").glob("*.seg"))
    assert appended == 104 and on_disk == spool.used_bytes <= limit
    spool.ack(50)  # acknowledgements free whole segments
    assert spool.used_bytes < limit
    spool.append(batch)
    spool.ack(spool.last_sequence)  # all acknowledged: nothing left on disk
    assert spool.used_bytes == 0 == sum(p.stat().st_size for p in (tmp_path / "s").glob("*.seg"))
    spool.append(batch)
    assert spool.read(spool.last_sequence) == batch, "writes go on after the current segment was emptied"
    spool.close()


def test_a_full_spool_raises_at_the_call_and_loses_nothing_it_accepted(tmp_path: Path) -> None:
    writer = MetricWriter("r", None, spool_root=tmp_path, buffer_points=20_000, max_spool_bytes=1024 * 1024,
                          flush_interval_s=0.05)
    logged = 0
    with pytest.raises(SpoolFull, match="This point was not recorded") as full:
        for step in range(10_000_000):
            writer.log("loss", 0.5, step, None, 1_000)
            logged += 1
    assert isinstance(full.value, trackd.errors.ResourceExhausted)
    assert logged < 1_000_000, "bounded: the buffer and the spool, nothing more"
    assert writer.spool.used_bytes <= 1024 * 1024
    with pytest.raises(SpoolFull):  # and it keeps saying so, without blocking
        writer.log("loss", 0.5, logged, None, 1_000)
    left = writer.close(0.1)  # offline: nothing is acknowledged; what was held is written now
    assert left > 0
    spool = Spool(writer.spool.directory, run_id="r", stream_id=writer.spool.stream_id, create=False)
    assert sorted(step for _, step in spooled_points(spool)) == list(range(logged)), "every accepted point"
    spool.close(remove_if_empty=False)


def test_bad_points_raise_at_the_call_and_the_other_series_go_on(tmp_path: Path) -> None:
    writer = MetricWriter("r", None, spool_root=tmp_path)
    for step in range(1_000):
        writer.log("good", 1.0, step, None, 1)
        with pytest.raises(InvalidMetric, match="251 characters; the limit is 250"):
            writer.log("k" * 251, 1.0, step, None, 1)
        writer.log("also-good", 1.0, None, None, 1)
    for bad_step in (1.5, "3", 2**63, -(2**63) - 1):
        with pytest.raises(InvalidMetric, match="step"):
            writer.log("good", 1.0, bad_step, None, 1)  # type: ignore[arg-type]
    writer.close(0)
    spool = Spool(writer.spool.directory, run_id="r", stream_id=writer.spool.stream_id, create=False)
    points = spooled_points(spool)
    assert len(points) == 2_000 and {k for k, _ in points} == {"good", "also-good"}
    assert sorted(s for k, s in points if k == "also-good") == list(range(1_000)), "a refused point takes no step"
    spool.close(remove_if_empty=False)


@pytest.mark.parametrize("key", ["", "   ", "k" * 251, "a\x00b", "\ud800", 7])
def test_keys_the_server_would_refuse(key: object) -> None:
    with pytest.raises(InvalidMetric) as caught:
        check_key(key)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, trackd.errors.InvalidArgument)


def test_contexts_and_timestamps() -> None:
    assert [context_code(c) for c in (None, "", "train", "eval", "test")] == [0, 0, 1, 2, 3]
    with pytest.raises(InvalidMetric, match="'validation'"):
        context_code("validation")
    assert timestamp_ns(1.5) == 1_500_000_000 and timestamp_ns(-1.5) == -1_500_000_000
    for bad in (float("nan"), float("inf"), 1e300, 9.3e9, "now"):
        with pytest.raises(InvalidMetric, match="timestamp"):
            timestamp_ns(bad)  # type: ignore[arg-type]


def test_sync_leaves_a_live_spool_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trackd._client as client_module
    from trackd.cli import app

    writer = MetricWriter("r", None, spool_root=tmp_path)  # a run still logging (offline: it only spools)
    for step in range(100):
        writer.log("loss", 1.0, step, None, 1)
    writer.flush(0)
    monkeypatch.setenv("TRACKD_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("TRACKD_INGEST_TARGET", "127.0.0.1:1")  # must not even be tried
    monkeypatch.setattr(client_module, "_default", None)
    result = CliRunner().invoke(app, ["sync", "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "still logging" in result.output
    assert writer.spool.pending() == 1 and len(spooled_points(writer.spool)) == 100, "untouched"
    done = threading.Event()
    threading.Thread(target=lambda: (writer.log("loss", 1.0, 100, None, 1), done.set())).start()
    assert done.wait(5), "the live writer goes on"
    writer.close(0)
