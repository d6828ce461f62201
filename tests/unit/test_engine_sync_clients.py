"""The sync engine keeps loop-bound clients valid across calls; processes exit cleanly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async import AsyncRAGEngine, RAGConfig, RAGEngine
from langchain_rag_async.config import LLMConfig, SplitterConfig
from langchain_rag_async.errors import ConfigurationError, RAGError
from langchain_rag_async.testing import FakeOpenAIServer

from .test_engine import write_topics


@pytest.mark.allow_blocking
def test_sync_engine_with_chat_openai_answers_again_and_again(
    tmp_path: Path, threaded_openai_server: FakeOpenAIServer
) -> None:
    threaded_openai_server.chat_reply = "Cargo builds your code [1]."
    config = RAGConfig(
        index_dir=tmp_path / "idx",
        splitter=SplitterConfig(chunk_size=400, chunk_overlap=0),
        llm=LLMConfig(
            provider="openai", openai_api_key="k", openai_base_url=threaded_openai_server.base_url
        ),
    )
    corpus = write_topics(tmp_path / "docs")
    with RAGEngine(config=config, embeddings=DeterministicFakeEmbedding(size=32)) as engine:
        engine.index_directory(corpus)
        for _ in range(3):  # each call used to run on a new loop, breaking the HTTP client
            assert engine.answer("What is Cargo?").answer == "Cargo builds your code [1]."

        async def notebook_cell() -> str:
            return engine.answer("What is Cargo?").answer

        assert asyncio.run(notebook_cell()) == "Cargo builds your code [1]."
        with pytest.raises(ConfigurationError):
            engine.answer("What is Cargo?", k=0)
    with pytest.raises(RAGError, match="closed"):
        engine.query("anything")


async def test_concurrent_first_queries_load_the_index_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_topics(tmp_path / "docs")
    engine = AsyncRAGEngine(
        config=RAGConfig(index_dir=tmp_path / "idx"), embeddings=DeterministicFakeEmbedding(size=32)
    )
    async with engine:
        await engine.aindex_directory(corpus)
        loads = 0
        real = engine._load_stores

        async def counting() -> Any:
            nonlocal loads
            loads += 1
            return await real()

        monkeypatch.setattr(engine, "_load_stores", counting)
        results = await asyncio.gather(*(engine.aquery("cargo", k=1) for _ in range(5)))
    assert loads == 1 and all(len(r) == 1 for r in results)


async def test_reindexing_does_not_close_stores_under_a_running_query(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    engine = AsyncRAGEngine(
        config=RAGConfig(index_dir=tmp_path / "idx"), embeddings=DeterministicFakeEmbedding(size=32)
    )
    async with engine:
        await engine.aindex_directory(corpus)
        async with engine._using(2) as retriever:  # a query in flight...
            (corpus / "more.md").write_text("# More\n\nCargo again.\n")
            await engine.aindex_directory(corpus)  # ...while the index is rebuilt
            assert await retriever.ainvoke("cargo", k=2)  # its stores are still open
        assert engine._retired == []  # and closed once it finished
        docs = await engine.aquery("cargo again", k=5)
    assert "more.md" in {Path(str(d.metadata["source"])).name for d in docs}


SCRIPT = """
import asyncio, sys
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_rag_async import AsyncRAGEngine, RAGConfig

engine = AsyncRAGEngine(config=RAGConfig(index_dir=sys.argv[2]),
                        embeddings=DeterministicFakeEmbedding(size=32))

async def main():
    await engine.aindex_directory(sys.argv[1])
    print(len(await engine.aquery("cargo", k=2)))

asyncio.run(main())  # the engine is never closed: the process must still exit
"""


def test_a_never_closed_engine_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(corpus), str(tmp_path / "idx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
