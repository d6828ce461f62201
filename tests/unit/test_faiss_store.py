"""Behaviour of AsyncFAISS in memory: upserts, deletes, lookups, scores, MMR, filters."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import faiss
import pytest
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from langchain_rag_async.errors import ConfigurationError, UsageError, VectorStoreError
from langchain_rag_async.vectorstores import AsyncFAISS, metadata_filter
from langchain_rag_async.vectorstores._locks import ReadWriteLock

DIM = 8
TEXTS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=DIM)


def assert_consistent(store: AsyncFAISS) -> None:
    with store.rw_lock.read():
        ntotal = 0 if store.index is None else store.index.ntotal
        assert ntotal == len(store.docstore._dict) == len(store.index_to_docstore_id)
        assert sorted(store.index_to_docstore_id) == list(range(ntotal))


def store_with_texts(**create: Any) -> AsyncFAISS:
    store = AsyncFAISS.create(embedding(), dimension=DIM, **create)
    store.add_texts(TEXTS, [{"n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(6)])
    return store


class LoopOnlyEmbedding(Embeddings):
    """Deterministic vectors that may only be computed by awaiting, on the loop thread."""

    def __init__(self) -> None:
        self.inner = embedding()
        self.threads: set[int] = set()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("the sync embed_documents must not be used by async methods")

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError("the sync embed_query must not be used by async methods")

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.threads.add(threading.get_ident())
        return self.inner.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self.threads.add(threading.get_ident())
        return self.inner.embed_query(text)


# -- construction -------------------------------------------------------------------------


def test_create_is_an_empty_drop_in_faiss() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM, embedding_model_id="fake:8")
    assert isinstance(store, FAISS)
    assert store.embedding_model_id == "fake:8"
    assert store.dimension == DIM
    assert store.index.ntotal == 0
    assert store.similarity_search("anything") == []
    assert store.max_marginal_relevance_search("anything") == []
    assert store.similarity_search_with_relevance_scores("anything") == []


def test_lazy_store_creates_its_index_at_first_add() -> None:
    store = AsyncFAISS.create(embedding())
    assert store.index is None and store.dimension is None
    assert store.similarity_search_with_score("x") == []
    assert store.delete(["x"]) is True
    store.add_texts(["one"])
    assert store.dimension == DIM
    assert_consistent(store)


def test_parent_constructor_signature_still_works() -> None:
    store = AsyncFAISS(embedding(), faiss.IndexFlatL2(DIM), InMemoryDocstore(), {})
    store.add_texts(["a", "b"], ids=["1", "2"])
    assert [d.id for d in store.similarity_search("a", k=1)] == ["1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dimension": 0}, "dimension must be positive"),
        ({"distance_strategy": DistanceStrategy.JACCARD}, "Jaccard"),
        ({"distance_strategy": "MANHATTAN"}, "unknown distance strategy"),
    ],
)
def test_create_rejects_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AsyncFAISS.create(embedding(), **kwargs)


def test_inner_product_with_normalisation_does_not_warn() -> None:
    # pytest turns warnings into errors: FAISS's own constructor would warn here.
    store = AsyncFAISS.create(
        embedding(), distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT, normalize_L2=True
    )
    store.add_texts(["a"])
    assert store.index.metric_type == faiss.METRIC_INNER_PRODUCT


def test_from_texts_and_documents_return_async_faiss() -> None:
    store = AsyncFAISS.from_texts(
        TEXTS, embedding(), ids=[f"t{i}" for i in range(6)], embedding_model_id="m"
    )
    assert type(store) is AsyncFAISS and store.embedding_model_id == "m"
    docs = [Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)]
    from_docs = AsyncFAISS.from_documents(docs, embedding(), distance_strategy="COSINE")
    assert type(from_docs) is AsyncFAISS
    assert from_docs.distance_strategy == DistanceStrategy.COSINE
    assert from_docs.similarity_search("beta", k=1)[0].id == "d1"
    pairs = list(zip(TEXTS, embedding().embed_documents(TEXTS), strict=True))
    assert type(AsyncFAISS.from_embeddings(pairs, embedding())) is AsyncFAISS
    with pytest.raises(ConfigurationError, match="unexpected arguments"):
        AsyncFAISS.from_texts(TEXTS, embedding(), docstore=InMemoryDocstore())


async def test_async_constructors_return_async_faiss() -> None:
    store = await AsyncFAISS.afrom_texts(TEXTS, embedding(), ids=list(TEXTS))
    assert type(store) is AsyncFAISS and store.index.ntotal == 6
    docs = [Document(page_content=t) for t in TEXTS]
    assert type(await AsyncFAISS.afrom_documents(docs, embedding())) is AsyncFAISS
    pairs = list(zip(TEXTS, embedding().embed_documents(TEXTS), strict=True))
    from_pairs = await AsyncFAISS.afrom_embeddings(pairs, embedding())
    assert type(from_pairs) is AsyncFAISS and from_pairs.index.ntotal == 6


# -- upserts and deletes -------------------------------------------------------------------


def test_adding_an_existing_id_replaces_it() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    store.add_texts(["old one", "two"], [{"v": 1}, {"v": 2}], ids=["1", "2"])
    store.add_texts(["new one"], [{"v": 3}], ids=["1"])
    assert_consistent(store)
    assert store.index.ntotal == 2
    assert store.get_by_ids(["1"]) == [Document(id="1", page_content="new one", metadata={"v": 3})]
    top = store.similarity_search("new one", k=1)[0]
    assert top.id == "1" and top.page_content == "new one"
    assert "old one" not in [d.page_content for d in store.similarity_search("old one", k=5)]


async def test_async_upsert_last_duplicate_in_one_call_wins() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    ids = await store.aadd_texts(["first", "other", "second"], ids=["x", "y", "x"])
    assert ids == ["x", "y", "x"]
    assert_consistent(store)
    assert store.index.ntotal == 2
    assert [d.page_content for d in await store.aget_by_ids(["x"])] == ["second"]
    hit, score = (await store.asimilarity_search_with_score("second", k=1))[0]
    assert hit.id == "x" and score == pytest.approx(0.0, abs=1e-5)


def test_sync_upsert_last_duplicate_in_one_call_wins() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    store.add_texts(["first", "second"], ids=["x", "x"])
    assert [d.page_content for d in store.get_by_ids(["x"])] == ["second"]
    assert store.index.ntotal == 1


async def test_add_embeddings_upserts_in_both_twins() -> None:
    store = AsyncFAISS.create(embedding(), dimension=2)
    assert await store.aadd_embeddings([("a", [1.0, 0.0]), ("b", [0.0, 1.0])], ids=["a", "b"]) == [
        "a",
        "b",
    ]
    store.add_embeddings([("a2", [0.0, 1.0])], [{"v": 2}], ["a"])
    await store.aadd_embeddings([("b2", [1.0, 0.0])], [{"v": 3}], ids=["b"])
    assert_consistent(store)
    hits = await store.asimilarity_search_with_score_by_vector([1.0, 0.0], k=2)
    assert [(d.id, d.page_content, s) for d, s in hits] == [("b", "b2", 0.0), ("a", "a2", 2.0)]


def test_generated_ids_fill_the_gaps() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    docs = [Document(page_content="a", id="keep"), Document(page_content="b")]
    ids = store.add_documents(docs)
    assert ids[0] == "keep" and isinstance(ids[1], str) and ids[1]
    assert {d.id for d in store.get_by_ids(ids)} == set(ids)


def test_mismatched_lengths_and_widths_are_refused_without_change() -> None:
    store = store_with_texts()
    with pytest.raises(VectorStoreError, match="metadatas"):
        store.add_texts(["a", "b"], [{}])
    with pytest.raises(VectorStoreError, match="ids"):
        store.add_texts(["a", "b"], ids=["1"])
    with pytest.raises(VectorStoreError, match="dimensions"):
        store.add_embeddings([("wide", [0.0] * (DIM + 1))], ids=["alpha-id"])
    with pytest.raises(VectorStoreError, match="dimensions"):
        store.similarity_search_by_vector([0.0] * (DIM - 1))
    assert store.index.ntotal == 6
    assert_consistent(store)


async def test_delete_unknown_ids_is_not_an_error() -> None:
    store = store_with_texts()
    ids = list(store.index_to_docstore_id.values())
    assert store.delete(["missing"]) is True
    assert await store.adelete(["missing", ids[0], ids[0]]) is True
    assert store.delete([]) is True
    assert store.index.ntotal == 5
    assert store.get_by_ids([ids[0]]) == []
    assert_consistent(store)
    with pytest.raises(VectorStoreError, match="needs the ids"):
        store.delete(None)


def test_delete_keeps_positions_aligned_with_documents() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    store.add_texts(TEXTS, ids=list(TEXTS))
    store.delete(["beta", "delta"])
    assert_consistent(store)
    for text in ("alpha", "gamma", "epsilon", "zeta"):
        doc, score = store.similarity_search_with_score(text, k=1)[0]
        assert doc.id == text and score == pytest.approx(0.0, abs=1e-5)


def test_merge_from_upserts_the_other_store() -> None:
    store = store_with_texts()
    other = AsyncFAISS.create(embedding(), dimension=DIM)
    first_id = store.index_to_docstore_id[0]
    other.add_texts(["replacement", "extra"], ids=[first_id, "extra"])
    parent = FAISS.from_texts(["from parent"], embedding(), ids=["p"])
    store.merge_from(other)
    store.merge_from(parent)
    assert_consistent(store)
    assert store.index.ntotal == 8
    assert [d.page_content for d in store.get_by_ids([first_id, "p"])] == [
        "replacement",
        "from parent",
    ]


# -- reads ---------------------------------------------------------------------------------


async def test_get_by_ids_keeps_the_order_asked_and_skips_missing() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    store.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
    assert [d.id for d in store.get_by_ids(["3", "missing", "1", "2"])] == ["3", "1", "2"]
    assert [d.id for d in await store.aget_by_ids(["2", "1"])] == ["2", "1"]
    assert await store.aget_by_ids(["missing"]) == []


def test_returned_and_input_metadata_are_not_shared_with_the_store() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    metadata = {"tag": "original"}
    store.add_texts(["a"], [metadata], ids=["1"])
    metadata["tag"] = "changed by caller"
    store.similarity_search("a", k=1)[0].metadata["tag"] = "changed by reader"
    store.get_by_ids(["1"])[0].metadata["extra"] = True
    assert store.get_by_ids(["1"])[0].metadata == {"tag": "original"}


async def test_async_methods_await_the_embedding_model_on_the_loop() -> None:
    emb = LoopOnlyEmbedding()
    store = AsyncFAISS.create(emb, dimension=DIM)
    await store.aadd_texts(TEXTS, ids=list(TEXTS))
    await store.aadd_documents([Document(page_content="eta", id="eta")])
    assert (await store.asimilarity_search("gamma", k=1))[0].id == "gamma"
    assert (await store.asimilarity_search_with_score("gamma", k=1))[0][0].id == "gamma"
    assert (await store.asimilarity_search_with_relevance_scores("gamma", k=1))[0][1] > 0.99
    assert len(await store.amax_marginal_relevance_search("gamma", k=2)) == 2
    store2 = await AsyncFAISS.afrom_texts(["x"], emb)
    assert store2.index.ntotal == 1
    assert emb.threads == {threading.get_ident()}


class ExecutorEmbedding(Embeddings):
    """A model computed in executor threads that says so, recording where it ran."""

    embeds_in_executor = True

    def __init__(self) -> None:
        self.inner = embedding()
        self.query_threads: list[int] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.query_threads.append(threading.get_ident())
        return self.inner.embed_query(text)

    async def aembed_query(self, text: str) -> list[float]:
        raise AssertionError("a model that embeds in an executor is called in the search thread")


async def test_a_query_of_an_executor_model_is_embedded_in_the_search_thread() -> None:
    emb = ExecutorEmbedding()
    store = AsyncFAISS.create(emb, dimension=DIM)
    await store.aadd_texts(TEXTS, ids=list(TEXTS))
    assert (await store.asimilarity_search("gamma", k=1))[0].id == "gamma"
    assert (await store.asimilarity_search_with_relevance_scores("gamma", k=1))[0][1] > 0.99
    assert (await store.asearch_ids("gamma", k=1))[0][0] == "gamma"
    assert len(emb.query_threads) == 3
    assert threading.get_ident() not in emb.query_threads  # never on the loop


class LimitedExecutorEmbedding(ExecutorEmbedding):
    """A subclass adding its own async step: the parent's promise does not carry over."""

    async def aembed_query(self, text: str) -> list[float]:
        self.query_threads.append(-1)  # marks the async path
        return self.inner.embed_query(text)


