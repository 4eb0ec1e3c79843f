"""Artifact upload and download, side by side, on this machine, in one run (`make bench-artifacts`).

One file of random bytes (`--size-mb`, default 1024) through three paths to the same SeaweedFS S3
server:

1. trackd: the SDK, `run.log_artifact(path, "bench/blob.bin")` (its sha256 pass before the upload
   is counted: the user waits for it) and `trackd.download_artifacts(run_id, "bench/blob.bin", dst)`
   (its sha256 check after the download is counted too).
2. direct S3: aioboto3 `upload_file` / `download_file` managed (multipart) transfers, default
   TransferConfig, bucket bench-direct. The ceiling: no service in between.
3. MLflow: an MLflow 3.x server (2 workers, `--serve-artifacts`, `--artifacts-destination
   s3://bench-mlflow/`) proxying `mlflow.log_artifact` / `mlflow.artifacts.download_artifacts`
   from a client in bench/.venv-anchors (bench/_mlflow_artifacts.py).

Every download is compared with the source by sha256 (outside the timings). MB = 2**20 bytes.
Figures go to bench/results/artifacts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BENCH, QUIET, anchor_json, console, ensure_anchors, start_mlflow, start_stack, stop_mlflow
from rich.table import Table
from trackd_platform.stack import EmbeddedStack

RESULTS = BENCH / "results" / "artifacts.json"
MB = 1024 * 1024
BLOCK = 64 * MB
ARTIFACT = "bench/blob.bin"
REGION = "us-east-1"


def make_source(path: Path, size_mb: int) -> str:
    """`size_mb` MB of os.urandom, written in 64 MB blocks; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, left = hashlib.sha256(), size_mb * MB
    with open(path, "wb") as out:
        while left:
            block = os.urandom(min(BLOCK, left))
            h.update(block)
            out.write(block)
            left -= len(block)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MB):
            h.update(block)
    return h.hexdigest()


