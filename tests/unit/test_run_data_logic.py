"""Pure logic of console logs, media and inputs: the run service's validation, the SDK's encoders
(PNG, histogram binning, tables) and log chunking, the search grammar's inputs fields, and the web
UI's media view."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from trackd import _logs
from trackd._media import Histogram, Table, bin_values, encode_image, encode_table, png_size
from trackd_api.run.v1 import run_data_pb2
from trackd_platform.errors import InvalidArgument
from trackd_services.query.grammar import Compare, Field, IsNull, parse_filter, parse_order_by
from trackd_services.query.search_sql import _Binds, compile_filter
from trackd_services.run import data_domain as domain
from trackd_services.web.run_data import histogram_bars, media_keys


def test_png_of_arrays_decodes_to_the_same_pixels() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(rgb))))
    assert (decoded == rgb).all() and png_size(encode_image(rgb)) == (3, 2)
    grey = np.array([[0.0, 0.5], [1.0, 2.0]])  # floats in [0, 1]; above 1 is clipped
    assert np.asarray(Image.open(io.BytesIO(encode_image(grey)))).tolist() == [[0, 128], [255, 255]]
    rgba = np.zeros((1, 1, 4), np.uint8)
    assert Image.open(io.BytesIO(encode_image(rgba))).mode == "RGBA"
    for bad in (np.zeros((2, 2, 2)), np.zeros((0, 3)), np.array([["a"]]), np.array([[np.nan]])):
        with pytest.raises(InvalidArgument):
            encode_image(bad)


def test_histograms_are_binned_never_raw() -> None:
    binned = bin_values(np.arange(1000), 10)
    assert binned.counts == [100.0] * 10 and len(binned.edges) == 11
    assert bin_values([7.0, 7.0], 4).edges[0] == 6.5  # a single value gets a bin around it
    assert bin_values(([1, 2], [0, 1, 2]), 64) == Histogram([1.0, 2.0], [0.0, 1.0, 2.0])
    for values, bins in (([1.0], 0), ([1.0], 1001), ([np.nan], 8), (([1], [0, 1, 2]), 8)):
        with pytest.raises(InvalidArgument):
            bin_values(values, bins)


def test_tables_from_frames_dicts_and_lists() -> None:
    _, frame = encode_table(pd.DataFrame({"a": [1, 2], "b": ["x", None]}), None)
    assert frame == Table(["a", "b"], [[1, "x"], [2, None]])
    _, dicts = encode_table([{"a": 1}, {"b": np.float32(2.5)}], None)
    assert dicts.columns == ["a", "b"]
    data, _ = encode_table([[np.int64(1), np.nan]], ["n", "v"])
    assert data == b'{"columns": ["n", "v"], "rows": [[1, NaN]]}'
    with pytest.raises(InvalidArgument):
        encode_table([[1]] * 10_001, ["a"])


def test_the_service_refuses_bad_chunks_media_and_inputs() -> None:
    chunk = domain.LogChunk(0, 1, "x", None)
    assert domain.validate_chunks("w", [chunk]) == [chunk]
    for writer, chunks in (("", [chunk]), ("w" * 65, [chunk]), ("w", [chunk] * 101),
                           ("w", [domain.LogChunk(0, 3, "x", None)]), ("w", [domain.LogChunk(-1, 1, "x", None)]),
                           ("w", [domain.LogChunk(0, 1, "é" * 40_000, None)])):
        with pytest.raises(InvalidArgument):
            domain.validate_chunks(writer, chunks)
    good = domain.MediaItem("h", 0, domain.HISTOGRAM, edges=[0.0, 1.0], counts=[2.0])
    assert domain.validate_media(good, "").counts == [2.0]
    for item, info in ((domain.MediaItem("h", 0, domain.HISTOGRAM, edges=[1.0, 0.0], counts=[1.0]), ""),
                       (domain.MediaItem("h", 0, domain.HISTOGRAM, edges=[0.0, 1.0], counts=[-1.0]), ""),
                       (domain.MediaItem("h", 0, domain.HISTOGRAM, edges=[0.0, float("inf")], counts=[1.0]), ""),
                       (domain.MediaItem("i", 0, domain.IMAGE), ""), (domain.MediaItem("", 0, domain.TABLE), ""),
                       (domain.MediaItem("x", 0, 9), ""), (good, "[1]"), (good, "{")):
        with pytest.raises(InvalidArgument):
            domain.validate_media(item, info)
    ok = domain.RunInput("s3://a", "sha256:1", None, -1, "train")
    assert domain.validate_inputs([(ok, '{"x": "int"}')])[0].schema == {"x": "int"}
    for given in (domain.RunInput("", "d", None, -1, "train"), domain.RunInput("u", "", None, -1, "train"),
                  domain.RunInput("u", "d", None, -2, "train"), domain.RunInput("u", "d", None, 1, "a b")):
        with pytest.raises(InvalidArgument):
            domain.validate_inputs([(given, "")])


def test_inputs_in_the_search_grammar() -> None:
    assert parse_filter("inputs.DIGEST = 'd'") == Compare(Field("input", "digest"), "=", "d")
    assert parse_filter("inputs.uri IS NULL") == IsNull(Field("input", "uri"), False)
    binds = _Binds()
    sql = compile_filter(parse_filter("inputs.context != 'eval'"), binds)
    assert sql.startswith("EXISTS (SELECT 1 FROM run_inputs i") and binds.values == ["eval"]
    for bad in ("inputs.size = 1", "inputs.digest@eval = 'd'"):
        with pytest.raises(InvalidArgument):
            parse_filter(bad)
    with pytest.raises(InvalidArgument, match="not ordered by their inputs"):
        parse_order_by(["inputs.digest"])


class _Recorder:
    """A stand-in for the run service's stub: records AppendLogs calls (unit: no network)."""

    def __init__(self) -> None:
        self.chunks: list[run_data_pb2.LogChunk] = []
        self.calls = 0

    def call(self, service: str, method: object, request: run_data_pb2.AppendLogsRequest, **_: object) -> None:
        self.calls += 1
        self.chunks += request.chunks

    def channel(self, service: str) -> object:
        return object()


