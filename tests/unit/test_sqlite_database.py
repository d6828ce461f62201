"""The one SQLite layer: the same busy timeout, close, schema, errors and threads for every user."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

from langchain_rag_async._sqlite import (
    DEFAULT_BUSY_TIMEOUT,
    WORKER_THREAD_PREFIX,
    SQLiteDatabase,
)
from langchain_rag_async.aio import default_portal
from langchain_rag_async.embeddings.cache import SQLiteEmbeddingCache
from langchain_rag_async.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    RAGError,
    VectorStoreError,
)
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.sparse_index import FTS5Index

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL);"


def sqlite_workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)}


def _record_manager(path: Path) -> tuple[Any, SQLiteDatabase]:
    manager = SQLiteRecordManager("ns", db_path=path)
    return manager, manager._db


def _cache(path: Path) -> tuple[Any, SQLiteDatabase]:
    cache = SQLiteEmbeddingCache(path)
    return cache, cache._db


def _sparse(path: Path) -> tuple[Any, SQLiteDatabase]:
    index = FTS5Index(path)
    return index, index._db


USERS: dict[str, Callable[[Path], tuple[Any, SQLiteDatabase]]] = {
    "record manager": _record_manager,
    "embedding cache": _cache,
    "sparse index": _sparse,
}


async def _use(owner: Any) -> None:
    """One async read through the owner's public API (opens a connection)."""
    if isinstance(owner, SQLiteRecordManager):
        await owner.alist_keys()
    elif isinstance(owner, SQLiteEmbeddingCache):
        await owner.acount("m")
    else:
        await owner.acount()


def _sync_use(owner: Any) -> None:
    if isinstance(owner, SQLiteRecordManager):
        owner.list_keys()
    elif isinstance(owner, SQLiteEmbeddingCache):
        owner.count("m")
    else:
        owner.count()


@pytest.mark.parametrize("user", USERS)
def test_every_user_has_the_one_default_busy_timeout(tmp_path: Path, user: str) -> None:
    _, db = USERS[user](tmp_path / "x.sqlite")
    assert db.busy_timeout == DEFAULT_BUSY_TIMEOUT == 30.0


@pytest.mark.parametrize("user", USERS)
async def test_close_is_final_for_every_user(tmp_path: Path, user: str) -> None:
    before = sqlite_workers()
    owner, _ = USERS[user](tmp_path / "x.sqlite")
    await _use(owner)
    [worker] = sqlite_workers() - before
    assert worker.name == f"{WORKER_THREAD_PREFIX}x.sqlite" and worker.daemon

    await owner.aclose()
    assert not worker.is_alive()  # aclose waited for the worker thread to end
    with pytest.raises(VectorStoreError, match="is closed"):
        await _use(owner)
    with pytest.raises(VectorStoreError, match="is closed"):
        await asyncio.to_thread(_sync_use, owner)
    await owner.aclose()  # idempotent
    await asyncio.to_thread(owner.close)


@pytest.mark.parametrize("user", USERS)
def test_sync_close_ends_the_connections_of_every_loop(tmp_path: Path, user: str) -> None:
    before = sqlite_workers()
    owner, _ = USERS[user](tmp_path / "x.sqlite")
    asyncio.run(_use(owner))
    asyncio.run(_use(owner))  # a second loop: the first loop's connection is closed now
    assert len(sqlite_workers() - before) == 1
    _sync_use(owner)
    owner.close()
    assert sqlite_workers() == before  # joined, not merely asked to stop
    with pytest.raises(VectorStoreError, match="is closed"):
        _sync_use(owner)


@pytest.mark.parametrize("user", USERS)
async def test_a_corrupt_file_is_index_corrupted_naming_it(tmp_path: Path, user: str) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"not a database at all " * 200)
    owner, _ = USERS[user](path)
    try:
        with pytest.raises(IndexCorruptedError, match="broken.sqlite") as info:
            await _use(owner)
        assert info.value.path == str(path)
        with pytest.raises(IndexCorruptedError, match="broken.sqlite"):
            await asyncio.to_thread(_sync_use, owner)
    finally:
        await owner.aclose()


async def test_a_newer_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "sparse.sqlite"
    async with FTS5Index(path) as index:
        await index.aupsert([Document(id="a", page_content="heron")])
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    async with FTS5Index(path) as index:
        with pytest.raises(VectorStoreError, match="schema version 99, newer than"):
            await index.acount()


