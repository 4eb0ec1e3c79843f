import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trackd_api.ingest.v1 import ingest_pb2 as _ingest_pb2
from trackd_api.run.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_MINIMIZE: _ClassVar[Direction]
    DIRECTION_MAXIMIZE: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_MINIMIZE: Direction
DIRECTION_MAXIMIZE: Direction

class RunSelection(_message.Message):
    __slots__ = ("experiment_ids", "experiment_names", "project", "filter", "view_type")
    EXPERIMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAMES_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VIEW_TYPE_FIELD_NUMBER: _ClassVar[int]
    experiment_ids: _containers.RepeatedScalarFieldContainer[str]
    experiment_names: _containers.RepeatedScalarFieldContainer[str]
    project: str
    filter: str
    view_type: _run_pb2.ViewType
    def __init__(self, experiment_ids: _Optional[_Iterable[str]] = ..., experiment_names: _Optional[_Iterable[str]] = ..., project: _Optional[str] = ..., filter: _Optional[str] = ..., view_type: _Optional[_Union[_run_pb2.ViewType, str]] = ...) -> None: ...

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

class SearchRunsRequest(_message.Message):
    __slots__ = ("selection", "order_by", "page_size", "page_token", "columns")
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    order_by: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    columns: RunColumns
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., order_by: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., columns: _Optional[_Union[RunColumns, _Mapping]] = ...) -> None: ...

class RunColumns(_message.Message):
    __slots__ = ("param_keys", "tag_keys", "metric_keys")
    PARAM_KEYS_FIELD_NUMBER: _ClassVar[int]
    TAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    param_keys: _containers.RepeatedScalarFieldContainer[str]
    tag_keys: _containers.RepeatedScalarFieldContainer[str]
    metric_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, param_keys: _Optional[_Iterable[str]] = ..., tag_keys: _Optional[_Iterable[str]] = ..., metric_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRunsResponse(_message.Message):
    __slots__ = ("results", "next_page_token")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    next_page_token: str
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("run", "metrics")
    RUN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    metrics: _containers.RepeatedCompositeFieldContainer[LatestMetric]
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[LatestMetric, _Mapping]]] = ...) -> None: ...

class GetMetricHistoryRequest(_message.Message):
    __slots__ = ("run_id", "key", "context", "max_points", "start_step", "end_step")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    context: _ingest_pb2.MetricContext
    max_points: int
    start_step: int
    end_step: int
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., max_points: _Optional[int] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ...) -> None: ...

class GetMetricHistoryResponse(_message.Message):
    __slots__ = ("series", "total_points", "downsampled")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    DOWNSAMPLED_FIELD_NUMBER: _ClassVar[int]
    series: _ingest_pb2.MetricSeries
    total_points: int
    downsampled: bool
    def __init__(self, series: _Optional[_Union[_ingest_pb2.MetricSeries, _Mapping]] = ..., total_points: _Optional[int] = ..., downsampled: _Optional[bool] = ...) -> None: ...

class GetMetricHistoryBulkRequest(_message.Message):
    __slots__ = ("run_ids", "keys", "context", "max_points")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    context: _ingest_pb2.MetricContext
    max_points: int
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., max_points: _Optional[int] = ...) -> None: ...

class RunSeries(_message.Message):
    __slots__ = ("run_id", "series", "total_points", "downsampled")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    DOWNSAMPLED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    series: _ingest_pb2.MetricSeries
    total_points: int
    downsampled: bool
    def __init__(self, run_id: _Optional[str] = ..., series: _Optional[_Union[_ingest_pb2.MetricSeries, _Mapping]] = ..., total_points: _Optional[int] = ..., downsampled: _Optional[bool] = ...) -> None: ...

class GetMetricHistoryBulkResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[RunSeries]
    def __init__(self, series: _Optional[_Iterable[_Union[RunSeries, _Mapping]]] = ...) -> None: ...

class AggregateMetricRequest(_message.Message):
    __slots__ = ("run_ids", "key", "context", "bucket_width", "max_buckets")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    key: str
    context: _ingest_pb2.MetricContext
    bucket_width: int
    max_buckets: int
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., bucket_width: _Optional[int] = ..., max_buckets: _Optional[int] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("start_step", "end_step", "min", "max", "mean", "last", "count")
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start_step: int
    end_step: int
    min: float
    max: float
    mean: float
    last: float
    count: int
    def __init__(self, start_step: _Optional[int] = ..., end_step: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., last: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class AggregateMetricResponse(_message.Message):
    __slots__ = ("bucket_width", "buckets")
    BUCKET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    bucket_width: int
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    def __init__(self, bucket_width: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ...) -> None: ...

class ExportMetricRequest(_message.Message):
    __slots__ = ("run_id", "key", "context", "start_step", "end_step", "max_points")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    context: _ingest_pb2.MetricContext
    start_step: int
    end_step: int
    max_points: int
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ..., max_points: _Optional[int] = ...) -> None: ...

class ExportMetricResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _ingest_pb2.MetricSeries
    def __init__(self, series: _Optional[_Union[_ingest_pb2.MetricSeries, _Mapping]] = ...) -> None: ...

class GetLatestMetricsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetLatestMetricsResponse(_message.Message):
    __slots__ = ("metrics", "from_cache")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[LatestMetric]
    from_cache: bool
    def __init__(self, metrics: _Optional[_Iterable[_Union[LatestMetric, _Mapping]]] = ..., from_cache: _Optional[bool] = ...) -> None: ...

class CompareRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ParamCell(_message.Message):
    __slots__ = ("present", "value")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    present: bool
    value: str
    def __init__(self, present: _Optional[bool] = ..., value: _Optional[str] = ...) -> None: ...

class ComparedParam(_message.Message):
    __slots__ = ("key", "values", "differs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedCompositeFieldContainer[ParamCell]
    differs: bool
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[_Union[ParamCell, _Mapping]]] = ..., differs: _Optional[bool] = ...) -> None: ...

class MetricCell(_message.Message):
    __slots__ = ("present", "value", "step")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    present: bool
    value: float
    step: int
    def __init__(self, present: _Optional[bool] = ..., value: _Optional[float] = ..., step: _Optional[int] = ...) -> None: ...

class ComparedMetric(_message.Message):
    __slots__ = ("key", "context", "values", "differs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: _ingest_pb2.MetricContext
    values: _containers.RepeatedCompositeFieldContainer[MetricCell]
    differs: bool
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., values: _Optional[_Iterable[_Union[MetricCell, _Mapping]]] = ..., differs: _Optional[bool] = ...) -> None: ...

class CompareRunsResponse(_message.Message):
    __slots__ = ("runs", "params", "metrics")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_run_pb2.Run]
    params: _containers.RepeatedCompositeFieldContainer[ComparedParam]
    metrics: _containers.RepeatedCompositeFieldContainer[ComparedMetric]
    def __init__(self, runs: _Optional[_Iterable[_Union[_run_pb2.Run, _Mapping]]] = ..., params: _Optional[_Iterable[_Union[ComparedParam, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[ComparedMetric, _Mapping]]] = ...) -> None: ...

class SummarizeExperimentRequest(_message.Message):
    __slots__ = ("selection", "directions")
    class DirectionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Direction
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Direction, str]] = ...) -> None: ...
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    directions: _containers.ScalarMap[str, Direction]
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., directions: _Optional[_Mapping[str, Direction]] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("key", "context", "direction", "runs", "best", "worst", "mean", "std", "median", "best_run_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    WORST_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    BEST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: _ingest_pb2.MetricContext
    direction: Direction
    runs: int
    best: float
    worst: float
    mean: float
    std: float
    median: float
    best_run_id: str
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., direction: _Optional[_Union[Direction, str]] = ..., runs: _Optional[int] = ..., best: _Optional[float] = ..., worst: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., median: _Optional[float] = ..., best_run_id: _Optional[str] = ...) -> None: ...

class SummarizeExperimentResponse(_message.Message):
    __slots__ = ("metrics", "runs")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSummary]
    runs: int
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricSummary, _Mapping]]] = ..., runs: _Optional[int] = ...) -> None: ...

class GetParamImportanceRequest(_message.Message):
    __slots__ = ("selection", "metric", "context", "params")
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    metric: str
    context: _ingest_pb2.MetricContext
    params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., metric: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., params: _Optional[_Iterable[str]] = ...) -> None: ...

class Importance(_message.Message):
    __slots__ = ("param", "importance")
    PARAM_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    param: str
    importance: float
    def __init__(self, param: _Optional[str] = ..., importance: _Optional[float] = ...) -> None: ...

class GetParamImportanceResponse(_message.Message):
    __slots__ = ("importances", "method", "runs_used")
    IMPORTANCES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RUNS_USED_FIELD_NUMBER: _ClassVar[int]
    importances: _containers.RepeatedCompositeFieldContainer[Importance]
    method: str
    runs_used: int
    def __init__(self, importances: _Optional[_Iterable[_Union[Importance, _Mapping]]] = ..., method: _Optional[str] = ..., runs_used: _Optional[int] = ...) -> None: ...

