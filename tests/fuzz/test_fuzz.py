"""Every RPC of every service, found in the proto descriptors, answers random and malformed requests
(see messages.py) with a status that is not INTERNAL or UNKNOWN, or with success; afterwards every
service still serves health and none was restarted.

Derandomized: the same requests every run, so CI is stable. `FUZZ_EXAMPLES` examples per RPC.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc
import pytest
import trackd
import trackd_api
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving

from tests.fuzz.messages import Generator

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = 30
UNARY_DEADLINE_S = 30.0  # a unary RPC that takes longer on bad input hangs: a failure
STREAM_DEADLINE_S = 1.0  # live streams (WatchRun) legitimately wait for more; their errors come first
MAX_STREAM_RESPONSES = 50
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def every_method() -> list[MethodDescriptor]:
    """Every RPC of every service in the generated stubs (a new proto package is found too)."""
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(trackd_api.__path__, "trackd_api.")
               if m.name.endswith("_pb2")]
    return [method for module in modules for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


METHODS = every_method()
ANSWERS = "fuzz answers"  # the report property holding (RPC, {status: calls})


@dataclass(frozen=True)
class Seeded:
    """Real entities whose ids the generator slips into requests, so fuzzing reaches the stores."""

    hints: dict[str, list[str]]
    common: list[str]


@pytest.fixture(scope="module")
def seeded(stack: EmbeddedStack) -> Iterator[Seeded]:
    tag = uuid.uuid4().hex[:8]
    experiment, model, study_name = f"fuzz-{tag}", f"fuzz-model-{tag}", f"fuzz-study-{tag}"
    with trackd.start_run(experiment, project="fuzz", params={"lr": 0.1}, tags={"t": "x"}, capture_env=False,
                          system_metrics=False) as ended:
        ended.log_metric("loss", 0.5, step=0)
        ended.log_text("hello", "fuzz/a.txt")
    running = trackd.start_run(experiment, project="fuzz", params={"lr": 0.2}, capture_env=False,
                               system_metrics=False)
    running.log_metric("loss", 0.4, step=0)
    assert running.flush(30)
    version = trackd.register_model(model, run_id=ended.id, path="fuzz/a.txt")
    trackd.set_model_alias(model, "champion", version.version)
    space = {"x": {"type": "float", "low": 0, "high": 1}}
    study = trackd.hpo.create_study(study_name, metric="loss", search_space=space, sampler="random", parallelism=1000)
    client = trackd.Client()
    trial = client.hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w"), timeout=30).trial
    client.close()
    runs = [running.id, ended.id]
    yield Seeded(
        hints={
            "run_id": runs, "run_ids": runs, "parent_run_id": runs, "experiment_id": [ended.experiment_id],
            "experiment_ids": [ended.experiment_id], "experiment": [experiment], "experiment_name": [experiment],
            "experiment_names": [experiment], "project": ["fuzz"], "project_name": ["fuzz"],
            "name": [experiment, model, study_name], "path": ["fuzz/a.txt", "fuzz"], "prefix": ["fuzz"],
            "key": ["loss"], "keys": ["loss"], "metric": ["loss"], "params": ["lr"], "x_param": ["lr"],
            "y_param": ["lr"], "alias": ["champion", "v1"], "study_id": [study.id], "trial_id": [trial.id],
            "worker": ["w"], "filter": ["metrics.loss > 0.1", "params.lr = '0.1'"], "order_by": ["metrics.loss DESC"],
            "sampler": ["random", "tpe"], "pruner": ["median", "none"],
            "search_space_json": ['{"x": {"type": "float", "low": 0, "high": 1}}'],
        },
        common=[],
    )
    running.end()


def metadata() -> st.SearchStrategy[list[tuple[str, str | bytes]]]:
    """Metadata gRPC lets a client send: ASCII text under ordinary keys (trace context and
    credentials among them), any bytes under `-bin` keys, at sizes up to past the 8 KiB default."""
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64)
    text = st.one_of(*[printable] * 7, st.sampled_from([1_000, 9_000]).map(lambda n: "a" * n))
    key = st.sampled_from(["traceparent", "tracestate", "baggage", "authorization", "x-api-key", "x-request-id"]) | \
        st.from_regex(r"\A[a-z][a-z0-9_.-]{0,20}\Z")
    plain = st.tuples(key.filter(lambda k: not k.endswith("-bin")), text)
    binary = st.tuples(key.map(lambda k: k + "-bin"), st.binary(max_size=64))
    return st.lists(plain | binary, max_size=3)


def call(channel: grpc.Channel, method: MethodDescriptor, requests: list[bytes],
         md: list[tuple[str, str | bytes]]) -> grpc.StatusCode:
    """One call with raw request bytes; returns its status."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(path)(requests[0], timeout=UNARY_DEADLINE_S, metadata=md)
        elif method.client_streaming and not method.server_streaming:
            channel.stream_unary(path)(iter(requests), timeout=UNARY_DEADLINE_S, metadata=md)
        else:
            responses: Iterable[bytes] = (
                channel.stream_stream(path)(iter(requests), timeout=STREAM_DEADLINE_S, metadata=md)
                if method.client_streaming else
                channel.unary_stream(path)(requests[0], timeout=STREAM_DEADLINE_S, metadata=md))
            for _ in itertools.islice(responses, MAX_STREAM_RESPONSES):
                pass
            if hasattr(responses, "cancel"):
                responses.cancel()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        if code == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK  # we stopped reading after MAX_STREAM_RESPONSES
        if code in FORBIDDEN:
            raise AssertionError(f"{path} answered {code.name}: {error.details()}") from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not method.server_streaming:
            raise AssertionError(f"{path} hung for {UNARY_DEADLINE_S:.0f}s on bad input") from None
        return code
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def channels(stack: EmbeddedStack) -> Iterator[dict[str, grpc.Channel]]:
    """A channel to the process serving each gRPC service, as its server reflection says."""
    opened, serving = [], {}
    for managed in stack.services.values():
        channel = grpc.insecure_channel(f"{HOST}:{managed.env['TRACKD_GRPC_PORT']}")
        opened.append(channel)
        for service in ProtoReflectionDescriptorDatabase(channel).get_services():
            serving.setdefault(service, channel)
    unserved = {m.containing_service.full_name for m in METHODS} - set(serving)
    assert not unserved, f"no process serves {unserved}"
    yield serving
    for channel in opened:
        channel.close()


