"""Tests of HybridRetriever: concurrency, fusion math, filters, lifecycle, spans, a real index."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import pytest
from langchain_community.docstore.base import AddableMixin, Docstore
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langchain_rag_async.config import LoaderConfig, RAGConfig, RetrievalConfig
from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings
from langchain_rag_async.errors import (
    ArgumentTypeError,
    ConfigurationError,
    RetrievalError,
    VectorStoreError,
)
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


RRF4: dict[str, Any] = {"k": 4, "fetch_k": 20, "fusion": "rrf"}
"""The settings most tests below are written for (explicit: the defaults come from config)."""


def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=32)


@pytest.fixture
async def retriever() -> AsyncIterator[HybridRetriever]:
    built = await HybridRetriever.afrom_documents(CORPUS, embedding=embedding(), **RRF4)
    async with built:
        yield built


@pytest.fixture
def sync_retriever() -> Iterator[HybridRetriever]:
    built = HybridRetriever.from_documents(CORPUS, embedding=embedding(), **RRF4)
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
    """Each side announces it started, waits for the other, then for ``release``."""

    def __init__(self) -> None:
        self.dense_started = asyncio.Event()
        self.sparse_started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.cancelled: list[str] = []

    async def meet(self, mine: asyncio.Event, other: asyncio.Event, side: str) -> None:
        mine.set()
        try:
            await other.wait()
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(side)
            raise


class GatedFAISS(AsyncFAISS):
    """The id path: the hybrid asks AsyncFAISS for ids."""

    gate: _Gate

    async def asearch_ids(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[str, float]]:
        await self.gate.meet(self.gate.dense_started, self.gate.sparse_started, "dense")
        return await super().asearch_ids(query, k, **kwargs)


class MemoryStore(InMemoryVectorStore):
    """LangChain's in-memory store, with relevance scores in [0, 1] from its cosine."""

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda similarity: (1.0 + similarity) / 2.0


class GatedGenericStore(MemoryStore):
    """The document path: any other LangChain vector store."""

    gate: _Gate

    async def asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        await self.gate.meet(self.gate.dense_started, self.gate.sparse_started, "dense")
        return await super().asimilarity_search_with_relevance_scores(query, k, **kwargs)


class GatedFTS5(FTS5Index):
    gate: _Gate

    async def asearch(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        await self.gate.meet(self.gate.sparse_started, self.gate.dense_started, "sparse")
        return await super().asearch(query, k, filter=filter)

    async def asearch_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        await self.gate.meet(self.gate.sparse_started, self.gate.dense_started, "sparse")
        return await super().asearch_ids(query, k, filter=filter)


@pytest.fixture(params=["faiss", "generic"])
async def gated(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HybridRetriever, _Gate]]:
    gate = _Gate()
    store: GatedFAISS | GatedGenericStore
    if request.param == "faiss":
        store = GatedFAISS.create(embedding())
    else:
        store = GatedGenericStore(embedding())
    store.gate = gate
    await store.aadd_documents(CORPUS)
    async with GatedFTS5() as sparse:
        sparse.gate = gate
        await sparse.aupsert(CORPUS)
        yield HybridRetriever(vectorstore=store, sparse=sparse, **RRF4), gate


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
    gate.release.clear()  # both sides start, then block
    task = asyncio.create_task(retriever.ainvoke(QUERY))
    async with asyncio.timeout(10):
        await gate.dense_started.wait()
        await gate.sparse_started.wait()
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


class BrokenFAISS(AsyncFAISS):
    async def asearch_ids(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[str, float]]:
        raise RuntimeError("disk on fire")

    def search_ids(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[str, float]]:
        raise RuntimeError("disk on fire")


class BrokenGenericStore(MemoryStore):
    async def asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        raise RuntimeError("disk on fire")

    def similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        raise RuntimeError("disk on fire")


@pytest.mark.parametrize(
    "broken", [BrokenFAISS.create(embedding()), BrokenGenericStore(embedding())]
)
async def test_a_foreign_error_of_the_dense_side_becomes_a_retrieval_error(
    broken: VectorStore,
) -> None:
    async with FTS5Index() as sparse:
        retriever = HybridRetriever(vectorstore=broken, sparse=sparse, **RRF4)
        with pytest.raises(RetrievalError, match="dense search .* disk on fire") as info:
            await retriever.ainvoke(QUERY)
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(RetrievalError, match="dense search .* disk on fire"):
            await asyncio.to_thread(retriever.invoke, QUERY)


