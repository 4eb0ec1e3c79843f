"""The SDK's metric batches (libs/trackd/_metrics.py): points buffered as packed bytes and
written as StreamMetrics batches with numpy arrive exactly as logged — every float64 bit, every
int64 step, each series' order — in the bytes protobuf itself would write, within the server's
limits of a batch, also when several threads log to one run at once."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from trackd._metrics import MAX_BATCH_SERIES, MetricWriter
from trackd._spool import Spool
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.series_wire import stream_header

INT64 = st.integers(-(2**63), 2**63 - 2)  # step=2**63-1 is refused: its next step would not fit
BITS = st.integers(0, 2**64 - 1)  # every float64: NaN payloads, ±Inf, -0.0, subnormals
NS = st.integers(-(2**63), 2**63 - 1)
CONTEXTS = st.sampled_from([None, "", "train", "eval", "test"])
CODE = {None: 0, "": 0, "train": 1, "eval": 2, "test": 3}
Series = tuple[str, int]
Point = tuple[int, int, int]  # step, value bits, timestamp ms


def _bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _spooled(writer: MetricWriter) -> list[bytes]:
    writer.close(0)  # offline: everything is spooled, nothing acknowledged
    if not writer.spool.directory.exists():  # nothing was logged: an empty spool is removed
        return []
    spool = Spool(writer.spool.directory, run_id=writer.run_id, stream_id=writer.spool.stream_id, create=False)
    payloads, sequence = [], 0
    while (following := spool.next_unsent(sequence)) is not None:
        payload = spool.read(following)
        assert payload is not None
        payloads.append(payload)
        sequence = following
    spool.close(remove_if_empty=False)
    return payloads


def _points(payloads: list[bytes]) -> dict[Series, list[Point]]:
    found: dict[Series, list[Point]] = {}
    for payload in payloads:
        batch = ingest_pb2.StreamMetricsRequest.FromString(payload)
        assert batch.SerializeToString() == payload, "the bytes protobuf writes for the same message"
        assert len(batch.series) <= MAX_BATCH_SERIES and sum(len(s.steps) for s in batch.series) <= 100_000
        assert len({(s.key, s.context) for s in batch.series}) == len(batch.series), "a series once a batch"
        for s in batch.series:
            assert len(s.steps) == len(s.values) == len(s.timestamps_ms) > 0
            found.setdefault((s.key, s.context), []).extend(
                zip(s.steps, (_bits(v) for v in s.values), s.timestamps_ms, strict=True))
    return found


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["loss", "acc", "ключ", "a/b.c"]), CONTEXTS, INT64, BITS, NS),
                max_size=60))
def test_every_point_arrives_bit_for_bit_in_order(tmp_path_factory: object, points: list) -> None:
    root = tmp_path_factory.mktemp("spool")  # type: ignore[attr-defined]
    writer = MetricWriter("0f0f0f0f-0000-4000-8000-000000000001", None, spool_root=root, flush_interval_s=60)
    expected: dict[Series, list[Point]] = {}
    for key, context, step, bits, ns in points:
        writer.log(key, _float(bits), step, context, ns)
        expected.setdefault((key, CODE[context]), []).append((step, bits, ns // 1_000_000))
    payloads = _spooled(writer)
    assert _points(payloads) == expected
    for payload in payloads:
        assert ingest_pb2.StreamMetricsRequest.FromString(payload).run_id == writer.run_id


def test_a_batch_never_holds_more_series_than_the_server_takes(tmp_path: Path) -> None:
    writer = MetricWriter("r", None, spool_root=tmp_path, flush_interval_s=60)
    for step in range(3):
        for k in range(2_500):  # one point of each of 2,500 series a step: 7,500 points, 2,500 series
            writer.log(f"layer{k}/grad_norm", float(k + step), step, None, 1_700_000_000_000_000_000)
    payloads = _spooled(writer)
    assert len(payloads) >= 3
    found = _points(payloads)
    assert len(found) == 2_500
    assert all([p[0] for p in found[(f"layer{k}/grad_norm", 0)]] == [0, 1, 2] for k in range(2_500))


def test_threads_logging_to_one_writer_lose_and_tear_nothing(tmp_path: Path) -> None:
    writer = MetricWriter("r", None, spool_root=tmp_path, flush_interval_s=0.01)
    threads_n, points_n = 4, 30_000

    def work(t: int) -> None:
        for step in range(points_n):
            writer.log(f"t{t}", t * 1e6 + step, step, None, step * 1_000_000)  # each value says whose it is
            writer.log("shared", float(step), None, "train", 0)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = _points(_spooled(writer))
    for t in range(threads_n):
        assert found[(f"t{t}", 0)] == [(s, _bits(t * 1e6 + s), s) for s in range(points_n)]
    assert len(found[("shared", 1)]) == threads_n * points_n


def test_the_stream_header_and_a_spooled_batch_are_the_request_protobuf_writes(tmp_path: Path) -> None:
    writer = MetricWriter("r-1", None, spool_root=tmp_path)
    writer.log("loss", 0.25, 7, "eval", 1_000_000_000)
    (payload,) = _spooled(writer)
    for sequence in (1, 127, 128, 2**40):
        request = ingest_pb2.StreamMetricsRequest.FromString(payload)
        request.stream_id, request.sequence = "stream-ü", sequence
        assert stream_header("stream-ü", sequence) + payload == request.SerializeToString()
    assert np.array(request.series[0].values).tolist() == [0.25]
