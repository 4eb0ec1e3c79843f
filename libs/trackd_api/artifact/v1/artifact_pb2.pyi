import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PresignedMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESIGNED_METHOD_UNSPECIFIED: _ClassVar[PresignedMethod]
    PRESIGNED_METHOD_GET: _ClassVar[PresignedMethod]
    PRESIGNED_METHOD_PUT: _ClassVar[PresignedMethod]

class ArtifactType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_TYPE_UNSPECIFIED: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_FILE: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_MODEL: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_FIGURE: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_DATA: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_TEXT: _ClassVar[ArtifactType]
PRESIGNED_METHOD_UNSPECIFIED: PresignedMethod
PRESIGNED_METHOD_GET: PresignedMethod
PRESIGNED_METHOD_PUT: PresignedMethod
ARTIFACT_TYPE_UNSPECIFIED: ArtifactType
ARTIFACT_TYPE_FILE: ArtifactType
ARTIFACT_TYPE_MODEL: ArtifactType
ARTIFACT_TYPE_FIGURE: ArtifactType
ARTIFACT_TYPE_DATA: ArtifactType
ARTIFACT_TYPE_TEXT: ArtifactType

class Artifact(_message.Message):
    __slots__ = ("run_id", "path", "size_bytes", "sha256", "type", "metadata", "create_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    size_bytes: int
    sha256: str
    type: ArtifactType
    metadata: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., type: _Optional[_Union[ArtifactType, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("run_id", "path", "type", "metadata", "expected_size_bytes", "expected_sha256")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    type: ArtifactType
    metadata: _containers.ScalarMap[str, str]
    expected_size_bytes: int
    expected_sha256: str
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., type: _Optional[_Union[ArtifactType, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., expected_size_bytes: _Optional[int] = ..., expected_sha256: _Optional[str] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadArtifactResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("run_id", "path", "offset", "length")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    offset: int
    length: int
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("run_id", "prefix", "recursive", "page_size", "page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    prefix: str
    recursive: bool
    page_size: int
    page_token: str
    def __init__(self, run_id: _Optional[str] = ..., prefix: _Optional[str] = ..., recursive: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "next_page_token")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    next_page_token: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StatArtifactRequest(_message.Message):
    __slots__ = ("run_id", "path")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class StatArtifactResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("run_id", "path")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class DeleteArtifactResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreatePresignedUrlRequest(_message.Message):
    __slots__ = ("run_id", "path", "expires_in_seconds", "method", "part_count")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PART_COUNT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    expires_in_seconds: int
    method: PresignedMethod
    part_count: int
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ..., method: _Optional[_Union[PresignedMethod, str]] = ..., part_count: _Optional[int] = ...) -> None: ...

class CreatePresignedUrlResponse(_message.Message):
    __slots__ = ("url", "upload_key", "upload_id", "part_urls")
    URL_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PART_URLS_FIELD_NUMBER: _ClassVar[int]
    url: str
    upload_key: str
    upload_id: str
    part_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, url: _Optional[str] = ..., upload_key: _Optional[str] = ..., upload_id: _Optional[str] = ..., part_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadedPart(_message.Message):
    __slots__ = ("number", "etag")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    number: int
    etag: str
    def __init__(self, number: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class CompleteDirectUploadRequest(_message.Message):
    __slots__ = ("run_id", "path", "type", "metadata", "upload_key", "upload_id", "parts", "expected_sha256")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    type: ArtifactType
    metadata: _containers.ScalarMap[str, str]
    upload_key: str
    upload_id: str
    parts: _containers.RepeatedCompositeFieldContainer[UploadedPart]
    expected_sha256: str
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., type: _Optional[_Union[ArtifactType, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., upload_key: _Optional[str] = ..., upload_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[UploadedPart, _Mapping]]] = ..., expected_sha256: _Optional[str] = ...) -> None: ...

class CompleteDirectUploadResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...
