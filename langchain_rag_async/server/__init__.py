"""The HTTP server: OpenAI-compatible chat, JSON + SSE answers, indexing jobs over one index.

``create_app(engine=..., settings=...)`` builds the FastAPI app (mountable in your own);
``rag-async serve`` runs it on uvicorn (:func:`aserve`). Needs the ``server`` extra.
"""

from __future__ import annotations

from langchain_rag_async.server.app import create_app
from langchain_rag_async.server.run import aserve, aserve_mcp_stdio

__all__ = ("aserve", "aserve_mcp_stdio", "create_app")
