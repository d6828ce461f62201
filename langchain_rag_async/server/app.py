"""The FastAPI application: routes, middleware, OpenAI-shaped errors, and the engine's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from langchain_rag_async.config import RAGConfig, ServerConfig
from langchain_rag_async.engine import AsyncRAGEngine
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingModelMismatchError,
    IndexLockedError,
    IndexNotFoundError,
    RAGError,
    RequestError,
    RetrievalError,
)
from langchain_rag_async.metrics import watch_event_loop_lag
from langchain_rag_async.observability import get_logger
from langchain_rag_async.server import index_api, openai_api, rest_api
from langchain_rag_async.server.mcp_server import build_mcp_server
from langchain_rag_async.server.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    InFlightMiddleware,
)
from langchain_rag_async.server.security import allowed_hosts
from langchain_rag_async.server.state import ServerState

__all__ = ("create_app",)

logger = get_logger(__name__)

_OPEN_PATHS = frozenset({"/healthz", "/"})  # the chat page holds no data; it asks for the key
_CHAT_PAGE = "static/index.html"
_COUNTED_ENDPOINTS = frozenset(
    {"/v1/chat/completions", "/v1/models", "/query", "/answer", "/index", "/mcp", "/metrics"}
)
# The page's own inline script and style only; it talks to this origin alone.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
)


def create_app(
    engine: AsyncRAGEngine | None = None,
    settings: ServerConfig | None = None,
    *,
    config: RAGConfig | None = None,
    warm_up: bool = False,
) -> FastAPI:
    """Build the server's ASGI app over one index (mount it in your own FastAPI app if you like).

    Requests whose ``Host`` header is not in ``settings.allowed_hosts`` get 400; by
    default, with the default loopback ``host``, only ``127.0.0.1`` and ``localhost``
    are served: set ``allowed_hosts`` to the names your app is reached under.

    Args:
        engine: The engine to serve (you close it); by default one is built from
            ``config`` and closed when the app shuts down.
        settings: Server settings; ``config.server`` by default.
        config: All settings; the engine's, else :meth:`RAGConfig.from_env`.
        warm_up: At start-up, load the index and the query model in the background
            (two concurrent searches: the local model compiles its batch runtime on the
            first batch), so the first burst of questions does not pay for it.
            ``rag-async serve`` turns it on for the bundled local model (with a remote
            model it would send two embedding requests nobody asked for).

    Returns:
        The FastAPI application.
    """
    if config is None:
        config = engine.config if engine is not None else RAGConfig.from_env()
    settings = settings or config.server
    owns_engine = engine is None
    engine = engine or AsyncRAGEngine(config=config)
    state = ServerState.create(engine, settings, owns_engine=owns_engine)

    mcp = build_mcp_server(state)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/mcp", host=settings.host)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warming = asyncio.create_task(_awarm_up(engine), name="rag-warm-up") if warm_up else None
        try:
            async with mcp.session_manager.run(), watch_event_loop_lag():
                yield
        finally:
            if warming is not None:
                warming.cancel()
                await asyncio.gather(warming, return_exceptions=True)
            await state.aclose()

    app = FastAPI(
        title="langchain-rag-async",
        summary="Cited answers over one index: OpenAI-compatible chat, SSE, indexing jobs.",
        lifespan=lifespan,
    )
    app.state.rag = state
    page = (resources.files(__package__ or "langchain_rag_async.server") / _CHAT_PAGE).read_text(
        "utf-8"
    )

    @app.get("/", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        """The web chat page: no build step, no CDN, nothing fetched from elsewhere."""
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP})

    app.include_router(openai_api.router)
    app.include_router(rest_api.router)
    app.include_router(index_api.router)
    app.router.routes.extend(mcp_app.routes)  # MCP over streamable HTTP at /mcp
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(InFlightMiddleware, endpoints=_COUNTED_ENDPOINTS)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key, open_paths=_OPEN_PATHS)
    # Added after the key check, so outside it: a browser's CORS preflight never meets it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    hosts = allowed_hosts(settings)
    if hosts is not None:  # outermost: a foreign Host name is refused before anything runs
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    return app


def _json(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers or None)


def _as_request_error(exc: RAGError) -> RequestError:
    """The HTTP answer to a library error raised while serving a request."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, IndexNotFoundError | EmbeddingModelMismatchError):
        return RequestError(503, str(exc), type="server_error", code="index_not_ready")
    if isinstance(exc, IndexLockedError):
        return RequestError(409, str(exc), code="index_locked")
    if isinstance(exc, ConfigurationError | RetrievalError) and not _is_server_side(exc):
        return RequestError(400, str(exc))
    return RequestError(500, str(exc), type="server_error", code=type(exc).__name__)


def _is_server_side(exc: RAGError) -> bool:
    """A retrieval failure caused by the backend, not by the request (e.g. a broken file)."""
    return exc.__cause__ is not None and not isinstance(exc.__cause__, RAGError | ValueError)


def _add_error_handlers(app: FastAPI) -> None:
    async def rag_error(request: Request, exc: Exception) -> JSONResponse:
        error = _as_request_error(exc) if isinstance(exc, RAGError) else None
        if error is None:
            raise exc
        if error.status >= 500:
            logger.warning("request_failed", path=request.url.path, error=str(exc))
        return _json(error)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in errors[:5]
        ]
        first = errors[0].get("loc", ()) if errors else ()
        param = ".".join(str(p) for p in first if p != "body") or None
        message = "invalid request: " + ("; ".join(parts) or "malformed body")
        return _json(RequestError(422, message, param=param, code="invalid_request"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
        return _json(RequestError(status, str(detail), code=code))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request_crashed", path=request.url.path)
        return _json(
            RequestError(
                500,
                "internal server error; the server log has the details",
                type="server_error",
                code="internal_error",
            )
        )

    app.add_exception_handler(RAGError, rag_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


async def _awarm_up(engine: AsyncRAGEngine) -> None:
    """Load the index and the query model before the first questions (best effort)."""
    try:
        async with asyncio.TaskGroup() as group:  # two at once: the batch path too
            for question in ("warm-up", "warm up the query model"):
                group.create_task(engine.aquery(question, k=1))
    except* RAGError as failed:  # nothing indexed yet, a remote model down: queries will say
        logger.info("server.warm_up_skipped", error=str(failed.exceptions[0]))
    else:
        logger.info("server.warmed_up")
