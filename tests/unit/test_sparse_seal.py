"""The sparse index's seal: damage since the last write is found, never a silent ranking change."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from langchain_core.documents import Document

from langchain_rag_async.errors import IndexCorruptedError, RAGError
from langchain_rag_async.sparse_index import SPARSE_INDEX_FILENAME, FTS5Index, seal_sparse

from .test_sparse_index import CORPUS, paragraph_chunks

QUESTIONS = (
    "ownership and borrowing",
    "closures capture their environment",
    "error handling with Result",
    "lifetimes of references",
    "cargo test",
)


async def test_writes_unseal_and_seal_makes_the_contents_checkable(tmp_path: Path) -> None:
    async with FTS5Index(tmp_path / SPARSE_INDEX_FILENAME) as index:
        assert await index.acheck_seal() == "unsealed"
        await index.aupsert(CORPUS)
        assert await index.acheck_seal() == "unsealed"
        await seal_sparse(index)
        assert await index.acheck_seal() == "sound"
        await index.averify()
        await index.adelete(["fox-1"])  # a write removes the seal in its own transaction
        assert await index.acheck_seal() == "unsealed"
        await index.aseal()
    async with FTS5Index(tmp_path / SPARSE_INDEX_FILENAME, read_only=True) as index:
        assert await index.acheck_seal() == "sound"


def test_the_sync_twins_agree(tmp_path: Path) -> None:
    file = tmp_path / SPARSE_INDEX_FILENAME
    with FTS5Index(file) as index:
        index.upsert(CORPUS)
        assert index.check_seal() == "unsealed"
        index.seal()
        assert index.check_seal() == "sound"
        index.verify()
        index.delete(["fox-1"])
        assert index.check_seal() == "unsealed"
        index.seal()
    with sqlite3.connect(file) as conn:
        conn.execute("UPDATE chunks SET metadata = '{}' WHERE id = 'fox-2'")
    conn.close()
    with FTS5Index(file) as index:
        assert index.check_seal() == "mismatch"
        with pytest.raises(IndexCorruptedError, match=r"sparse\.sqlite.*seal"):
            index.verify()


async def test_a_change_from_outside_is_a_mismatch_naming_the_file(tmp_path: Path) -> None:
    file = tmp_path / SPARSE_INDEX_FILENAME
    async with FTS5Index(file) as index:
        await index.aupsert(CORPUS)
        await index.aseal()
    with sqlite3.connect(file) as conn:
        conn.execute("UPDATE chunks SET metadata = '{}' WHERE id = 'fox-2'")
    conn.close()
    async with FTS5Index(file) as index:
        assert await index.acheck_seal() == "mismatch"
        with pytest.raises(IndexCorruptedError, match=r"sparse\.sqlite.*seal") as caught:
            await index.averify()
        assert caught.value.path == str(file)


async def test_a_file_from_before_seals_is_unsealed_also_read_only(tmp_path: Path) -> None:
    file = tmp_path / SPARSE_INDEX_FILENAME
    async with FTS5Index(file) as index:
        await index.aupsert(CORPUS)
    with sqlite3.connect(file) as conn:  # what schema version 1 wrote: no seal table
        conn.execute("DROP TABLE seal")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    async with FTS5Index(file, read_only=True) as index:
        assert await index.acheck_seal() == "unsealed"
        await index.averify()
    async with FTS5Index(file) as index:  # opened for writing: upgraded, then sealable
        assert await index.acheck_seal() == "unsealed"
        await index.aseal()
        assert await index.acheck_seal() == "sound"


async def _outcome(file: Path, expected: list[list[tuple[str, float]]]) -> str:
    try:
        async with FTS5Index(file) as index:
            if await index.acheck_seal() == "mismatch":
                return "caught by the seal"
            found = [await index.asearch_ids(q, k=10) for q in QUESTIONS]
    except RAGError:
        return "an error"
    return "same results" if found == expected else "SILENTLY DIFFERENT"


@pytest.fixture
def chapters(rust_book: Path) -> list[Document]:
    return [c for path in sorted(rust_book.glob("ch0*.md")) for c in paragraph_chunks(path)]


async def test_random_bit_flips_are_caught_or_change_nothing(
    chapters: list[Document], tmp_path: Path
) -> None:
    # What the chaos suite's storage scenario found: a flipped bit inside the full-text
    # index passes SQLite's checks and often FTS5's, and changes BM25 ranking silently.
    documents = chapters
    original = tmp_path / "original.sqlite"
    async with FTS5Index(original) as index:
        await index.aupsert(documents)
        await index.aseal()
        expected = [await index.asearch_ids(q, k=10) for q in QUESTIONS]
    data = original.read_bytes()
    rng = random.Random(7)
    outcomes: dict[str, int] = {}
    for trial in range(40):
        flipped = bytearray(data)
        flipped[rng.randrange(100, len(data))] ^= 1 << rng.randrange(8)  # past the header
        file = tmp_path / f"flip-{trial}.sqlite"
        file.write_bytes(bytes(flipped))
        outcome = await _outcome(file, expected)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert "SILENTLY DIFFERENT" not in outcomes, outcomes
    assert outcomes.get("caught by the seal", 0) >= 20, outcomes  # most land in live rows


async def test_a_reader_never_sees_a_mismatch_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    # One statement reads the digests and the seal: one snapshot, whatever a writer does.
    file = tmp_path / SPARSE_INDEX_FILENAME
    docs = [Document(id=f"d{i}", page_content=f"word{i % 7} text {i}") for i in range(300)]
    async with FTS5Index(file) as writer, FTS5Index(file) as reader:
        await writer.aupsert(docs[:50])
        await writer.aseal()
        states: list[str] = []

        async def write() -> None:
            for start in range(50, 300, 25):
                await writer.aupsert(docs[start : start + 25])
                await writer.aseal()

        async def check() -> None:
            while not done.is_set():
                states.append(await reader.acheck_seal())
                await asyncio.sleep(0)

        done = asyncio.Event()
        checking = asyncio.create_task(check())
        await write()
        done.set()
        await checking
        assert await reader.acheck_seal() == "sound"
    assert states and "mismatch" not in states, states