# --------------------------------------------------------------------------- ids first


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
async def test_the_id_path_and_the_document_path_agree(fusion: str) -> None:
    # AsyncFAISS answers with ids (documents built for the winners only); any other store
    # answers with documents. Same corpus, same cosine ranking: the same results.
    store = AsyncFAISS.create(embedding(), distance_strategy=DistanceStrategy.COSINE)
    await store.aadd_documents(CORPUS)
    generic = MemoryStore(embedding())
    await generic.aadd_documents(CORPUS)
    async with FTS5Index() as sparse:
        await sparse.aupsert(CORPUS)
        by_ids = HybridRetriever(vectorstore=store, sparse=sparse, fusion=fusion, k=5)
        by_docs = by_ids.model_copy(update={"vectorstore": generic})
        for question in [QUERY, "vector of values", "traits and generics"]:
            got, want = await by_ids.ainvoke(question), await by_docs.ainvoke(question)
            assert ids(got) == ids(want), question
            assert [d.page_content for d in got] == [d.page_content for d in want]
            assert [d.metadata["scores"]["sparse"] for d in got] == pytest.approx(
                [d.metadata["scores"]["sparse"] for d in want]
            )
            if fusion == "rrf":  # only ranks count: the fused scores match exactly too
                assert [d.metadata["scores"]["fused"] for d in got] == pytest.approx(
                    [d.metadata["scores"]["fused"] for d in want]
                )
            assert ids(await asyncio.to_thread(by_ids.invoke, question)) == ids(got)


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"k": 8}, {"k": 3, "fetch_k": 3}, {"filter": {"ch": [4, 5]}}, {"filter": {"ch": None}}],
)
async def test_ranking_ids_gives_exactly_what_fusing_documents_gave(
    retriever: HybridRetriever, fusion: str, kwargs: dict[str, Any]
) -> None:
    # The same store searched both ways: documents from each side fused (the path of any
    # other vector store, and this retriever's before ids were ranked), and ids ranked.
    tuned = retriever.model_copy(update={"fusion": fusion, "dense_weight": 0.6})
    plan = tuned._plan(QUERY, kwargs)
    want = tuned._fuse(await tuned._adense(plan), await tuned._asparse(plan), plan.k)
    from_sync = await asyncio.to_thread(tuned.invoke, QUERY, **kwargs)
    for got in (await tuned.ainvoke(QUERY, **kwargs), from_sync):
        assert [(d.id, d.page_content, d.metadata) for d in got] == [
            (d.id, d.page_content, d.metadata) for d in want
        ]


class RacingFAISS(AsyncFAISS):
    """Moves own-1 to chapter 7 right after the search found it in chapter 4."""

    async def asearch_ids(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[str, float]]:
        hits = await super().asearch_ids(query, k, **kwargs)
        moved = Document(id="own-1", page_content=CORPUS[0].page_content, metadata={"ch": 7})
        await self.aadd_documents([moved])
        return hits


async def test_a_document_changed_since_the_search_must_still_match_the_filter() -> None:
    store = RacingFAISS.create(embedding())
    await store.aadd_documents(CORPUS)
    async with FTS5Index() as sparse:
        await sparse.aupsert(CORPUS)
        retriever = HybridRetriever(vectorstore=store, sparse=sparse, k=8)
        docs = await retriever.ainvoke(QUERY, filter={"ch": 4})
        assert set(ids(docs)) == {"own-2", "ref-1"}  # own-1 left chapter 4 meanwhile
        assert all(doc.metadata["ch"] == 4 for doc in docs)
        unfiltered = await retriever.ainvoke(QUERY)
        assert "own-1" in ids(unfiltered)


class DictDocstore(Docstore, AddableMixin):
    """A docstore that is not a plain in-memory one (it could do I/O)."""

    def __init__(self) -> None:
        self.items: dict[str, Document] = {}

    def add(self, texts: dict[str, Document]) -> None:
        self.items.update(texts)

    def delete(self, ids: list[str]) -> None:
        for doc_id in ids:
            self.items.pop(doc_id, None)

    def search(self, search: str) -> str | Document:
        return self.items.get(search, f"ID {search} not found.")


