"""Concurrent queries through RateLimitedEmbeddings go to the model together."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.embeddings import RateLimitedEmbeddings
from langchain_rag_async.errors import EmbeddingError
from langchain_rag_async.limits import ServiceLimiter


class Counting(DeterministicFakeEmbedding):
    """Fake vectors; counts the batches it is asked for (queries embed as documents)."""

    queries_embed_as_documents: ClassVar[bool] = True
    batches: list[int] = []  # noqa: RUF012 - a per-instance list is set in make()
    fail: bool = False

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        await asyncio.sleep(0.01)  # a request takes a while: others queue meanwhile
        if self.fail:
            raise ConnectionError("service down")
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self.batches.append(1)
        return self.embed_query(text)


class NotCoalesced(Counting):
    queries_embed_as_documents: ClassVar[bool] = False


def make(
    model: type[Counting] = Counting, **fields: object
) -> tuple[Counting, RateLimitedEmbeddings]:
    inner = model(size=8, batches=[], **fields)
    limiter = ServiceLimiter("embeddings:test", max_concurrency=1)
    return inner, RateLimitedEmbeddings(inner, limiter=limiter, batch_size=16)


async def test_concurrent_queries_share_requests_and_get_their_own_vectors() -> None:
    inner, embeddings = make()
    texts = [f"question {i}" for i in range(40)]
    vectors = await asyncio.gather(*(embeddings.aembed_query(t) for t in texts))
    assert vectors == [inner.embed_query(t) for t in texts]
    assert sum(inner.batches) == 40 and len(inner.batches) <= 4 and max(inner.batches) <= 16


async def test_a_lone_query_goes_at_once() -> None:
    inner, embeddings = make()
    assert await embeddings.aembed_query("alone") == inner.embed_query("alone")
    assert inner.batches == [1]


async def test_models_whose_queries_differ_are_not_coalesced() -> None:
    inner, embeddings = make(NotCoalesced)
    await asyncio.gather(*(embeddings.aembed_query(f"q{i}") for i in range(5)))
    assert inner.batches == [1] * 5


async def test_a_failed_batch_fails_each_of_its_queries_clearly() -> None:
    inner, embeddings = make(fail=True)
    embeddings.retry = embeddings.retry.__class__(max_attempts=1)
    results = await asyncio.gather(
        *(embeddings.aembed_query(f"q{i}") for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, EmbeddingError) for r in results), results


async def test_a_cancelled_query_leaves_the_others_their_vectors() -> None:
    inner, embeddings = make()
    first = asyncio.create_task(embeddings.aembed_query("first"))
    await asyncio.sleep(0)  # the first request is in flight
    waiting = [asyncio.create_task(embeddings.aembed_query(f"q{i}")) for i in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert await first == inner.embed_query("first")
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]
    assert [await w for w in waiting[1:]] == [inner.embed_query(f"q{i}") for i in (1, 2)]
