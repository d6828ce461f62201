"""Tests of the SQLite FTS5 BM25 index and its query builder."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document

from langchain_rag_async._sqlite import WORKER_THREAD_PREFIX, SQLiteDatabase
from langchain_rag_async.errors import (
    ConfigurationError,
    IndexCorruptedError,
    VectorStoreError,
)
from langchain_rag_async.sparse_index import (
    SPARSE_INDEX_FILENAME,
    FTS5Index,
    to_fts5_query,
)


def make_doc(doc_id: str, text: str, **metadata: object) -> Document:
    return Document(id=doc_id, page_content=text, metadata=metadata)


CORPUS = [
    make_doc("fox-1", "The quick brown fox jumps over the lazy dog.", source="a.md", page=1),
    make_doc("fox-2", "A fox is a small omnivore; the fox hunts at night.", source="a.md", page=2),
    make_doc("fox-3", "Foxes and dogs: the fox and the hound.", source="b.md", page=1),
    make_doc("fox-4", "Every fox has a tail.", source="b.md", draft=True),
    make_doc("axo", "The axolotl is a salamander; a fox rarely meets one.", source="c.md"),
    make_doc("run", "She runs every morning to the café.", source="c.md", tags=["x"]),
]

SPECIAL_QUESTIONS = [
    '"',
    '"unbalanced',
    "*",
    "foo*",
    "NEAR(a b)",
    "-foo",
    "a:b",
    "page_content:fox",
    "(",
    ")",
    "^x",
    "AND OR NOT",
    "fox AND NOT",
    "😀",
    "🦊 fox 🦊",
    "",
    "   \t\n",
    "\x00",
    "'; DROP TABLE chunks; --",
    "²³",
    "_",
    "snake_case_name",
    "{fox} + [dog]",
]
NO_WORD_QUESTIONS = ['"', "*", "(", ")", "😀", "", "   \t\n", "\x00", "_"]


@pytest.fixture
async def index() -> AsyncIterator[FTS5Index]:
    async with FTS5Index() as idx:
        await idx.aupsert(CORPUS)
        yield idx


@pytest.fixture
def sync_index() -> Iterator[FTS5Index]:
    idx = FTS5Index()
    try:
        idx.upsert(CORPUS)
        yield idx
    finally:
        idx.close()


def result_ids(results: list[tuple[Document, float]]) -> list[str | None]:
    return [doc.id for doc, _ in results]


def sqlite_workers() -> set[threading.Thread]:
    """The aiosqlite worker threads alive now (ours are named; other threads do not count)."""
    return {t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)}


# ----------------------------------------------------------------------------- query builder


def test_query_quotes_words_and_joins_with_or() -> None:
    assert to_fts5_query("Quick, brown FOX!") == '"quick" OR "brown" OR "fox"'


def test_query_drops_stopwords_and_duplicates() -> None:
    assert to_fts5_query("What is the fox, the FOX?") == '"fox"'
    assert to_fts5_query("what is it") == '"what" OR "is" OR "it"'  # only stop-words: keep
    assert to_fts5_query("what is the fox", stopwords=frozenset()) == (
        '"what" OR "is" OR "the" OR "fox"'
    )


def test_query_limits_terms() -> None:
    query = to_fts5_query(" ".join(f"w{i}" for i in range(100)), max_terms=3)
    assert query == '"w0" OR "w1" OR "w2"'
    with pytest.raises(ValueError, match="max_terms") as info:
        to_fts5_query("fox", max_terms=0)
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize("question", SPECIAL_QUESTIONS)
def test_query_of_special_characters_is_plain_words(question: str) -> None:
    query = to_fts5_query(question)
    if question in NO_WORD_QUESTIONS:
        assert query is None
    else:
        assert query is not None
        for term in query.split(" OR "):
            assert term.startswith('"') and term.endswith('"')
            assert '"' not in term[1:-1]


@pytest.mark.parametrize("question", SPECIAL_QUESTIONS)
async def test_special_character_questions_never_raise(index: FTS5Index, question: str) -> None:
    results = await index.asearch(question, k=3)
    if question in NO_WORD_QUESTIONS:
        assert results == []
    assert await index.acount() == len(CORPUS)


def test_special_character_questions_never_raise_sync(sync_index: FTS5Index) -> None:
    for question in SPECIAL_QUESTIONS:
        sync_index.search(question, k=3)
    assert result_ids(sync_index.search("fox AND NOT", k=1)) != []


# ----------------------------------------------------------------------------- ranking


async def test_rare_term_ranks_first(index: FTS5Index) -> None:
    results = await index.asearch("fox axolotl", k=6)
    assert result_ids(results)[0] == "axo"
    scores = [score for _, score in results]
    assert all(score > 0 for score in scores)
    assert scores == sorted(scores, reverse=True)


async def test_more_occurrences_rank_higher(index: FTS5Index) -> None:
    results = await index.asearch("hound dogs", k=6)
    assert result_ids(results)[0] == "fox-3"


async def test_porter_stemming_and_diacritics(index: FTS5Index) -> None:
    assert result_ids(await index.asearch("running", k=2)) == ["run"]
    assert result_ids(await index.asearch("cafe", k=2)) == ["run"]
    assert result_ids(await index.asearch("CAFÉ", k=2)) == ["run"]


async def test_results_are_full_documents(index: FTS5Index) -> None:
    [(document, _)] = await index.asearch("morning", k=1)
    assert document == CORPUS[5]
    assert document.metadata == {"source": "c.md", "tags": ["x"]}


async def test_metadata_json_cannot_hold_is_stored_as_text() -> None:
    async with FTS5Index() as idx:
        await idx.aupsert([make_doc("p", "heron", path=Path("/x/y.md"), n=None)])
        [(document, _)] = await idx.asearch("heron")
    assert document.metadata == {"path": "/x/y.md", "n": None}


async def test_k_limits_and_validates(index: FTS5Index) -> None:
    assert len(await index.asearch("fox", k=2)) == 2
    with pytest.raises(ValueError, match="k must") as info:
        await index.asearch("fox", k=0)
    assert isinstance(info.value, ConfigurationError)


# ----------------------------------------------------------------------------- writes


async def test_upsert_replaces_same_id(index: FTS5Index) -> None:
    await index.aupsert([Document(id="axo", page_content="A newt.", metadata={"v": 2})])

    assert await index.acount() == len(CORPUS)
    assert await index.asearch("axolotl") == []
    [(document, _)] = await index.asearch("newt")
    assert document.id == "axo" and document.metadata == {"v": 2}


async def test_metadata_only_change_is_visible(index: FTS5Index) -> None:
    await index.aupsert([Document(id="run", page_content=CORPUS[5].page_content, metadata={})])
    [(document, _)] = await index.asearch("morning")
    assert document.metadata == {}


async def test_delete_ignores_unknown_ids(index: FTS5Index) -> None:
    await index.adelete(["axo", "never-indexed"])
    assert await index.acount() == len(CORPUS) - 1
    assert "axo" not in await index.aids()
    assert await index.asearch("axolotl") == []


async def test_apply_deletes_then_upserts(index: FTS5Index) -> None:
    new = Document(id="fox-1", page_content="Entirely rewritten: a heron.")
    await index.aapply(upserts=[new], deletes=["fox-1", "fox-2"])
    assert await index.aids() == {d.id for d in CORPUS} - {"fox-2"}
    assert result_ids(await index.asearch("heron")) == ["fox-1"]


async def test_document_without_id_is_rejected_before_writing(index: FTS5Index) -> None:
    with pytest.raises(ConfigurationError, match="no id"):  # also a ValueError
        await index.aapply(
            upserts=[Document(id="ok", page_content="heron"), Document(page_content="x")],
            deletes=["axo"],
        )
    assert await index.acount() == len(CORPUS)


async def test_apply_is_atomic_when_a_row_fails_mid_transaction(tmp_path: Path) -> None:
    db = tmp_path / SPARSE_INDEX_FILENAME
    async with FTS5Index(db) as idx:
        await idx.aupsert(CORPUS)
        with sqlite3.connect(db) as raw:  # a real failure on the 2nd inserted row
            raw.execute(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON chunks WHEN new.id = 'bad' "
                "BEGIN SELECT RAISE(ABORT, 'bad row'); END"
            )
        raw.close()
        batch = [Document(id=i, page_content=f"heron {i}") for i in ("good-1", "bad", "good-2")]

        with pytest.raises(VectorStoreError, match="rolled back") as info:
            await idx.aapply(upserts=batch, deletes=["axo", "fox-1"])

        assert isinstance(info.value.__cause__, sqlite3.Error)
        assert await idx.aids() == {d.id for d in CORPUS}
        assert await idx.asearch("heron") == []
        await idx.aupsert(batch[:1])  # the connection is usable afterwards
        assert result_ids(await idx.asearch("heron")) == ["good-1"]


async def test_apply_is_atomic_when_content_cannot_be_stored(index: FTS5Index) -> None:
    bad = Document.model_construct(id="bad", page_content=["not", "text"], metadata={})
    batch = [make_doc("good-1", "heron"), bad, make_doc("good-2", "heron")]

    with pytest.raises(VectorStoreError):
        await index.aapply(upserts=batch, deletes=["axo"])

    assert await index.aids() == {d.id for d in CORPUS}
    assert await index.asearch("heron") == []


def test_sync_apply_is_atomic(sync_index: FTS5Index) -> None:
    bad = Document.model_construct(id="bad", page_content=object(), metadata={})
    with pytest.raises(VectorStoreError):
        sync_index.apply(upserts=[Document(id="g", page_content="heron"), bad], deletes=["axo"])
    assert sync_index.ids() == {d.id for d in CORPUS}


async def test_searches_never_see_half_a_batch() -> None:
    """Each batch replaces the previous 5 'marker' chunks; readers must always see 5."""
    seen: list[int] = []

    async def write() -> None:
        for batch in range(1, 30):
            new = [Document(id=f"{batch}-{i}", page_content="marker") for i in range(5)]
            await idx.aapply(upserts=new, deletes=[f"{batch - 1}-{i}" for i in range(5)])

    async def read() -> None:
        for _ in range(60):
            seen.append(len(await idx.asearch("marker", k=50)))

    async with FTS5Index() as idx:
        await idx.aupsert([Document(id=f"0-{i}", page_content="marker") for i in range(5)])
        async with asyncio.TaskGroup() as group:
            group.create_task(write())
            for _ in range(3):
                group.create_task(read())
        assert await idx.acount() == 5
    assert set(seen) == {5}


# ----------------------------------------------------------------------------- filters


async def test_filter_exact_match(index: FTS5Index) -> None:
    assert set(result_ids(await index.asearch("fox", k=10, filter={"source": "b.md"}))) == {
        "fox-3",
        "fox-4",
    }
    assert result_ids(await index.asearch("fox", k=10, filter={"draft": True})) == ["fox-4"]
    assert result_ids(await index.asearch("fox", k=10, filter={"source": "a.md", "page": 2})) == [
        "fox-2"
    ]
    assert await index.asearch("fox", k=10, filter={"page": "2"}) == []  # types must match


async def test_filter_none_and_lists(index: FTS5Index) -> None:
    missing_page = await index.asearch("fox", k=10, filter={"page": None})
    assert set(result_ids(missing_page)) == {"fox-4", "axo"}
    any_of = await index.asearch("fox", k=10, filter={"source": ["a.md", "c.md"]})
    assert set(result_ids(any_of)) == {"fox-1", "fox-2", "axo"}
    assert await index.asearch("fox", k=10, filter={"source": []}) == []


async def test_filter_still_returns_k_results() -> None:
    strong = [
        Document(id=f"a{i}", page_content="apple " * 5, metadata={"s": "a"}) for i in range(10)
    ]
    weak = [
        Document(id=f"b{i}", page_content="apple and many other words here", metadata={"s": "b"})
        for i in range(4)
    ]
    async with FTS5Index() as idx:
        await idx.aupsert(strong + weak)
        assert {d.metadata["s"] for d, _ in await idx.asearch("apple", k=3)} == {"a"}
        results = await idx.asearch("apple", k=3, filter={"s": "b"})
        assert len(results) == 3
        assert {d.metadata["s"] for d, _ in results} == {"b"}


# ----------------------------------------------------------------------------- ids first


@pytest.mark.parametrize(
    "filter_", [None, {"source": "b.md"}, {"page": None}, {"source": ["a.md", "c.md"]}]
)
async def test_search_ids_ranks_exactly_as_search(
    index: FTS5Index, filter_: dict[str, object] | None
) -> None:
    for question in ["fox", "the fox hunts", "salamander fox tail", "café"]:
        full = await index.asearch(question, k=4, filter=filter_)
        expected = [(str(doc.id), score) for doc, score in full]
        assert await index.asearch_ids(question, k=4, filter=filter_) == expected
        assert await asyncio.to_thread(index.search_ids, question, 4, filter=filter_) == expected
    assert await index.asearch_ids("fox", 10) != []


async def test_search_ids_of_special_questions_never_raise(index: FTS5Index) -> None:
    for question in SPECIAL_QUESTIONS:
        await index.asearch_ids(question)
    for question in NO_WORD_QUESTIONS:
        assert await index.asearch_ids(question) == []
    with pytest.raises(ValueError, match="k must be a whole number of at least 1"):
        await index.asearch_ids("fox", 0)


async def test_get_by_ids_keeps_the_order_asked_and_skips_unknown(index: FTS5Index) -> None:
    asked = ["run", "nope", "fox-2", "fox-2", "axo"]
    found = await index.aget_by_ids(asked)
    assert [doc.id for doc in found] == ["run", "fox-2", "axo"]
    assert found[0].page_content == CORPUS[5].page_content
    assert found[0].metadata == {"source": "c.md", "tags": ["x"]}
    assert await index.aget_by_ids([]) == []
    assert [d.id for d in await asyncio.to_thread(index.get_by_ids, asked)] == [
        "run",
        "fox-2",
        "axo",
    ]


async def test_get_by_ids_reads_more_ids_than_one_statement_binds() -> None:
    docs = [make_doc(f"d{i:04d}", f"text number {i}") for i in range(1203)]
    async with FTS5Index() as idx:
        await idx.aupsert(docs)
        wanted = [f"d{i:04d}" for i in range(1203)][::-1]
        found = await idx.aget_by_ids(wanted)
        assert [doc.id for doc in found] == wanted
        assert found[-1].page_content == "text number 0"


@pytest.mark.parametrize("bad", [{"x": {"nested": 1}}, {'a"b': 1}, {"$or": [1]}, {"": 1}, [1]])
async def test_bad_filter_is_rejected(index: FTS5Index, bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="filter"):  # also a ValueError
        await index.asearch("fox", filter=bad)


async def test_none_in_a_filter_list_also_matches_a_missing_value(index: FTS5Index) -> None:
    """As in the vector store (both share ``_checks.check_filter``): [None, 1] is "missing or 1"."""
    found = await index.asearch("fox", k=10, filter={"page": [None, 1]})
    assert set(result_ids(found)) == {"fox-1", "fox-3", "fox-4", "axo"}
    assert set(result_ids(await index.asearch("fox", k=10, filter={"page": [None]}))) == {
        "fox-4",
        "axo",
    }


# ----------------------------------------------------------------------------- persistence, loops


async def test_persists_across_reopen(tmp_path: Path) -> None:
    index_dir = tmp_path / "nested" / "index"
    async with FTS5Index.in_index_dir(index_dir) as idx:
        await idx.aupsert(CORPUS)
        assert idx.db_path == index_dir / SPARSE_INDEX_FILENAME

    assert (index_dir / SPARSE_INDEX_FILENAME).is_file()
    async with FTS5Index(index_dir / SPARSE_INDEX_FILENAME) as reopened:
        assert await reopened.acount() == len(CORPUS)
        assert result_ids(await reopened.asearch("axolotl", k=1)) == ["axo"]


async def test_sync_and_async_agree(tmp_path: Path) -> None:
    idx = FTS5Index(tmp_path / SPARSE_INDEX_FILENAME)
    await asyncio.to_thread(idx.upsert, CORPUS)  # written by the sync connection...
    questions = ["fox axolotl", "running cafe", "hound", "fox"]
    try:
        for question in questions:  # ...read by both
            sync_results = await asyncio.to_thread(idx.search, question, 4)
            async_results = await idx.asearch(question, 4)
            assert sync_results == async_results
            assert sync_results
        await idx.adelete(["axo"])  # written async, read sync
        assert await asyncio.to_thread(idx.ids) == await idx.aids()
        assert await asyncio.to_thread(idx.count) == await idx.acount() == len(CORPUS) - 1
    finally:
        await idx.aclose()


@pytest.mark.parametrize("on_disk", [False, True])
def test_used_from_two_event_loops_in_turn(tmp_path: Path, on_disk: bool) -> None:
    before = sqlite_workers()
    idx = FTS5Index(tmp_path / SPARSE_INDEX_FILENAME if on_disk else None)

    asyncio.run(idx.aupsert(CORPUS))
    results = asyncio.run(idx.asearch("axolotl", k=1))  # a new loop, a new connection
    assert result_ids(results) == ["axo"]
    assert asyncio.run(idx.acount()) == len(CORPUS)
    assert idx.count() == len(CORPUS)
    idx.close()

    assert sqlite_workers() == before  # close() waited for every worker thread to end


async def test_close_from_async_code_stops_connection_threads() -> None:
    before = sqlite_workers()
    idx = FTS5Index()
    await idx.aupsert(CORPUS)
    [worker] = sqlite_workers() - before
    assert worker.name == "rag-sqlite::memory:" and worker.daemon
    idx.close()  # inside a running loop: the sync bridge closes it without blocking this loop
    await asyncio.to_thread(worker.join, 10)
    assert not worker.is_alive()


async def test_closed_index_refuses_work() -> None:
    idx = FTS5Index()
    await idx.aupsert(CORPUS)
    await idx.aclose()
    await idx.aclose()  # idempotent
    with pytest.raises(VectorStoreError, match="closed"):
        await idx.asearch("fox")
    with pytest.raises(VectorStoreError, match="closed"):
        idx.count()
    idx.close()  # idempotent too


async def test_in_memory_indexes_are_independent() -> None:
    async with FTS5Index() as first, FTS5Index() as second:
        await first.aupsert(CORPUS)
        assert await second.acount() == 0


async def test_corrupted_file_raises_index_corrupted(tmp_path: Path) -> None:
    db = tmp_path / SPARSE_INDEX_FILENAME
    db.write_bytes(b"this is not a sqlite database" * 100)
    async with FTS5Index(db) as idx:
        with pytest.raises(IndexCorruptedError, match="rebuild"):
            await idx.acount()


# ----------------------------------------------------------------------------- real corpus


def paragraph_chunks(path: Path, max_chars: int = 1200) -> list[Document]:
    chunks: list[str] = []
    current = ""
    for paragraph in path.read_text(encoding="utf-8").split("\n\n"):
        if current and len(current) + len(paragraph) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        chunks.append(current)
    return [
        Document(id=f"{path.name}#{i}", page_content=text, metadata={"source": path.name})
        for i, text in enumerate(chunks)
    ]


@pytest.fixture
def rust_book_chunks(rust_book: Path) -> list[Document]:
    return [c for path in sorted(rust_book.glob("*.md")) for c in paragraph_chunks(path)]


async def test_rust_book_ownership_question_finds_chapter_4(
    rust_book_chunks: list[Document], tmp_path: Path
) -> None:
    documents = rust_book_chunks
    assert len(documents) > 500

    async with FTS5Index(tmp_path / SPARSE_INDEX_FILENAME) as idx:
        for start in range(0, len(documents), 256):
            await idx.aapply(upserts=documents[start : start + 256])
        assert await idx.acount() == len(documents)

        results = await idx.asearch("ownership borrowing", k=5)
        sources = [doc.metadata["source"] for doc, _ in results]
        assert any(source.startswith("ch04-") for source in sources), sources

        filtered = await idx.asearch(
            "ownership borrowing", k=5, filter={"source": "ch08-02-strings.md"}
        )
        assert filtered and all(d.metadata["source"] == "ch08-02-strings.md" for d, _ in filtered)


@pytest.mark.parametrize("delay_steps", [0, 1, 2, 5, 10, 20])
def test_cancelling_during_open_or_search_leaves_no_worker_answering_a_closed_loop(
    tmp_path: Path, delay_steps: int, thread_errors: list[BaseException]
) -> None:
    """Ctrl-C under ``asyncio.run`` mid-search: aiosqlite's thread must not hit a dead loop."""
    index = FTS5Index(tmp_path / "sparse.sqlite")
    try:
        index.upsert(CORPUS)

        async def cancelled_search() -> None:
            task = asyncio.create_task(index.asearch("fox", 3))
            for _ in range(delay_steps):  # cancel at several points of the open and query
                await asyncio.sleep(0)
            if task.done():  # a fast machine finished first: nothing was abandoned
                assert delay_steps > 0
                return
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_search())
        time.sleep(0.3)  # an abandoned worker thread would answer within this
        assert thread_errors == []
        # The index still answers afterwards, on a new loop.
        assert [doc.id for doc, _ in asyncio.run(index.asearch("hound", 1))] == ["fox-3"]
    finally:
        index.close()