async def test_a_store_with_another_docstore_is_searched_for_documents() -> None:
    store = AsyncFAISS(embedding(), faiss.IndexFlatL2(32), DictDocstore(), {})
    await store.aadd_documents(CORPUS)
    assert not store.docstore_in_memory
    object.__setattr__(store, "lookup", None)  # must not be called on the event loop
    async with FTS5Index() as sparse:
        await sparse.aupsert(CORPUS)
        retriever = HybridRetriever(vectorstore=store, sparse=sparse, k=3)
        docs = await retriever.ainvoke(QUERY)
        assert len(docs) == 3 and all("scores" in doc.metadata for doc in docs)
        assert ids(await asyncio.to_thread(retriever.invoke, QUERY)) == ids(docs)


async def test_a_store_without_relevance_scores_works_with_rrf() -> None:
    store = InMemoryVectorStore(embedding())  # LangChain's: no relevance scores
    await store.aadd_documents(CORPUS)
    async with FTS5Index() as sparse:
        await sparse.aupsert(CORPUS)
        with pytest.raises(ConfigurationError, match="no relevance scores.*fusion='rrf'"):
            HybridRetriever(vectorstore=store, sparse=sparse)  # weighted is the default
        retriever = HybridRetriever(vectorstore=store, sparse=sparse, k=8, fusion="rrf")
        docs = await retriever.ainvoke(QUERY)
        raw = await store.asimilarity_search_with_score(QUERY, k=8)
        dense = {doc.id: doc.metadata["scores"]["dense"] for doc in docs}
        assert dense == pytest.approx({doc.id: score for doc, score in raw})  # its own scores
        assert ids(await asyncio.to_thread(retriever.invoke, QUERY)) == ids(docs)

        with pytest.raises(ConfigurationError, match="no relevance scores.*fusion='rrf'"):
            HybridRetriever(vectorstore=store, sparse=sparse, fusion="weighted")
        weighted = retriever.model_copy(update={"fusion": "weighted"})  # skips validation
        with pytest.raises(ConfigurationError, match="no relevance scores"):
            await weighted.ainvoke(QUERY)


async def test_only_the_winners_are_read_from_the_docstore(retriever: HybridRetriever) -> None:
    store = retriever.vectorstore
    assert isinstance(store, AsyncFAISS)
    asked: list[list[str]] = []
    original = store.lookup

    def recording(ids_: Any, /) -> list[Document | None]:
        asked.append(list(ids_))
        return original(ids_)

    object.__setattr__(store, "lookup", recording)
    docs = await retriever.ainvoke(QUERY, k=2, fetch_k=8)
    assert asked == [ids(docs)] and len(docs) == 2


async def test_a_sparse_hit_the_dense_store_lacks_is_another_generation_and_skipped(
    store_and_sparse: tuple[AsyncFAISS, FTS5Index],
) -> None:
    # The store is the reference: an indexing run (maybe in another process) saves its sparse
    # rows with its next store generation, so a reader holding the older store must not mix
    # in the newer chunk. The sparse side still matches it; the k results are all the store's.
    store, sparse = store_and_sparse
    await store.adelete(["own-2"])
    assert [i for i, _ in await sparse.asearch_ids(QUERY, 8)].count("own-2") == 1
    retriever = HybridRetriever(vectorstore=store, sparse=sparse, k=3)
    for docs in (await retriever.ainvoke(QUERY), await asyncio.to_thread(retriever.invoke, QUERY)):
        assert "own-2" not in ids(docs)
        assert len(docs) == 3
        assert all(store.lookup([d.id or ""])[0] is not None for d in docs)


class GhostFTS5(FTS5Index):
    """Ranks an id first that neither index holds (removed since, by another writer)."""

    async def asearch_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        return [("ghost", 99.0), *await super().asearch_ids(query, k, filter=filter)]

    def search_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        return [("ghost", 99.0), *super().search_ids(query, k, filter=filter)]