def test_log_chunks_are_numbered_merged_by_stream_and_split_under_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(_logs, "stub", lambda client: type("S", (), {"AppendLogs": None})())
    sender = _logs.LogSender(recorder, "r" * 32, interval_s=60)  # type: ignore[arg-type]
    sender.write(_logs.STDOUT, "a\n")
    sender.write(_logs.STDOUT, "b\n")
    sender.write(_logs.STDERR, "oops\n")
    sender.write(_logs.STDOUT, "z" * 100_000)
    assert sender.close(10)
    assert [c.seq for c in recorder.chunks] == list(range(len(recorder.chunks)))
    assert recorder.chunks[0].text == "a\nb\n" and recorder.chunks[1].stream == _logs.STDERR
    assert all(len(c.text.encode()) <= _logs.CHUNK_BYTES for c in recorder.chunks)
    assert "".join(c.text for c in recorder.chunks[2:]) == "z" * 100_000


def test_the_media_view_picks_steps_and_draws_bars() -> None:
    items = [run_data_pb2.MediaItem(key="a", step=s, kind=run_data_pb2.MEDIA_KIND_IMAGE) for s in (0, 5, 9)]
    items.append(run_data_pb2.MediaItem(key="b", step=1, kind=run_data_pb2.MEDIA_KIND_TABLE))
    shown = media_keys(items, "a", 7)
    assert [(k.key, k.step, k.steps) for k in shown] == [("a", 5, [0, 5, 9]), ("b", 1, [1])]
    assert media_keys(items, "", None)[0].step == 9
    bars = histogram_bars([1.0, 4.0], [0.0, 1.0, 2.0], width=100, height=40)
    assert [(b.x, b.height) for b in bars] == [(0.0, 10.0), (50.0, 40.0)] and bars[1].y == 0.0
    assert bars[0].label == "[0, 1): 1"


def test_closing_a_capture_after_the_original_stream_was_closed_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test runner (or the user) closes the stream the capture wraps before interpreter exit:
    the capture's close at exit restores the logging handlers without an 'I/O operation on closed file'."""
    import logging
    import sys

    monkeypatch.setattr(_logs, "stub", lambda client: type("S", (), {"AppendLogs": None})())
    original = io.StringIO()
    monkeypatch.setattr(sys, "stdout", original)
    handler = logging.StreamHandler(original)
    logging.getLogger("trackd-test-closed").addHandler(handler)
    try:
        capture = _logs.ConsoleCapture(_Recorder(), "r" * 32)  # type: ignore[arg-type]
        assert isinstance(handler.stream, _logs._Tee)
        original.close()
        capture.close(timeout_s=1)
        assert handler.stream is original and sys.stdout is original
    finally:
        logging.getLogger("trackd-test-closed").removeHandler(handler)