def test_only_models_that_promise_it_are_embedded_in_the_search_thread() -> None:
    from langchain_rag_async.embeddings import (
        LocalMiniLMEmbeddings,
        RateLimitedEmbeddings,
        ServiceLimiter,
    )
    from langchain_rag_async.vectorstores.faiss import _embeds_in_executor

    assert _embeds_in_executor(LocalMiniLMEmbeddings())
    assert _embeds_in_executor(ExecutorEmbedding())
    assert _embeds_in_executor(embedding())  # LangChain's default aembed_query
    assert _embeds_in_executor(lambda text: [0.0] * DIM)  # a plain function
    assert not _embeds_in_executor(LimitedExecutorEmbedding())
    assert not _embeds_in_executor(LoopOnlyEmbedding())
    limited = RateLimitedEmbeddings(LocalMiniLMEmbeddings(), limiter=ServiceLimiter("local"))
    assert not _embeds_in_executor(limited)
    patched = ExecutorEmbedding()
    patched.aembed_query = LoopOnlyEmbedding().aembed_query  # type: ignore[method-assign]
    assert not _embeds_in_executor(patched)


async def test_a_subclass_that_changes_the_async_search_keeps_its_own_path() -> None:
    class Custom(AsyncFAISS):
        calls = 0

        async def asimilarity_search_with_score_by_vector(
            self,
            embedding: list[float],
            k: int = 4,
            filter: Any = None,
            fetch_k: int = 20,
            **kwargs: Any,
        ) -> list[tuple[Document, float]]:
            Custom.calls += 1
            return await super().asimilarity_search_with_score_by_vector(
                embedding, k, filter, fetch_k, **kwargs
            )

    emb = LimitedExecutorEmbedding()
    store = Custom.create(embedding(), dimension=DIM)
    await store.aadd_texts(TEXTS, ids=list(TEXTS))
    assert (await store.asimilarity_search("gamma", k=1))[0].id == "gamma"
    assert Custom.calls == 1
    store.embedding_function = emb
    assert (await store.asearch_ids("gamma", k=1))[0][0] == "gamma"
    assert emb.query_threads == [-1]


