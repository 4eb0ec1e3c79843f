"""GrpcStorageProxy's side of bench/hpo.py: the same ask+tell overhead as _optuna_rdb.py, through
Optuna's gRPC storage proxy — against trackd's hpo service (its Optuna port, docs/optuna.md) or
against Optuna's own `run_grpc_proxy_server` over an RDBStorage (started here, in a process of
its own, on a free port). Prints one JSON line, as _optuna_rdb.py does.

    _optuna_proxy.py trackd   --host 127.0.0.1 --port 50056 --study NAME --params 5 --trials 1000 --timed 50
    _optuna_proxy.py grpc-rdb --url URL --study NAME --params 5 --trials 1000 --timed 50 [--existing]

`--existing` times a study the RDB holds already (bench/hpo.py: the one _optuna_rdb.py filled)
instead of adding `--trials` to a new one. The RDB mode needs SQLAlchemy and the URL's driver, and
both need grpcio (bench/.venv-anchors)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket

import optuna
from _optuna_rdb import overhead
from optuna.storages import GrpcStorageProxy


def _serve(url: str, port: int) -> None:
    optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(url), host="127.0.0.1", port=port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(host: str, port: int, server: multiprocessing.process.BaseProcess | None = None) -> GrpcStorageProxy:
    """A GrpcStorageProxy on host:port once its server answers (`server`: the process serving it,
    if started here — its exit is an error at once)."""
    proxy = GrpcStorageProxy(host=host, port=port)
    for _ in range(30):  # a loaded machine can take minutes to start the server (imports, schema check)
        if server is not None and not server.is_alive():
            raise RuntimeError(f"run_grpc_proxy_server exited ({server.exitcode}): see its output above")
        try:
            proxy.wait_server_ready(timeout=10)
            return proxy
        except ConnectionError:
            continue
    proxy.close()
    raise RuntimeError(f"no gRPC storage proxy answered on {host}:{port} within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["trackd", "grpc-rdb"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50056)
    parser.add_argument("--url", default="")
    parser.add_argument("--study", required=True)
    parser.add_argument("--params", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--timed", type=int, default=50)
    parser.add_argument("--existing", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = None
    if args.mode == "grpc-rdb":
        args.host, args.port = "127.0.0.1", _free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(args.url, args.port), daemon=True)
        server.start()
    proxy = connect(args.host, args.port, server)
    args.url = proxy  # create_study takes a storage object as well as a URL
    try:
        found = overhead(args)
    finally:
        proxy.close()
        if server is not None:
            server.terminate()
    print(json.dumps({"optuna": optuna.__version__, "mode": args.mode, **found}))


if __name__ == "__main__":
    main()
