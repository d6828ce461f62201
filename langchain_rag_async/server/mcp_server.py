"""MCP (Model Context Protocol) tools over the index: ``search``, ``ask`` and ``index``.

Built with the official ``mcp`` SDK; served over stdio (``rag-async mcp``) and over
streamable HTTP at ``/mcp`` inside ``rag-async serve`` (same bearer key, same roots).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from langchain_rag_async.errors import RAGError, RequestError
from langchain_rag_async.server.schemas import check_question_length
from langchain_rag_async.server.security import aconfine_path
from langchain_rag_async.server.state import ServerState

__all__ = ("build_mcp_server",)

_INSTRUCTIONS = (
    "Search and ask questions of an indexed document collection. `search` returns the most "
    "relevant chunks with their source files; `ask` returns an answer that cites them as "
    "[n]; `index` adds or updates a directory (under the server's allowed roots)."
)


def build_mcp_server(state: ServerState) -> MCPServer:
    """The MCP server whose tools use ``state``'s engine, limits and index jobs."""
    with _host_logging_kept():
        server = MCPServer(name="langchain-rag-async", instructions=_INSTRUCTIONS)

    @server.tool()
    async def search(query: str, k: int = 5) -> list[dict[str, Any]]:
        """The k chunks of the index most relevant to the query, best first."""
        with _tool_errors():
            check_question_length(query, state.settings, "query")
            if not 1 <= k <= state.settings.max_k:
                raise RequestError(400, f"k must be between 1 and {state.settings.max_k}")
            docs = await state.engine.aquery(query, k=k)
        return [
            {
                "id": doc.id,
                "source": doc.metadata.get("source"),
                "start_index": doc.metadata.get("start_index"),
                "text": doc.page_content,
                "scores": doc.metadata.get("scores"),
            }
            for doc in docs
        ]

    @server.tool()
    async def ask(question: str) -> dict[str, Any]:
        """Answer the question from the index; the answer cites its sources as [n]."""
        with _tool_errors():
            check_question_length(question, state.settings, "question")
            slot = await state.gate.acquire()
            try:
                result = await state.engine.aanswer(question)
            finally:
                slot.release()
        return {"answer": result.answer, "sources": [dict(s) for s in result.sources]}

    @server.tool()
    async def index(path: str, ctx: Context) -> dict[str, Any]:
        """Index a directory or file (under the server's roots); reports progress while it runs."""
        with _tool_errors():
            job = state.jobs.start(await aconfine_path(path, state.settings.roots))
        async for event in job.events():
            if event["type"] == "progress":
                total = event.get("files_total") or None
                message = (
                    f"{event.get('files_done', 0)} files, "
                    f"{event.get('chunks_stored', 0)} chunks stored"
                )
                await ctx.report_progress(event.get("files_done", 0), total, message)
        if job.state != "succeeded":
            raise ToolError(job.error or f"indexing {path} {job.state}")
        return {"job_id": job.id, **(job.summary or {})}

    return server


@contextmanager
def _host_logging_kept() -> Iterator[None]:
    """Undo what the SDK does to the process's logging while it builds an ``MCPServer``.

    The SDK calls ``logging.basicConfig(level=INFO)`` with a rich console handler: in a
    process without root handlers (``create_app`` mounted in a user's app, or a bare
    ``uvicorn.run``), every library's INFO records would then be rendered by rich on the
    event loop, one request log per request. Logging is the application's (or the CLI's
    ``configure_logging``) to set up, not a library's.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Library errors become MCP tool errors: the client sees ``isError`` and the message."""
    try:
        yield
    except RequestError as exc:
        raise ToolError(exc.message) from exc
    except RAGError as exc:
        raise ToolError(str(exc)) from exc