async def test_search_ids_ranks_and_scores_as_the_relevance_search() -> None:
    store = store_with_texts(distance_strategy=DistanceStrategy.COSINE)
    for query, filter_ in [("alpha", None), ("delta", None), ("beta", {"kind": "odd"})]:
        full = store.similarity_search_with_relevance_scores(query, k=4, filter=filter_)
        expected = [(str(doc.id), score) for doc, score in full]
        assert len(expected) == (4 if filter_ is None else 3)
        assert store.search_ids(query, 4, filter=filter_) == expected
        assert await store.asearch_ids(query, 4, filter=filter_) == expected
    emb = LoopOnlyEmbedding()  # a model with real async keeps awaiting it on the loop
    looped = AsyncFAISS.create(emb, dimension=DIM)
    await looped.aadd_texts(TEXTS, ids=list(TEXTS))
    assert (await looped.asearch_ids("gamma", k=2))[0][0] == "gamma"
    assert emb.threads == {threading.get_ident()}
    assert AsyncFAISS.create(embedding()).search_ids("alpha") == []  # empty store


def test_lookup_reads_without_the_lock_and_gives_copies() -> None:
    store = store_with_texts()
    ids = [str(store.index_to_docstore_id[i]) for i in range(3)]
    with store.rw_lock.write():  # a writer holds the lock: lookup does not wait for it
        found = store.lookup([ids[2], "missing", ids[0]])
    assert [doc.id if doc else None for doc in found] == [ids[2], None, ids[0]]
    assert found[0] is not None
    found[0].metadata["scores"] = {"fused": 1.0}
    assert "scores" not in store.get_by_ids([ids[2]])[0].metadata
    legacy = FAISS(embedding(), faiss.IndexFlatL2(DIM), InMemoryDocstore(), {})
    plain = AsyncFAISS(legacy.embedding_function, legacy.index, legacy.docstore, {})
    plain.add_texts(["a"], ids=["1"])
    assert [doc.page_content if doc else None for doc in plain.lookup(["1", "2"])] == ["a", None]


