"""Concurrent FTS5 searches run as one statement: each gets exactly the rows it gets alone."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

from langchain_rag_async.errors import VectorStoreError
from langchain_rag_async.sparse_index import FTS5Index
from langchain_rag_async.sparse_index import _fts5_sql as sql

WORDS = (
    "fox dog cat owl bee ant borrow lifetime trait crate cargo module vector string "
    "slice closure iterator thread channel mutex"
).split()


def corpus(count: int = 300, seed: int = 7) -> list[Document]:
    """Chunks made of few words: many equal BM25 scores, so ties are ranked by id."""
    rng = random.Random(seed)
    return [
        Document(
            id=f"c{i:03d}",
            page_content=" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))),
            metadata={"source": f"{i % 4}.md"},
        )
        for i in range(count)
    ]


def searches(seed: int = 11) -> list[tuple[str, int, dict[str, Any] | None]]:
    rng = random.Random(seed)
    found: list[tuple[str, int, dict[str, Any] | None]] = []
    for i in range(90):
        question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        filter_ = {"source": f"{i % 4}.md"} if i % 5 == 0 else None
        found.append((question, rng.choice((1, 3, 10, 30)), filter_))
    found.append(("nothing matches zzz", 5, None))
    found.append(("?!", 5, None))  # no word at all: no statement
    return found


@pytest.fixture
def index_file(tmp_path: Path) -> Path:
    """A sparse index file holding :func:`corpus` (written with the sync API)."""
    path = tmp_path / "sparse.sqlite"
    with FTS5Index(path) as index:
        index.upsert(corpus())
    return path


def sync_searches(path: Path, asked: list[tuple[str, int, Any]]) -> list[Any]:
    with FTS5Index(path) as index:
        return [index.search_ids(q, k, filter=f) for q, k, f in asked]


async def test_concurrent_searches_get_exactly_their_rows_alone(
    index_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = searches()
    in_sync = await asyncio.to_thread(sync_searches, index_file, asked)
    batched: list[int] = []
    batch_searches = sql.batch_searches

    def counted(statements: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
        batched.append(len(statements))
        return batch_searches(statements)

    async with await asyncio.to_thread(FTS5Index, index_file) as index:
        alone = [await index.asearch_ids(q, k, filter=f) for q, k, f in asked]
        assert batched == []  # one at a time: each its own statement
        monkeypatch.setattr(sql, "batch_searches", counted)
        together = await asyncio.gather(*(index.asearch_ids(q, k, filter=f) for q, k, f in asked))
    assert together == alone == in_sync
    # all but the question with no word, in statements of at most SEARCH_BATCH searches
    assert sum(batched) == len(asked) - 1 and max(batched) <= sql.SEARCH_BATCH
    assert sum(1 for hits in alone if len(hits) > 1) > 50  # the comparison says something


def test_one_statement_gives_each_search_its_own_rows(index_file: Path) -> None:
    built = [sql.build_search(q, k, f, columns="c.id") for q, k, f in searches()]
    statements = [b for b in built if b is not None]
    with sqlite3.connect(index_file) as conn:
        alone = [[sql.to_id_result(r) for r in conn.execute(s, p)] for s, p in statements]
        statement, params = sql.batch_searches(statements)
        rows = conn.execute(statement, params).fetchall()
    assert sql.split_searches(rows, len(statements)) == alone


async def test_a_failed_statement_fails_the_searches_in_it(index_file: Path) -> None:
    index = await asyncio.to_thread(FTS5Index, index_file)
    assert await index.asearch_ids(WORDS[0], 3) != []
    await index.aclose()  # closed: every search of the batch fails, clearly
    results = await asyncio.gather(
        *(index.asearch_ids(word, 3) for word in WORDS[:5]), return_exceptions=True
    )
    assert all(isinstance(result, VectorStoreError) for result in results), results


async def test_a_cancelled_search_leaves_the_others_their_rows(index_file: Path) -> None:
    async with await asyncio.to_thread(FTS5Index, index_file) as index:
        alone = [await index.asearch_ids(word, 10) for word in WORDS[:6]]
        tasks = [asyncio.create_task(index.asearch_ids(word, 10)) for word in WORDS[:6]]
        await asyncio.sleep(0)  # (or not: the others' rows do not depend on it)
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == alone[:3] + alone[4:]


@pytest.mark.parametrize("count", [1, 2, sql.SEARCH_BATCH + 1])
async def test_any_number_of_concurrent_searches(count: int) -> None:
    async with FTS5Index() as index:
        await index.aupsert(corpus(60))
        asked = [WORDS[i % len(WORDS)] for i in range(count)]
        alone = [await index.asearch_ids(word, 5) for word in asked]
        assert await asyncio.gather(*(index.asearch_ids(word, 5) for word in asked)) == alone
