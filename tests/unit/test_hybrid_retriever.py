"""Tests of HybridRetriever: concurrency, fusion math, filters, lifecycle, spans, a real index."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langchain_rag_async.config import LoaderConfig, RAGConfig, RetrievalConfig
from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings
from langchain_rag_async.errors import ConfigurationError, RetrievalError, VectorStoreError
from langchain_rag_async.indexing.api import aindex_directory
from langchain_rag_async.retrievers import FTS5Index, HybridRetriever
from langchain_rag_async.vectorstores import AsyncFAISS

CORPUS = [
    Document(id="own-1", page_content="Ownership rules: each value has an owner.",
             metadata={"source": "ch04.md", "ch": 4}),
    Document(id="own-2", page_content="When the owner goes out of scope, the value is dropped.",
             metadata={"source": "ch04.md", "ch": 4}),
    Document(id="ref-1", page_content="References borrow a value without taking ownership.",
             metadata={"source": "ch04.md", "ch": 4, "draft": True}),
    Document(id="str-1", page_content="Structs group related values; fields have names.",
             metadata={"source": "ch05.md", "ch": 5}),
    Document(id="enum-1", page_content="Enums list the variants a value may take.",
             metadata={"source": "ch06.md", "ch": 6}),
    Document(id="vec-1", page_content="A vector stores values of one type next to each other.",
             metadata={"source": "ch08.md", "ch": 8}),
    Document(id="err-1", page_content="Recoverable errors use Result; panic! is unrecoverable.",
             metadata={"source": "ch09.md", "ch": 9}),
    Document(id="gen-1", page_content="Generics abstract over types; traits define behaviour.",
             metadata={"source": "ch10.md"}),
]  # fmt: skip
QUERY = "who owns a value and when is it dropped?"
SPECIAL_QUERIES = [
    '"', '"unbalanced', "*", "foo*", "NEAR(a b)", "-owner", "a:b", "page_content:value",
    "(", ")", "^x", "AND OR NOT", "value AND NOT", "😀", "🦀 owner 🦀", "\x00",
    "'; DROP TABLE chunks; --", "{value} + [owner]", "value\u0000owner",
]  # fmt: skip


def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=32)


@pytest.fixture
async def retriever() -> AsyncIterator[HybridRetriever]:
    async with await HybridRetriever.afrom_documents(CORPUS, embedding=embedding()) as built:
        yield built


@pytest.fixture
def sync_retriever() -> Iterator[HybridRetriever]:
    built = HybridRetriever.from_documents(CORPUS, embedding=embedding())
    try:
        yield built
    finally:
        built.close()


def ids(documents: list[Document]) -> list[str | None]:
    return [doc.id for doc in documents]


async def side_results(
    retriever: HybridRetriever, query: str, fetch_k: int, filter: dict[str, Any] | None = None
) -> tuple[list[tuple[Document, float]], list[tuple[Document, float]]]:
    """What each side returns on its own (the inputs of the fusion)."""
    extra: dict[str, Any] = {} if filter is None else {"filter": filter, "fetch_k": 1000}
    dense = await retriever.vectorstore.asimilarity_search_with_relevance_scores(
        query, k=fetch_k, **extra
    )
    sparse = await retriever.sparse.asearch(query, fetch_k, filter=filter)
    return dense, sparse


# --------------------------------------------------------------------------- concurrency


class _Gate:
    """Two events: each side announces it started, then waits for the other."""

    def __init__(self) -> None:
        self.dense_started = asyncio.Event()
        self.sparse_started = asyncio.Event()
        self.cancelled: list[str] = []


class GatedFAISS(AsyncFAISS):
    gate: _Gate

    async def asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        self.gate.dense_started.set()
        try:
            await self.gate.sparse_started.wait()
        except asyncio.CancelledError:
            self.gate.cancelled.append("dense")
            raise
        return await super().asimilarity_search_with_relevance_scores(query, k, **kwargs)


class GatedFTS5(FTS5Index):
    gate: _Gate

    async def asearch(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        self.gate.sparse_started.set()
        try:
            await self.gate.dense_started.wait()
        except asyncio.CancelledError:
            self.gate.cancelled.append("sparse")
            raise
        return await super().asearch(query, k, filter=filter)


@pytest.fixture
async def gated() -> AsyncIterator[tuple[HybridRetriever, _Gate]]:
    gate = _Gate()
    store = GatedFAISS.create(embedding())
    store.gate = gate
    await store.aadd_documents(CORPUS)
    async with GatedFTS5() as sparse:
        sparse.gate = gate
        await sparse.aupsert(CORPUS)
        yield HybridRetriever(vectorstore=store, sparse=sparse), gate


async def test_dense_and_sparse_searches_are_in_flight_at_once(
    gated: tuple[HybridRetriever, _Gate],
) -> None:
    # Each side waits until the other has started: run one after the other, this hangs.
    retriever, gate = gated
    async with asyncio.timeout(10):
        docs = await retriever.ainvoke(QUERY)
    assert gate.dense_started.is_set() and gate.sparse_started.is_set()
    assert len(docs) == 4


async def test_cancelling_a_search_cancels_both_sides(
    gated: tuple[HybridRetriever, _Gate],
) -> None:
    retriever, gate = gated
    gate.sparse_started.set = lambda: None  # type: ignore[method-assign]  # dense never passes
    task = asyncio.create_task(retriever.ainvoke(QUERY))
    await gate.dense_started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(gate.cancelled) == ["dense", "sparse"]


async def test_a_failing_side_raises_its_own_error_not_a_group(
    retriever: HybridRetriever,
) -> None:
    await retriever.sparse.aclose()  # the sparse side now raises VectorStoreError
    with pytest.raises(VectorStoreError, match="closed"):
        await retriever.ainvoke(QUERY)
    with pytest.raises(VectorStoreError, match="closed"):
        await asyncio.to_thread(retriever.invoke, QUERY)


async def test_a_foreign_error_of_the_dense_side_becomes_a_retrieval_error() -> None:
    class Broken(AsyncFAISS):
        async def asimilarity_search_with_relevance_scores(
            self, query: str, k: int = 4, **kwargs: Any
        ) -> list[tuple[Document, float]]:
            raise RuntimeError("disk on fire")

    async with FTS5Index() as sparse:
        retriever = HybridRetriever(vectorstore=Broken.create(embedding()), sparse=sparse)
        with pytest.raises(RetrievalError, match="dense search .* disk on fire") as info:
            await retriever.ainvoke(QUERY)
    assert isinstance(info.value.__cause__, RuntimeError)


# --------------------------------------------------------------------------- fusion


async def test_rrf_math_through_the_retriever(retriever: HybridRetriever) -> None:
    fetch_k, c, wd, ws = 6, 10, 2.0, 0.5
    dense, sparse = await side_results(retriever, QUERY, fetch_k)
    expected: dict[str, float] = {}
    for weight, ranked in ((wd, dense), (ws, sparse)):
        for rank, (doc, _score) in enumerate(ranked, start=1):
            expected[str(doc.id)] = expected.get(str(doc.id), 0.0) + weight / (c + rank)
    assert sparse, "the query must match some words for this test to mean anything"

    tuned = retriever.model_copy(update={"rrf_c": c, "dense_weight": wd, "sparse_weight": ws})
    docs = await tuned.ainvoke(QUERY, k=len(CORPUS), fetch_k=fetch_k)

    assert set(ids(docs)) == set(expected)
    for doc in docs:
        assert doc.metadata["scores"]["fused"] == pytest.approx(expected[str(doc.id)])
    fused = [doc.metadata["scores"]["fused"] for doc in docs]
    assert fused == sorted(fused, reverse=True)
    # the top document of the sparse side, also found by the dense side, gets both terms
    top_sparse = str(sparse[0][0].id)
    assert any(d.id == top_sparse and d.metadata["scores"]["sparse"] for d in docs)


async def test_weighted_fusion_of_normalised_scores(retriever: HybridRetriever) -> None:
    fetch_k, wd, ws = 5, 0.3, 0.7
    dense, sparse = await side_results(retriever, QUERY, fetch_k)

    def normalised(ranked: list[tuple[Document, float]]) -> dict[str, float]:
        low, high = min(s for _, s in ranked), max(s for _, s in ranked)
        return {str(d.id): 1.0 if high == low else (s - low) / (high - low) for d, s in ranked}

    nd, ns = normalised(dense), normalised(sparse)
    expected = {i: wd * nd.get(i, 0.0) + ws * ns.get(i, 0.0) for i in {*nd, *ns}}

    weighted = retriever.model_copy(
        update={"fusion": "weighted", "dense_weight": wd, "sparse_weight": ws}
    )
    docs = await weighted.ainvoke(QUERY, k=3, fetch_k=fetch_k)

    best = sorted(expected.items(), key=lambda item: -item[1])[:3]
    assert [doc.metadata["scores"]["fused"] for doc in docs] == pytest.approx(
        [score for _, score in best]
    )
    assert ids(docs)[0] == best[0][0]


async def test_documents_found_by_both_sides_appear_once_with_both_scores(
    retriever: HybridRetriever,
) -> None:
    dense, sparse = await side_results(retriever, QUERY, 20)
    both = {d.id for d, _ in dense} & {d.id for d, _ in sparse}
    assert both  # with 8 documents and fetch_k=20 the dense side returns all of them

    docs = await retriever.ainvoke(QUERY, k=len(CORPUS))

    assert len(ids(docs)) == len(set(ids(docs))) == len(CORPUS)
    for doc in docs:
        scores = doc.metadata["scores"]
        assert set(scores) == {"dense", "sparse", "fused"}
        assert 0.0 <= scores["dense"] <= 1.0
        if doc.id in both:
            assert scores["sparse"] > 0
        else:
            assert scores["sparse"] is None
        assert scores["fused"] > 0
    # the stored metadata stays intact next to the scores
    by_id = {doc.id: doc for doc in docs}
    assert by_id["ref-1"].metadata["draft"] is True
    assert by_id["ref-1"].page_content == CORPUS[2].page_content


async def test_zero_weight_ranks_by_the_other_side_only(retriever: HybridRetriever) -> None:
    _dense, sparse = await side_results(retriever, QUERY, 20)
    sparse_only = retriever.model_copy(update={"dense_weight": 0.0})
    docs = await sparse_only.ainvoke(QUERY, k=len(sparse))
    assert ids(docs) == [doc.id for doc, _ in sparse]


# --------------------------------------------------------------------------- arguments


async def test_k_as_field_and_as_invoke_kwarg(retriever: HybridRetriever) -> None:
    assert len(await retriever.ainvoke(QUERY)) == 4
    assert len(await retriever.ainvoke(QUERY, k=2)) == 2
    assert len(await retriever.ainvoke(QUERY, k=1)) == 1
    three = retriever.model_copy(update={"k": 3})
    assert len(await three.ainvoke(QUERY)) == 3
    # k larger than fetch_k still returns k documents: each side fetches at least k
    assert len(await retriever.ainvoke(QUERY, k=7, fetch_k=2)) == 7


async def test_filter_as_invoke_kwarg_reaches_both_sides(retriever: HybridRetriever) -> None:
    docs = await retriever.ainvoke(QUERY, k=8, filter={"ch": 4})
    assert {doc.id for doc in docs} == {"own-1", "own-2", "ref-1"}
    assert all(doc.metadata["scores"]["dense"] is not None for doc in docs)
    assert any(doc.metadata["scores"]["sparse"] is not None for doc in docs)

    any_of = await retriever.ainvoke("value", k=8, filter={"source": ("ch05.md", "ch08.md")})
    assert {doc.id for doc in any_of} == {"str-1", "vec-1"}
    assert all(doc.metadata["scores"]["sparse"] is not None for doc in any_of)

    missing = await retriever.ainvoke("types", k=8, filter={"ch": None})
    assert ids(missing) == ["gen-1"]


async def test_filter_field_and_per_call_replacement(retriever: HybridRetriever) -> None:
    chapter5 = retriever.model_copy(update={"filter": {"ch": 5}})
    assert ids(await chapter5.ainvoke(QUERY)) == ["str-1"]
    assert len(await chapter5.ainvoke(QUERY, filter={})) == 4
    assert ids(await chapter5.ainvoke(QUERY, filter={"ch": 6})) == ["enum-1"]


async def test_bad_arguments_are_refused_before_searching(retriever: HybridRetriever) -> None:
    with pytest.raises(ValueError, match="k must be"):
        await retriever.ainvoke(QUERY, k=0)
    with pytest.raises(ValueError, match="fetch_k must be"):
        await retriever.ainvoke(QUERY, fetch_k=True)
    with pytest.raises(ValueError, match="operators only work"):
        await retriever.ainvoke(QUERY, filter={"$or": [{"ch": 4}, {"ch": 5}]})
    with pytest.raises(ValueError, match="not supported"):
        await retriever.ainvoke(QUERY, filter={"ch": {"$gt": 4}})
    with pytest.raises(ValueError, match="dict of metadata"):
        await retriever.ainvoke(QUERY, filter=lambda metadata: True)
    with pytest.raises(TypeError, match="score_threshold"):
        await retriever.ainvoke(QUERY, score_threshold=0.5)


@pytest.mark.parametrize("query", ["", " ", "   \t\n"])
async def test_empty_query_raises_retrieval_error(
    retriever: HybridRetriever, query: str
) -> None:
    with pytest.raises(RetrievalError, match="query is empty"):
        await retriever.ainvoke(query)
    with pytest.raises(RetrievalError, match="query is empty"):
        await asyncio.to_thread(retriever.invoke, query)


async def test_fts5_syntax_in_the_query_never_raises(retriever: HybridRetriever) -> None:
    for query in SPECIAL_QUERIES:
        docs = await retriever.ainvoke(query)
        assert len(docs) == 4, query  # the dense side always answers
        assert all(doc.metadata["scores"]["dense"] is not None for doc in docs)
    matched = await retriever.ainvoke('"owner" AND NOT (value*', k=8)
    assert any(doc.metadata["scores"]["sparse"] for doc in matched)


def test_fts5_syntax_in_the_query_never_raises_sync(sync_retriever: HybridRetriever) -> None:
    for query in SPECIAL_QUERIES:
        assert len(sync_retriever.invoke(query)) == 4, query


def test_configuration_is_checked() -> None:
    with FTS5Index() as_sparse_placeholder if False else _nullcontext():  # noqa: SIM117
        pass


class _nullcontext:  # noqa: N801
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None
