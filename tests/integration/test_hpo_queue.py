"""The HPO ready queue on the real stack: trials sampled ahead into a Valkey stream, handed out
from it within the study's parallelism, dropped when the study stops, and rebuilt from
PostgreSQL when Valkey loses it. Trials handed out with Valkey down (from PostgreSQL) are a fault
drill: tests/faults/test_redis_outage.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.stack import EmbeddedStack
from trackd_services.hpo.queue import stream_key

pytestmark = pytest.mark.integration

SPACE = {"x": {"type": "float", "low": -5, "high": 5}}


@pytest.fixture
def hpo(stack: EmbeddedStack) -> Iterator[hpo_pb2_grpc.HpoServiceStub]:
    with grpc.insecure_channel(stack.client_env()["TRACKD_HPO_TARGET"]) as channel:
        yield hpo_pb2_grpc.HpoServiceStub(channel)


@pytest.fixture
def valkey(stack: EmbeddedStack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    yield client
    client.close()


def create(hpo: hpo_pb2_grpc.HpoServiceStub, name: str, **fields: object) -> hpo_pb2.Study:
    return hpo.CreateStudy(hpo_pb2.CreateStudyRequest(
        name=name, experiment=name, search_space_json=json.dumps(SPACE), sampler="random",
        objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)], **fields),
        timeout=30).study


def trials(hpo: hpo_pb2_grpc.HpoServiceStub, study_id: str, *states: int) -> list[hpo_pb2.Trial]:
    return list(hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=study_id, states=states), timeout=30).trials)


def wait_for(check: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def queued_ids(valkey: redis.Redis, study_id: str) -> list[str]:
    import uuid
    return [fields[b"trial"].decode() for _, fields in valkey.xrange(stream_key(uuid.UUID(study_id)))]


def acquire(hpo: hpo_pb2_grpc.HpoServiceStub, study_id: str, worker: str) -> hpo_pb2.AcquireTrialResponse:
    return hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study_id, worker=worker), timeout=30)


def test_trials_are_sampled_ahead_and_handed_out_from_the_stream(
        hpo: hpo_pb2_grpc.HpoServiceStub, valkey: redis.Redis, unique: Callable[[str], str]) -> None:
    study = create(hpo, unique("ready"), parallelism=3, seed=1)
    wait_for(lambda: len(trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING)) == 3, "3 trials sampled ahead")
    waiting = [t.id for t in trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING)]
    wait_for(lambda: len(queued_ids(valkey, study.id)) == 3, "3 entries in the stream")
    assert queued_ids(valkey, study.id) == [w.replace("-", "") for w in waiting]

    held = [acquire(hpo, study.id, f"w{i}").trial for i in range(3)]
    assert [t.id for t in held] == waiting  # the stream's order, no new sampling on the way
    assert not acquire(hpo, study.id, "w3").HasField("trial")  # parallelism 3 holds with trials ready
    # Their replacements are sampled while they run: 3 running, 3 ready.
    wait_for(lambda: len(trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING)) == 3, "3 replacements")
    assert len(trials(hpo, study.id, hpo_pb2.TRIAL_STATE_RUNNING)) == 3
    again = acquire(hpo, study.id, "w0").trial  # a worker asking again (its answer lost) gets its own back,
    assert (again.id, again.run_id) == (held[0].id, held[0].run_id)  # with its run,
    ready = sorted(t.id.replace("-", "") for t in trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING))
    assert len(ready) == 3  # and the trial read from the stream for it goes back there
    wait_for(lambda: sorted(queued_ids(valkey, study.id)) == ready, "the 3 waiting trials queued once each")


def test_stopping_a_study_drops_the_trials_sampled_ahead(
        hpo: hpo_pb2_grpc.HpoServiceStub, valkey: redis.Redis, unique: Callable[[str], str]) -> None:
    study = create(hpo, unique("stop-ready"), parallelism=2, seed=2)
    wait_for(lambda: len(trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING)) == 2, "2 trials sampled ahead")
    running = acquire(hpo, study.id, "w0").trial
    hpo.StopStudy(hpo_pb2.StopStudyRequest(study_id=study.id), timeout=30)
    assert [t.id for t in trials(hpo, study.id)] == [running.id]  # the started trial stays, the rest is gone
    assert queued_ids(valkey, study.id) == []
    with pytest.raises(grpc.RpcError) as refused:
        acquire(hpo, study.id, "w1")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_lost_stream_is_rebuilt_from_postgresql(
        hpo: hpo_pb2_grpc.HpoServiceStub, valkey: redis.Redis, unique: Callable[[str], str]) -> None:
    import uuid

    study = create(hpo, unique("lost"), parallelism=4, seed=3)
    wait_for(lambda: len(queued_ids(valkey, study.id)) == 4, "4 entries in the stream")
    valkey.delete(stream_key(uuid.UUID(study.id)))  # as if Valkey restarted without its data
    waiting = {t.id.replace("-", "") for t in trials(hpo, study.id, hpo_pb2.TRIAL_STATE_WAITING)}
    wait_for(lambda: set(queued_ids(valkey, study.id)) == waiting, "the reaper rebuilding the stream")
