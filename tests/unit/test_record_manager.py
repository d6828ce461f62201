"""Tests of SQLiteRecordManager: RecordManager contract, file table, indexing API, loops."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import IndexingResult, aindex, index
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_rag_async._sqlite import WORKER_THREAD_PREFIX
from langchain_rag_async.errors import (
    ClockSkewError,
    ConfigurationError,
    IndexCorruptedError,
    VectorStoreError,
)
from langchain_rag_async.indexing import record_manager as rm_module
from langchain_rag_async.indexing.record_manager import (
    FileRecord,
    SQLiteRecordManager,
    file_is_unchanged,
)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "records.sqlite"


@pytest.fixture
async def arm(db_file: Path) -> AsyncIterator[SQLiteRecordManager]:
    manager = SQLiteRecordManager("test", db_path=db_file)
    await manager.acreate_schema()
    yield manager
    await manager.aclose()


@pytest.fixture
def srm(db_file: Path) -> Iterator[SQLiteRecordManager]:
    manager = SQLiteRecordManager("test", db_path=db_file)
    manager.create_schema()
    yield manager
    manager.close()


def _file(path: str, **changes: object) -> FileRecord:
    fields: dict[str, object] = {
        "path": path,
        "size": 10,
        "mtime": 1.5,
        "content_hash": "ab" * 32,
        "status": "indexed",
        "chunk_count": 2,
    }
    fields.update(changes)
    return FileRecord(**fields)  # type: ignore[arg-type]


# -- RecordManager contract, async ---------------------------------------------------------


async def test_aupdate_then_aexists(arm: SQLiteRecordManager) -> None:
    await arm.aupdate(["a", "b"], group_ids=["g1", None])
    assert await arm.aexists(["a", "b", "c"]) == [True, True, False]
    assert await arm.aexists([]) == []


async def test_aupdate_upserts_group_and_time(arm: SQLiteRecordManager) -> None:
    await arm.aupdate(["a"], group_ids=["old"])
    between = await arm.aget_time()
    await arm.aupdate(["a"], group_ids=["new"])
    assert await arm.alist_keys(group_ids=["old"]) == []
    assert await arm.alist_keys(group_ids=["new"]) == ["a"]
    assert await arm.alist_keys(after=between) == ["a"]


async def test_aupdate_rejects_mismatched_group_ids(arm: SQLiteRecordManager) -> None:
    with pytest.raises(ConfigurationError, match="does not match"):  # also a ValueError
        await arm.aupdate(["a", "b"], group_ids=["g1"])
    assert await arm.aexists(["a", "b"]) == [False, False]


async def test_aupdate_time_at_least_in_future_raises(arm: SQLiteRecordManager) -> None:
    future = await arm.aget_time() + 3600
    with pytest.raises(ClockSkewError, match="Time sync issue"):
        await arm.aupdate(["a"], time_at_least=future)
    assert await arm.aexists(["a"]) == [False]
    await arm.aupdate(["a"], time_at_least=await arm.aget_time())
    assert await arm.aexists(["a"]) == [True]


async def test_aget_time_never_decreases(arm: SQLiteRecordManager) -> None:
    times = [await arm.aget_time() for _ in range(200)]
    assert times == sorted(times)
    assert times[-1] > times[0]


async def test_update_time_is_after_aget_time(arm: SQLiteRecordManager) -> None:
    start = await arm.aget_time()
    await arm.aupdate(["a"])
    assert await arm.alist_keys(before=start) == []
    assert await arm.alist_keys(after=start) == ["a"]


async def test_alist_keys_filters(arm: SQLiteRecordManager) -> None:
    await arm.aupdate(["a1", "a2"], group_ids=["A", "A"])
    t1 = await arm.aget_time()
    await arm.aupdate(["b1"], group_ids=["B"])
    t2 = await arm.aget_time()
    await arm.aupdate(["c1", "n1"], group_ids=["C", None])

    assert sorted(await arm.alist_keys()) == ["a1", "a2", "b1", "c1", "n1"]
    assert sorted(await arm.alist_keys(before=t1)) == ["a1", "a2"]
    assert await arm.alist_keys(after=t1, before=t2) == ["b1"]
    assert sorted(await arm.alist_keys(after=t2)) == ["c1", "n1"]
    assert sorted(await arm.alist_keys(group_ids=["A", "C"])) == ["a1", "a2", "c1"]
    assert await arm.alist_keys(group_ids=["A"], after=t1) == []
    assert len(await arm.alist_keys(limit=2)) == 2
    assert await arm.alist_keys(group_ids=["missing"]) == []


async def test_adelete_keys(arm: SQLiteRecordManager) -> None:
    await arm.aupdate(["a", "b", "c"])
    await arm.adelete_keys(["a", "c", "unknown"])
    assert await arm.aexists(["a", "b", "c"]) == [False, True, False]
    await arm.adelete_keys([])
    assert await arm.alist_keys() == ["b"]


async def test_many_keys_beyond_sqlite_variable_limit(arm: SQLiteRecordManager) -> None:
    keys = [f"k{i}" for i in range(40_000)]
    await arm.aupdate(keys, group_ids=["g"] * len(keys))
    assert all(await arm.aexists(keys))
    assert len(await arm.alist_keys(group_ids=["g"])) == len(keys)
    await arm.adelete_keys(keys)
    assert await arm.alist_keys() == []


async def test_namespaces_are_isolated(db_file: Path) -> None:
    async with (
        SQLiteRecordManager("one", db_path=db_file) as one,
        SQLiteRecordManager("two", db_path=db_file) as two,
    ):
        await one.aupdate(["shared", "only-one"], group_ids=["g", "g"])
        await two.aupdate(["shared"], group_ids=["g"])
        await one.aupsert_files([_file("/a")])

        assert await two.aexists(["shared", "only-one"]) == [True, False]
        assert await two.alist_keys(group_ids=["g"]) == ["shared"]
        assert await two.aget_files() == {}
        await two.adelete_keys(["shared", "only-one"])
        assert sorted(await one.alist_keys()) == ["only-one", "shared"]
        await two.adelete_files(["/a"])
        assert list(await one.aget_files()) == ["/a"]


async def test_persists_across_reopen(db_file: Path) -> None:
    async with SQLiteRecordManager("ns", db_path=db_file) as first:
        await first.aupdate(["a"], group_ids=["src"])
        await first.aupsert_files([_file("/src")])
    async with SQLiteRecordManager("ns", db_path=db_file) as second:
        assert await second.alist_keys(group_ids=["src"]) == ["a"]
        assert (await second.aget_files())["/src"].chunk_count == 2


async def test_clock_starts_above_stored_times_when_wall_clock_went_back(
    db_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteRecordManager("ns", db_path=db_file) as first:
        await first.aupdate(["old"])
    monkeypatch.setattr(rm_module, "_CLOCK", rm_module._MonotonicClock())
    # the wall clock is now years behind the stored timestamps
    monkeypatch.setattr(rm_module._CLOCK, "_offset_ns", 1000 * 10**9 - time.monotonic_ns())
    async with SQLiteRecordManager("ns", db_path=db_file) as second:
        start = await second.aget_time()
        assert start > 1000.0
        assert await second.alist_keys(before=start) == ["old"]
        await second.aupdate(["new"])
        assert await second.alist_keys(after=start) == ["new"]


async def test_memory_database_is_shared_by_sync_and_async_calls() -> None:
    manager = SQLiteRecordManager("ns", db_path=":memory:")
    try:
        await manager.aupdate(["a"])
        assert await asyncio.to_thread(manager.exists, ["a"]) == [True]
        await asyncio.to_thread(manager.update, ["b"])
        assert sorted(await manager.alist_keys()) == ["a", "b"]
    finally:
        await manager.aclose()


async def test_two_memory_managers_do_not_share_data() -> None:
    async with (
        SQLiteRecordManager("ns", db_path=":memory:") as one,
        SQLiteRecordManager("ns", db_path=":memory:") as two,
    ):
        await one.aupdate(["a"])
        assert await two.aexists(["a"]) == [False]


async def test_corrupted_database_raises_index_corrupted(tmp_path: Path) -> None:
    bad = tmp_path / "records.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    async with SQLiteRecordManager("ns", db_path=bad) as manager:
        with pytest.raises(IndexCorruptedError, match="records.sqlite"):
            await manager.aexists(["a"])


# -- RecordManager contract, sync ----------------------------------------------------------


def test_sync_update_exists_list_delete(srm: SQLiteRecordManager) -> None:
    srm.update(["a", "b"], group_ids=["A", "B"])
    t1 = srm.get_time()
    srm.update(["c"], group_ids=["A"])
    assert srm.exists(["a", "c", "x"]) == [True, True, False]
    assert sorted(srm.list_keys(group_ids=["A"])) == ["a", "c"]
    assert sorted(srm.list_keys(before=t1)) == ["a", "b"]
    assert srm.list_keys(after=t1) == ["c"]
    assert len(srm.list_keys(limit=1)) == 1
    srm.delete_keys(["a"])
    assert srm.exists(["a"]) == [False]


def test_sync_update_errors(srm: SQLiteRecordManager) -> None:
    with pytest.raises(ValueError, match="does not match"):
        srm.update(["a"], group_ids=["g", "h"])
    with pytest.raises(ClockSkewError, match="Time sync issue"):
        srm.update(["a"], time_at_least=srm.get_time() + 3600)
    assert srm.exists(["a"]) == [False]


def test_sync_and_async_see_the_same_file(db_file: Path) -> None:
    manager = SQLiteRecordManager("ns", db_path=db_file)
    try:
        manager.update(["sync"], group_ids=["g"])
        asyncio.run(manager.aupdate(["async"], group_ids=["g"]))
        assert sorted(manager.list_keys(group_ids=["g"])) == ["async", "sync"]
        assert sorted(asyncio.run(manager.alist_keys())) == ["async", "sync"]
    finally:
        manager.close()


def sqlite_workers() -> set[threading.Thread]:
    """Our aiosqlite worker threads (named); other threads of the process do not count."""
    return {t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)}


def test_used_from_two_event_loops_sequentially(db_file: Path) -> None:
    workers_before = sqlite_workers()
    manager = SQLiteRecordManager("ns", db_path=db_file)
    asyncio.run(manager.aupdate(["first"]))
    asyncio.run(manager.aupdate(["second"]))

    async def read_and_close() -> list[str]:
        try:
            return await manager.alist_keys()
        finally:
            await manager.aclose()

    assert sorted(asyncio.run(read_and_close())) == ["first", "second"]
    assert sqlite_workers() == workers_before  # no connection thread left behind


def test_sync_close_stops_async_connections(db_file: Path) -> None:
    """Counts our named worker threads only, and close() joins them: no race with others."""
    workers_before = sqlite_workers()
    manager = SQLiteRecordManager("ns", db_path=db_file)
    asyncio.run(manager.aupdate(["a"]))
    [worker] = sqlite_workers() - workers_before
    assert worker.name == "rag-sqlite:records.sqlite"
    manager.close()
    assert not worker.is_alive()
    assert sqlite_workers() == workers_before
    with pytest.raises(VectorStoreError, match="closed"):  # closing is final
        manager.exists(["a"])
    manager.close()
    reopened = SQLiteRecordManager("ns", db_path=db_file)
    assert reopened.exists(["a"]) == [True]
    reopened.close()


# -- concurrency -----------------------------------------------------------------------------


async def test_concurrent_aupdates_are_serialised(arm: SQLiteRecordManager) -> None:
    async def writer(i: int) -> None:
        await arm.aupdate([f"k{i}-{j}" for j in range(20)], group_ids=[f"g{i}"] * 20)
        await arm.acommit_file_batch(
            files=[_file(f"/f{i}")], keys=[f"f{i}"], group_ids=[f"/f{i}"], delete_keys=[]
        )

    async with asyncio.TaskGroup() as tg:
        for i in range(50):
            tg.create_task(writer(i))
    assert len(await arm.alist_keys()) == 50 * 21
    assert len(await arm.aget_files()) == 50


async def test_sync_writer_in_thread_and_async_writers_share_the_file(
    arm: SQLiteRecordManager, db_file: Path
) -> None:
    other = SQLiteRecordManager("test", db_path=db_file)

    def sync_writes() -> None:
        for i in range(30):
            other.update([f"s{i}"])

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(asyncio.to_thread(sync_writes))
            for i in range(30):
                tg.create_task(arm.aupdate([f"a{i}"]))
    finally:
        await asyncio.to_thread(other.close)
    assert len(await arm.alist_keys()) == 60


# -- file table ---------------------------------------------------------------------------


def test_file_record_rejects_unknown_status() -> None:
    with pytest.raises(ConfigurationError, match="status"):  # also a ValueError
        _file("/a", status="pending")


@pytest.mark.parametrize(
    ("record", "size", "mtime", "expected"),
    [
        (None, 10, 1.5, False),
        (_file("/a"), 10, 1.5, True),
        (_file("/a"), 11, 1.5, False),
        (_file("/a"), 10, 1.6, False),
        (_file("/a", status="failed", error="boom"), 10, 1.5, False),
    ],
)
def test_file_is_unchanged(
    record: FileRecord | None, size: int, mtime: float, expected: bool
) -> None:
    assert file_is_unchanged(record, size, mtime) is expected


async def test_file_table_round_trip(arm: SQLiteRecordManager) -> None:
    failed = _file("/b", status="failed", error="binary file", chunk_count=0)
    await arm.aupsert_files([_file("/a"), failed])
    files = await arm.aget_files()
    assert set(files) == {"/a", "/b"}
    assert files["/b"].error == "binary file"
    assert files["/a"].mtime == 1.5
    assert files["/a"].updated_at > 0

    await arm.aupsert_files([_file("/a", size=99)])
    assert (await arm.aget_files())["/a"].size == 99
    await arm.adelete_files(["/a", "/unknown"])
    assert list(await arm.aget_files()) == ["/b"]


async def test_acommit_file_batch_applies_everything(arm: SQLiteRecordManager) -> None:
    await arm.aupdate(["stale", "kept"], group_ids=["/a", "/a"])
    start = await arm.aget_time()
    await arm.acommit_file_batch(
        files=[_file("/a", chunk_count=2)],
        keys=["kept", "new"],
        group_ids=["/a", "/a"],
        delete_keys=["stale"],
    )
    assert sorted(await arm.alist_keys(group_ids=["/a"])) == ["kept", "new"]
    assert sorted(await arm.alist_keys(after=start)) == ["kept", "new"]
    assert (await arm.aget_files())["/a"].updated_at > start


async def test_acommit_file_batch_is_atomic(arm: SQLiteRecordManager) -> None:
    await arm.acommit_file_batch(files=[_file("/a")], keys=["old"], group_ids=["/a"])
    bad = _file("/b", content_hash=None)  # violates NOT NULL in the last statement
    with pytest.raises(VectorStoreError, match="NOT NULL"):
        await arm.acommit_file_batch(
            files=[_file("/a", size=1), bad],
            keys=["new"],
            group_ids=["/b"],
            delete_keys=["old"],
        )
    assert await arm.alist_keys() == ["old"]
    files = await arm.aget_files()
    assert list(files) == ["/a"]
    assert files["/a"].size == 10
    await arm.aupdate(["after"])  # the connection is usable after the rollback
    assert sorted(await arm.alist_keys()) == ["after", "old"]


@pytest.mark.parametrize("cancel_after", range(10))
async def test_cancelled_commit_is_all_or_nothing(
    arm: SQLiteRecordManager, cancel_after: int
) -> None:
    # Cancel at varying points of the transaction; whatever the point, the outcome
    # must be all or nothing, and the connection must stay usable.
    await arm.aget_time()
    keys = [f"k{i}" for i in range(2000)]
    task = asyncio.create_task(
        arm.acommit_file_batch(files=[_file("/a")], keys=keys, group_ids=["/a"] * len(keys))
    )
    await asyncio.sleep(cancel_after * 0.0003)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stored = len(await arm.alist_keys())
    files = await arm.aget_files()
    assert (stored, len(files)) in {(0, 0), (len(keys), 1)}
    await arm.aupdate(["after"])  # the connection is not stuck in a transaction
    assert await arm.aexists(["after"]) == [True]


async def test_acommit_file_batch_rejects_mismatched_group_ids(arm: SQLiteRecordManager) -> None:
    with pytest.raises(ValueError, match="does not match"):
        await arm.acommit_file_batch(files=[_file("/a")], keys=["k"], group_ids=[])
    assert await arm.aget_files() == {}


def test_sync_file_table_and_atomic_commit(srm: SQLiteRecordManager) -> None:
    srm.upsert_files([_file("/a")])
    srm.commit_file_batch(files=[_file("/b")], keys=["k"], group_ids=["/b"], delete_keys=[])
    assert set(srm.get_files()) == {"/a", "/b"}
    with pytest.raises(VectorStoreError):
        srm.commit_file_batch(
            files=[_file("/c", content_hash=None)], keys=["x"], group_ids=["/c"], delete_keys=["k"]
        )
    assert srm.exists(["k", "x"]) == [True, False]
    srm.delete_files(["/a"])
    assert set(srm.get_files()) == {"/b"}


def test_crash_after_commit_leaves_a_consistent_file(db_file: Path) -> None:
    manager = SQLiteRecordManager("ns", db_path=db_file)
    asyncio.run(manager.acommit_file_batch(files=[_file("/a")], keys=["k"], group_ids=["/a"]))
    # A second, independent connection (another process after a crash) sees the commit.
    with sqlite3.connect(db_file) as raw:
        keys = raw.execute("SELECT key FROM record_manager_keys").fetchall()
        paths = raw.execute("SELECT path FROM record_manager_files").fetchall()
    raw.close()
    manager.close()
    assert keys == [("k",)]
    assert paths == [("/a",)]


# -- langchain_core.indexing ------------------------------------------------------------

Cleanup = Literal["incremental", "full", "scoped_full"]


def _docs(**contents: str) -> list[Document]:
    return [
        Document(page_content=text, metadata={"source": name.split("_")[0]})
        for name, text in contents.items()
    ]


async def _aindex(
    docs: list[Document], rm: SQLiteRecordManager, store: InMemoryVectorStore, cleanup: Cleanup
) -> IndexingResult:
    return await aindex(
        docs, rm, store, cleanup=cleanup, source_id_key="source", key_encoder="sha256"
    )


def _index(
    docs: list[Document], rm: SQLiteRecordManager, store: InMemoryVectorStore, cleanup: Cleanup
) -> IndexingResult:
    return index(docs, rm, store, cleanup=cleanup, source_id_key="source", key_encoder="sha256")


def _counts(added: int = 0, skipped: int = 0, deleted: int = 0) -> IndexingResult:
    return IndexingResult(num_added=added, num_updated=0, num_skipped=skipped, num_deleted=deleted)


@pytest.fixture
def store() -> InMemoryVectorStore:
    return InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=8))


async def test_aindex_incremental(arm: SQLiteRecordManager, store: InMemoryVectorStore) -> None:
    docs = _docs(a_1="alpha one", a_2="alpha two", b_1="beta one")
    assert await _aindex(docs, arm, store, "incremental") == _counts(added=3)
    assert await _aindex(docs, arm, store, "incremental") == _counts(skipped=3)

    changed = _docs(a_1="alpha one", a_2="alpha TWO")
    assert await _aindex(changed, arm, store, "incremental") == _counts(1, 1, 1)
    assert sorted(store.store) == sorted(await arm.alist_keys())
    assert len(store.store) == 3  # b is untouched by incremental cleanup


async def test_aindex_full_removes_missing_docs(
    arm: SQLiteRecordManager, store: InMemoryVectorStore
) -> None:
    docs = _docs(a_1="alpha", b_1="beta", c_1="gamma")
    assert await _aindex(docs, arm, store, "full") == _counts(added=3)
    assert await _aindex(docs[:2], arm, store, "full") == _counts(skipped=2, deleted=1)
    assert sorted(store.store) == sorted(await arm.alist_keys())
    assert len(store.store) == 2


async def test_aindex_scoped_full(arm: SQLiteRecordManager, store: InMemoryVectorStore) -> None:
    await _aindex(_docs(a_1="a1", a_2="a2", b_1="b1"), arm, store, "scoped_full")
    assert await _aindex(_docs(a_1="a1"), arm, store, "scoped_full") == _counts(
        skipped=1, deleted=1
    )
    assert len(store.store) == 2  # b's doc survives: its source was not in this run


async def test_aindex_survives_reopening_the_manager(
    db_file: Path, store: InMemoryVectorStore
) -> None:
    docs = _docs(a_1="alpha", b_1="beta")
    async with SQLiteRecordManager("ns", db_path=db_file) as first:
        await _aindex(docs, first, store, "full")
    async with SQLiteRecordManager("ns", db_path=db_file) as second:
        assert await _aindex(docs[:1], second, store, "full") == _counts(skipped=1, deleted=1)


def test_sync_index(srm: SQLiteRecordManager, store: InMemoryVectorStore) -> None:
    docs = _docs(a_1="alpha", b_1="beta")
    assert _index(docs, srm, store, "full") == _counts(added=2)
    assert _index(docs, srm, store, "full") == _counts(skipped=2)
    assert _index(_docs(a_1="ALPHA"), srm, store, "full") == _counts(added=1, deleted=2)
    assert sorted(store.store) == sorted(srm.list_keys())