async def test_an_id_found_nowhere_is_skipped_and_k_results_still_come_back() -> None:
    store = AsyncFAISS.create(embedding())
    await store.aadd_documents(CORPUS)
    async with GhostFTS5() as sparse:
        await sparse.aupsert(CORPUS)
        retriever = HybridRetriever(vectorstore=store, sparse=sparse, k=4)
        for docs in (
            await retriever.ainvoke(QUERY),
            await asyncio.to_thread(retriever.invoke, QUERY),
        ):
            assert len(docs) == 4 and "ghost" not in ids(docs)
        assert len(await retriever.ainvoke(QUERY, k=8)) == 8


# --------------------------------------------------------------------------- fusion


async def test_rrf_math_through_the_retriever(retriever: HybridRetriever) -> None:
    k = fetch_k = 6
    c, wd, ws = 10, 2.0, 0.5
    dense, sparse = await side_results(retriever, QUERY, fetch_k)
    expected: dict[str, float] = {}
    for weight, ranked in ((wd, dense), (ws, sparse)):
        for rank, (doc, _score) in enumerate(ranked, start=1):
            expected[str(doc.id)] = expected.get(str(doc.id), 0.0) + weight / (c + rank)
    assert sparse, "the query must match some words for this test to mean anything"

    tuned = retriever.model_copy(update={"rrf_c": c, "dense_weight": wd, "sparse_weight": ws})
    docs = await tuned.ainvoke(QUERY, k=k, fetch_k=fetch_k)

    best = sorted(expected.items(), key=lambda item: -item[1])[:k]
    assert ids(docs) == [doc_id for doc_id, _ in best]
    assert [d.metadata["scores"]["fused"] for d in docs] == pytest.approx([s for _, s in best])
    # some document is found by both sides, so a sum of two terms is checked too
    assert any(None not in d.metadata["scores"].values() for d in docs)


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
    for doc in any_of:  # a tuple means "any of" on both sides (FAISS needs it as a list)
        assert None not in doc.metadata["scores"].values()

    missing = await retriever.ainvoke("types", k=8, filter={"ch": None})
    assert ids(missing) == ["gen-1"]


async def test_filter_field_and_per_call_replacement(retriever: HybridRetriever) -> None:
    chapter5 = retriever.model_copy(update={"filter": {"ch": 5}})
    assert ids(await chapter5.ainvoke(QUERY)) == ["str-1"]
    assert len(await chapter5.ainvoke(QUERY, filter={})) == 4
    assert ids(await chapter5.ainvoke(QUERY, filter={"ch": 6})) == ["enum-1"]


async def test_bad_arguments_are_refused_before_searching(retriever: HybridRetriever) -> None:
    with pytest.raises(ValueError, match="k must be") as bad:
        await retriever.ainvoke(QUERY, k=0)
    assert isinstance(bad.value, ConfigurationError)
    with pytest.raises(ValueError, match="fetch_k must be"):
        await retriever.ainvoke(QUERY, fetch_k=True)
    with pytest.raises(ValueError, match="operators only work"):
        await retriever.ainvoke(QUERY, filter={"$or": [{"ch": 4}, {"ch": 5}]})
    with pytest.raises(ValueError, match="not supported"):
        await retriever.ainvoke(QUERY, filter={"ch": {"$gt": 4}})
    with pytest.raises(ValueError, match="dict of metadata"):
        await retriever.ainvoke(QUERY, filter=lambda metadata: True)
    with pytest.raises(TypeError, match="score_threshold") as wrong:
        await retriever.ainvoke(QUERY, score_threshold=0.5)
    assert isinstance(wrong.value, ArgumentTypeError)


@pytest.mark.parametrize("query", ["", " ", "   \t\n"])
async def test_empty_query_raises_retrieval_error(retriever: HybridRetriever, query: str) -> None:
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


# --------------------------------------------------------------------------- construction


