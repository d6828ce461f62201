"""Run the server on uvicorn: safe binds, graceful SIGTERM (streams get ``grace`` seconds)."""

from __future__ import annotations

import uvicorn

from langchain_rag_async.config import RAGConfig
from langchain_rag_async.server.app import create_app
from langchain_rag_async.server.security import check_bind

__all__ = ("aserve",)


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
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config=config),
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=int(settings.grace) if settings.grace else None,
            log_level="info",
            lifespan="on",
            ws="websockets-sansio",
        )
    )
    await server.serve()
