"""Tests of RunnableTextSplitter, chunk_id and content_hash."""

from __future__ import annotations

import hashlib
import random
import string
import subprocess
import sys
import threading
import tracemalloc
import uuid
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from langchain_rag_async.config import SplitterConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.ids import CHUNK_ID_NAMESPACE, chunk_id, content_hash
from langchain_rag_async.splitters import INLINE_SPLIT_CHARS, RunnableTextSplitter

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def prose(n_words: int, seed: int = 0) -> str:
    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] + str(i) for i in range(n_words))


def markdown_sections(count: int) -> str:
    sections = []
    for i in range(count):
        body = f"{prose(40, i)}.\n\n{prose(40, i + 1)}."
        sections.append(f"## Section {i}\n\n{body}")
    return "# Title\n\n" + "\n\n".join(sections) + "\n"


def assert_offsets(text: str, chunks: list[Document]) -> None:
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert start >= 0
        assert text[start : start + len(chunk.page_content)] == chunk.page_content


# -- pure helpers -----------------------------------------------------------------------


def test_content_hash_is_sha256_of_utf8() -> None:
    assert content_hash("héllo") == hashlib.sha256("héllo".encode()).hexdigest()


def test_chunk_id_is_a_stable_uuid5() -> None:
    value = chunk_id("docs/a.md", 3, "some text")
    assert uuid.UUID(value).version == 5
    name = f"docs/a.md\x003\x00{content_hash('some text')}"
    assert value == str(uuid.uuid5(CHUNK_ID_NAMESPACE, name))
    # Pinned: changing the namespace or the recipe would orphan every stored chunk.
    assert chunk_id("a.md", 0, "hello") == "58aeb08a-7ec3-536d-a4fd-d5f68a539685"


def test_chunk_id_depends_on_every_input() -> None:
    base = chunk_id("a.md", 0, "text")
    assert chunk_id("b.md", 0, "text") != base
    assert chunk_id("a.md", 1, "text") != base
    assert chunk_id("a.md", 0, "text!") != base


def test_chunk_ids_identical_in_a_fresh_interpreter() -> None:
    code = (
        "from langchain_core.documents import Document\n"
        "from langchain_rag_async.splitters import INLINE_SPLIT_CHARS, RunnableTextSplitter\n"
        "import sys\n"
        "doc = Document(page_content=sys.stdin.read(), metadata={'source': 'x.md'})\n"
        "print('\\n'.join(c.id for c in RunnableTextSplitter().invoke([doc])))\n"
    )
    text = markdown_sections(12)
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    here = [
        c.id for c in RunnableTextSplitter().invoke([Document(text, metadata={"source": "x.md"})])
    ]
    assert result.stdout.split() == here
    assert len(here) > 3


# -- behaviour of the splitter ----------------------------------------------------------


def test_metadata_ids_and_offsets() -> None:
    text = markdown_sections(8)
    doc = Document(text, metadata={"source": "guide.md", "lang": "en", "nested": {"k": 1}})
    chunks = RunnableTextSplitter(SplitterConfig(chunk_size=400, chunk_overlap=40)).invoke([doc])

    assert len(chunks) > 3
    assert_offsets(text, chunks)
    for index, chunk in enumerate(chunks):
        meta = chunk.metadata
        assert meta["lang"] == "en" and meta["nested"] == {"k": 1}
        assert meta["source"] == "guide.md"
        assert meta["chunk_index"] == index
        assert meta["chunk_count"] == len(chunks)
        assert meta["chunk_hash"] == content_hash(chunk.page_content)
        assert chunk.id == chunk_id("guide.md", index, chunk.page_content)
        assert len(chunk.page_content) <= 400
    assert len({c.id for c in chunks}) == len(chunks)
    # The parent's metadata is copied, not shared.
    chunks[0].metadata["nested"]["k"] = 2
    assert doc.metadata["nested"] == {"k": 1}


