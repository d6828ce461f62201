"""Tests of the SQLite embedding cache and the CachedEmbeddings wrapper."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingTimeoutError,
    VectorStoreError,
)
from langchain_rag_async.ids import content_hash

DIM = 8


class CountingEmbeddings(Embeddings):
    """Deterministic vectors; records every text the model is asked to embed."""

    def __init__(self, size: int = DIM) -> None:
        self._fake = DeterministicFakeEmbedding(size=size)
        self.calls: list[list[str]] = []
        self.query_calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._fake.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.query_calls += 1
        return self._fake.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


class KeywordEmbeddings(CountingEmbeddings):
    """Like RateLimitedEmbeddings: accepts ``sources=`` and ``timeout=``."""

    def __init__(self) -> None:
        super().__init__()
        self.kwargs: list[dict[str, Any]] = []

    async def aembed_documents(
        self,
        texts: list[str],
        *,
        sources: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[list[float]]:
        self.kwargs.append({"sources": sources, "timeout": timeout})
        return self.embed_documents(texts)


class VarKeywordEmbeddings(CountingEmbeddings):
    """Forwards unknown keywords (like API clients do): must not receive ours."""

    async def aembed_documents(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        assert not kwargs, f"unexpected keywords {kwargs}"
        return self.embed_documents(texts)


class FailingEmbeddings(CountingEmbeddings):
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        raise EmbeddingError("service down", failed_count=len(texts))


class HangingEmbeddings(CountingEmbeddings):
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _expected(text: str, size: int = DIM) -> list[float]:
    """What the cache returns for ``text``: the fake's vector at float32 precision."""
    vector = DeterministicFakeEmbedding(size=size).embed_query(text)
    return np.asarray(vector, dtype=np.float32).astype(float).tolist()  # type: ignore[no-any-return]


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "embeddings.sqlite"


@pytest.fixture
async def cache(cache_file: Path) -> AsyncIterator[SQLiteEmbeddingCache]:
    async with SQLiteEmbeddingCache(cache_file) as opened:
        yield opened


@pytest.fixture
def inner() -> CountingEmbeddings:
    return CountingEmbeddings()


@pytest.fixture
def cached(inner: CountingEmbeddings, cache: SQLiteEmbeddingCache) -> CachedEmbeddings:
    return CachedEmbeddings(inner, cache, model_id="fake-8")


# -- SQLiteEmbeddingCache ---------------------------------------------------------------------


async def test_put_then_get_in_input_order(cache: SQLiteEmbeddingCache) -> None:
    await cache.aput_many("m", [("h1", [1.0, 2.0]), ("h2", [0.5, -0.25])])
    assert await cache.aget_many("m", ["h2", "missing", "h1"]) == [[0.5, -0.25], None, [1.0, 2.0]]
    assert await cache.aget_many("m", []) == []
    assert await cache.acount("m") == 2


async def test_values_are_stored_as_float32(cache: SQLiteEmbeddingCache) -> None:
    await cache.aput_many("m", [("h", [0.1, 1 / 3])])
    (vector,) = await cache.aget_many("m", ["h"])
    assert vector == np.asarray([0.1, 1 / 3], dtype=np.float32).astype(float).tolist()


async def test_put_replaces_existing_rows(cache: SQLiteEmbeddingCache) -> None:
    await cache.aput_many("m", [("h", [1.0])])
    await cache.aput_many("m", [("h", [2.0, 3.0])])
    assert await cache.aget_many("m", ["h"]) == [[2.0, 3.0]]
    assert await cache.acount("m") == 1


async def test_rejects_empty_vector(cache: SQLiteEmbeddingCache) -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):  # also a ValueError
        await cache.aput_many("m", [("h", [])])


async def test_models_are_separate(cache: SQLiteEmbeddingCache) -> None:
    await cache.aput_many("a", [("h", [1.0])])
    assert await cache.aget_many("b", ["h"]) == [None]
    assert await cache.acount("b") == 0


async def test_rows_are_durable_once_aput_many_returns(cache_file: Path) -> None:
    cache = SQLiteEmbeddingCache(cache_file)
    await cache.aput_many("m", [("h", [1.0, 2.0])])
    # Another connection (e.g. a new process after a crash) sees the committed batch
    # while this one is still open.
    with sqlite3.connect(cache_file) as raw:
        rows = raw.execute(
            "SELECT model_id, content_hash, dimension FROM embedding_cache"
        ).fetchall()
    raw.close()
    await cache.aclose()
    assert rows == [("m", "h", 2)]


