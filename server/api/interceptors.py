"""The interceptor chain every RPC passes through.

One interceptor does the cross-cutting work in a fixed order: request id -> access check ->
handler -> error mapping -> one structured log line. Handlers never call `context.abort`
themselves; they raise domain errors and this module answers with the mapped status. Unknown
exceptions are logged with their traceback and answered INTERNAL without leaking details.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

import grpc
from grpc.aio import AbortError

from server import metrics
from server.api.errors import bounded, rich_status, status_code_for, trailing_metadata
from server.core import errors
from server.core.caller import Caller
from server.logs import request_id_var

log = logging.getLogger("server.rpc")


class Authorizer(Protocol):
    """Decides, before the handler runs, whether the call may proceed (server/auth)."""

    async def authorize(self, method: str, metadata: dict[str, str]) -> Caller | None: ...


# The caller of the RPC being served, set by the interceptor; servicers read it.
caller_var: ContextVar[Caller | None] = ContextVar("caller", default=None)
# The client's address: the peer, or the X-Forwarded-For hop a trusted front appended.
client_address_var: ContextVar[str] = ContextVar("client_address", default="")

TrustedNetworks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def client_address(metadata: dict[str, str], peer: str, trusted: TrustedNetworks = ()) -> str:
    """Who is calling, for per-address throttles and the activity log.

    Anyone can send an X-Forwarded-For header, so it is believed only when the connection comes
    from a trusted front (TRUSTED_PROXIES; Envoy), and then only its last hop: the one the
    front appended itself (Envoy runs with use_remote_address). Earlier hops are the client's
    own claims. A direct caller is its peer address, whatever it sends."""
    # grpc peers look like "ipv4:127.0.0.1:5555" or "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    address = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
    forwarded = metadata.get("x-forwarded-for", "")
    if not forwarded or not trusted or not _within(address, trusted):
        return address
    last_hop = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last_hop))
    except ValueError:
        return address  # a front that appends garbage is misconfigured; fall back to the peer


def _within(address: str, networks: TrustedNetworks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def current_caller() -> Caller:
    caller = caller_var.get()
    if caller is None:
        # The access policy let an anonymous call reach a handler that needs a caller.
        raise errors.Unauthenticated("authentication required")
    return caller


class CallInterceptor(grpc.aio.ServerInterceptor):
    # Health and reflection are infrastructure: no auth, no per-call log line.
    QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

    def __init__(self, authorizer: Authorizer | None = None, trusted_proxies: TrustedNetworks = ()) -> None:
        self._authorizer = authorizer
        self._trusted_proxies = trusted_proxies

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(self.QUIET_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming RPCs in this API

    def _wrap_unary(self, method: str, inner: Any) -> Any:
        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = await self._begin(method, context)
            code = grpc.StatusCode.OK
            try:
                return await inner(request, context)
            except Exception as exc:
                code = self._code_for(method, exc)
                await self._abort(context, code, exc, method)
            finally:
                self._end(method, started, code)

        return behavior

    def _wrap_stream(self, method: str, inner: Any) -> Any:
        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = await self._begin(method, context)
            code = grpc.StatusCode.OK
            try:
                async for response in inner(request, context):
                    yield response
            except Exception as exc:
                code = self._code_for(method, exc)
                await self._abort(context, code, exc, method)
            finally:
                self._end(method, started, code)

        return behavior

    async def _begin(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        # Envoy sets x-request-id on every REST call; gRPC callers may send their own.
        request_id = metadata.get("x-request-id") or uuid.uuid4().hex
        request_id_var.set(request_id)
        client_address_var.set(client_address(metadata, context.peer() or "", self._trusted_proxies))
        caller_var.set(None)
        started = time.perf_counter()
        if self._authorizer is not None:
            try:
                caller_var.set(await self._authorizer.authorize(method, metadata))
            except Exception as exc:
                code = self._code_for(method, exc)
                self._end(method, started, code)
                await self._abort(context, code, exc, method)
        return started

    @staticmethod
    def _code_for(method: str, exc: Exception) -> grpc.StatusCode:
        if isinstance(exc, AbortError):
            return grpc.StatusCode.UNKNOWN  # someone aborted by hand; _abort re-raises it
        if isinstance(exc, errors.DomainError):
            return status_code_for(exc)
        if isinstance(exc, NotImplementedError):
            return grpc.StatusCode.UNIMPLEMENTED
        log.error("unhandled error in %s", method, exc_info=exc)
        return grpc.StatusCode.INTERNAL

    @staticmethod
    async def _abort(
        context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, exc: Exception, method: str
    ) -> None:
        if isinstance(exc, AbortError):
            raise exc
        if isinstance(exc, errors.DomainError):
            message = bounded(exc.message)
        elif isinstance(exc, NotImplementedError):
            # The generated base servicer raises this for an RPC whose behaviour has not landed.
            message = f"{method.strip('/').replace('/', '.')} is not implemented yet"
        else:
            message = "internal error"  # unknown errors are answered without their text
        await context.abort(code, message, trailing_metadata=trailing_metadata(rich_status(code, message, exc)))

    @staticmethod
    def _end(method: str, started: float, code: grpc.StatusCode) -> None:
        elapsed = time.perf_counter() - started
        metrics.observe_rpc(method, code.name, elapsed)
        log.info("rpc", extra={"method": method, "code": code.name, "ms": round(elapsed * 1000, 2)})
