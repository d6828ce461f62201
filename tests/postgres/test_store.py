from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.postgres import (
    PostgresDatabase,
    PostgresHybridRetriever,
    PostgresVectorStore,
)
from langchain_rag_async.retrievers.fusion import fuse_ranked_ids

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
            retriever = PostgresHybridRetriever(vectorstore=store, k=4, fetch_k=6, fusion=fusion)
            docs = await retriever.ainvoke("borrowing rules")
            dense, sparse = await retriever.acandidates("borrowing rules", k=6)
            assert sparse and {i for i, _ in sparse} <= {"c0", "c1", "c5"}
            expected = fuse_ranked_ids((dense, sparse), method=fusion, k=4)
            assert [d.id for d in docs] == [h.id for h in expected]
            for doc, hit in zip(docs, expected, strict=True):
                assert doc.metadata["scores"].keys() == {"dense", "sparse", "fused"}
                assert abs(doc.metadata["scores"]["fused"] - hit.fused) < 1e-12
                assert doc.metadata["scores"]["sparse"] == hit.scores["sparse"]
    finally:
        await store.aclose()