def test_sync_twin_shares_the_file(cache_file: Path) -> None:
    with SQLiteEmbeddingCache(cache_file) as cache:
        cache.put_many("m", [("h", [1.0, 2.0])])
        assert cache.get_many("m", ["h", "x"]) == [[1.0, 2.0], None]
        assert cache.count("m") == 1
        assert asyncio.run(cache.aget_many("m", ["h"])) == [[1.0, 2.0]]


async def test_memory_cache(inner: CountingEmbeddings) -> None:
    async with SQLiteEmbeddingCache(":memory:") as memory:
        embeddings = CachedEmbeddings(inner, memory, model_id="m")
        await embeddings.aembed_documents(["a"])
        await embeddings.aembed_documents(["a"])
        assert inner.embedded == ["a"]


# -- CachedEmbeddings -------------------------------------------------------------------------


async def test_second_call_is_served_from_cache(
    cached: CachedEmbeddings, inner: CountingEmbeddings
) -> None:
    first = await cached.aembed_documents(["a", "b"])
    second = await cached.aembed_documents(["a", "b"])
    assert first == second == [_expected("a"), _expected("b")]
    assert inner.calls == [["a", "b"]]
    assert (cached.hits, cached.misses) == (2, 2)


async def test_hits_across_instances_and_runs(cache_file: Path) -> None:
    first_inner = CountingEmbeddings()
    async with SQLiteEmbeddingCache(cache_file) as first_cache:
        first = CachedEmbeddings(first_inner, first_cache, model_id="m")
        await first.aembed_documents(["a", "b", "c"])
        assert (first.hits, first.misses) == (0, 3)

    second_inner = CountingEmbeddings()
    async with SQLiteEmbeddingCache(cache_file) as second_cache:
        second = CachedEmbeddings(second_inner, second_cache, model_id="m")
        result = await second.aembed_documents(["c", "a", "d"])
    assert result == [_expected("c"), _expected("a"), _expected("d")]
    assert second_inner.calls == [["d"]]
    assert (second.hits, second.misses) == (2, 1)


async def test_identical_texts_are_embedded_once(
    cached: CachedEmbeddings, inner: CountingEmbeddings, cache: SQLiteEmbeddingCache
) -> None:
    result = await cached.aembed_documents(["x", "y", "x", "x"])
    assert inner.calls == [["x", "y"]]
    assert result[0] == result[2] == result[3] == _expected("x")
    assert (cached.hits, cached.misses) == (2, 2)
    assert await cache.acount("fake-8") == 2


async def test_order_is_kept_with_mixed_hits_and_misses(
    cached: CachedEmbeddings, inner: CountingEmbeddings
) -> None:
    await cached.aembed_documents(["b", "d"])
    inner.calls.clear()
    texts = ["a", "b", "c", "d", "a"]
    assert await cached.aembed_documents(texts) == [_expected(t) for t in texts]
    assert inner.calls == [["a", "c"]]


async def test_model_ids_do_not_share_vectors(
    cache: SQLiteEmbeddingCache, inner: CountingEmbeddings
) -> None:
    await CachedEmbeddings(inner, cache, model_id="one").aembed_documents(["t"])
    await CachedEmbeddings(inner, cache, model_id="two").aembed_documents(["t"])
    assert inner.calls == [["t"], ["t"]]
    assert await cache.acount("one") == await cache.acount("two") == 1


async def test_inner_failure_caches_nothing_and_propagates(cache: SQLiteEmbeddingCache) -> None:
    working = CachedEmbeddings(CountingEmbeddings(), cache, model_id="m")
    await working.aembed_documents(["known"])
    failing = CachedEmbeddings(FailingEmbeddings(), cache, model_id="m")
    with pytest.raises(EmbeddingError, match="service down"):
        await failing.aembed_documents(["known", "new-1", "new-2"])
    assert await cache.aget_many("m", [content_hash("new-1"), content_hash("new-2")]) == [
        None,
        None,
    ]
    assert await cache.acount("m") == 1
    assert (failing.hits, failing.misses) == (0, 0)


