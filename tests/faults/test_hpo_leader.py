"""Fault drill: two hpo processes, one active controller. The second replica waits (NOT_SERVING,
calls UNAVAILABLE naming the lease) while the first holds the controller lease; when the first is
SIGKILLed it takes over and carries the study on, while the first, restarted, waits in turn."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_second_replica_waits_for_the_controller_lease_and_takes_over(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    first = stack.services["hpo"]
    first_target = f"{HOST}:{stack.service_port('hpo')}"
    port = free_port()
    second_target = f"{HOST}:{port}"
    log = (tmp_path / "hpo-2.log").open("wb")
    second = subprocess.Popen(list(first.argv), env={**first.env, "TRACKD_GRPC_PORT": str(port),
                                                     "TRACKD_METRICS_PORT": "0", "TRACKD_OPTUNA_PORT": "0"},
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(second_target) as channel:
            standby = hpo_pb2_grpc.HpoServiceStub(channel)

            def refuses_for_the_lease() -> bool:
                try:
                    standby.ListStudies(hpo_pb2.ListStudiesRequest(), timeout=2)
                except grpc.RpcError as exc:
                    return exc.code() == grpc.StatusCode.UNAVAILABLE and "controller lease" in (exc.details() or "")
                return False

            wait_for(refuses_for_the_lease, 60, "the second replica never said it waits for the lease")
            name = unique("leader")
            study = trackd.hpo.create_study(name, search_space={"x": {"type": "float", "low": 0, "high": 1}},
                                            max_trials=4, parallelism=2, seed=1)  # through the first
            for _ in range(10):  # the standby stays out while the first is alive
                assert not grpc_serving(second_target) and refuses_for_the_lease()
                time.sleep(0.3)
            restarts = first.restarts
            first.kill()  # SIGKILL: its session, and the lock, go with it
            wait_for(lambda: grpc_serving(second_target), 60, "the second replica did not take over")
            wait_for(lambda: first.restarts > restarts, 30, "the first was not restarted")
            time.sleep(3)  # the restarted first has had time to start: it must wait, not serve
            assert not grpc_serving(first_target)
            done = 0
            while True:  # the study carries on through the new controller
                got = standby.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w"), timeout=30)
                if not got.HasField("trial"):
                    break
                x = json.loads(got.trial.params_json)["x"]
                standby.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=got.trial.id, worker="w", values=[x]),
                                      timeout=30)
                done += 1
            assert done == 4 and got.study.state == hpo_pb2.STUDY_STATE_FINISHED
    finally:
        second.terminate()  # SIGTERM: it releases the lease on the way out
        second.wait(timeout=60)
        log.close()
    wait_for(lambda: grpc_serving(first_target), 60, "the first did not take the lease back")
    assert trackd.hpo.get_study(name).state == "FINISHED"