def test_filters_dict_operators_and_callables() -> None:
    store = store_with_texts()
    even = store.similarity_search("alpha", k=10, filter={"kind": "even"})
    assert sorted(d.metadata["n"] for d in even) == [0, 2, 4]
    big = store.similarity_search("alpha", k=10, filter={"n": {"$gte": 4}})
    assert sorted(d.metadata["n"] for d in big) == [4, 5]
    listed = store.similarity_search("alpha", k=10, filter={"n": [1, 3]})
    assert sorted(d.metadata["n"] for d in listed) == [1, 3]
    called = store.similarity_search("alpha", k=2, filter=lambda m: m["n"] > 0)
    assert len(called) == 2 and all(d.metadata["n"] > 0 for d in called)
    assert store.similarity_search("alpha", k=3, filter={"kind": "none"}) == []
    mmr = store.max_marginal_relevance_search("alpha", k=2, filter={"kind": "odd"})
    assert len(mmr) == 2 and {d.metadata["kind"] for d in mmr} == {"odd"}


async def test_async_filters_match_sync_filters() -> None:
    store = store_with_texts()
    sync = store.similarity_search_with_score("beta", k=3, filter={"kind": "odd"})
    async_ = await store.asimilarity_search_with_score("beta", k=3, filter={"kind": "odd"})
    assert sync == async_


