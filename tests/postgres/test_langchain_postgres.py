"""What is langchain_postgres' PGVectorStore and what is ours, over one real table.

Reads of :class:`PostgresVectorStore` go through PGVectorStore where it does the same
(checked here against our own SQL and exact numpy distances); a user's plain
``langchain_postgres.PGVectorStore`` on an index we built sees what we see, and what it
adds is found by our retriever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_postgres import PGEngine, PGVectorStore
from langchain_postgres.v2.indexes import DistanceStrategy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.postgres import PostgresDatabase, PostgresVectorStore
from langchain_rag_async.postgres._connect import sqlalchemy_url
from langchain_rag_async.postgres._langchain_pg import PG_VECTORSTORE_COLUMNS, source_filter
from langchain_rag_async.retrievers import HybridRetriever
from tests.postgres.test_engine_and_migrate import corpus

WORDS = "ownership borrow lifetime trait closure iterator struct enum match crate".split()
DOCS = [
    Document(
        id=f"c{i:02d}",
        page_content=f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} note {i}",
        metadata={"source": f"/d/{i % 4}.md", "part": i % 3},
    )
    for i in range(48)
]
QUERIES = ["ownership borrow note 7", "trait closure", "crate enum note 40", "x"]


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL ``engine`` sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def cosine_distance(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(1.0 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_only_string_filters_on_source_translate() -> None:
    assert source_filter({"source": "a.md"}) == {"source": {"$eq": "a.md"}}
    assert source_filter({"source": ["a", "b"]}) == {"source": {"$in": ["a", "b"]}}
    for ours in ({}, None, {"source": 1}, {"source": []}, {"source": None}):
        assert source_filter(ours) is None
    assert source_filter({"source": "a", "part": 1}) is None
    assert source_filter({"part": "1"}) is None


async def test_reads_through_pgvectorstore_equal_our_sql(pg_url: str) -> None:
    embedding = DeterministicFakeEmbedding(size=32)
    store = PostgresVectorStore(PostgresDatabase(pg_url), embedding)
    try:
        await store.aadd_documents(DOCS)
        vectors = {d.id: embedding.embed_query(d.page_content) for d in DOCS}
        filters: list[dict[str, Any] | None] = [
            None,
            {"source": "/d/1.md"},
            {"source": ["/d/0.md", "/d/3.md"]},
        ]
        for question in QUERIES:
            q = await embedding.aembed_query(question)
            for filter_ in filters:
                for k in (1, 5, 30):
                    with statements(store.db.engine()) as sent:
                        got = await store.asimilarity_search_with_score_by_vector(q, k, filter_)
                    assert any('cosine_distance("embedding"' in s for s in sent)  # theirs
                    if filter_:  # the source column, not the JSON
                        assert any('WHERE "source" = ' in s or "WHERE source" in s for s in sent)
                    ours = await store._anearest(q, k, filter_, with_vectors=False)
                    assert [d.id for d, _ in got] == [str(row[0]) for row in ours]
                    for (doc, distance), row in zip(got, ours, strict=True):
                        assert abs(distance - float(row[3])) < 1e-9
                        assert abs(distance - cosine_distance(q, vectors[doc.id])) < 1e-5
                        assert doc.metadata == DOCS[int(str(doc.id)[1:])].metadata
                    if filter_:
                        allowed = filter_["source"]
                        allowed = [allowed] if isinstance(allowed, str) else allowed
                        assert {d.metadata["source"] for d, _ in got} <= set(allowed)
        # Another metadata key stays our SQL (exact JSON match), not PGVectorStore's.
        with statements(store.db.engine()) as sent:
            hits = await store.asimilarity_search("trait", k=50, filter={"part": 1})
        assert not any("cosine_distance(" in s for s in sent)
        assert {d.id for d in hits} == {d.id for d in DOCS if d.metadata["part"] == 1}
        assert await store.asimilarity_search("trait", k=5, filter={"part": "1"}) == []

        with statements(store.db.engine()) as sent:
            got_ids = await store.aget_by_ids(["c05", "nope", "c01", "c05"])
        assert any('FROM "public"."rag_chunks"' in s for s in sent)  # theirs
        assert got_ids == [DOCS[5], DOCS[1]]
        await store.db.aclose()  # a new pool next: PGVectorStore's view follows it
        assert await store.aget_by_ids(["c01"]) == [DOCS[1]]
        assert len(await store.asimilarity_search("trait", k=3)) == 3
        assert (await store.apg_vectorstore()).engine is store.db.engine()
    finally:
        await store.aclose()


async def test_mmr_honours_every_filter(pg_url: str) -> None:
    embedding = DeterministicFakeEmbedding(size=32)
    store = PostgresVectorStore(PostgresDatabase(pg_url), embedding)
    try:
        await store.aadd_documents(DOCS)
        by_source = await store.amax_marginal_relevance_search(
            "trait", k=4, fetch_k=12, filter={"source": "/d/2.md"}
        )
        assert len(by_source) == 4 and {d.metadata["source"] for d in by_source} == {"/d/2.md"}
        by_part = await store.amax_marginal_relevance_search(
            "trait", k=4, fetch_k=12, filter={"part": 2}
        )
        assert len(by_part) == 4 and {d.metadata["part"] for d in by_part} == {2}
        # Our path and PGVectorStore's choose the same chunks for the same candidates.
        pg = await store.amax_marginal_relevance_search("trait", k=5, fetch_k=15, lambda_mult=0.3)
        same = await store.amax_marginal_relevance_search(
            "trait", k=5, fetch_k=15, lambda_mult=0.3, filter={"part": [0, 1, 2]}
        )
        assert [d.id for d in pg] == [d.id for d in same]
        diverse = await store.amax_marginal_relevance_search("trait", k=5, lambda_mult=0.0)
        assert len(diverse) == 5
    finally:
        await store.aclose()


async def test_a_plain_pgvectorstore_shares_an_index_we_built(pg_url: str, tmp_path: Path) -> None:
    embeddings = DeterministicFakeEmbedding(size=32)
    root = corpus(tmp_path)
    async with AsyncRAGEngine(store_url=pg_url, embeddings=embeddings) as engine:
        summary = await engine.aindex_directory(root)
        assert summary.chunks_added > 10
    pg_engine = PGEngine.from_connection_string(sqlalchemy_url(pg_url))
    ours = PostgresVectorStore(PostgresDatabase(pg_url), embeddings)
    try:
        theirs = await PGVectorStore.create(
            pg_engine,
            embeddings,
            "rag_chunks",
            id_column="id",
            content_column="content",
            embedding_column="embedding",
            metadata_json_column="metadata",
            distance_strategy=DistanceStrategy.COSINE_DISTANCE,
        )
        assert PG_VECTORSTORE_COLUMNS == {
            "id_column": "id",
            "content_column": "content",
            "embedding_column": "embedding",
            "metadata_json_column": "metadata",
        }
        for question in ("what is ownership?", "lifetime annotations", "borrowing rules"):
            mine = await ours.asimilarity_search_with_score(question, k=6)
            seen = await theirs.asimilarity_search_with_score(question, k=6)
            assert [d.id for d, _ in mine] == [d.id for d, _ in seen]
            assert all(abs(a - b) < 1e-9 for (_, a), (_, b) in zip(mine, seen, strict=True))
            assert [d for d, _ in mine] == [d for d, _ in seen]
        ids = [str(d.id) for d, _ in await ours.asimilarity_search_with_score("rust", k=10)]
        assert sorted(await theirs.aget_by_ids(ids), key=lambda d: ids.index(str(d.id))) == (
            await ours.aget_by_ids(ids)
        )

        note = Document(
            id="their-note",
            page_content="Ferris the crab is the unofficial mascot of Rustaceans",
            metadata={"source": "/elsewhere/notes.md", "author": "them"},
        )
        assert await theirs.aadd_documents([note]) == ["their-note"]
        assert await ours.aget_by_ids(["their-note"]) == [note]
        top = await ours.asimilarity_search_with_score(note.page_content, k=1)
        assert top[0][0] == note and abs(top[0][1]) < 1e-6
        hybrid = HybridRetriever.from_config(ours, config=RetrievalConfig(k=3, fetch_k=10))
        found = await hybrid.ainvoke(note.page_content)
        assert found[0].id == "their-note" and found[0].metadata["scores"]["sparse"] > 0

        # Outside our records: a re-index neither skips nor removes it; delete it by file.
        async with AsyncRAGEngine(store_url=pg_url, embeddings=embeddings) as engine:
            again = await engine.aindex_directory(root)
            assert again.files_skipped == 3 and again.chunks_deleted == 0
            hits = await engine.aquery(note.page_content, k=3)
            assert hits[0].id == "their-note"
        assert await ours.adelete_sources(["/elsewhere/notes.md"]) == 1
        assert await theirs.aget_by_ids(["their-note"]) == []
    finally:
        await ours.aclose()
        await pg_engine.close()


def test_the_sync_pgvectorstore_sees_what_the_sync_twins_wrote(pg_url: str) -> None:
    embeddings = DeterministicFakeEmbedding(size=16)
    ours = PostgresVectorStore(PostgresDatabase(pg_url), embeddings)
    pg_engine = PGEngine.from_connection_string(sqlalchemy_url(pg_url))
    try:
        ours.add_documents(DOCS[:20])
        theirs = PGVectorStore.create_sync(
            pg_engine,
            embeddings,
            "rag_chunks",
            id_column="id",
            content_column="content",
            embedding_column="embedding",
            metadata_json_column="metadata",
        )
        for question in QUERIES:
            mine = ours.similarity_search_with_score(question, k=5)
            seen = theirs.similarity_search_with_score(question, k=5)
            assert [d for d, _ in mine] == [d for d, _ in seen]
            assert all(abs(a - b) < 1e-9 for (_, a), (_, b) in zip(mine, seen, strict=True))
            # (PGVectorStore's own default fetch_k is ignored: it fetches only its k=4.)
            assert ours.max_marginal_relevance_search(question, k=3, fetch_k=12) == (
                theirs.max_marginal_relevance_search(question, k=3, fetch_k=12)
            )
    finally:
        ours.close()
        asyncio.run(pg_engine.close())


async def test_filtered_searches_go_on_scanning_hnsw_until_k_rows_pass(pg_url: str) -> None:
    # Every session of this database plans with the HNSW index (no sequential scan), as a
    # large table would: a plain HNSW scan yields its 40 nearest rows, and a filter applied
    # after it would keep only the few rare ones among them.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        conn.execute(f'ALTER DATABASE "{name[0]}" SET enable_seqscan = off')
    embedding = DeterministicFakeEmbedding(size=16)
    store = PostgresVectorStore(PostgresDatabase(pg_url), embedding)
    try:
        rare = {f"r{i}" for i in range(5)}
        docs = [
            Document(
                id=f"r{i}" if i < 5 else f"n{i}",
                page_content=f"chunk {i}",
                metadata={"source": "/rare.md", "part": "rare"}
                if i < 5
                else {"source": f"/d/{i % 4}.md", "part": "common"},
            )
            for i in range(400)
        ]
        await store.aadd_documents(docs)
        for filter_ in ({"source": "/rare.md"}, {"part": "rare"}):
            for question in ("chunk 200", "chunk 333", "something else"):
                hits = await store.asimilarity_search(question, k=5, filter=filter_)
                assert {d.id for d in hits} == rare, filter_
            mmr = await store.amax_marginal_relevance_search("chunk 7", k=5, filter=filter_)
            assert {d.id for d in mmr} == rare
    finally:
        await store.aclose()