class Axis(_message.Message):
    __slots__ = ("name", "values", "categories")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class GetParallelCoordinatesRequest(_message.Message):
    __slots__ = ("selection", "metric", "context", "params")
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    metric: str
    context: _ingest_pb2.MetricContext
    params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., metric: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ..., params: _Optional[_Iterable[str]] = ...) -> None: ...

class GetParallelCoordinatesResponse(_message.Message):
    __slots__ = ("run_ids", "axes")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    AXES_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    axes: _containers.RepeatedCompositeFieldContainer[Axis]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., axes: _Optional[_Iterable[_Union[Axis, _Mapping]]] = ...) -> None: ...

class GetContourRequest(_message.Message):
    __slots__ = ("selection", "x_param", "y_param", "metric", "context")
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    X_PARAM_FIELD_NUMBER: _ClassVar[int]
    Y_PARAM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    x_param: str
    y_param: str
    metric: str
    context: _ingest_pb2.MetricContext
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., x_param: _Optional[str] = ..., y_param: _Optional[str] = ..., metric: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ...) -> None: ...

class GetContourResponse(_message.Message):
    __slots__ = ("run_ids", "x", "y", "z", "grid_x", "grid_y", "grid_z")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    GRID_X_FIELD_NUMBER: _ClassVar[int]
    GRID_Y_FIELD_NUMBER: _ClassVar[int]
    GRID_Z_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    x: Axis
    y: Axis
    z: _containers.RepeatedScalarFieldContainer[float]
    grid_x: _containers.RepeatedScalarFieldContainer[float]
    grid_y: _containers.RepeatedScalarFieldContainer[float]
    grid_z: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., x: _Optional[_Union[Axis, _Mapping]] = ..., y: _Optional[_Union[Axis, _Mapping]] = ..., z: _Optional[_Iterable[float]] = ..., grid_x: _Optional[_Iterable[float]] = ..., grid_y: _Optional[_Iterable[float]] = ..., grid_z: _Optional[_Iterable[float]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "from_step", "keys")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    from_step: int
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., from_step: _Optional[int] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[_ingest_pb2.MetricSeries]
    def __init__(self, series: _Optional[_Iterable[_Union[_ingest_pb2.MetricSeries, _Mapping]]] = ...) -> None: ...

class ListRunKeysRequest(_message.Message):
    __slots__ = ("selection", "max_runs")
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    selection: RunSelection
    max_runs: int
    def __init__(self, selection: _Optional[_Union[RunSelection, _Mapping]] = ..., max_runs: _Optional[int] = ...) -> None: ...

class MetricKey(_message.Message):
    __slots__ = ("key", "context")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: _ingest_pb2.MetricContext
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[_ingest_pb2.MetricContext, str]] = ...) -> None: ...

class ListRunKeysResponse(_message.Message):
    __slots__ = ("param_keys", "tag_keys", "metric_keys", "runs_scanned")
    PARAM_KEYS_FIELD_NUMBER: _ClassVar[int]
    TAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    RUNS_SCANNED_FIELD_NUMBER: _ClassVar[int]
    param_keys: _containers.RepeatedScalarFieldContainer[str]
    tag_keys: _containers.RepeatedScalarFieldContainer[str]
    metric_keys: _containers.RepeatedCompositeFieldContainer[MetricKey]
    runs_scanned: int
    def __init__(self, param_keys: _Optional[_Iterable[str]] = ..., tag_keys: _Optional[_Iterable[str]] = ..., metric_keys: _Optional[_Iterable[_Union[MetricKey, _Mapping]]] = ..., runs_scanned: _Optional[int] = ...) -> None: ...

class GetExperimentStatsRequest(_message.Message):
    __slots__ = ("experiment_ids",)
    EXPERIMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    experiment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExperimentStats(_message.Message):
    __slots__ = ("experiment_id", "runs", "running_runs", "last_activity_time")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_RUNS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    runs: int
    running_runs: int
    last_activity_time: _timestamp_pb2.Timestamp
    def __init__(self, experiment_id: _Optional[str] = ..., runs: _Optional[int] = ..., running_runs: _Optional[int] = ..., last_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetExperimentStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[ExperimentStats]
    def __init__(self, stats: _Optional[_Iterable[_Union[ExperimentStats, _Mapping]]] = ...) -> None: ...
