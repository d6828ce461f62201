"""The MCP tools through the official SDK's client: over streamable HTTP (/mcp) and over stdio."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from langchain_rag_async import AsyncRAGEngine, RAGConfig
from langchain_rag_async.config import ServerConfig, SplitterConfig
from langchain_rag_async.server import create_app

from .server_support import LiveServer, config_for, embedding, live_server, write_topics


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_topics(tmp_path_factory.mktemp("mcp") / "root" / "docs")


@pytest.fixture
def server(corpus: Path, tmp_path: Path) -> Iterator[LiveServer]:
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding())
    settings = ServerConfig(roots=(corpus.parent,))
    with live_server(create_app(engine, settings)) as live:
        yield live


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def test_tools_over_streamable_http(server: LiveServer, corpus: Path, tmp_path: Path) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with Client(f"{server.url}/mcp") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {"search", "ask", "index"}
        indexed = await client.call_tool(
            "index", {"path": str(corpus)}, progress_callback=on_progress
        )
        assert not indexed.is_error, text_of(indexed)
        assert indexed.structured_content["files_indexed"] == 3
        assert progress and progress[-1][0] == 3 and progress[-1][1] == 3
        found = await client.call_tool("search", {"query": "anonymous functions", "k": 2})
        hits = found.structured_content["result"]
        assert Path(hits[0]["source"]).name == "closures.md" and len(hits) == 2
        answered = await client.call_tool("ask", {"question": "What does Cargo build?"})
        answer = answered.structured_content
        assert "Cargo" in answer["answer"]
        assert any(Path(s["source"]).name == "cargo.md" for s in answer["sources"])
        outside = await client.call_tool("index", {"path": str(tmp_path)})
        assert outside.is_error and "outside" in text_of(outside)
        empty = await client.call_tool("ask", {"question": "   "})
        assert empty.is_error and "empty" in text_of(empty)


def test_mcp_endpoint_needs_the_key_too(corpus: Path, tmp_path: Path) -> None:
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding())
    with live_server(create_app(engine, ServerConfig(api_key="k"))) as live:
        response = httpx.post(f"{live.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert response.status_code == 401


@pytest.mark.slow
async def test_tools_over_stdio(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    config = RAGConfig(
        index_dir=index_dir, splitter=SplitterConfig(chunk_size=400, chunk_overlap=0)
    )
    async with AsyncRAGEngine(config=config) as engine:  # the bundled model, as the CLI uses
        await engine.aindex_directory(corpus)
    code = (
        "import asyncio; from langchain_rag_async import RAGConfig; "
        "from langchain_rag_async.server import aserve_mcp_stdio; "
        "asyncio.run(aserve_mcp_stdio(RAGConfig.from_env()))"
    )
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(index_dir),
        "RAG_CHUNK_SIZE": "400",
        "RAG_CHUNK_OVERLAP": "0",
        "RAG_SERVE_ROOTS": str(corpus.parent),
    }
    params = StdioServerParameters(command=sys.executable, args=["-c", code], env=env)
    async with Client(params) as client:
        found = await client.call_tool("search", {"query": "who owns a value", "k": 1})
        assert not found.is_error, text_of(found)
        assert Path(found.structured_content["result"][0]["source"]).name == "ownership.md"
        answered = await client.call_tool("ask", {"question": "What are closures?"})
        assert "Closures" in answered.structured_content["answer"]
