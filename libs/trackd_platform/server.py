"""One gRPC server bootstrap for every service: health checking, reflection, the error
interceptor, OpenTelemetry, Prometheus `/metrics`, and graceful shutdown on SIGTERM / SIGINT
(health NOT_SERVING, drain in-flight RPCs, stop background tasks, close pools)."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import asyncpg
import grpc
import prometheus_client
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from trackd_platform import errors
from trackd_platform.config import ServerSettings
from trackd_platform.db import postgres_unreachable
from trackd_platform.rpc_types import Context, Continuation, Handler, StreamingBehaviour, UnaryBehaviour
from trackd_platform.telemetry import annotate_current_span, current_trace_id, setup_tracing
from trackd_platform.tls import server_credentials

log = logging.getLogger(__name__)
T = TypeVar("T")

STATUS_OF: dict[type[errors.TrackdError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}

# Every message size is bounded; larger requests are refused by gRPC with RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_PENDING_CALLS = 20_000  # arrived, not yet taken in by the server (see server_options)
KEEPALIVE_TIMEOUT_MS = 20_000  # a keepalive ping unanswered this long: the peer is gone
# Clients may ping this often without sending data (an SDK with client keepalive must ping less
# often, or the server closes the connection with GOAWAY "too_many_pings").
MIN_CLIENT_PING_INTERVAL_MS = 10_000


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """The gRPC server's options: message bounds, and keepalive so that the calls of a peer that
    vanished without closing its connection (a killed VM, a dropped NAT entry) are ended instead
    of holding their stream slots forever. Healthy long-lived streams are unaffected: a peer that
    answers the pings keeps its connection, however quiet its calls."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.keepalive_permit_without_calls", 1),  # a client pinging an idle connection is not punished
        # Calls that arrive faster than the asyncio server takes them in wait in gRPC core; beyond
        # 1,000 waiting (its default) it rejects some at random, beyond 3,000 all: a burst of
        # long-lived calls (2,000 WatchRun opened at once) lost ~10 % of them as CANCELLED.
        # Each service bounds its calls itself (stream slots, watchers), so let them queue.
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
    ]
    if settings.keepalive_s > 0:
        timeout_ms = min(KEEPALIVE_TIMEOUT_MS, max(1000, int(settings.keepalive_s * 1000)))
        options += [
            ("grpc.keepalive_time_ms", int(settings.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", timeout_ms),
            # what gRPC core (1.6x+) actually times an unanswered ping out with (default: a minute)
            ("grpc.http2.ping_timeout_ms", timeout_ms),
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging under a call that waits quietly (WatchRun)
        ]
    if settings.max_connection_idle_s > 0:
        options.append(("grpc.max_connection_idle_ms", int(settings.max_connection_idle_s * 1000)))
    return options


class _Undecodable:
    """A request message that did not parse (corrupt wire format, bad UTF-8 in a string field).
    gRPC itself would answer UNKNOWN; the edge answers INVALID_ARGUMENT instead."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def refuse(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(f"the request message could not be parsed: {self.error}")


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError as exc:
            return _Undecodable(exc)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    first = True
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise request.refuse()
        if first:  # a stream is about what its first message names (e.g. StreamMetrics' run)
            annotate_current_span(request)
            first = False
        yield request


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls], str(exc)
    if postgres_unreachable(exc):  # a restart or an outage, not a bug: clients retry UNAVAILABLE
        log.warning("PostgreSQL unreachable: %s: %s", type(exc).__name__, exc)
        return grpc.StatusCode.UNAVAILABLE, "PostgreSQL is unreachable or restarting; retry shortly"
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):  # a standby, or default_transaction_read_only
        log.warning("PostgreSQL refuses writes: %s", exc)
        return grpc.StatusCode.UNAVAILABLE, ("PostgreSQL accepts no writes right now (read-only: a standby or a "
                                             "failover in progress); reads work, retry writes shortly")
    if isinstance(exc, asyncpg.DiskFullError | asyncpg.InsufficientResourcesError | asyncpg.OutOfMemoryError):
        log.error("PostgreSQL is out of resources: %s: %s", type(exc).__name__, exc)
        return grpc.StatusCode.RESOURCE_EXHAUSTED, (f"PostgreSQL is out of disk space or memory ({exc}); "
                                                    "nothing was written: free space on its volume, then retry")
    trace_id = current_trace_id()
    log.exception("unhandled error (trace id %s)", trace_id, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (trace id {trace_id}); see the server log"


class _EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Maps the error hierarchy to status codes and records RPC metrics, once, for all RPCs."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self._calls = prometheus_client.Counter(
            "trackd_rpc_total", "RPCs handled", ["method", "code"], registry=registry
        )
        self._seconds = prometheus_client.Histogram(
            "trackd_rpc_seconds", "RPC handling time", ["method"], registry=registry
        )

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method

        def done(started: float, code: grpc.StatusCode) -> None:
            self._calls.labels(method, code.name).inc()
            self._seconds.labels(method).observe(time.perf_counter() - started)

        async def fail(context: Context, exc: Exception, started: float) -> None:
            code, message = status_of(exc)
            done(started, code)
            await context.abort(code, message)

        if handler.unary_unary or handler.stream_unary:
            inner = cast(UnaryBehaviour, handler.unary_unary or handler.stream_unary)

            async def unary(request: Any, context: Context) -> Any:
                started = time.perf_counter()
                try:
                    if isinstance(request, _Undecodable):
                        raise request.refuse()
                    annotate_current_span(request)  # the RPC span gets the run / study / trial ids
                    response = await inner(_checked(request) if handler.stream_unary else request, context)
                    annotate_current_span(response)  # ids the call created (StartRun's run …)
                except grpc.aio.AbortError:
                    raise
                except asyncio.CancelledError:  # the client went away: counted once the handler has let go
                    done(started, grpc.StatusCode.CANCELLED)
                    raise
                except Exception as exc:  # noqa: BLE001 — the edge: every error gets a status
                    await fail(context, exc, started)
                done(started, grpc.StatusCode.OK)
                return response

            wrapped: UnaryBehaviour | StreamingBehaviour = unary
            factory = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
        else:
            inner_streaming = cast(StreamingBehaviour, handler.unary_stream or handler.stream_stream)

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                started = time.perf_counter()
                try:
                    if isinstance(request, _Undecodable):
                        raise request.refuse()
                    requests = _checked(request) if handler.stream_stream else request
                    annotate_current_span(request)
                    async for response in inner_streaming(requests, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except asyncio.CancelledError:
                    done(started, grpc.StatusCode.CANCELLED)
                    raise
                except Exception as exc:  # noqa: BLE001
                    await fail(context, exc, started)
                done(started, grpc.StatusCode.OK)

            factory = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler
            )
            wrapped = streaming
        return factory(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _Gate(grpc.GenericRpcHandler):
    """The services' methods, behind a gate: while the service waits for its dependencies at
    start-up every call is UNAVAILABLE, saying what is awaited; once `GrpcServer.start` opens the
    gate, the servicers' own handlers. Collects them as a grpc server would (`add_*_handlers`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting_for = "its start-up"
        self.open = False
        self._methods: dict[str, Handler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self._methods.update({f"/{service}/{method}": h for method, h in handlers.items()})

    def service(self, details: grpc.HandlerCallDetails) -> Handler | None:
        if not self.open:
            return grpc.stream_stream_rpc_method_handler(self._refuse)
        found = self._methods.get(details.method)
        for generic in self._generic if found is None else ():
            if (found := generic.service(details)) is not None:
                break
        return found

    async def _refuse(self, requests: Any, context: Context) -> AsyncIterator[Any]:
        raise errors.Unavailable(f"{self.name} is not serving yet: it waits for {self.waiting_for}; retry shortly")
        yield  # an async generator, as a streaming handler is


class _LateInterceptors(grpc.aio.ServerInterceptor):
    """Interceptors known only once the service has its dependencies (access needs the pool)."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> None:
        self.interceptors = list(interceptors)

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        for interceptor in reversed(self.interceptors):
            continuation = functools.partial(interceptor.intercept_service, continuation)
        return await continuation(details)


class GrpcServer:
    """A service process's server. `app.py` adds servicers, background tasks and closers, then
    calls `run_until_signal()`."""

    def __init__(self, settings: ServerSettings, *, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> None:
        self.settings = settings
        self.registry = prometheus_client.CollectorRegistry()
        setup_tracing(settings.telemetry)
        self._late = _LateInterceptors(interceptors)
        self._server = grpc.aio.server(
            # after the edge, so access errors (auth, rate limits) get their status codes there
            interceptors=[aio_server_interceptor(), _EdgeInterceptor(self.registry), self._late],
            options=server_options(settings),
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)  # answers from the first moment
        self._gate = _Gate(settings.name)
        self._server.add_generic_rpc_handlers((self._gate,))
        self._service_names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._listening = False
        self.port = 0

    def add_servicer(self, add: Callable[[Any, Any], None], servicer: Any, name: str) -> None:
        add(servicer, self._gate)
        self._service_names.append(name)

    def add_interceptors(self, *interceptors: grpc.aio.ServerInterceptor) -> None:
        """Interceptors that need what the service waited for at start-up (run inside the edge)."""
        self._late.interceptors.extend(interceptors)

    async def until_ready(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`'s result once it succeeds: a dependency (PostgreSQL, S3 …) that is not up yet
        at start-up is retried with back-off (0.2 s doubling to 5 s, for as long as it takes) while
        the server listens, health says NOT_SERVING and calls are UNAVAILABLE naming `what`."""
        await self.listen()
        self._gate.waiting_for = what
        pause = 0.2
        while True:
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — any failure to reach it: try again
                log.warning("%s waits for %s (%s); retrying in %.1fs", self.settings.name, what,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def add_background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A loop that runs while the server serves; cancelled at shutdown."""
        self._background.append(task)

    def add_closer(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Called after the server has drained, in reverse order of registration."""
        self._closers.append(close)

    async def listen(self) -> None:
        """Bind the port and answer health checks (NOT_SERVING) and calls (UNAVAILABLE) until
        `start()`; `/metrics` serves from here on."""
        if self._listening:
            return
        self._listening = True
        address = f"{self.settings.host}:{self.settings.port}"
        if self.settings.tls.serving:
            self.port = self._server.add_secure_port(address, server_credentials(self.settings.tls))
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.settings.host}:{self.settings.port}")
        if self.settings.plaintext_port and not self._server.add_insecure_port(
                f"{self.settings.host}:{self.settings.plaintext_port}"):
            raise RuntimeError(f"cannot listen on {self.settings.host}:{self.settings.plaintext_port}")
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        if self.settings.metrics_port:
            # on the gRPC host: `make up` binds loopback only, a container 0.0.0.0
            prometheus_client.start_http_server(self.settings.metrics_port, addr=self.settings.host,
                                                registry=self.registry)
        if not self.settings.auth.enabled and self.settings.host not in LOOPBACK:
            log.warning("%s listens on %s with TRACKD_AUTH off: anyone who reaches this address can read and "
                        "change every project. Bind 127.0.0.1 (TRACKD_GRPC_HOST) or turn auth on (docs/auth.md).",
                        self.settings.name, self.settings.host)

    async def start(self) -> None:
        """Open: the servicers answer and health says SERVING."""
        await self.listen()
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # the asyncio servicer, behind the gate
            reflection.aio.ReflectionServicer(self._service_names), self._gate)
        self._gate.open = True
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving gRPC on %s:%d", self.settings.name, self.settings.host, self.port)

    async def close_gate(self, what: str) -> None:
        """Back to the start-up state while serving: calls UNAVAILABLE naming `what`, health
        NOT_SERVING, until `reopen()` (the hpo controller, having lost its lease, waits so to take
        it again)."""
        self._gate.waiting_for = what
        self._gate.open = False
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        log.warning("%s stopped serving: it waits for %s", self.settings.name, what)

    async def reopen(self) -> None:
        """After `close_gate`: the servicers answer again and health says SERVING."""
        self._gate.open = True
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving again", self.settings.name)

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, _log_tasks)  # `kill -USR1 PID`: what is it doing?
        await self.start()
        tasks = [asyncio.create_task(_guard(t)) for t in self._background]
        await stop.wait()
        log.info("%s shutting down: draining for up to %.0fs", self.settings.name, self.settings.shutdown_grace_s)
        await self.stop(tasks)

    async def stop(self, tasks: list[asyncio.Task[None]] | None = None) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.settings.shutdown_grace_s)
        for task in tasks or []:
            task.cancel()
        await asyncio.gather(*(tasks or []), return_exceptions=True)
        for close in reversed(self._closers):
            await close()


async def _guard(task: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Background loops must not die silently: log and restart after a pause."""
    while True:
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting in 1s", getattr(task, "__qualname__", task))
            await asyncio.sleep(1)


def _log_tasks() -> None:
    for task in asyncio.all_tasks():
        stream = io.StringIO()
        task.print_stack(file=stream)
        log.warning("task %s:\n%s", task.get_name(), stream.getvalue())


def configure_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