@pytest.fixture
def stays_up(stack: EmbeddedStack) -> Iterator[None]:
    """Every service serves health afterwards, in the same process (no crash, no restart)."""
    before = {name: (m.pid, m.restarts) for name, m in stack.services.items()}
    yield
    for name, managed in stack.services.items():
        assert (managed.pid, managed.restarts) == before[name], f"{name} died and was restarted"
        assert grpc_serving(f"{HOST}:{managed.env['TRACKD_GRPC_PORT']}", timeout_s=10), f"{name} not SERVING"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_every_rpc_answers_bad_input_with_a_status(
    method: MethodDescriptor, seeded: Seeded, channels: dict[str, grpc.Channel], stays_up: None,
    record_property: Callable[[str, object], None],
) -> None:
    generator = Generator(seeded.hints, seeded.common)
    one = generator.request(method.input_type)
    requests = st.lists(one, max_size=4) if method.client_streaming else one.map(lambda r: [r])
    channel = channels[method.containing_service.full_name]
    seen: Counter[str] = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(requests=requests, md=metadata())
    def answers(requests: list[bytes], md: list[tuple[str, str | bytes]]) -> None:
        seen[call(channel, method, requests, md).name] += 1

    answers()
    # what the RPC answered, for the summary at the end of the session (conftest.py)
    record_property(ANSWERS, (f"{method.containing_service.name}.{method.name}", dict(seen)))