def test_k_larger_than_the_store() -> None:
    store = store_with_texts()
    assert len(store.similarity_search("alpha", k=50)) == 6
    assert len(store.max_marginal_relevance_search("alpha", k=50, fetch_k=50)) == 6


# -- scores --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "create",
    [
        {},
        {"normalize_L2": True},
        {"distance_strategy": DistanceStrategy.COSINE},
        {"distance_strategy": DistanceStrategy.MAX_INNER_PRODUCT, "normalize_L2": True},
    ],
    ids=["euclidean", "euclidean-unit", "cosine", "inner-product-unit"],
)
async def test_relevance_is_highest_for_the_nearest_doc_and_within_unit_range(
    create: dict[str, Any],
) -> None:
    store = store_with_texts(**create)
    for query in TEXTS:
        scored = await store.asimilarity_search_with_relevance_scores(query, k=6)
        values = [score for _, score in scored]
        assert scored[0][0].page_content == query
        assert values[0] == pytest.approx(1.0, abs=1e-5)
        assert values == sorted(values, reverse=True)
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values[-1] < values[0]
    sync = store.similarity_search_with_relevance_scores("gamma", k=3)
    assert sync == await store.asimilarity_search_with_relevance_scores("gamma", k=3)


def test_raw_inner_product_relevance_stays_in_range() -> None:
    store = store_with_texts(distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    scored = store.similarity_search_with_relevance_scores("delta", k=6)
    values = [score for _, score in scored]
    assert values == sorted(values, reverse=True)
    assert all(0.0 <= v <= 1.0 for v in values)


def test_relevance_formulas_on_known_geometry() -> None:
    unit = AsyncFAISS.create(embedding(), dimension=2, normalize_L2=True)
    unit.add_embeddings([("same", [1.0, 0.0]), ("ortho", [0.0, 1.0]), ("opposite", [-1.0, 0.0])])
    scores = {d.page_content: s for d, s in unit.similarity_search_with_score_by_vector([1, 0], 3)}
    assert scores == pytest.approx({"same": 0.0, "ortho": 2.0, "opposite": 4.0})
    relevance = unit.relevance_score_fn
    assert [relevance(scores[k]) for k in ("same", "ortho", "opposite")] == [1.0, 0.5, 0.0]
    # LangChain's hook, which its relevance searches call, is overridden to give the same.
    assert unit._select_relevance_score_fn()(2.0) == relevance(2.0) == 0.5

    raw = AsyncFAISS.create(embedding(), dimension=2)
    raw.add_embeddings([("far", [3.0, 4.0])])
    [(_, squared)] = raw.similarity_search_with_score_by_vector([0.0, 0.0], k=1)
    assert squared == pytest.approx(25.0)
    assert raw.relevance_score_fn(squared) == pytest.approx(1 / 6)

    cosine = AsyncFAISS.create(embedding(), dimension=2, distance_strategy="COSINE")
    cosine.add_embeddings([("scaled", [5.0, 0.0]), ("ortho", [0.0, 2.0])])
    hits = cosine.similarity_search_with_score_by_vector([2.0, 0.0], k=2)
    assert [(d.page_content, s) for d, s in hits] == [
        ("scaled", pytest.approx(0.0, abs=1e-6)),
        ("ortho", pytest.approx(1.0)),
    ]


def test_score_threshold_uses_the_right_direction() -> None:
    store = store_with_texts()
    kept = store.similarity_search_with_relevance_scores("alpha", k=6, score_threshold=0.99)
    assert [d.page_content for d, _ in kept] == ["alpha"]
    close = store.similarity_search_with_score("alpha", k=6, score_threshold=1e-6)
    assert [d.page_content for d, _ in close] == ["alpha"]
    ip = store_with_texts(distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT, normalize_L2=True)
    high = ip.similarity_search_with_score("alpha", k=6, score_threshold=0.999)
    assert [d.page_content for d, _ in high] == ["alpha"]


# -- maximal marginal relevance ------------------------------------------------------------


async def test_mmr_prefers_diversity_over_near_duplicates() -> None:
    store = AsyncFAISS.create(embedding(), dimension=2)
    store.add_embeddings(
        [("target", [1.0, 0.0]), ("near copy", [0.99, 0.01]), ("different", [0.6, 0.8])],
        ids=["target", "copy", "different"],
    )
    plain = await store.asimilarity_search_by_vector([1.0, 0.0], k=2)
    assert [d.id for d in plain] == ["target", "copy"]
    diverse = await store.amax_marginal_relevance_search_by_vector(
        [1.0, 0.0], k=2, fetch_k=3, lambda_mult=0.3
    )
    assert [d.id for d in diverse] == ["target", "different"]
    scored = await store.amax_marginal_relevance_search_with_score_by_vector(
        [1.0, 0.0], k=2, fetch_k=3, lambda_mult=0.3
    )
    assert scored[0][1] == pytest.approx(0.0) and scored[1][1] == pytest.approx(0.8)
    sync = store.max_marginal_relevance_search_by_vector(
        [1.0, 0.0], k=2, fetch_k=3, lambda_mult=0.3
    )
    assert sync == diverse
    assert await store.amax_marginal_relevance_search_by_vector([1.0, 0.0], k=0) == []


# -- the readers-writer lock ---------------------------------------------------------------


def test_rw_lock_is_reentrant_and_refuses_upgrades() -> None:
    lock = ReadWriteLock()
    with lock.read(), lock.read():
        with pytest.raises(RuntimeError, match="cannot take the write lock"):
            lock.acquire_write()
    with lock.write(), lock.write(), lock.read():
        pass
    with pytest.raises(RuntimeError) as unheld:
        lock.release_read()
    assert isinstance(unheld.value, UsageError)
    with pytest.raises(RuntimeError) as unheld:
        lock.release_write()
    assert isinstance(unheld.value, UsageError)
    with lock.write():  # still usable: every hold above was released
        pass


def test_rw_lock_excludes_writers_from_readers_and_each_other() -> None:
    lock = ReadWriteLock()
    state = {"writers": 0, "readers": 0, "counter": 0}
    violations: list[str] = []
    start = threading.Barrier(6)
    count_guard = threading.Lock()

    def writer() -> None:
        start.wait()
        for _ in range(300):
            with lock.write():
                state["writers"] += 1
                if state["writers"] != 1 or state["readers"]:
                    violations.append("writer overlapped")
                value = state["counter"]
                time.sleep(0)  # yield the GIL inside the critical section
                state["counter"] = value + 1
                state["writers"] -= 1

    def reader() -> None:
        start.wait()
        for _ in range(300):
            with lock.read():
                with count_guard:
                    state["readers"] += 1
                time.sleep(0)
                if state["writers"]:
                    violations.append("reader saw a writer")
                with count_guard:
                    state["readers"] -= 1

    threads = [threading.Thread(target=writer) for _ in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert violations == []
    assert state["counter"] == 600


async def test_async_writers_share_one_queue_per_loop() -> None:
    store = AsyncFAISS.create(embedding(), dimension=DIM)
    await asyncio.gather(*(store.aadd_texts([f"t{i}"], ids=[f"id{i % 5}"]) for i in range(20)))
    assert len(store._writer_queues) == 1
    assert store.index.ntotal == 5
    assert_consistent(store)


def test_serialize_to_bytes_round_trips_to_async_faiss() -> None:
    store = store_with_texts()
    clone = AsyncFAISS.deserialize_from_bytes(
        store.serialize_to_bytes(), embedding(), allow_dangerous_deserialization=True
    )
    assert type(clone) is AsyncFAISS
    assert clone.similarity_search_with_score("beta", k=3) == store.similarity_search_with_score(
        "beta", k=3
    )
    clone.add_texts(["beta again"], ids=[clone.index_to_docstore_id[1]])
    assert_consistent(clone)
    assert clone.index.ntotal == 6


def test_metadata_filter_is_the_one_predicate_faiss_and_the_hybrid_share() -> None:
    keep = metadata_filter({"ch": [4, 5], "draft": None})
    assert keep({"ch": 4}) and keep({"ch": 5, "draft": None})
    assert not keep({"ch": 6}) and not keep({"ch": 4, "draft": True})
    assert metadata_filter({"ch": {"$in": [1, 2]}})({"ch": 2})  # FAISS's operators
    assert not metadata_filter({"$and": [{"ch": 1}, {"x": 2}]})({"ch": 1, "x": 3})
    assert metadata_filter(lambda metadata: metadata.get("ok") is True)({"ok": True})
