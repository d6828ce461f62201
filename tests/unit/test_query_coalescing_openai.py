"""Concurrent queries through the real OpenAIEmbeddings go to the fake server in few requests.

``OpenAIEmbeddings.aembed_query(q)`` is ``aembed_documents([q])[0]`` (langchain-openai's own
code), so RateLimitedEmbeddings coalesces concurrent queries into batched requests, up to
the limiter's concurrency of them in flight. Counted on the server; vectors compared with
the uncoalesced client's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from langchain_rag_async.config import RetryConfig
from langchain_rag_async.embeddings import RateLimitedEmbeddings
from langchain_rag_async.embeddings._coalesce import queries_embed_as_documents
from langchain_rag_async.errors import EmbeddingError
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

BATCH = 16
WAIT = 30.0  # generous: a loaded CI box


class PrefixedQueries(OpenAIEmbeddings):
    """A model whose queries do not embed as documents (an instruction prefix)."""

    async def aembed_query(self, text: str, **kwargs: Any) -> list[float]:
        return (await self.aembed_documents([f"query: {text}"], **kwargs))[0]


def client(server: FakeOpenAIServer, kind: type[OpenAIEmbeddings] = OpenAIEmbeddings) -> Any:
    return kind(
        model="text-embedding-3-small",
        api_key=SecretStr("test"),
        base_url=server.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        chunk_size=BATCH,
    )


def wrapped(inner: OpenAIEmbeddings, concurrency: int = 4) -> RateLimitedEmbeddings:
    limiter = ServiceLimiter("embeddings:openai", max_concurrency=concurrency)
    return RateLimitedEmbeddings(
        inner, limiter=limiter, batch_size=BATCH, retry=RetryConfig(max_attempts=1)
    )


def test_which_models_are_coalesced() -> None:
    plain = OpenAIEmbeddings(api_key=SecretStr("test"), max_retries=0)
    assert queries_embed_as_documents(plain)
    assert not queries_embed_as_documents(PrefixedQueries(api_key=SecretStr("test")))
    patched = OpenAIEmbeddings(api_key=SecretStr("test"), max_retries=0)
    object.__setattr__(patched, "aembed_query", PrefixedQueries.aembed_query)
    assert not queries_embed_as_documents(patched)
    assert not queries_embed_as_documents(DeterministicFakeEmbedding(size=8))


async def test_concurrent_queries_go_in_few_requests_with_the_uncoalesced_vectors(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server)
    texts = [f"what is question {i}?" for i in range(40)]
    alone = [await inner.aembed_query(text) for text in texts]  # one request each
    openai_server.reset_stats()
    embeddings = wrapped(inner)
    vectors = await asyncio.gather(*(embeddings.aembed_query(text) for text in texts))
    assert vectors == alone
    # all 40 arrive before a flush starts: 16 + 16 + 8 texts, three requests in parallel
    assert openai_server.stats.requests == 3
    assert openai_server.stats.embedded_texts == 40
    assert embeddings.stats["requests"] == 3


async def test_a_lone_query_is_one_request(openai_server: FakeOpenAIServer) -> None:
    inner = client(openai_server)
    expected = await inner.aembed_query("alone")
    openai_server.reset_stats()
    assert await wrapped(inner).aembed_query("alone") == expected
    assert openai_server.stats.requests == 1


async def test_a_query_arriving_while_a_batch_is_in_flight_is_sent_at_once(
    openai_server: FakeOpenAIServer,
) -> None:
    # The first request hangs: a query arriving meanwhile does not wait for it (one
    # flush per limiter slot), so its own request goes and is answered.
    inner = client(openai_server)
    expected = await inner.aembed_query("second")
    embeddings = wrapped(inner, concurrency=2)
    openai_server.reset_stats()
    openai_server.hang_next(1)
    first = asyncio.create_task(embeddings.aembed_query("first"))
    async with asyncio.timeout(WAIT):
        await openai_server.wait_for_in_flight(1)
        assert await embeddings.aembed_query("second") == expected
    assert openai_server.stats.requests == 2
    assert not first.done()
    await openai_server.stop()  # answers the hanging request with 503
    with pytest.raises(EmbeddingError):
        await asyncio.wait_for(first, WAIT)


async def test_an_error_reaches_exactly_the_callers_of_its_batch(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server)
    texts = [f"q{i}" for i in range(40)]
    alone = [await inner.aembed_query(text) for text in texts]
    openai_server.reset_stats()
    openai_server.fail_next(1, status=400)  # one of the three parallel requests, rejected
    embeddings = wrapped(inner)
    results = await asyncio.gather(
        *(embeddings.aembed_query(text) for text in texts), return_exceptions=True
    )
    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed in (list(range(0, 16)), list(range(16, 32)), list(range(32, 40)))
    assert all(isinstance(results[i], EmbeddingError) for i in failed)
    assert all(results[i] == alone[i] for i in range(40) if i not in failed)
    assert openai_server.stats.requests == 3


async def test_a_cancelled_query_leaves_its_batch_to_the_others(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server)
    texts = [f"q{i}" for i in range(3)]
    embeddings = wrapped(inner, concurrency=1)
    openai_server.hang_next(1)
    tasks = [asyncio.create_task(embeddings.aembed_query(text)) for text in texts]
    async with asyncio.timeout(WAIT):
        await openai_server.wait_for_in_flight(1)  # the three are in that one request
    tasks[0].cancel()
    await openai_server.stop()  # the request ends (503): its outcome, not a cancellation
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(result, EmbeddingError) for result in results[1:]), results


async def test_a_cancelled_query_does_not_take_the_others_vectors(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server)
    texts = [f"q{i}" for i in range(5)]
    alone = [await inner.aembed_query(text) for text in texts]
    embeddings = wrapped(inner, concurrency=1)
    tasks = [asyncio.create_task(embeddings.aembed_query(text)) for text in texts]
    tasks[2].cancel()  # before or while its batch is sent: the others are unaffected
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 2] == alone[:2] + alone[3:]


async def test_models_whose_queries_differ_send_one_request_per_query(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server, PrefixedQueries)
    embeddings = wrapped(inner)
    await asyncio.gather(*(embeddings.aembed_query(f"q{i}") for i in range(5)))
    assert openai_server.stats.requests == 5


async def test_searches_run_on_coalesced_vectors_each_error_to_its_caller(
    openai_server: FakeOpenAIServer,
) -> None:
    inner = client(openai_server)
    expected = await inner.aembed_query("two")
    embeddings = wrapped(inner)

    def broken(vector: list[float]) -> int:
        raise ValueError("search failed")

    results = await asyncio.gather(
        embeddings.aembed_query_then("one", len),
        embeddings.aembed_query_then("two", broken),
        embeddings.aembed_query_then("two", lambda vector: vector),
        return_exceptions=True,
    )
    assert results[0] == len(expected)
    assert isinstance(results[1], ValueError)
    assert results[2] == expected