def verify(name: str, path: Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise RuntimeError(f"{name}: downloaded {path} has sha256 {actual}, the source {expected}")
    path.unlink()  # keep the disk footprint to one copy at a time


# -- trackd ------------------------------------------------------------------------------------

def trackd_transfer(source: Path, dst: Path) -> tuple[float, float, Path]:
    import trackd

    run = trackd.start_run("bench-artifacts", name="blob", capture_env=False, system_metrics=False)
    try:
        t0 = time.perf_counter()
        run.log_artifact(source, ARTIFACT)
        upload_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        written = trackd.download_artifacts(run.id, ARTIFACT, dst)
        download_s = time.perf_counter() - t0
    except BaseException:
        run.end("FAILED")
        raise
    run.end()
    if len(written) != 1:
        raise RuntimeError(f"trackd: download_artifacts wrote {written}, expected one file")
    return upload_s, download_s, written[0]


# -- direct S3 ---------------------------------------------------------------------------------

def s3_session_client(infra: dict[str, str]) -> Any:  # aioboto3's client is untyped
    """A client of the stack's S3 (`infra`: EmbeddedStack.infra_env(), with its generated keys)."""
    import aioboto3
    from botocore.config import Config

    return aioboto3.Session().client(
        "s3", endpoint_url=infra["TRACKD_S3_ENDPOINT"], region_name=REGION,
        aws_access_key_id=infra["TRACKD_S3_ACCESS_KEY"], aws_secret_access_key=infra["TRACKD_S3_SECRET_KEY"],
        config=Config(s3={"addressing_style": "path"}))


async def create_buckets(infra: dict[str, str], *buckets: str) -> None:
    async with s3_session_client(infra) as s3:
        for bucket in buckets:
            try:
                await s3.head_bucket(Bucket=bucket)
            except s3.exceptions.ClientError:
                await s3.create_bucket(Bucket=bucket)


async def direct_transfer(infra: dict[str, str], source: Path, dst: Path) -> tuple[float, float, Path]:
    target = dst / source.name  # dst exists
    async with s3_session_client(infra) as s3:
        t0 = time.perf_counter()
        await s3.upload_file(str(source), "bench-direct", ARTIFACT)
        upload_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await s3.download_file("bench-direct", ARTIFACT, str(target))
        download_s = time.perf_counter() - t0
    return upload_s, download_s, target


# -- MLflow ------------------------------------------------------------------------------------

def start_mlflow_proxy(infra: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    server_env = {"MLFLOW_S3_ENDPOINT_URL": infra["TRACKD_S3_ENDPOINT"],
                  "AWS_ACCESS_KEY_ID": infra["TRACKD_S3_ACCESS_KEY"],
                  "AWS_SECRET_ACCESS_KEY": infra["TRACKD_S3_SECRET_KEY"], "AWS_DEFAULT_REGION": REGION}
    return start_mlflow(["--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--serve-artifacts",
                         "--artifacts-destination", "s3://bench-mlflow/", "--workers", "2"], tmp, server_env)


def mlflow_transfer(uri: str, source: Path, dst: Path) -> tuple[float, float, Path, dict]:
    # the client gets no S3 endpoint or credentials: it can only go through the server's proxy
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MLFLOW_S3_", "TRACKD_"))}
    env.update(QUIET, MLFLOW_HTTP_REQUEST_TIMEOUT="3600")
    result = anchor_json("_mlflow_artifacts.py", "--uri", uri, "--file", str(source),
                         "--artifact-dir", ARTIFACT.rsplit("/", 1)[0], "--dst", str(dst), env=env)
    return result["upload_s"], result["download_s"], Path(result["local_path"]), result


# -- the benchmark -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the file, MB (2**20 bytes)")
    args = parser.parse_args()
    size = args.size_mb * MB

    ensure_anchors("boto3")  # the MLflow server reaches S3 with boto3
    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-artifacts-"))
    source = tmp / "src" / "blob.bin"
    stack: EmbeddedStack | None = None
    mlflow_proc: subprocess.Popen[bytes] | None = None
    timings: dict[str, tuple[float, float]] = {}
    mlflow_info: dict = {}
    failed = True
    try:
        with console.status(f"writing {args.size_mb:,} MB of random bytes…"):
            expected = make_source(source, args.size_mb)
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_RPC_TIMEOUT_S": "600", "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        os.environ.setdefault("TQDM_DISABLE", "1")  # the SDK's progress bars would fight the status line
        asyncio.run(create_buckets(stack.infra_env(), "bench-direct", "bench-mlflow"))

        with console.status(f"trackd: log_artifact + download_artifacts, {args.size_mb:,} MB…"):
            up, down, got = trackd_transfer(source, tmp / "dl-trackd")
        verify("trackd", got, expected)
        timings["trackd"] = (up, down)

        with console.status(f"direct S3 (aioboto3 upload_file / download_file), {args.size_mb:,} MB…"):
            (tmp / "dl-direct").mkdir()
            up, down, got = asyncio.run(direct_transfer(stack.infra_env(), source, tmp / "dl-direct"))
        verify("direct S3", got, expected)
        timings["direct"] = (up, down)

        with console.status("starting the MLflow server (2 workers, artifact proxy to S3)…"):
            mlflow_proc, uri = start_mlflow_proxy(stack.infra_env(), tmp)
        with console.status(f"MLflow: log_artifact + download_artifacts through the proxy, {args.size_mb:,} MB…"):
            up, down, got, mlflow_info = mlflow_transfer(uri, source, tmp / "dl-mlflow")
        verify("MLflow", got, expected)
        timings["mlflow"] = (up, down)
        failed = False
    finally:
        if mlflow_proc is not None:
            stop_mlflow(mlflow_proc)
        if stack is not None:
            stack.stop()
        if failed:
            source.unlink(missing_ok=True)
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rates = {name: (size / MB / up, size / MB / down) for name, (up, down) in timings.items()}
    td_up, td_down = rates["trackd"]
    results = {
        "size_mb": args.size_mb, "sha256": expected, "cores": os.cpu_count(),
        "paths": {name: {"upload_s": timings[name][0], "download_s": timings[name][1],
                         "upload_mb_s": up, "download_mb_s": down,
                         "trackd_ratio_upload": td_up / up, "trackd_ratio_download": td_down / down}
                  for name, (up, down) in rates.items()},
        "mlflow_version": mlflow_info.get("mlflow_version"),
        "mlflow_artifact_uri": mlflow_info.get("artifact_uri"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    labels = {"trackd": "trackd SDK\n[dim]log_artifact / download_artifacts, sha256 both ways[/]",
              "direct": "direct S3\n[dim]aioboto3 upload_file / download_file[/]",
              "mlflow": f"MLflow {mlflow_info.get('mlflow_version', '')} proxy\n"
                        "[dim]2 workers, --serve-artifacts → S3[/]"}
    table = Table(title=f"Artifacts — one {args.size_mb:,} MB file, the same SeaweedFS S3, "
                        f"{os.cpu_count()} cores (MB = 2^20 bytes)")
    table.add_column("path")
    table.add_column("upload MB/s", justify="right")
    table.add_column("download MB/s", justify="right")
    table.add_column("trackd ÷ path, up / down", justify="right")
    for name, (up, down) in rates.items():
        up_s, down_s = timings[name]
        table.add_row(labels[name], f"{up:,.1f}\n[dim]{up_s:.2f} s[/]", f"{down:,.1f}\n[dim]{down_s:.2f} s[/]",
                      f"{td_up / up:.2f}× / {td_down / down:.2f}×")
    console.print(table)
    console.print("[dim]every download matched the source's sha256; "
                  f"written to {RESULTS.relative_to(BENCH.parent)}[/]")


if __name__ == "__main__":
    main()
