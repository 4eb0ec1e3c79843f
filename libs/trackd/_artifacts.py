"""Artifacts from the SDK: streamed uploads (hashed first, so the server can verify and skip
content it already holds), resumable downloads, listings."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from trackd_api.artifact.v1 import artifact_pb2

from trackd._client import Client
from trackd.errors import InvalidArgument, NotFound

CHUNK = 1024 * 1024
PROGRESS_FROM = 32 * 1024 * 1024  # files this large get a progress bar
TYPES = {"file": artifact_pb2.ARTIFACT_TYPE_FILE, "model": artifact_pb2.ARTIFACT_TYPE_MODEL,
         "figure": artifact_pb2.ARTIFACT_TYPE_FIGURE, "data": artifact_pb2.ARTIFACT_TYPE_DATA,
         "text": artifact_pb2.ARTIFACT_TYPE_TEXT}


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    size: int
    sha256: str
    type: str
    metadata: dict[str, str]
    is_dir: bool

    @classmethod
    def from_proto(cls, a: artifact_pb2.Artifact) -> ArtifactInfo:
        names = {v: k for k, v in TYPES.items()}
        return cls(path=a.path, size=a.size_bytes, sha256=a.sha256, type=names.get(a.type, ""),
                   metadata=dict(a.metadata), is_dir=a.path.endswith("/"))


def _type(name: str) -> artifact_pb2.ArtifactType:
    if name not in TYPES:
        raise InvalidArgument(f"artifact type must be one of {', '.join(TYPES)}, not {name!r}")
    return TYPES[name]


def _digest(source: Path | bytes) -> tuple[str, int]:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest(), len(source)
    h = hashlib.sha256()
    with open(source, "rb") as f:
        while block := f.read(CHUNK * 4):
            h.update(block)
    return h.hexdigest(), source.stat().st_size


def files_to_log(local_path: str | Path, artifact_path: str | None) -> list[tuple[Path, str]]:
    """(file, artifact path) for a file, or for each file under a directory (sorted), under
    `artifact_path` (default: the file or directory name)."""
    local = Path(local_path)
    if not local.exists():
        raise FileNotFoundError(f"{local} does not exist")
    target = (artifact_path or local.name).strip("/")
    if local.is_file():
        return [(local, target)]
    return [(f, f"{target}/{f.relative_to(local).as_posix()}") for f in sorted(local.rglob("*")) if f.is_file()]


def upload(client: Client, run_id: str, source: Path | bytes, path: str, *, type: str = "file",
           metadata: Mapping[str, Any] | None = None) -> ArtifactInfo:
    """Upload one file (or bytes) to `path` in the run's artifacts."""
    sha256, size = _digest(source)
    header = artifact_pb2.UploadHeader(
        run_id=run_id, path=path, type=_type(type), metadata={k: str(v) for k, v in (metadata or {}).items()},
        expected_size_bytes=size, expected_sha256=sha256)
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=path, leave=False) if size >= PROGRESS_FROM else None

    def requests() -> Iterator[artifact_pb2.UploadArtifactRequest]:
        yield artifact_pb2.UploadArtifactRequest(header=header)
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
        with stream:
            while block := stream.read(CHUNK):
                if bar is not None:
                    bar.update(len(block))
                yield artifact_pb2.UploadArtifactRequest(chunk=block)

    try:
        response = client.call("artifact", client.artifacts.UploadArtifact, requests(),
                               timeout=max(client.settings.rpc_timeout_s, size / (5 * 1024 * 1024)))
    finally:
        if bar is not None:
            bar.close()
    return ArtifactInfo.from_proto(response.artifact)


def list_artifacts(client: Client, run_id: str, path: str = "", *, recursive: bool = False) -> list[ArtifactInfo]:
    found, token = [], ""
    while True:
        response = client.call("artifact", client.artifacts.ListArtifacts, artifact_pb2.ListArtifactsRequest(
            run_id=run_id, prefix=path, recursive=recursive, page_token=token, page_size=1000))
        found += [ArtifactInfo.from_proto(a) for a in response.artifacts]
        token = response.next_page_token
        if not token:
            return found


def download(client: Client, run_id: str, path: str, dst: Path) -> list[Path]:
    """Download a file, or everything under a directory, into `dst`. A partial local file is
    resumed from its size (byte ranges) and the result checked against the stored sha256."""
    stat = None
    try:
        stat = client.call("artifact", client.artifacts.StatArtifact,
                           artifact_pb2.StatArtifactRequest(run_id=run_id, path=path)).artifact
    except NotFound:  # not a file: a directory
        stat = None
    items = [ArtifactInfo.from_proto(stat)] if stat is not None else list_artifacts(client, run_id, path,
                                                                                   recursive=True)
    if stat is not None:  # a file lands in dst under its own name
        base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    else:  # a directory's files keep their paths below it
        base = path.rstrip("/") + "/" if path else ""
    written = []
    for item in items:
        target = dst / item.path[len(base):] if base and item.path.startswith(base) else dst / item.path
        written.append(_download_one(client, run_id, item, target))
    return written


def _download_one(client: Client, run_id: str, item: ArtifactInfo, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    if offset < item.size:
        bar = tqdm(total=item.size, initial=offset, unit="B", unit_scale=True, desc=item.path,
                   leave=False) if item.size >= PROGRESS_FROM else None
        with open(partial, "ab") as out:
            chunks = client.artifacts.DownloadArtifact(
                artifact_pb2.DownloadArtifactRequest(run_id=run_id, path=item.path, offset=offset),
                timeout=max(client.settings.rpc_timeout_s, item.size / (5 * 1024 * 1024)))
            for response in chunks:
                out.write(response.chunk)
                if bar is not None:
                    bar.update(len(response.chunk))
        if bar is not None:
            bar.close()
    if _digest(partial)[0] != item.sha256:
        partial.unlink()
        raise InvalidArgument(f"{item.path}: downloaded content does not match its sha256; download again")
    partial.replace(target)
    return target


def encode_dict(value: Mapping[str, Any], path: str) -> bytes:
    if path.endswith((".yaml", ".yml")):
        import yaml

        text: str = yaml.safe_dump(dict(value), sort_keys=False)
        return text.encode()
    return json.dumps(value, indent=2, default=str).encode()


def encode_figure(figure: Any, path: str) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.rsplit(".", 1)[-1] if "." in path else "png", bbox_inches="tight")
    return buffer.getvalue()