def test_deterministic_and_only_changed_chunks_get_new_ids() -> None:
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=300, chunk_overlap=0))
    paragraphs = [prose(30, i) for i in range(10)]
    before = splitter.invoke([Document("\n\n".join(paragraphs), metadata={"source": "a.txt"})])
    again = splitter.invoke([Document("\n\n".join(paragraphs), metadata={"source": "a.txt"})])
    assert [c.id for c in before] == [c.id for c in again]

    paragraphs[-1] = paragraphs[-1].replace("alpha", "ALPHA")
    after = splitter.invoke([Document("\n\n".join(paragraphs), metadata={"source": "a.txt"})])
    assert len(after) == len(before)
    assert [c.id for c in after[:-1]] == [c.id for c in before[:-1]]
    assert after[-1].id != before[-1].id


def test_overlap_is_honoured() -> None:
    text = prose(400)
    overlapping = RunnableTextSplitter(SplitterConfig(chunk_size=200, chunk_overlap=50))
    chunks = overlapping.invoke([Document(text, metadata={"source": "p.txt"})])
    assert len(chunks) > 5
    assert_offsets(text, chunks)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        prev_end = prev.metadata["start_index"] + len(prev.page_content)
        shared = prev_end - nxt.metadata["start_index"]
        assert 0 < shared <= 50
        assert nxt.page_content.startswith(prev.page_content[-shared:])

    disjoint = RunnableTextSplitter(SplitterConfig(chunk_size=200, chunk_overlap=0))
    chunks = disjoint.invoke([Document(text, metadata={"source": "p.txt"})])
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.metadata["start_index"] >= prev.metadata["start_index"] + len(prev.page_content)


def _orphaned_headings(chunks: list[Document]) -> list[str]:
    """Headings that are not followed, in their chunk, by any of their section's text."""
    return [
        c.page_content.splitlines()[-1]
        for c in chunks
        if c.page_content.splitlines()[-1].startswith("#")
    ]


def test_markdown_aware_keeps_headings_with_their_section() -> None:
    text = markdown_sections(6)
    config = SplitterConfig(chunk_size=700, chunk_overlap=0, markdown_aware=True)
    chunks = RunnableTextSplitter(config).invoke([Document(text, metadata={"source": "b.md"})])
    assert _orphaned_headings(chunks) == []
    for i in range(6):
        heading, body = f"## Section {i}\n", f"{prose(40, i)}.\n\n{prose(40, i + 1)}."
        assert any(heading in c.page_content and body in c.page_content for c in chunks)
    assert_offsets(text, chunks)

    # The same text split as plain text (or with markdown_aware off) loses headings.
    plain = RunnableTextSplitter(SplitterConfig(chunk_size=700, chunk_overlap=0))
    assert _orphaned_headings(plain.invoke([Document(text, metadata={"source": "b.txt"})]))
    off = RunnableTextSplitter(
        SplitterConfig(chunk_size=700, chunk_overlap=0, markdown_aware=False)
    )
    assert _orphaned_headings(off.invoke([Document(text, metadata={"source": "b.MD"})]))


def test_start_index_of_a_chunk_repeated_inside_the_previous_one() -> None:
    # LangChain's own add_start_index puts the lone closing fence at the opening one.
    text = (
        "## First\n\n" + "Words in a paragraph. " * 12 + "\n\n```rust\nlet x = 1;\n```\n\n"
        "## Next\n\nMore text.\n"
    )
    config = SplitterConfig(chunk_size=200, chunk_overlap=50)
    chunks = RunnableTextSplitter(config).invoke([Document(text, metadata={"source": "f.md"})])
    (fence,) = [c for c in chunks if c.page_content == "```"]
    assert fence.metadata["start_index"] == text.rindex("```")
    assert_offsets(text, chunks)


def test_python_source_splits_on_definitions() -> None:
    functions = [f"def f{i}():\n    return {prose(20, i)!r}\n" for i in range(6)]
    text = "\n".join(functions)
    config = SplitterConfig(chunk_size=250, chunk_overlap=0)
    chunks = RunnableTextSplitter(config).invoke([Document(text, metadata={"source": "m.py"})])
    assert [c.page_content.split("(")[0] for c in chunks] == [f"def f{i}" for i in range(6)]


