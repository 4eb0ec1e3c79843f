"""MLflow artifact client for bench/artifacts.py. Runs inside bench/.venv-anchors (never the
project's venv) and prints one JSON object on stdout.

Within one run: `mlflow.log_artifact(FILE, artifact_path=DIR)` (upload, timed), then
`mlflow.artifacts.download_artifacts(run_id=..., artifact_path=DIR/NAME, dst_path=DST)` (download,
timed). The tracking URI is the server's http:// address, so with `--serve-artifacts` the run's
artifact URI is mlflow-artifacts:/… and both directions go through the server's proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True, help="tracking server, http://host:port")
    parser.add_argument("--file", required=True, help="the file to upload")
    parser.add_argument("--artifact-dir", default="bench", help="directory in the run's artifacts")
    parser.add_argument("--dst", required=True, help="directory to download into")
    args = parser.parse_args()

    source = Path(args.file)
    mlflow.set_tracking_uri(args.uri)
    mlflow.set_experiment(f"bench-artifacts-{int(time.time() * 1000)}")
    with mlflow.start_run() as run:
        artifact_uri = mlflow.get_artifact_uri()
        if not artifact_uri.startswith("mlflow-artifacts:"):
            raise SystemExit(f"artifact URI {artifact_uri!r} does not go through the server's proxy")
        t0 = time.perf_counter()
        mlflow.log_artifact(str(source), artifact_path=args.artifact_dir)
        upload_s = time.perf_counter() - t0
    artifact_path = f"{args.artifact_dir}/{source.name}"
    t0 = time.perf_counter()
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifact_path,
                                                dst_path=args.dst)
    download_s = time.perf_counter() - t0
    print(json.dumps({"run_id": run.info.run_id, "artifact_uri": artifact_uri, "artifact_path": artifact_path,
                      "upload_s": upload_s, "download_s": download_s, "local_path": local,
                      "mlflow_version": mlflow.__version__}))


if __name__ == "__main__":
    main()
