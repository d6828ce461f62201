from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.postgres import (
    PostgresDatabase,
    PostgresHybridRetriever,
    PostgresVectorStore,
)
from langchain_rag_async.retrievers import HybridRetriever
from langchain_rag_async.retrievers.fusion import fuse_ranked_ids
from langchain_rag_async.retrievers.hybrid_store import HybridSearchStore

DOCS = [
    Document(id=f"c{i}", page_content=t, metadata={"source": f"/d/{i % 3}.md", "chunk_index": i})
    for i, t in enumerate(
        [
            "Ownership rules: each value has an owner.",
            "Borrowing lets you refer to a value without taking ownership.",
            "Lifetimes ensure references are valid.",
            "Traits define shared behaviour.",
            "Closures capture their environment.",
            "The borrow checker enforces borrowing rules at compile time.",
        ]
    )
]


async def test_add_search_delete_by_source(pg_url: str) -> None:
    store = PostgresVectorStore(PostgresDatabase(pg_url), DeterministicFakeEmbedding(size=16))
    try:
        assert await store.aadd_documents(DOCS) == [d.id for d in DOCS]
        assert await store.acount() == 6
        got = await store.aget_by_ids(["c2", "nope", "c0"])
        assert [d.id for d in got] == ["c2", "c0"]
        assert got[0].metadata == {"source": "/d/2.md", "chunk_index": 2}
        hits = await store.asimilarity_search("Lifetimes ensure references are valid.", k=2)
        assert hits[0].id == "c2"
        filtered = await store.asimilarity_search("x", k=10, filter={"source": "/d/1.md"})
        assert {d.id for d in filtered} == {"c1", "c4"}
        assert await store.adelete_sources(["/d/1.md"]) == 2
        assert await store.acount() == 4
    finally:
        await store.aclose()


async def test_hybrid_matches_python_fusion(pg_url: str) -> None:
    store = PostgresVectorStore(PostgresDatabase(pg_url), DeterministicFakeEmbedding(size=16))
    try:
        await store.aadd_documents(DOCS)
        for fusion in ("rrf", "weighted"):
            retriever = HybridRetriever(vectorstore=store, k=4, fetch_k=6, fusion=fusion)
            docs = await retriever.ainvoke("borrowing rules")
            assert docs == await asyncio.to_thread(retriever.invoke, "borrowing rules")
            dense, sparse = await store.ahybrid_candidates("borrowing rules", fetch_k=6)
            assert sparse and {i for i, _ in sparse} <= {"c0", "c1", "c5"}
            expected = fuse_ranked_ids((dense, sparse), method=fusion, k=4)
            assert [d.id for d in docs] == [h.id for h in expected]
            for doc, hit in zip(docs, expected, strict=True):
                assert doc.metadata["scores"].keys() == {"dense", "sparse", "fused"}
                assert abs(doc.metadata["scores"]["fused"] - hit.fused) < 1e-12
                assert doc.metadata["scores"]["sparse"] == hit.scores["sparse"]
    finally:
        await store.aclose()


async def test_hybrid_retriever_takes_the_one_statement_path_over_postgres(pg_url: str) -> None:
    store = PostgresVectorStore(PostgresDatabase(pg_url), DeterministicFakeEmbedding(size=16))
    try:
        await store.aadd_documents(DOCS)
        assert PostgresHybridRetriever is HybridRetriever  # the former name
        retriever = HybridRetriever.from_config(store, config=RetrievalConfig(k=3, fetch_k=6))
        assert isinstance(store, HybridSearchStore) and retriever.sparse is None
        filtered = await retriever.ainvoke("borrowing rules", filter={"source": "/d/1.md"})
        assert filtered and {d.metadata["source"] for d in filtered} == {"/d/1.md"}
        assert all(d.metadata["scores"]["fused"] > 0 for d in filtered)
    finally:
        await store.aclose()


def test_a_store_that_cannot_search_both_sides_needs_a_sparse_index() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=4))
    with pytest.raises(ConfigurationError, match="sparse index"):
        HybridRetriever(vectorstore=store, fusion="rrf")
