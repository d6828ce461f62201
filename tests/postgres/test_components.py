"""Record manager, embedding cache and run lock in PostgreSQL: the SQLite ones' behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import aindex

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.embeddings.cache import CachedEmbeddings
from langchain_rag_async.errors import ConfigurationError, IndexLockedError, VectorStoreError
from langchain_rag_async.indexing.record_manager import FileRecord
from langchain_rag_async.postgres import PostgresDatabase, PostgresVectorStore, TableNames
from langchain_rag_async.postgres.cache import PostgresEmbeddingCache
from langchain_rag_async.postgres.lock import run_lock, run_lock_if_free
from langchain_rag_async.postgres.record_manager import PostgresRecordManager
from langchain_rag_async.postgres.writer import PostgresIndexWriter


async def test_record_manager_keys_files_and_time(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    rm = PostgresRecordManager("ns", db=db)
    try:
        await rm.acreate_schema()
        t0 = await rm.aget_time()
        await rm.aupdate(["a", "b", "c"], group_ids=["x", "x", None], time_at_least=t0)
        assert await rm.aexists(["a", "z", "c"]) == [True, False, True]
        assert await rm.alist_keys(group_ids=["x"]) == ["a", "b"]
        assert await rm.alist_keys(after=t0) == ["a", "b", "c"]
        assert await rm.alist_keys(before=t0) == []
        with pytest.raises(ConfigurationError):
            await rm.aupdate(["a"], group_ids=["x", "y"])
        other = PostgresRecordManager("other", db=db)
        assert await other.alist_keys() == []
        record = FileRecord(path="/d/a.md", size=3, mtime=1.5, content_hash="h", status="indexed")
        await rm.acommit_file_batch(
            files=[record], keys=["d"], group_ids=["/d/a.md"], delete_keys=["a", "b"]
        )
        assert sorted(await rm.alist_keys()) == ["c", "d"]
        files = await rm.aget_files()
        assert files["/d/a.md"].size == 3 and files["/d/a.md"].updated_at >= t0
        await rm.adelete_files(["/d/a.md"])
        assert await rm.aget_files() == {}
    finally:
        await db.aclose()


async def test_langchain_aindex_with_postgres_records_and_store(pg_url: str) -> None:
    """LangChain's own incremental indexing works over the pair."""
    from langchain_core.documents import Document

    db = PostgresDatabase(pg_url)
    store = PostgresVectorStore(db, DeterministicFakeEmbedding(size=8))
    rm = PostgresRecordManager("lc", db=db)
    await rm.acreate_schema()
    docs = [Document(page_content=f"t{i}", metadata={"source": "s.md"}) for i in range(3)]
    try:
        kw: dict[str, Any] = {"cleanup": "incremental", "source_id_key": "source"}
        kw["key_encoder"] = "sha256"
        first = await aindex(docs, rm, store, **kw)
        again = await aindex(docs, rm, store, **kw)
        fewer = await aindex(docs[:1], rm, store, **kw)
        assert first["num_added"] == 3 and again["num_skipped"] == 3
        assert fewer["num_deleted"] == 2 and await store.acount() == 1
    finally:
        await db.aclose()


async def test_embedding_cache_round_trip_and_wrapper(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    cache = PostgresEmbeddingCache(db)
    try:
        await cache.aput_many("m", [("h1", [0.5, 1.0]), ("h2", [2.0, 3.0])])
        assert await cache.aget_many("m", ["h2", "nope", "h1"]) == [[2.0, 3.0], None, [0.5, 1.0]]
        assert await cache.acount("m") == 2 and await cache.acount("other") == 0
        wrapped = CachedEmbeddings(DeterministicFakeEmbedding(size=4), cache, model_id="fake")
        first = await wrapped.aembed_documents(["x", "y", "x"])
        second = await wrapped.aembed_documents(["y", "x"])
        assert second == [first[1], first[0]] and wrapped.misses == 2
    finally:
        await db.aclose()


async def test_run_lock_excludes_a_second_holder(pg_url: str) -> None:
    db, names = PostgresDatabase(pg_url), TableNames()
    try:
        async with run_lock(db, names):
            async with run_lock_if_free(db, names) as free:
                assert not free
            with pytest.raises(IndexLockedError):
                async with run_lock(db, names, timeout=0.2):
                    pass
        async with run_lock_if_free(db, names) as free:
            assert free
        order: list[str] = []

        async def hold(name: str) -> None:
            async with run_lock(db, names):
                order.append(f"{name}+")
                await asyncio.sleep(0.05)
                order.append(f"{name}-")

        await asyncio.gather(hold("a"), hold("b"))
        assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    finally:
        await db.aclose()


async def test_writer_commits_chunks_with_records_or_not_at_all(pg_url: str) -> None:
    db, names = PostgresDatabase(pg_url), TableNames()
    store = PostgresVectorStore(db, DeterministicFakeEmbedding(size=4), names=names)
    record = FileRecord(path="/a.md", size=1, mtime=1.0, content_hash="h", status="indexed")
    try:
        async with PostgresIndexWriter(db, names) as writer:
            rm = PostgresRecordManager("ns", db=db, names=names, writer=writer)
            await rm.acreate_schema()
            await writer.aadd_embeddings([("one", [1.0, 0, 0, 0])], [{"source": "/a.md"}], ["c1"])
            assert [d.id for d in await writer.aget_by_ids(["c1"])] == ["c1"]
            assert await store.aget_by_ids(["c1"]) == []  # not committed: invisible to others
            await rm.acommit_file_batch(files=[record], keys=["c1"], group_ids=["/a.md"])
            assert [d.id for d in await store.aget_by_ids(["c1"])] == ["c1"]
            await writer.aadd_embeddings([("two", [0, 1.0, 0, 0])], [{"source": "/a.md"}], ["c2"])
            # the block ends without a checkpoint (a crash): c2 and its records vanish together
        assert [d.id for d in await store.aget_by_ids(["c1", "c2"])] == ["c1"]
        assert await PostgresRecordManager("ns", db=db, names=names).alist_keys() == ["c1"]
    finally:
        await db.aclose()


def test_store_url_is_checked_and_read_from_the_environment() -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        RAGConfig(store_url="mysql://u@h/db")
    config = RAGConfig.from_env({"RAG_STORE_URL": "postgresql://u:secret@h/db"})
    assert config.store_url == "postgresql://u:secret@h/db" and "secret" not in repr(config)
    assert RAGConfig.from_env({}).store_url is None


async def test_an_unreachable_database_is_a_clear_error(tmp_path: Any) -> None:
    url = "postgresql://nobody:secret@127.0.0.1:9/none?connect_timeout=2"
    async with AsyncRAGEngine(store_url=url, embeddings=DeterministicFakeEmbedding(size=4)) as e:
        with pytest.raises(VectorStoreError, match="cannot connect to PostgreSQL") as caught:
            await e.aquery("anything")
    assert "secret" not in str(caught.value)
