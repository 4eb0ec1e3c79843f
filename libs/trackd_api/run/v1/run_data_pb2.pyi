import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]

class MediaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_KIND_UNSPECIFIED: _ClassVar[MediaKind]
    MEDIA_KIND_IMAGE: _ClassVar[MediaKind]
    MEDIA_KIND_HISTOGRAM: _ClassVar[MediaKind]
    MEDIA_KIND_TABLE: _ClassVar[MediaKind]
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream
MEDIA_KIND_UNSPECIFIED: MediaKind
MEDIA_KIND_IMAGE: MediaKind
MEDIA_KIND_HISTOGRAM: MediaKind
MEDIA_KIND_TABLE: MediaKind

class LogChunk(_message.Message):
    __slots__ = ("seq", "stream", "text", "time", "position")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    stream: LogStream
    text: str
    time: _timestamp_pb2.Timestamp
    position: int
    def __init__(self, seq: _Optional[int] = ..., stream: _Optional[_Union[LogStream, str]] = ..., text: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class AppendLogsRequest(_message.Message):
    __slots__ = ("run_id", "writer_id", "chunks")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    writer_id: str
    chunks: _containers.RepeatedCompositeFieldContainer[LogChunk]
    def __init__(self, run_id: _Optional[str] = ..., writer_id: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[LogChunk, _Mapping]]] = ...) -> None: ...

class AppendLogsResponse(_message.Message):
    __slots__ = ("stored_bytes", "dropped_bytes")
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    stored_bytes: int
    dropped_bytes: int
    def __init__(self, stored_bytes: _Optional[int] = ..., dropped_bytes: _Optional[int] = ...) -> None: ...

class ReadLogsRequest(_message.Message):
    __slots__ = ("run_id", "after_position", "limit", "tail_bytes")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_position: int
    limit: int
    tail_bytes: int
    def __init__(self, run_id: _Optional[str] = ..., after_position: _Optional[int] = ..., limit: _Optional[int] = ..., tail_bytes: _Optional[int] = ...) -> None: ...

class ReadLogsResponse(_message.Message):
    __slots__ = ("chunks", "next_position", "dropped_bytes")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_POSITION_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[LogChunk]
    next_position: int
    dropped_bytes: int
    def __init__(self, chunks: _Optional[_Iterable[_Union[LogChunk, _Mapping]]] = ..., next_position: _Optional[int] = ..., dropped_bytes: _Optional[int] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("edges", "counts")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[float]] = ...) -> None: ...

class MediaItem(_message.Message):
    __slots__ = ("key", "step", "kind", "artifact_path", "sha256", "histogram", "info_json", "time")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    key: str
    step: int
    kind: MediaKind
    artifact_path: str
    sha256: str
    histogram: Histogram
    info_json: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[str] = ..., step: _Optional[int] = ..., kind: _Optional[_Union[MediaKind, str]] = ..., artifact_path: _Optional[str] = ..., sha256: _Optional[str] = ..., histogram: _Optional[_Union[Histogram, _Mapping]] = ..., info_json: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogMediaRequest(_message.Message):
    __slots__ = ("run_id", "item")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    item: MediaItem
    def __init__(self, run_id: _Optional[str] = ..., item: _Optional[_Union[MediaItem, _Mapping]] = ...) -> None: ...

class LogMediaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMediaRequest(_message.Message):
    __slots__ = ("run_id", "key")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class ListMediaResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MediaItem]
    def __init__(self, items: _Optional[_Iterable[_Union[MediaItem, _Mapping]]] = ...) -> None: ...

class RunInput(_message.Message):
    __slots__ = ("uri", "digest", "schema_json", "rows", "context", "run_id", "log_time")
    URI_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_TIME_FIELD_NUMBER: _ClassVar[int]
    uri: str
    digest: str
    schema_json: str
    rows: int
    context: str
    run_id: str
    log_time: _timestamp_pb2.Timestamp
    def __init__(self, uri: _Optional[str] = ..., digest: _Optional[str] = ..., schema_json: _Optional[str] = ..., rows: _Optional[int] = ..., context: _Optional[str] = ..., run_id: _Optional[str] = ..., log_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogInputsRequest(_message.Message):
    __slots__ = ("run_id", "inputs")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[RunInput]
    def __init__(self, run_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[RunInput, _Mapping]]] = ...) -> None: ...

class LogInputsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInputsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListInputsResponse(_message.Message):
    __slots__ = ("inputs",)
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[RunInput]
    def __init__(self, inputs: _Optional[_Iterable[_Union[RunInput, _Mapping]]] = ...) -> None: ...

class FindRunsByInputRequest(_message.Message):
    __slots__ = ("digest", "uri", "page_size", "page_token")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    digest: str
    uri: str
    page_size: int
    page_token: str
    def __init__(self, digest: _Optional[str] = ..., uri: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FindRunsByInputResponse(_message.Message):
    __slots__ = ("inputs", "next_page_token")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[RunInput]
    next_page_token: str
    def __init__(self, inputs: _Optional[_Iterable[_Union[RunInput, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
