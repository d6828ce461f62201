"""Indexing through the real ``OpenAIEmbeddings`` client against the local fake server."""

from __future__ import annotations

from pathlib import Path

from langchain_rag_async.config import EmbeddingConfig, RAGConfig, SplitterConfig
from langchain_rag_async.indexing.api import aindex_directory
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

from .test_indexing_pipeline import make_corpus


def openai_config(server: FakeOpenAIServer, index_dir: Path, concurrency: int) -> RAGConfig:
    return RAGConfig(
        index_dir=index_dir,
        splitter=SplitterConfig(chunk_size=300, chunk_overlap=30),
        embeddings=EmbeddingConfig(
            provider="openai",
            model="text-embedding-3-small",
            openai_api_key="test-key",
            openai_base_url=server.base_url,
            batch_size=4,
            concurrency=concurrency,
        ),
    )


async def test_requests_run_concurrently_within_the_bound(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    openai_server.latency = 0.05
    corpus = make_corpus(tmp_path / "docs", files=8, paragraphs=6)
    config = openai_config(openai_server, tmp_path / "index", concurrency=4)
    summary = await aindex_directory(corpus, config=config)
    stats = openai_server.stats
    assert summary.files_failed == [] and summary.chunks_embedded == summary.chunks_added
    assert stats.embedded_texts == summary.chunks_embedded
    assert 1 < stats.peak_in_flight <= 4


async def test_rate_limit_and_server_errors_are_survived(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=4, paragraphs=4)
    openai_server.fail_next(2, status=429, retry_after=0.05)
    openai_server.fail_next(1, status=500)
    config = openai_config(openai_server, tmp_path / "index", concurrency=2)
    summary = await aindex_directory(corpus, config=config)
    assert summary.files_failed == [] and summary.files_indexed == 4
    assert openai_server.stats.status_counts[429] == 2
    again = await aindex_directory(corpus, config=config)
    assert again.chunks_embedded == 0


async def test_embedding_cache_survives_a_new_index_of_the_same_model(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2, paragraphs=3)
    config = openai_config(openai_server, tmp_path / "index", concurrency=2)
    first = await aindex_directory(corpus, config=config)
    sent = openai_server.stats.embedded_texts
    # Remove the store files but keep the cache: re-indexing sends nothing to the server.
    for name in ("manifest.json", "records.sqlite", "sparse.sqlite"):
        (tmp_path / "index" / name).unlink()
    second = await aindex_directory(corpus, config=config)
    assert second.chunks_added == first.chunks_added
    assert second.chunks_cached == first.chunks_added and second.chunks_embedded == 0
    assert openai_server.stats.embedded_texts == sent