@pytest.fixture
def store_and_sparse() -> Iterator[tuple[AsyncFAISS, FTS5Index]]:
    store = AsyncFAISS.create(embedding())
    store.add_documents(CORPUS)
    sparse = FTS5Index()
    try:
        sparse.upsert(CORPUS)
        yield store, sparse
    finally:
        sparse.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k": 0}, "k must be positive"),
        ({"fetch_k": -1}, "fetch_k must be positive"),
        ({"dense_weight": 0.0, "sparse_weight": 0.0}, "at least one fusion weight"),
        ({"dense_weight": -1.0}, "must be finite and >= 0"),
        ({"sparse_weight": math.inf}, "must be finite"),
        ({"rrf_c": -1}, "rrf_c must not be negative"),
        ({"filter": {"$and": []}}, "operators only work"),
    ],
)
def test_settings_are_checked(
    store_and_sparse: tuple[AsyncFAISS, FTS5Index], settings: dict[str, Any], message: str
) -> None:
    store, sparse = store_and_sparse
    with pytest.raises(ConfigurationError, match=message):
        HybridRetriever(vectorstore=store, sparse=sparse, **settings)


def test_from_config_copies_the_settings_and_does_not_own_the_stores(
    store_and_sparse: tuple[AsyncFAISS, FTS5Index],
) -> None:
    store, sparse = store_and_sparse
    config = RetrievalConfig(
        k=2, fetch_k=7, fusion="weighted", dense_weight=0.25, sparse_weight=0.75, rrf_c=5
    )
    retriever = HybridRetriever.from_config(store, sparse, config, filter={"ch": 4})
    assert retriever.to_config() == config
    assert retriever.filter == {"ch": 4}
    assert retriever.owns_stores is False
    assert ids(retriever.invoke(QUERY)) and len(retriever.invoke(QUERY)) == 2
    defaults = HybridRetriever.from_config(store, sparse)
    assert defaults.to_config() == RetrievalConfig()
    # The fields' own defaults are the config's: one source.
    assert HybridRetriever(vectorstore=store, sparse=sparse).to_config() == RetrievalConfig()

    retriever.close()  # not owned: the stores stay open
    assert sparse.search("owner", 1)
    assert len(retriever.invoke(QUERY)) == 2


async def test_aclose_leaves_stores_passed_in_open() -> None:
    store = AsyncFAISS.create(embedding())
    await store.aadd_documents(CORPUS)
    async with FTS5Index() as sparse:
        await sparse.aupsert(CORPUS)
        async with HybridRetriever(vectorstore=store, sparse=sparse, **RRF4) as retriever:
            assert len(await retriever.ainvoke(QUERY)) == 4
        assert await sparse.asearch("owner", 1)
        assert len(await retriever.ainvoke(QUERY)) == 4


async def test_from_documents_owns_its_stores_and_aclose_releases_them() -> None:
    retriever = await HybridRetriever.afrom_documents(CORPUS, embedding=embedding(), k=2)
    assert retriever.owns_stores and retriever.k == 2
    assert isinstance(retriever.vectorstore, AsyncFAISS)
    assert retriever.sparse.db_path is None  # in memory
    assert len(await retriever.ainvoke(QUERY)) == 2

    await retriever.aclose()
    await retriever.aclose()  # idempotent
    with pytest.raises(VectorStoreError, match="closed"):
        await retriever.sparse.asearch("owner")
    with pytest.raises(RetrievalError, match="was closed"):
        await retriever.ainvoke(QUERY)


def test_sync_from_documents_and_close() -> None:
    retriever = HybridRetriever.from_documents(CORPUS, embedding=embedding())
    try:
        assert retriever.fusion == "weighted" and retriever.owns_stores
        assert len(retriever.invoke(QUERY)) == RetrievalConfig().k
    finally:
        retriever.close()
    with pytest.raises(RetrievalError, match="was closed"):
        retriever.invoke(QUERY)


async def test_documents_without_ids_get_deterministic_distinct_ids() -> None:
    texts = [
        Document(page_content="same text", metadata={"source": "a"}),
        Document(page_content="same text", metadata={"source": "a"}),
        Document(page_content="same text", metadata={"source": "b"}),
        Document(id="kept", page_content="same text"),
    ]
    first = await HybridRetriever.afrom_documents(texts, embedding=embedding(), k=10)
    second = await HybridRetriever.afrom_documents(texts, embedding=embedding(), k=10)
    async with first, second:
        got_first = ids(await first.ainvoke("same text"))
        got_second = ids(await second.ainvoke("same text"))
        assert len(got_first) == len(set(got_first)) == 4
        assert sorted(map(str, got_first)) == sorted(map(str, got_second))
        assert "kept" in got_first
        assert await first.sparse.acount() == 4


