"""The RunDataService servicer (console logs, media, inputs): convert, call the store, convert."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.run.v1 import run_data_pb2, run_data_pb2_grpc
from trackd_platform.errors import InvalidArgument
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.rpc_types import Context
from trackd_platform.timestamps import timestamp

from . import data_domain as domain
from .data_store import RunDataStore
from .domain import format_id, parse_id


def _time(value: Timestamp, present: bool) -> datetime | None:
    if not present:
        return None
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument("time is out of range (years 1–9999)") from None


def _chunk(c: domain.LogChunk) -> run_data_pb2.LogChunk:
    return run_data_pb2.LogChunk(seq=c.seq, stream=c.stream, text=c.text, position=c.position,  # type: ignore[arg-type]
                                 time=timestamp(c.time) if c.time else None)


def _media(m: domain.MediaItem) -> run_data_pb2.MediaItem:
    histogram = run_data_pb2.Histogram(edges=m.edges, counts=m.counts) if m.edges is not None else None
    return run_data_pb2.MediaItem(key=m.key, step=m.step, kind=m.kind, artifact_path=m.artifact_path,  # type: ignore[arg-type]
                                  sha256=m.sha256, histogram=histogram, info_json=json.dumps(m.info or {}),
                                  time=timestamp(m.time) if m.time else None)


def _input(i: domain.RunInput) -> run_data_pb2.RunInput:
    return run_data_pb2.RunInput(
        uri=i.uri, digest=i.digest, schema_json=json.dumps(i.schema) if i.schema is not None else "", rows=i.rows,
        context=i.context, run_id=format_id(i.run_id) if i.run_id else "",
        log_time=timestamp(i.time) if i.time else None)


class RunDataServicer(run_data_pb2_grpc.RunDataServiceServicer):
    def __init__(self, store: RunDataStore) -> None:
        self._store = store

    async def AppendLogs(self, request: run_data_pb2.AppendLogsRequest, context: Context
                         ) -> run_data_pb2.AppendLogsResponse:
        run_id = parse_id("run_id", request.run_id)
        chunks = domain.validate_chunks(request.writer_id, [
            domain.LogChunk(c.seq, c.stream, c.text, _time(c.time, c.HasField("time"))) for c in request.chunks])
        stored, dropped = await self._store.append_logs(run_id, request.writer_id, chunks)
        return run_data_pb2.AppendLogsResponse(stored_bytes=stored, dropped_bytes=dropped)

    async def ReadLogs(self, request: run_data_pb2.ReadLogsRequest, context: Context
                       ) -> run_data_pb2.ReadLogsResponse:
        run_id = parse_id("run_id", request.run_id)
        if request.after_position < 0 or request.tail_bytes < 0:
            raise InvalidArgument("after_position and tail_bytes must not be negative")
        chunks, dropped = await self._store.read_logs(run_id, request.after_position,
                                                      domain.read_limit(request.limit), request.tail_bytes)
        return run_data_pb2.ReadLogsResponse(
            chunks=[_chunk(c) for c in chunks], dropped_bytes=dropped,
            next_position=chunks[-1].position if chunks else request.after_position)

    async def LogMedia(self, request: run_data_pb2.LogMediaRequest, context: Context
                       ) -> run_data_pb2.LogMediaResponse:
        run_id = parse_id("run_id", request.run_id)
        given = request.item
        item = domain.validate_media(domain.MediaItem(
            given.key, given.step, given.kind, given.artifact_path, given.sha256,
            list(given.histogram.edges), list(given.histogram.counts)), given.info_json)
        await self._store.log_media(run_id, item)
        return run_data_pb2.LogMediaResponse()

    async def ListMedia(self, request: run_data_pb2.ListMediaRequest, context: Context
                        ) -> run_data_pb2.ListMediaResponse:
        items = await self._store.list_media(parse_id("run_id", request.run_id), request.key)
        return run_data_pb2.ListMediaResponse(items=[_media(m) for m in items])

    async def LogInputs(self, request: run_data_pb2.LogInputsRequest, context: Context
                        ) -> run_data_pb2.LogInputsResponse:
        run_id = parse_id("run_id", request.run_id)
        inputs = domain.validate_inputs([
            (domain.RunInput(i.uri, i.digest, None, i.rows, i.context), i.schema_json) for i in request.inputs])
        await self._store.log_inputs(run_id, inputs)
        return run_data_pb2.LogInputsResponse()

    async def ListInputs(self, request: run_data_pb2.ListInputsRequest, context: Context
                         ) -> run_data_pb2.ListInputsResponse:
        inputs = await self._store.list_inputs(parse_id("run_id", request.run_id))
        return run_data_pb2.ListInputsResponse(inputs=[_input(i) for i in inputs])

    async def FindRunsByInput(self, request: run_data_pb2.FindRunsByInputRequest, context: Context
                              ) -> run_data_pb2.FindRunsByInputResponse:
        if not request.digest or len(request.digest) > domain.DIGEST_MAX:
            raise InvalidArgument(f"digest is 1–{domain.DIGEST_MAX} characters")
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1, kinds=(int,))
        inputs, position = await self._store.find_by_input(request.digest, request.uri, limit,
                                                           after[0] if after else None)
        return run_data_pb2.FindRunsByInputResponse(
            inputs=[_input(i) for i in inputs], next_page_token=encode_token([position]) if position else "")