async def test_corrupted_blob_is_a_miss_and_is_re_embedded(
    cached: CachedEmbeddings, inner: CountingEmbeddings, cache_file: Path
) -> None:
    await cached.aembed_documents(["a", "b"])
    with sqlite3.connect(cache_file) as raw:
        raw.execute(
            "UPDATE embedding_cache SET vector = ? WHERE content_hash = ?",
            (b"\x00\x01\x02", content_hash("a")),
        )
    raw.close()
    inner.calls.clear()
    assert await cached.aembed_documents(["a", "b"]) == [_expected("a"), _expected("b")]
    assert inner.calls == [["a"]]
    assert await cached.cache.aget_many("fake-8", [content_hash("a")]) == [_expected("a")]


async def test_queries_are_not_cached(cached: CachedEmbeddings, inner: CountingEmbeddings) -> None:
    assert await cached.aembed_query("q") == await cached.aembed_query("q")
    assert inner.query_calls == 2
    assert await cached.cache.acount("fake-8") == 0


async def test_sources_and_timeout_reach_an_inner_that_declares_them(
    cache: SQLiteEmbeddingCache,
) -> None:
    inner = KeywordEmbeddings()
    embeddings = CachedEmbeddings(inner, cache, model_id="m")
    await embeddings.aembed_documents(["cached"], sources=["/c"])
    await embeddings.aembed_documents(
        ["cached", "x", "y", "x"], sources=["/c", "/x", "/y", "/x2"], timeout=5.0
    )
    assert inner.calls[-1] == ["x", "y"]
    assert inner.kwargs[-1] == {"sources": ["/x", "/y"], "timeout": 5.0}


async def test_keywords_are_not_sent_to_var_keyword_inner(cache: SQLiteEmbeddingCache) -> None:
    inner = VarKeywordEmbeddings()
    embeddings = CachedEmbeddings(inner, cache, model_id="m")
    await embeddings.aembed_documents(["a"], sources=["/a"], timeout=5.0)
    assert inner.calls == [["a"]]


async def test_timeout_is_enforced_for_inner_without_timeout(cache: SQLiteEmbeddingCache) -> None:
    embeddings = CachedEmbeddings(HangingEmbeddings(), cache, model_id="m")
    with pytest.raises(EmbeddingError, match="timed out") as info:
        await embeddings.aembed_documents(["a", "b"], sources=["/s", "/s"], timeout=0.01)
    assert info.value.failed_count == 2
    assert info.value.sources == ("/s",)
    assert isinstance(info.value, EmbeddingTimeoutError) and info.value.timeout == 0.01
    assert await cache.acount("m") == 0


async def test_sources_must_match_texts(cached: CachedEmbeddings) -> None:
    with pytest.raises(ConfigurationError, match="one source per text"):  # also a ValueError
        await cached.aembed_documents(["a", "b"], sources=["/a"])


async def test_empty_input(cached: CachedEmbeddings, inner: CountingEmbeddings) -> None:
    assert await cached.aembed_documents([]) == []
    assert inner.calls == []


async def test_vectors_of_another_dimension_are_refused(cache: SQLiteEmbeddingCache) -> None:
    await CachedEmbeddings(CountingEmbeddings(size=4), cache, model_id="m").aembed_documents(["a"])
    other = CachedEmbeddings(CountingEmbeddings(size=8), cache, model_id="m")
    with pytest.raises(EmbeddingError, match="mixed dimensions"):
        await other.aembed_documents(["a", "b"])


async def test_wrong_vector_count_from_inner(cache: SQLiteEmbeddingCache) -> None:
    class Short(CountingEmbeddings):
        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embed_documents(texts)[:-1]

    with pytest.raises(EmbeddingError, match="returned 1 vectors for 2 texts"):
        await CachedEmbeddings(Short(), cache, model_id="m").aembed_documents(["a", "b"])
    assert await cache.acount("m") == 0


def test_empty_model_id_is_refused(inner: CountingEmbeddings, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="model_id"):
        CachedEmbeddings(inner, SQLiteEmbeddingCache(tmp_path / "c.sqlite"), model_id="")