def blob(length: int) -> str:
    """Base64-like text without whitespace (not periodic, so each chunk has one place)."""
    rng = random.Random(length)
    return "".join(rng.choices(string.ascii_letters + string.digits + "+/", k=length))


def split_texts(text: str, size: int, overlap: int, source: str = "x.txt") -> list[str]:
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=size, chunk_overlap=overlap))
    chunks = splitter.split_document(Document(page_content=text, metadata={"source": source}))
    return [chunk.page_content for chunk in chunks]


@pytest.mark.parametrize("length", [1, 99, 100, 101, 180, 181, 5_003])
def test_text_without_whitespace_splits_as_langchain_does(length: int) -> None:
    # Hostile corpus: base64 blobs and minified files have no separator at all.
    text = blob(length)
    langchain = RecursiveCharacterTextSplitter(chunk_size=100, chunk_overlap=20)
    assert split_texts(text, 100, 20) == langchain.split_text(text)


def test_text_under_one_window_splits_as_langchain_does() -> None:
    text = markdown_sections(40)  # ~40 KB: under 256 chunks of 1,000
    langchain = RecursiveCharacterTextSplitter.from_language(
        Language.MARKDOWN, chunk_size=1000, chunk_overlap=150
    )
    assert split_texts(text, 1000, 150, "a.md") == langchain.split_text(text)


@pytest.mark.parametrize("kind", ["words", "blob"])
def test_one_huge_line_is_split_in_bounded_memory(kind: str) -> None:
    # Hostile corpus: a 10 MB single line took ~30x its size in memory inside LangChain's
    # splitter (every word, or every character, as its own string at once).
    if kind == "words":
        text = prose(300_000)  # ~3.3 MB, no newline
    else:
        text = blob(1_500_000)
    doc = Document(page_content=text, metadata={"source": "line.txt"})
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=1000, chunk_overlap=100))
    tracemalloc.start()
    try:
        chunks = splitter.split_document(doc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 4 * len(text)  # the chunks themselves take ~2x; LangChain's pieces ~30x
    assert all(len(chunk.page_content) <= 1000 for chunk in chunks)
    assert_offsets(text, chunks)
    covered = bytearray(len(text))
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        covered[start : start + len(chunk.page_content)] = b"\x01" * len(chunk.page_content)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))


def test_empty_and_whitespace_documents_give_no_chunks() -> None:
    splitter = RunnableTextSplitter()
    docs = [Document(""), Document("  \n\t \n"), Document("real text", metadata={"source": "r"})]
    chunks = splitter.invoke(docs)
    assert [c.page_content for c in chunks] == ["real text"]
    assert splitter.invoke([]) == []


def test_source_falls_back_to_document_id_then_empty() -> None:
    splitter = RunnableTextSplitter()
    (with_id,) = splitter.invoke([Document("hello", id="doc-7")])
    assert with_id.metadata["source"] == "doc-7"
    assert with_id.id == chunk_id("doc-7", 0, "hello")
    (anonymous,) = splitter.invoke([Document("hello")])
    assert anonymous.metadata["source"] == ""
    assert anonymous.id == chunk_id("", 0, "hello")


def test_single_document_helpers_and_single_document_input() -> None:
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=100, chunk_overlap=10))
    doc = Document(prose(60), metadata={"source": "s.txt"})
    assert splitter.split_document(doc) == splitter.split_documents([doc])
    assert splitter.invoke(doc) == splitter.split_documents([doc])  # type: ignore[arg-type]


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="chunk_overlap"):
        RunnableTextSplitter(SplitterConfig(chunk_size=100, chunk_overlap=100))


