"""Console logs, media over steps and inputs on the real stack: a crashing script's output and
traceback read back with `trackd runs logs`; chunks stored once, in order, within the per-run limit;
images, histograms and tables read back with get_media; inputs searchable, listed by digest and
recorded with a model version."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import trackd
from PIL import Image
from trackd.cli import app
from trackd.errors import InvalidArgument
from trackd_api.run.v1 import run_data_pb2, run_data_pb2_grpc
from trackd_platform.stack import EmbeddedStack
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

CRASHING = """
import logging, sys, trackd
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # its handler holds the real stderr
with trackd.start_run(sys.argv[1], capture_env=False, system_metrics=False) as run:
    print(run.id, flush=True)
    print("epoch 1: loss 0.5 <b>not bold</b>")
    print("warning: the learning rate is high", file=sys.stderr)
    logging.info("checkpoint saved")

    def step():
        raise RuntimeError("diverged at step 40")

    step()
"""


def test_the_console_of_a_crashing_script_is_readable_after_the_crash(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    script = tmp_path / "train.py"
    script.write_text(CRASHING)
    done = subprocess.run([sys.executable, str(script), unique("console")], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **stack.client_env()})
    assert done.returncode == 1
    assert "epoch 1: loss 0.5" in done.stdout and "RuntimeError" in done.stderr  # the terminal still sees it
    run_id = done.stdout.split()[0]
    assert trackd.get_run(run_id).status == "FAILED"

    shown = CliRunner().invoke(app, ["runs", "logs", run_id])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    for expected in ("epoch 1: loss 0.5", "warning: the learning rate is high", "INFO checkpoint saved",
                     "Traceback (most recent call last)", "RuntimeError: diverged at step 40"):
        assert text.count(expected) == 1, text
    assert text.index("epoch 1") < text.index("Traceback") < text.index("diverged at step 40")
    assert [line.stream for line in trackd.read_logs(run_id) if "Traceback" in line.text] == ["stderr"]

    page = httpx.get(f"{stack.web_url}/runs/{run_id}?tab=logs", timeout=30)  # the web UI's Logs tab, escaped
    assert page.status_code == 200
    assert "loss 0.5 &lt;b&gt;not bold&lt;/b&gt;" in page.text and "<b>not bold" not in page.text
    assert '<span class="stderr">' in page.text and "RuntimeError: diverged at step 40" in page.text


def test_follow_reads_a_live_run_until_it_ends(stack: EmbeddedStack, unique: Callable[[str], str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = trackd.start_run(unique("follow"), capture_env=False, system_metrics=False)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(line.text for line in trackd.read_logs(run.id, follow=True)))
    print("first line")
    reader.start()
    time.sleep(1.5)  # the reader has polled at least once meanwhile
    print("second line")
    run.end()
    reader.join(30)
    assert not reader.is_alive()
    assert "".join(seen) == "first line\nsecond line\n"
    assert "first line" in capsys.readouterr().out


def test_chunks_are_stored_once_in_order_and_within_the_per_run_limit(
        stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    run = trackd.start_run(unique("chunks"), capture_env=False, system_metrics=False, console=False)
    with grpc.insecure_channel(stack.client_env()["TRACKD_RUN_TARGET"]) as channel:
        data = run_data_pb2_grpc.RunDataServiceStub(channel)

        def append(writer: str, seqs: range, text: Callable[[int], str]) -> run_data_pb2.AppendLogsResponse:
            return data.AppendLogs(run_data_pb2.AppendLogsRequest(run_id=run.id, writer_id=writer, chunks=[
                run_data_pb2.LogChunk(seq=s, stream=run_data_pb2.LOG_STREAM_STDOUT, text=text(s)) for s in seqs]))

        append("w1", range(0, 2), lambda s: f"line {s}\n")
        append("w1", range(1, 3), lambda s: f"line {s}\n")  # a retry of seq 1 with seq 2: 1 is not stored again
        assert "".join(line.text for line in trackd.read_logs(run.id)) == "line 0\nline 1\nline 2\n"

        for bad in (run_data_pb2.AppendLogsRequest(run_id=run.id, writer_id="w1", chunks=[run_data_pb2.LogChunk(
                        seq=9, stream=run_data_pb2.LOG_STREAM_STDOUT, text="x" * (64 * 1024 + 1))]),
                    run_data_pb2.AppendLogsRequest(run_id=run.id, writer_id="w1", chunks=[run_data_pb2.LogChunk(
                        seq=9, text="no stream")]),
                    run_data_pb2.AppendLogsRequest(run_id=run.id, writer_id="", chunks=[])):
            with pytest.raises(grpc.RpcError) as refused:
                data.AppendLogs(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as missing:
            data.ReadLogs(run_data_pb2.ReadLogsRequest(run_id=uuid.uuid4().hex))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # 17.6 MiB more: the oldest are dropped, the newest 16 MiB kept (the end of a crash's output)
        block = "y" * (60 * 1024 - 1) + "\n"
        for first in range(3, 303, 100):
            answer = append("w2", range(first, first + 100), lambda s: f"{s:06d}" + block[6:])
        assert answer.stored_bytes <= 16 * 1024 * 1024 < answer.stored_bytes + len(block)
        assert answer.dropped_bytes == 21 + 300 * len(block) - answer.stored_bytes
        kept = list(trackd.read_logs(run.id))
        assert kept[-1].text.startswith("000302") and not any(line.text.startswith("line") for line in kept)
        assert [int(line.text[:6]) for line in kept] == list(range(303 - len(kept), 303))
        tail = list(trackd.read_logs(run.id, tail_bytes=2 * len(block)))
        assert [line.text[:6] for line in tail] == ["000301", "000302"]
    run.end()


def test_images_histograms_and_tables_over_steps(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend

    with trackd.start_run(unique("media"), capture_env=False, system_metrics=False, console=False) as run:
        rgb = np.zeros((4, 6, 3), np.uint8)
        rgb[1, 2] = [255, 0, 0]
        assert run.log_image("samples", rgb) == 0
        assert run.log_image("samples", np.full((5, 5), 0.5), step=10) == 10  # floats in [0, 1], grey
        assert run.log_image("samples", Image.new("RGBA", (3, 2), (0, 0, 255, 128))) == 11
        figure = Figure(figsize=(2, 1))
        figure.add_subplot().plot([0, 1], [1, 0])
        run.log_image("plot", figure, step=3, caption="a line")
        values = np.random.default_rng(0).normal(size=20_000)
        run.log_histogram("weights", values, step=1, bins=50)
        run.log_histogram("weights", ([1, 2, 3], [0.0, 0.5, 1.0, 2.0]), step=2)
        run.log_table("predictions", pd.DataFrame({"x": [1.5, 2.5], "label": ["cat", None]}), step=0)
        run.log_table("predictions", [{"x": 3, "label": "dog"}], step=0)  # the same step again: replaced
        for bad in (lambda: run.log_image("samples", np.zeros((2, 2, 2))),
                    lambda: run.log_histogram("weights", values, bins=1001),
                    lambda: run.log_histogram("weights", ([1, 2], [0.0, 1.0])),
                    lambda: run.log_table("t", [[1, 2], [3]], columns=["a", "b"]),
                    lambda: run.log_image("../escape", rgb)):
            with pytest.raises(InvalidArgument):
                bad()

    samples = trackd.get_media(run.id, "samples")
    assert [(m.step, m.kind) for m in samples] == [(0, "image"), (10, "image"), (11, "image")]
    assert isinstance(samples[0].value, bytes)
    first = Image.open(io.BytesIO(samples[0].value))
    assert first.size == (6, 4) and first.convert("RGB").getpixel((2, 1)) == (255, 0, 0)
    assert Image.open(io.BytesIO(samples[1].value)).getpixel((0, 0)) == 128
    assert Image.open(io.BytesIO(samples[2].value)).mode == "RGBA"
    assert samples[0].info["width"] == 6 and samples[0].info["height"] == 4
    plot = trackd.get_media(run.id, "plot")[0]
    assert plot.info["caption"] == "a line" and Image.open(io.BytesIO(plot.value)).format == "PNG"

    histograms = trackd.get_media(run.id, "weights")
    binned = histograms[0].value
    assert isinstance(binned, trackd.Histogram)
    assert len(binned.counts) == 50 and len(binned.edges) == 51 and sum(binned.counts) == 20_000
    assert (binned.edges[0], binned.edges[-1]) == (values.min(), values.max())
    assert histograms[1].value == trackd.Histogram([1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 2.0])

    table = trackd.get_media(run.id, "predictions")
    assert len(table) == 1 and table[0].value == trackd.Table(["x", "label"], [[3, "dog"]])
    assert {m.key for m in trackd.get_media(run.id, download=False)} == {"samples", "plot", "weights", "predictions"}
    listed = CliRunner().invoke(app, ["runs", "media", run.id], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "histogram" in listed.output and "predictions" in listed.output

    page = httpx.get(f"{stack.web_url}/runs/{run.id}?tab=media", timeout=30)  # the web UI's Media tab
    assert page.status_code == 200
    assert page.text.count('<img src="/runs/') == 2 and 'data-steps="0,10,11"' in page.text  # latest steps shown
    assert page.text.count("<rect ") == 3 and "dog" in page.text  # weights at step 2 (3 bins); the table
    chosen = httpx.get(f"{stack.web_url}/runs/{run.id}?tab=media&key=weights&step=1", timeout=30)
    assert chosen.text.count("<rect ") == 50 and "weights <span class=\"muted\">· histogram · step 1" in chosen.text
    image = httpx.get(f"{stack.web_url}/runs/{run.id}/artifacts/file",
                      params={"path": re.search(r'path=(media/samples/11-[0-9a-f]+\.png)', page.text)[1]})
    assert image.headers["content-type"] == "image/png" and image.content == samples[2].value

    with grpc.insecure_channel(stack.client_env()["TRACKD_RUN_TARGET"]) as channel:  # the service's own checks
        data = run_data_pb2_grpc.RunDataServiceStub(channel)
        for item in (run_data_pb2.MediaItem(key="h", kind=run_data_pb2.MEDIA_KIND_HISTOGRAM, histogram=run_data_pb2.
                                            Histogram(edges=[1.0, 0.0], counts=[1.0])),
                     run_data_pb2.MediaItem(key="h", kind=run_data_pb2.MEDIA_KIND_HISTOGRAM, histogram=run_data_pb2.
                                            Histogram(edges=list(range(1002)), counts=[1.0] * 1001)),
                     run_data_pb2.MediaItem(key="i", kind=run_data_pb2.MEDIA_KIND_IMAGE)):
            with pytest.raises(grpc.RpcError) as refused:
                data.LogMedia(run_data_pb2.LogMediaRequest(run_id=run.id, item=item))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_inputs_are_searchable_listed_by_digest_and_kept_with_a_model_version(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    experiment, digest = unique("inputs"), f"sha256:{uuid.uuid4().hex}"
    local = tmp_path / "eval.csv"
    local.write_text("x,y\n1,2\n")
    with trackd.start_run(experiment, capture_env=False, system_metrics=False, console=False) as trained:
        trained.log_input("s3://data/train.parquet", digest=digest, rows=1000, schema={"x": "float64"})
        hashed = trained.log_input(str(local), context="eval")
        trained.log_input("s3://data/train.parquet", digest=digest, rows=1000)  # the same input again: once
        trained.log_text("weights", "model.txt")
        with pytest.raises(InvalidArgument):
            trained.log_input("s3://data/other.parquet")  # a remote uri needs its digest
        with pytest.raises(InvalidArgument):
            trained.log_input("s3://data/train.parquet", digest=digest, context="not a context")
    with trackd.start_run(experiment, capture_env=False, system_metrics=False, console=False) as evaluated:
        evaluated.log_input("s3://data/train.parquet", digest=digest, context="eval")
    with trackd.start_run(experiment, capture_env=False, system_metrics=False, console=False) as unrelated:
        pass

    assert hashed.digest.startswith("sha256:") and len(hashed.digest) == 71
    assert [(i.uri, i.context, i.rows, i.schema) for i in trained.inputs] == [
        ("s3://data/train.parquet", "train", 1000, {"x": "float64"}), (str(local), "eval", None, None)]

    def found(filter: str) -> set[str]:
        return {r.id for r in trackd.search_runs(experiment, filter=filter)}

    assert found(f"inputs.digest = '{digest}'") == {trained.id, evaluated.id}
    assert found(f"inputs.digest = '{digest}' AND inputs.context = 'train'") == {trained.id}
    assert found("inputs.uri LIKE '%eval.csv'") == {trained.id}
    assert found("inputs.digest IS NULL") == {unrelated.id}
    assert found(f"NOT inputs.digest = '{digest}'") == {unrelated.id}
    with pytest.raises(InvalidArgument, match="unknown input field"):
        trackd.search_runs(experiment, filter="inputs.size = 1")

    assert [i.run_id for i in trackd.runs_with_input(digest)] == [evaluated.id, trained.id]  # newest first
    assert [i.run_id for i in trackd.runs_with_input(digest, uri="s3://other")] == []
    shown = CliRunner().invoke(app, ["runs", "using", digest], env={"COLUMNS": "250"})
    assert shown.exit_code == 0 and trained.id in shown.output and evaluated.id in shown.output

    version = trackd.register_model(unique("lineage-model"), run_id=trained.id, path="model.txt")
    expected = [{"uri": "s3://data/train.parquet", "digest": digest, "context": "train", "rows": 1000},
                {"uri": str(local), "digest": hashed.digest, "context": "eval", "rows": None}]
    assert version.inputs == expected
    assert trackd.get_model_version(version.name, version.version).inputs == expected