async def test_empty_corpus_answers_with_nothing() -> None:
    async with await HybridRetriever.afrom_documents([], embedding=embedding()) as retriever:
        assert await retriever.ainvoke(QUERY) == []


# --------------------------------------------------------------------------- twins, LCEL, spans


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
async def test_sync_and_async_return_the_same_results(
    retriever: HybridRetriever, fusion: str
) -> None:
    tuned = retriever.model_copy(update={"fusion": fusion})
    for kwargs in ({}, {"k": 8}, {"filter": {"ch": [4, 5]}}, {"k": 3, "fetch_k": 3}):
        from_async = await tuned.ainvoke(QUERY, **kwargs)
        from_sync = await asyncio.to_thread(tuned.invoke, QUERY, **kwargs)
        assert ids(from_async) == ids(from_sync), kwargs
        for a, b in zip(from_async, from_sync, strict=True):
            assert a.metadata["scores"] == pytest.approx(b.metadata["scores"])


async def test_works_in_an_lcel_chain(retriever: HybridRetriever) -> None:
    def format_docs(docs: list[Document]) -> str:
        return "\n".join(f"[{doc.id}] {doc.page_content}" for doc in docs)

    chain = retriever | RunnableLambda(format_docs)
    text = await chain.ainvoke("when is a value dropped?")
    assert text.count("\n") == 3 and text.startswith("[")
    assert "[own-2]" in text
    assert await asyncio.to_thread(chain.invoke, "when is a value dropped?") == text
    batched = await chain.abatch(["owner", "vector"])
    assert len(batched) == 2 and all(isinstance(item, str) for item in batched)


async def test_spans_retrieve_with_dense_and_sparse_children(
    retriever: HybridRetriever, spans: InMemorySpanExporter
) -> None:
    await retriever.ainvoke(QUERY, k=3)
    finished = {span.name: span for span in spans.get_finished_spans()}
    root, dense, sparse = finished["hybrid_search"], finished["dense"], finished["sparse"]
    assert root.attributes is not None
    assert root.attributes["k"] == 3 and root.attributes["fusion"] == "rrf"
    assert root.attributes["rag.results"] == 3
    assert dense.parent is not None and sparse.parent is not None
    assert dense.parent.span_id == root.context.span_id
    assert sparse.parent.span_id == root.context.span_id
    assert finished["sparse.search"].parent.span_id == sparse.context.span_id  # type: ignore[union-attr]


def test_sync_spans(sync_retriever: HybridRetriever, spans: InMemorySpanExporter) -> None:
    sync_retriever.invoke(QUERY)
    names = [span.name for span in spans.get_finished_spans()]
    assert {"hybrid_search", "dense", "sparse"} <= set(names)
    assert names[-1] == "hybrid_search"


# --------------------------------------------------------------------------- a real index

BOOK_FILES = (
    "ch03-01-variables-and-mutability.md",
    "ch04-00-understanding-ownership.md",
    "ch04-02-references-and-borrowing.md",
    "ch05-01-defining-structs.md",
    "ch08-01-vectors.md",
)


@pytest.mark.slow
async def test_over_a_real_index_of_the_rust_book(rust_book: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    model = LocalMiniLMEmbeddings()
    config = RAGConfig(index_dir=index_dir, loader=LoaderConfig(include=BOOK_FILES))
    summary = await aindex_directory(rust_book, config=config, embeddings=model)
    assert summary.files_indexed == len(BOOK_FILES)

    store = await AsyncFAISS.aload_local(index_dir, model)
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        retriever = HybridRetriever.from_config(store, sparse, RetrievalConfig())
        docs = await retriever.ainvoke("What are the rules of ownership in Rust?")

        assert len(docs) == RetrievalConfig().k
        sources = [Path(str(doc.metadata["source"])).name for doc in docs]
        assert sources[0].startswith("ch04"), sources
        assert sum(source.startswith("ch04") for source in sources) >= len(sources) // 2
        top = docs[0].metadata["scores"]
        assert top["dense"] is not None and top["sparse"] is not None

        chapter = {"source": docs[0].metadata["source"]}
        filtered = await retriever.ainvoke("borrowing a reference", k=3, filter=chapter)
        assert filtered and all(d.metadata["source"] == chapter["source"] for d in filtered)
