"""Type names for the asyncio gRPC server that grpc's stubs leave open.

Servicer methods take `context: Context`; interceptors (the edge in `server`, access control in
`access`) wrap a method's `Handler` and call the next step of the chain, a `Continuation`.
grpc's stubs type a handler's behaviour as the synchronous server calls it; under grpc.aio it is a
coroutine function (`UnaryBehaviour`: the response is awaited) or, when the response streams, an
async generator function (`StreamingBehaviour`), and the interceptors read it as such."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# Aliases as strings: grpc's classes are generic only in its stubs, not at run time.
# The generated servicer stubs accept any grpc.aio context for any request and response type.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# Interceptors see every method, so request and response types are not known to them.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
UnaryBehaviour: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"
StreamingBehaviour: TypeAlias = "Callable[[Any, Context], AsyncIterator[Any]]"
