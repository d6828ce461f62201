"""A local query through the engine costs one executor call: embedded where it is searched."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.embeddings import RateLimitedEmbeddings
from langchain_rag_async.limits import ServiceLimiter

from .server_support import config_for, write_topics


class ExecutorModel(DeterministicFakeEmbedding):
    """Computes in executor threads and says so, as ``LocalMiniLMEmbeddings`` does."""

    embeds_in_executor: ClassVar[bool] = True
    queries_embed_as_documents: ClassVar[bool] = True
    model_id: str = "test:executor-model"

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the calls it is handed."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.calls = 0
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.calls += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    config = config_for(tmp_path / "idx")
    config = replace(config, retrieval=RetrievalConfig(refresh_interval=3600.0))
    async with AsyncRAGEngine(config=config, embeddings=ExecutorModel(size=32)) as engine:
        await engine.aindex_directory(write_topics(tmp_path / "docs"))
        await engine.aquery("warm up: loads the stores")
        yield engine


async def test_a_hybrid_query_costs_one_executor_call(engine: AsyncRAGEngine) -> None:
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    hits = await engine.aquery("how do rivers flow", k=3)
    assert hits and all("scores" in doc.metadata for doc in hits)
    assert executor.calls == 1  # embed + FAISS search together; FTS5 has its own thread


async def test_concurrent_queries_share_executor_calls(engine: AsyncRAGEngine) -> None:
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    questions = [f"question number {i} about rivers" for i in range(8)]
    results = await asyncio.gather(*(engine.aquery(q, k=2) for q in questions))
    assert all(results)
    assert 1 <= executor.calls <= len(questions)  # coalesced: at most one per query
    alone = [await engine.aquery(q, k=2) for q in questions]
    assert [[d.id for d in r] for r in results] == [[d.id for d in r] for r in alone]


async def test_a_failing_search_step_fails_only_its_own_query() -> None:
    model = ExecutorModel(size=8)
    embeddings = RateLimitedEmbeddings(model, limiter=ServiceLimiter("local", max_concurrency=1))

    def broken(vector: list[float]) -> int:
        raise LookupError("the search failed")

    good, bad = await asyncio.gather(
        embeddings.aembed_query_then("one", len),
        embeddings.aembed_query_then("two", broken),
        return_exceptions=True,
    )
    assert good == 8
    assert isinstance(bad, LookupError)
    assert await embeddings.aembed_query("three") == model.embed_query("three")
