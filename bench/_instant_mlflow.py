"""An HTTP server that answers the MLflow client's tracking calls at once and stores nothing, for
bench/mlflow_compat.py's ceiling row: what the MLflow client code itself can send, whatever the
server. Standard library only; `python _instant_mlflow.py PORT`."""

from __future__ import annotations

import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's server and trackd's do

    def log_message(self, *args: object) -> None:
        pass

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read, never parsed
        if self.path.endswith("/experiments/create"):
            body: dict[str, object] = {"experiment_id": "1"}
        elif self.path.endswith("/runs/create"):
            run_id = uuid.uuid4().hex
            body = {"run": {"info": {"run_id": run_id, "run_uuid": run_id, "experiment_id": "1", "status": "RUNNING",
                                     "start_time": 0, "lifecycle_stage": "active", "artifact_uri": ""}, "data": {}}}
        elif self.path.endswith("/runs/update"):
            body = {"run_info": {"status": "FINISHED"}}
        else:
            body = {}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = answer


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Answer).serve_forever()
