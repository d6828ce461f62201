"""``timeout=`` everywhere: the library's timeout error, and nothing of the work left running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async import AsyncDirectoryLoader, AsyncRAGEngine, HybridRetriever, RAGConfig
from langchain_rag_async.aio import check_timeout, deadline
from langchain_rag_async.config import SplitterConfig
from langchain_rag_async.errors import (
    ConfigurationError,
    IndexingError,
    IndexingTimeoutError,
    RAGError,
    RAGTimeoutError,
    RetrievalError,
    RetrievalTimeoutError,
)
from langchain_rag_async.loaders import FileInfo
from langchain_rag_async.retrievers import FTS5Index, FTS5Retriever

DOCS = [
    Document(page_content=f"Rust ownership rule number {n}: values have one owner.", id=f"d{n}")
    for n in range(8)
]


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class GatedEmbedding(DeterministicFakeEmbedding):
    """A fake embedding whose calls can be made to hang (a service that never answers)."""

    hang_queries: bool = False
    hang_documents: bool = False
    sync_query_delay: float = 0.0

    async def aembed_query(self, text: str) -> list[float]:
        if self.hang_queries:
            await asyncio.Event().wait()
        return self.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.hang_documents:
            await asyncio.Event().wait()
        return self.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        if self.sync_query_delay:
            time.sleep(self.sync_query_delay)
        return super().embed_query(text)


def write_corpus(root: Path, files: int = 6) -> Path:
    root.mkdir()
    for n in range(files):
        (root / f"doc{n}.md").write_text(f"# Doc {n}\n\nBorrowing rule {n} in Rust.\n", "utf-8")
    return root


# -- the helper ---------------------------------------------------------------------------


async def test_deadline_raises_the_error_it_is_given_and_cancels_the_block() -> None:
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(RetrievalTimeoutError, match="within 0.05 s") as info:
        async with deadline(0.05, lambda s: RetrievalTimeoutError(f"within {s:g} s", timeout=s)):
            await work()
    assert cancelled.is_set()
    error = info.value
    assert isinstance(error, TimeoutError) and isinstance(error, RetrievalError)
    assert isinstance(error, RAGTimeoutError) and isinstance(error, RAGError)
    assert error.timeout == 0.05 and isinstance(error.__cause__, TimeoutError)


async def test_deadline_lets_the_works_own_timeout_error_through() -> None:
    with pytest.raises(TimeoutError) as info:
        async with deadline(5, lambda s: RAGTimeoutError("not this one", timeout=s)):
            raise TimeoutError("the work's own")
    assert not isinstance(info.value, RAGTimeoutError)
    async with deadline(None, lambda s: RAGTimeoutError("never", timeout=s)):
        await asyncio.sleep(0)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "1"])
def test_timeouts_must_be_positive_seconds(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be positive seconds"):
        check_timeout(bad)
    assert check_timeout(None) is None and check_timeout(2) == 2.0


# -- the loader ---------------------------------------------------------------------------


class StuckReads(AsyncDirectoryLoader):
    """A disk that stops answering after the first files (an NFS mount gone away)."""

    answered = 2

    async def aload_file(self, file: FileInfo | Path) -> Document | None:
        if self.answered <= 0:
            await asyncio.Event().wait()
        self.answered -= 1
        return await super().aload_file(file)


async def test_loader_timeout_cancels_every_read_in_flight(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs", files=20)
    loader = StuckReads(corpus)
    before = other_tasks()
    with pytest.raises(RAGTimeoutError, match="did not finish within 0.3 s") as info:
        await loader.aload(timeout=0.3)
    assert info.value.timeout == 0.3 and isinstance(info.value, TimeoutError)
    assert other_tasks() == before  # the producer and its 16 workers are gone


async def test_loader_timeout_counts_the_consumers_time_without_interrupting_it(
    tmp_path: Path,
) -> None:
    corpus = write_corpus(tmp_path / "docs", files=5)
    loader = AsyncDirectoryLoader(corpus)
    files = await loader.ascan(timeout=10)
    seen = []
    before = other_tasks()
    with pytest.raises(RAGTimeoutError):
        async with contextlib.aclosing(loader.alazy_load_files(files, timeout=0.2)) as docs:
            async for doc in docs:
                seen.append(doc)
                await asyncio.sleep(0.15)  # the consumer's own wait is never cut short
    assert 1 <= len(seen) < 5
    assert other_tasks() == before
    assert len(await loader.aload(timeout=30)) == 5  # in time: everything


# -- the hybrid retriever -----------------------------------------------------------------


async def test_hybrid_retriever_timeout_field_and_per_call_override() -> None:
    embedding = GatedEmbedding(size=16)
    async with await HybridRetriever.afrom_documents(
        DOCS, embedding=embedding, k=3, timeout=0.2
    ) as retriever:
        assert len(await retriever.ainvoke("ownership")) == 3
        embedding.hang_queries = True
        before = other_tasks()
        with pytest.raises(RetrievalTimeoutError, match="within 0.2 s") as info:
            await retriever.ainvoke("ownership")
        assert info.value.timeout == 0.2 and isinstance(info.value, TimeoutError)
        assert other_tasks() == before  # both sides were cancelled
        with pytest.raises(RetrievalTimeoutError, match="within 0.05 s"):
            await retriever.ainvoke("ownership", timeout=0.05)
        embedding.hang_queries = False
        assert len(await retriever.ainvoke("ownership", timeout=None)) == 3
        with pytest.raises(ConfigurationError, match="timeout must be positive"):
            await retriever.ainvoke("ownership", timeout=0)
    with pytest.raises(ConfigurationError, match="timeout must be positive"):
        await HybridRetriever.afrom_documents(DOCS, embedding=embedding, timeout=-1)


@pytest.mark.allow_blocking  # the sync twin, called from a test thread
def test_hybrid_retriever_sync_twin_raises_once_the_slow_side_returns() -> None:
    embedding = GatedEmbedding(size=16, sync_query_delay=0.3)
    with HybridRetriever.from_documents(DOCS, embedding=embedding, k=2) as retriever:
        assert len(retriever.invoke("ownership", timeout=5)) == 2
        with pytest.raises(RetrievalTimeoutError, match="within 0.1 s"):
            retriever.invoke("ownership", timeout=0.1)


# -- engine and indexing ------------------------------------------------------------------


def config_for(index_dir: Path) -> RAGConfig:
    return RAGConfig(index_dir=index_dir, splitter=SplitterConfig(chunk_size=400, chunk_overlap=0))


async def test_engine_query_and_indexing_timeouts(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    embedding = GatedEmbedding(size=16)
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        embedding.hang_documents = True
        before = other_tasks()
        with pytest.raises(IndexingTimeoutError, match="within 0.5 s") as info:
            await engine.aindex_directory(corpus, timeout=0.5)
        assert isinstance(info.value, IndexingError) and isinstance(info.value, TimeoutError)
        assert other_tasks() == before  # the pipeline's stages and batches are gone
        embedding.hang_documents = False
        summary = await engine.aindex_directory(corpus, timeout=60)
        assert summary.files_indexed == 6  # nothing was lost or half-saved
        embedding.hang_queries = True
        before = other_tasks()
        with pytest.raises(RetrievalTimeoutError, match="within 0.2 s") as query_info:
            await engine.aquery("borrowing", timeout=0.2)
        assert query_info.value.timeout == 0.2
        assert other_tasks() == before


class StalledIndex(FTS5Index):
    """An FTS5 index whose searches stall (a database locked by a long writer elsewhere)."""

    stalled = False

    async def asearch(self, query: str, k: int = 4, **kwargs: Any) -> Any:
        if self.stalled:
            await asyncio.Event().wait()
        return await super().asearch(query, k, **kwargs)


async def test_fts5_retriever_timeout_field_and_per_call() -> None:
    async with StalledIndex() as index:
        await index.aupsert(DOCS)
        retriever = FTS5Retriever(index=index, k=2, timeout=5)
        assert len(await retriever.ainvoke("ownership")) == 2
        index.stalled = True
        before = other_tasks()
        with pytest.raises(RetrievalTimeoutError, match="BM25 search .* within 0.1 s"):
            await retriever.ainvoke("ownership", timeout=0.1)
        assert other_tasks() == before
        with pytest.raises(ConfigurationError, match="timeout must be positive"):
            FTS5Retriever(index=index, timeout=0)
