from trackd_api.ingest.v1 import ingest_pb2 as _ingest_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMetricHistoryRequest(_message.Message):
    __slots__ = ("run_id", "key", "context", "max_points")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    context: _ingest_pb2.MetricContext
    max_points: int
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., max_points: _Optional[int] = ...) -> None: ...

class GetMetricHistoryResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _ingest_pb2.MetricSeries
    def __init__(self, series: _Optional[_Union[_ingest_pb2.MetricSeries, _Mapping]] = ...) -> None: ...

class LatestMetric(_message.Message):
    __slots__ = ("key", "context", "step", "value", "timestamp_ms", "min", "max", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: _ingest_pb2.MetricContext
    step: int
    value: float
    timestamp_ms: int
    min: float
    max: float
    count: int
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., step: _Optional[int] = ..., value: _Optional[float] = ..., timestamp_ms: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class GetLatestMetricsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetLatestMetricsResponse(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[LatestMetric]
    def __init__(self, metrics: _Optional[_Iterable[_Union[LatestMetric, _Mapping]]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[_ingest_pb2.MetricSeries]
    def __init__(self, series: _Optional[_Iterable[_Union[_ingest_pb2.MetricSeries, _Mapping]]] = ...) -> None: ...
