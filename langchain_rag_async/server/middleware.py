"""ASGI middleware of the server: bearer-key authentication and the request-body size limit."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langchain_rag_async.errors import RequestError
from langchain_rag_async.metrics import REQUESTS_IN_FLIGHT
from langchain_rag_async.observability import bind_request_id, get_logger, request_span
from langchain_rag_async.server.security import authorized, unauthorized

__all__ = ("AuthMiddleware", "BodyLimitMiddleware", "InFlightMiddleware")

_WS_UNAUTHORIZED = 4401
_log = get_logger(__name__)


class AuthMiddleware:
    """Require ``Authorization: Bearer <key>`` on HTTP and WebSocket requests.

    Paths in ``open_paths`` (``/healthz``) stay open. Without a key configured the
    middleware lets everything through.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, open_paths: frozenset[str]) -> None:
        self.app = app
        self.api_key = api_key
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorized requests on; answer the others with 401 (HTTP) or close (WebSocket)."""
        if (
            scope["type"] not in ("http", "websocket")
            or self.api_key is None
            or scope["path"] in self.open_paths
            or authorized(Headers(scope=scope).get("authorization"), self.api_key)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send(
                {"type": "websocket.close", "code": _WS_UNAUTHORIZED, "reason": "unauthorized"}
            )
            return
        error = unauthorized()
        await JSONResponse(error.body(), error.status, headers=error.headers)(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body first (at most ``max_bytes``), then hand it on; 413 above the limit.

        Reading it here, before any route runs, gives a streamed (chunked) body over the
        limit the same clear 413 as a declared one; request bodies here are small JSON.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body ended
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: disconnect notices
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _error(self) -> RequestError:
        return RequestError(
            413,
            f"the request body is larger than {self.max_bytes} bytes, this server's limit",
            code="request_too_large",
        )

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = self._error()
        await JSONResponse(error.body(), error.status)(scope, receive, send)


class InFlightMiddleware:
    """Count the HTTP requests being served per endpoint (``rag_requests_in_flight``).

    Each request also gets its own ``request_id``, put on its span (FastAPI's HTTP server
    span when it opens one, else ``POST /query`` of our own), so its logs and its spans
    form one trace.

    The label is one of the server's own endpoints (``other`` for anything else), never a
    client-chosen path.
    """

    def __init__(self, app: ASGIApp, *, endpoints: frozenset[str]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counted while it is served."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path not in self.endpoints:
            path = "/index" if path.startswith("/index/") else "other"  # /index/{job}
        gauge = REQUESTS_IN_FLIGHT.labels(endpoint=path)
        gauge.inc()
        bind_request_id()  # this request's task and its children (logs and spans)
        status = 500  # unless the app answers
        started = time.perf_counter()
        try:
            with request_span(f"{scope['method']} {path}", **{"http.route": path}) as current:

                async def send_status(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        current.set_attribute("http.response.status_code", status)
                    await send(message)

                try:
                    await self.app(scope, receive, send_status)
                finally:
                    seconds = round(time.perf_counter() - started, 4)
                    if _log.isEnabledFor(logging.INFO):  # cheap when nobody listens
                        _log.info("request", endpoint=path, status=status, seconds=seconds)
        finally:
            gauge.dec()
