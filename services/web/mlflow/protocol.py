"""MLflow's REST conventions, once: the error body (`{"error_code": …, "message": …}`) and its
HTTP statuses, the mapping of trackd's gRPC statuses onto it, reading a request's fields (JSON
body for POST, query string for GET) with MLflow's messages for a missing or mistyped one, and
the `endpoint` wrapper every handler goes through so no error escapes as a 500.

Handlers are `async def handler(call: Call) -> dict` (or a Response of their own: a streamed
body) and raise `MlflowError` for bad input; an
`AioRpcError` from a trackd service is mapped by its status code."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..backends import Backends, Caller

log = logging.getLogger(__name__)

T = TypeVar("T")

# MLflow's error codes (mlflow/protos/databricks.proto) and the HTTP status its server answers with.
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
INVALID_STATE = "INVALID_STATE"
BAD_REQUEST = "BAD_REQUEST"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
ABORTED = "ABORTED"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
INTERNAL_ERROR = "INTERNAL_ERROR"
HTTP_STATUS = {
    INVALID_PARAMETER_VALUE: 400, RESOURCE_DOES_NOT_EXIST: 404, RESOURCE_ALREADY_EXISTS: 400, INVALID_STATE: 400,
    BAD_REQUEST: 400, PERMISSION_DENIED: 403, UNAUTHENTICATED: 401, REQUEST_LIMIT_EXCEEDED: 429,
    TEMPORARILY_UNAVAILABLE: 503, ABORTED: 409, ENDPOINT_NOT_FOUND: 404, INTERNAL_ERROR: 500,
}
FROM_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: INVALID_PARAMETER_VALUE,
    grpc.StatusCode.OUT_OF_RANGE: INVALID_PARAMETER_VALUE,
    grpc.StatusCode.NOT_FOUND: RESOURCE_DOES_NOT_EXIST,
    grpc.StatusCode.ALREADY_EXISTS: RESOURCE_ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION: INVALID_STATE,
    grpc.StatusCode.ABORTED: ABORTED,
    grpc.StatusCode.PERMISSION_DENIED: PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: REQUEST_LIMIT_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE: TEMPORARILY_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: TEMPORARILY_UNAVAILABLE,
    grpc.StatusCode.CANCELLED: TEMPORARILY_UNAVAILABLE,
}
MAX_BODY_BYTES = 16 * 1024 * 1024  # a JSON request body (log-batch of 1,000 metrics is ~100 KB)
CALL_TIMEOUT_S = 30.0


class MlflowError(Exception):
    """An error MLflow's client understands; `code` is one of the constants above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error_code": self.code, "message": self.message},
                            status_code=HTTP_STATUS.get(self.code, 400))


def invalid(message: str) -> MlflowError:
    return MlflowError(INVALID_PARAMETER_VALUE, message)


def not_found(message: str) -> MlflowError:
    return MlflowError(RESOURCE_DOES_NOT_EXIST, message)


@dataclass(frozen=True)
class Call:
    """One request to an MLflow endpoint: its fields, who makes it, and the stubs to serve it."""

    request: Request
    fields: dict[str, Any]
    caller: Caller
    backends: Backends

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.caller.metadata

    def get(self, name: str, kind: type[T], default: T | None = None) -> T | None:
        """The field `name`, of `kind` (str, int, float, bool, list, dict); None or `default` when
        absent. A query-string value (always text) is converted; anything else of the wrong type
        is INVALID_PARAMETER_VALUE, as MLflow's server says it."""
        value = self.fields.get(name)
        if value is None:
            return default
        if self.request.method == "GET" and isinstance(value, str) and kind is not str:
            value = _from_text(name, value, kind)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)  # MLflow's JSON carries int64 as strings (proto3 JSON mapping)
        if kind is list and self.request.method == "GET" and not isinstance(value, list):
            value = [value]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise invalid(f"Invalid value {json.dumps(value)[:200]} for parameter '{name}' supplied: "
                          f"expected {kind.__name__}")
        return value

    def require(self, name: str, kind: type[T]) -> T:
        """The field `name`; MLflow's "Missing value for required parameter" when absent or empty."""
        value = self.get(name, kind)
        if value is None or value == "":
            raise invalid(f"Missing value for required parameter '{name}'. See the API docs for more information "
                          "about request parameters.")
        return value

    def strings(self, name: str, *, most: int, missing: str, too_many: str) -> list[str]:
        """The list of strings `name` (run or experiment ids): `missing` when absent or empty,
        `too_many` (its {count} filled in) past `most` items — each endpoint's own words in MLflow."""
        values = self.get(name, list) or []
        if not values:
            raise invalid(missing)
        if len(values) > most:
            raise invalid(too_many.format(count=len(values)))
        if not all(isinstance(v, str) for v in values):
            raise invalid(f"Invalid value for parameter '{name}' supplied: expected a list of strings")
        return values

    async def rpc(self, method: Callable[..., Awaitable[T]], message: Any, *, deadline_s: float = CALL_TIMEOUT_S) -> T:
        """Call a trackd service as the request's caller."""
        return await method(message, metadata=self.metadata, timeout=deadline_s)


def _from_text(name: str, value: str, kind: type) -> Any:
    try:
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
    except ValueError:
        raise invalid(f"Invalid value {value[:200]!r} for parameter '{name}' supplied: expected {kind.__name__}") \
            from None
    return value


async def _fields(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        found: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            found[key] = [*found[key], value] if isinstance(found.get(key), list) else (
                [found[key], value] if key in found else value)
        return found
    if request.method == "DELETE" and not (await request.body()).strip():
        return {}  # MLflow's client sends some DELETEs without a body (no form can send a DELETE)
    if not request.headers.get("content-type", "").startswith("application/json"):
        # also what keeps other web sites out: a cross-site form cannot send application/json
        raise MlflowError(BAD_REQUEST, "Send the request body as JSON (Content-Type: application/json).")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise MlflowError(BAD_REQUEST, f"The request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}.")
    if not body.strip():
        return {}
    try:
        parsed = orjson.loads(body)  # ~5× json's speed on a 1,000-metric log-batch
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and json takes: NaN / Infinity literals, integers past 64 bits, deep nesting
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            raise MlflowError(BAD_REQUEST, "The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise MlflowError(BAD_REQUEST, "The request body must be a JSON object.")
    return parsed


Handler = Callable[[Call], Awaitable[dict[str, Any] | Response]]


def endpoint(backends: Backends, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint answering MLflow's JSON, or MLflow's error JSON — never a 500 for
    anything a caller sent."""

    async def serve(request: Request) -> Response:
        try:
            call = Call(request, await _fields(request), backends.caller(request), backends)
            answer = await handler(call)
            return answer if isinstance(answer, Response) else JSONResponse(answer)
        except MlflowError as error:
            return error.response()
        except grpc.aio.AioRpcError as error:
            code = FROM_GRPC.get(error.code(), INTERNAL_ERROR)
            if code == INTERNAL_ERROR:
                log.warning("%s: a trackd service answered %s: %s", request.url.path, error.code(), error.details())
            return MlflowError(code, error.details() or str(error.code())).response()

    return serve
