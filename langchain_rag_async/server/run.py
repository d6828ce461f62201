"""Run the server on uvicorn: safe binds, graceful SIGTERM (streams get ``grace`` seconds)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from langchain_rag_async.config import RAGConfig
from langchain_rag_async.engine import AsyncRAGEngine
from langchain_rag_async.server.app import create_app
from langchain_rag_async.server.mcp_server import build_mcp_server
from langchain_rag_async.server.security import check_bind
from langchain_rag_async.server.state import ServerState

__all__ = ("aserve", "aserve_mcp_stdio", "serve_loop_factory")

_LOOP = "auto"
"""uvicorn's loop choice, as ``uvicorn.run`` makes it: uvloop when installed, else asyncio."""


def serve_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``rag-async serve`` runs on: uvloop when installed, as ``uvicorn.run``.

    For ``asyncio.Runner(loop_factory=...)``; ``None`` means asyncio's default loop.
    """
    # log_config=None: building a Config must not set up uvicorn's loggers (aserve does)
    return uvicorn.Config(_no_app, loop=_LOOP, log_config=None).get_loop_factory()


async def _no_app(scope: object, receive: object, send: object) -> None:
    """A placeholder app: a ``uvicorn.Config`` only built to pick the loop factory."""


async def aserve(config: RAGConfig) -> None:
    """Serve ``config.index_dir`` until SIGINT/SIGTERM.

    On SIGTERM uvicorn stops accepting connections, lets running streams finish for
    ``config.server.grace`` seconds, then cancels them; the app's shutdown cancels a
    running index job (the saved index stays consistent) and closes the engine.

    Raises:
        ConfigurationError: A non-loopback host without an API key or ``insecure``.
    """
    settings = config.server
    check_bind(settings)
    # On loopback, only loopback Host names (DNS rebinding).
    # Warm up only the bundled model: a remote one would be sent requests nobody asked for.
    app = create_app(config=config, warm_up=config.embeddings.provider == "local")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=math.ceil(settings.grace),  # 0: cancel at once
            log_level="info",
            # JSON logs: uvicorn's loggers are the CLI's to format (configure_logging).
            log_config=None if config.observability.log_format == "json" else LOGGING_CONFIG,
            lifespan="on",
            ws="websockets-sansio",
            loop=_LOOP,  # what the caller's loop should be (serve_loop_factory)
        )
    )
    loop = type(asyncio.get_running_loop())
    logging.getLogger("uvicorn.error").info("Event loop: %s.%s", loop.__module__, loop.__name__)
    await server.serve()


async def aserve_mcp_stdio(config: RAGConfig) -> None:
    """Serve the MCP tools over stdin/stdout until the client closes them (``rag-async mcp``)."""
    engine = AsyncRAGEngine(config=config)
    state = ServerState.create(engine, config.server, owns_engine=True)
    try:
        await build_mcp_server(state).run_stdio_async()
    finally:
        await state.aclose()
