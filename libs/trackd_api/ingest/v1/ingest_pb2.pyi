from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricContext(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_CONTEXT_UNSPECIFIED: _ClassVar[MetricContext]
    METRIC_CONTEXT_TRAIN: _ClassVar[MetricContext]
    METRIC_CONTEXT_EVAL: _ClassVar[MetricContext]
    METRIC_CONTEXT_TEST: _ClassVar[MetricContext]
METRIC_CONTEXT_UNSPECIFIED: MetricContext
METRIC_CONTEXT_TRAIN: MetricContext
METRIC_CONTEXT_EVAL: MetricContext
METRIC_CONTEXT_TEST: MetricContext

class MetricSeries(_message.Message):
    __slots__ = ("key", "context", "steps", "values", "timestamps_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: MetricContext
    steps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[MetricContext, str]] = ..., steps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class StreamMetricsRequest(_message.Message):
    __slots__ = ("stream_id", "sequence", "run_id", "series")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    run_id: str
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    def __init__(self, stream_id: _Optional[str] = ..., sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ...) -> None: ...

class StreamMetricsResponse(_message.Message):
    __slots__ = ("sequence", "points_written", "duplicate", "rejected")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    points_written: int
    duplicate: bool
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedSeries]
    def __init__(self, sequence: _Optional[int] = ..., points_written: _Optional[int] = ..., duplicate: _Optional[bool] = ..., rejected: _Optional[_Iterable[_Union[RejectedSeries, _Mapping]]] = ...) -> None: ...

class RejectedSeries(_message.Message):
    __slots__ = ("key", "context", "points", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: MetricContext
    points: int
    reason: str
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[MetricContext, str]] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class LogMetricsRequest(_message.Message):
    __slots__ = ("run_id", "series")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    def __init__(self, run_id: _Optional[str] = ..., series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ...) -> None: ...

class LogMetricsResponse(_message.Message):
    __slots__ = ("points_written",)
    POINTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    points_written: int
    def __init__(self, points_written: _Optional[int] = ...) -> None: ...