def test_batch_and_lcel_chain() -> None:
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=120, chunk_overlap=0))
    doc_a = Document(prose(50, 1), metadata={"source": "a.txt"})
    doc_b = Document(prose(50, 2), metadata={"source": "b.txt"})
    batched = splitter.batch([[doc_a], [doc_b]])
    assert batched == [splitter.invoke([doc_a]), splitter.invoke([doc_b])]

    def sources_of(chunks: list[Document]) -> list[str]:
        return [c.metadata["source"] for c in chunks]

    chain = splitter | RunnableLambda(sources_of)
    sources = chain.invoke([doc_a, doc_b])
    assert set(sources) == {"a.txt", "b.txt"}
    assert sources == sorted(sources)


# -- async --------------------------------------------------------------------------------


async def test_ainvoke_splits_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    original = RecursiveCharacterTextSplitter.split_text

    def spy(self: RecursiveCharacterTextSplitter, text: str) -> list[str]:
        threads.append(threading.get_ident())
        return original(self, text)

    monkeypatch.setattr(RecursiveCharacterTextSplitter, "split_text", spy)
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=200, chunk_overlap=20))
    doc = Document(markdown_sections(40), metadata={"source": "c.md"})
    assert len(doc.page_content) > INLINE_SPLIT_CHARS  # asplit_document: too big to inline

    results = [
        await splitter.ainvoke([doc]),
        await splitter.asplit_documents([doc]),
        await splitter.asplit_document(doc),
    ]
    loop_thread = threading.get_ident()
    assert len(threads) == 3
    assert loop_thread not in threads
    assert results[0] == results[1] == results[2] == splitter.invoke([doc])
    assert len(results[0]) > 2


async def test_asplit_document_splits_a_small_document_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    original = RecursiveCharacterTextSplitter.split_text

    def spy(self: RecursiveCharacterTextSplitter, text: str) -> list[str]:
        threads.append(threading.get_ident())
        return original(self, text)

    monkeypatch.setattr(RecursiveCharacterTextSplitter, "split_text", spy)
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=200, chunk_overlap=20))
    doc = Document(markdown_sections(4), metadata={"source": "c.md"})
    assert len(doc.page_content) <= INLINE_SPLIT_CHARS

    chunks = await splitter.asplit_document(doc)

    assert threads == [threading.get_ident()]  # no hop to a thread for a few KiB
    assert chunks == splitter.split_document(doc)
    assert len(chunks) > 2


async def test_abatch_and_async_chain() -> None:
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=120, chunk_overlap=0))
    docs = [Document(prose(40, i), metadata={"source": f"{i}.txt"}) for i in range(4)]
    results = await splitter.abatch([[d] for d in docs])
    assert results == [splitter.invoke([d]) for d in docs]
    chain = splitter | RunnableLambda(len)
    assert await chain.ainvoke(docs) == sum(len(r) for r in results)


def read_markdown_files(root: Path) -> list[Document]:
    files = sorted(root.glob("*.md"))
    return [Document(p.read_text(encoding="utf-8"), metadata={"source": str(p)}) for p in files]


async def test_whole_rust_book(rust_book: Path) -> None:
    docs = read_markdown_files(rust_book)
    assert len(docs) > 100
    splitter = RunnableTextSplitter(SplitterConfig(chunk_size=1000, chunk_overlap=150))

    chunks = await splitter.ainvoke(docs)

    assert len({c.id for c in chunks}) == len(chunks)
    by_source: dict[str, list[Document]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk.metadata["source"], []).append(chunk)
    for doc in docs:
        text, own = doc.page_content, by_source.get(doc.metadata["source"], [])
        if not text.strip():
            assert own == []
            continue
        assert [c.metadata["chunk_index"] for c in own] == list(range(len(own)))
        assert_offsets(text, own)
        covered = bytearray(len(text))
        for c in own:
            start = c.metadata["start_index"]
            covered[start : start + len(c.page_content)] = b"\x01" * len(c.page_content)
        missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
        assert missing == [], f"{doc.metadata['source']}: text not in any chunk"
    assert max(len(c.page_content) for c in chunks) <= 1000