def test_cancelling_a_slow_search_waits_for_the_worker_before_the_loop_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread_errors: list[BaseException]
) -> None:
    """The query outlives the cancelled caller; its answer must not hit a closed loop."""
    real_connect = SQLiteDatabase._connect
    slow = threading.Event()
    running = threading.Event()
    release = threading.Event()

    def slow_connect(db: SQLiteDatabase) -> sqlite3.Connection:
        conn = real_connect(db)

        def pause() -> int:
            if slow.is_set():
                running.set()
                release.wait(60)  # the query stays on the worker until its caller is cancelled
            return 0

        conn.set_progress_handler(pause, 50)
        return conn

    monkeypatch.setattr(SQLiteDatabase, "_connect", slow_connect)
    index = FTS5Index(tmp_path / "sparse.sqlite")
    try:
        index.upsert(CORPUS)

        async def cancelled_search() -> None:
            await index.asearch("warm up the connection", 1)
            slow.set()
            task = asyncio.create_task(index.asearch("fox", 3))
            assert await asyncio.to_thread(running.wait, 60)  # it runs on the worker thread
            task.cancel()
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_search())
        time.sleep(0.3)  # an abandoned worker thread would answer within this
    finally:
        slow.clear()
        release.set()
    # Checked before closing: a worker thread killed by the error would hang close().
    assert thread_errors == []
    index.close()