async def test_the_schema_version_is_recorded_and_the_schema_runs_once(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "v.sqlite", schema=SCHEMA, schema_version=3)
    try:
        assert await db.afetchall("PRAGMA user_version") == [(3,)]
        async with db.atransaction() as conn:
            await conn.execute("DROP TABLE t")  # not re-created: version 3 is up to date
    finally:
        await db.aclose()
    again = SQLiteDatabase(tmp_path / "v.sqlite", schema=SCHEMA, schema_version=3)
    try:
        assert await again.afetchall("SELECT name FROM sqlite_master WHERE name = 't'") == []
    finally:
        await again.aclose()


async def test_synchronous_level_is_applied_on_both_twins(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "s.sqlite", schema=SCHEMA, synchronous="NORMAL")
    try:
        assert await db.afetchall("PRAGMA synchronous") == [(1,)]
        assert await asyncio.to_thread(db.fetchall, "PRAGMA synchronous") == [(1,)]
        assert await db.afetchall("PRAGMA journal_mode") == [("wal",)]
    finally:
        await db.aclose()


def test_bad_settings_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        SQLiteDatabase(tmp_path / "x", schema=SCHEMA, synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="negative"):
        SQLiteDatabase(tmp_path / "x", schema=SCHEMA, busy_timeout=-1)


async def test_in_memory_data_is_shared_by_both_twins_until_close() -> None:
    db = SQLiteDatabase(None, schema=SCHEMA)
    async with db.atransaction() as conn:
        await conn.execute("INSERT INTO t VALUES (1)")

    def sync_write() -> None:  # the sync twin writes to the same database
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (2)")

    await asyncio.to_thread(sync_write)
    assert await db.afetchall("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    assert str(db) == "the in-memory SQLite database"
    await db.aclose()
    other = SQLiteDatabase(":memory:", schema=SCHEMA)  # a new database, not the same one
    try:
        assert await other.afetchall("SELECT count(*) FROM t") == [(0,)]
    finally:
        await other.aclose()


async def test_a_failed_write_names_the_action_and_rolls_back(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "w.sqlite", schema=SCHEMA, label="test database")
    try:
        with pytest.raises(VectorStoreError) as info:
            async with db.atransaction("writing 2 rows") as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                await conn.execute("INSERT INTO t VALUES (NULL)")
        message = str(info.value)
        assert "the test database at" in message and "w.sqlite" in message
        assert "while writing 2 rows" in message and "rolled back" in message
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert await db.afetchall("SELECT count(*) FROM t") == [(0,)]
    finally:
        await db.aclose()


async def test_a_writer_kept_waiting_gets_index_locked(tmp_path: Path) -> None:
    path = tmp_path / "sparse.sqlite"
    async with FTS5Index(path, busy_timeout=0.05) as index:
        await index.aupsert([Document(id="a", page_content="heron")])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        try:
            with pytest.raises(IndexLockedError, match="nothing was written") as info:
                await index.aupsert([Document(id="b", page_content="egret")])
            assert isinstance(info.value, RAGError)
            assert "writing 1 upsert(s) and 0 delete(s)" in str(info.value)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await index.aids() == {"a"}


SCHEMA_T = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"


def test_read_only_reads_both_ways_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "data.sqlite"
    writer = SQLiteDatabase(path, schema=SCHEMA_T)
    with writer.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (7)")
    writer.close()
    reader = SQLiteDatabase(path, schema=SCHEMA_T, read_only=True)
    try:
        assert [tuple(r) for r in default_portal().call(reader.afetchall("SELECT x FROM t"))] == [
            (7,)
        ]
        assert [tuple(r) for r in reader.fetchall("SELECT x FROM t")] == [(7,)]
        with pytest.raises(RAGError), reader.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (8)")
    finally:
        default_portal().call(reader.aclose())
        reader.close()


def test_read_only_on_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    reader = SQLiteDatabase(tmp_path / "absent.sqlite", schema=SCHEMA_T, read_only=True)
    with pytest.raises(VectorStoreError, match="read-only"):
        reader.fetchall("SELECT 1")
    reader.close()
    assert not (tmp_path / "absent.sqlite").exists()