def test_reset_counters(inner: CountingEmbeddings, cache_file: Path) -> None:
    embeddings = CachedEmbeddings(inner, SQLiteEmbeddingCache(cache_file), model_id="m")
    try:
        embeddings.embed_documents(["a", "a"])
        assert (embeddings.hits, embeddings.misses) == (1, 1)
        embeddings.reset_counters()
        assert (embeddings.hits, embeddings.misses) == (0, 0)
    finally:
        embeddings.close()


def test_sync_twin(inner: CountingEmbeddings, cache_file: Path) -> None:
    embeddings = CachedEmbeddings(inner, SQLiteEmbeddingCache(cache_file), model_id="m")
    try:
        assert embeddings.embed_documents(["a", "b", "a"]) == [_expected(t) for t in "aba"]
        assert embeddings.embed_documents(["b", "c"]) == [_expected("b"), _expected("c")]
        assert inner.calls == [["a", "b"], ["c"]]
        assert embeddings.embed_query("q") == inner.embed_query("q")
        # what the sync twin stored, the async path reads (and vice versa)
        assert asyncio.run(embeddings.aembed_documents(["c", "a"])) == [
            _expected("c"),
            _expected("a"),
        ]
        assert inner.calls == [["a", "b"], ["c"]]
    finally:
        embeddings.close()


async def test_concurrent_calls_share_one_cache(
    cached: CachedEmbeddings, cache: SQLiteEmbeddingCache
) -> None:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(cached.aembed_documents([f"t{i}", "common"])) for i in range(20)]
    assert [t.result()[0] for t in tasks] == [_expected(f"t{i}") for i in range(20)]
    assert await cache.acount("fake-8") == 21


async def test_aclose_closes_the_cache(inner: CountingEmbeddings, cache_file: Path) -> None:
    embeddings = CachedEmbeddings(inner, SQLiteEmbeddingCache(cache_file), model_id="m")
    await embeddings.aembed_documents(["a"])
    await embeddings.aclose()
    with pytest.raises(VectorStoreError, match="closed"):  # closing is final
        await embeddings.cache.acount("m")
    await embeddings.aclose()  # idempotent
    async with SQLiteEmbeddingCache(cache_file) as reopened:
        assert await reopened.acount("m") == 1


# -- langchain-tests standard suites ---------------------------------------------------


def _standard_params() -> dict[str, Any]:
    return {
        "inner": DeterministicFakeEmbedding(size=16),
        "cache": SQLiteEmbeddingCache(":memory:"),
        "model_id": "fake-16",
    }


class TestCachedEmbeddingsStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[CachedEmbeddings]:
        return CachedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return _standard_params()

    @pytest.fixture
    def model(self) -> Iterator[CachedEmbeddings]:
        embeddings = CachedEmbeddings(**_standard_params())
        yield embeddings
        embeddings.close()


class TestCachedEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[CachedEmbeddings]:
        return CachedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return _standard_params()

    @pytest.fixture
    def model(self) -> Iterator[CachedEmbeddings]:
        embeddings = CachedEmbeddings(**_standard_params())
        yield embeddings
        embeddings.close()


class SecondCallHangs(DeterministicFakeEmbedding):
    """Answers its first call; every later call waits until cancelled."""

    calls: int = 0

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls > 1:
            await asyncio.Event().wait()
        return self.embed_documents(texts)


async def test_each_request_s_vectors_are_cached_as_they_arrive(tmp_path: Path) -> None:
    # Over the rate-limited wrapper, vectors reach the cache per request (inside the
    # request's slot), not when the whole call returns: a crash or cancellation later in the
    # call throws away only the requests in flight.
    from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
    from langchain_rag_async.limits import ServiceLimiter

    inner = RateLimitedEmbeddings(
        SecondCallHangs(size=8), limiter=ServiceLimiter("svc", max_concurrency=1), batch_size=2
    )
    async with SQLiteEmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cached = CachedEmbeddings(inner, cache, model_id="m")
        call = asyncio.create_task(cached.aembed_documents(["a", "b", "c", "d"]))
        async with asyncio.timeout(10):
            while await cache.acount("m") < 2:  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await cache.acount("m") == 2
        found = await cache.aget_many("m", [content_hash(t) for t in "abcd"])
        assert [v is not None for v in found] == [True, True, False, False]
