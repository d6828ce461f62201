"""Converting a LangChain pickled FAISS folder: records, model stamp and cache are written.

Real LangChain FAISS writes the legacy folder, real SQLite holds the records and the
cache, and the real indexing pipeline runs into the converted index afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_text_splitters import RecursiveCharacterTextSplitter

from langchain_rag_async import (
    AsyncFAISS,
    AsyncRAGEngine,
    ConfigurationError,
    EmbeddingModelMismatchError,
    SQLiteRecordManager,
    VectorStoreError,
    aconvert_langchain_faiss,
    aindex_directory,
    convert_langchain_faiss,
    index_model_id,
)
from langchain_rag_async.indexing.resources import RECORDS_FILE, RECORDS_NAMESPACE

PARAGRAPH = "Paragraph {n} of {name}: tasks, queues and locks explained at some length here.\n\n"


class CountingEmbedding(DeterministicFakeEmbedding):
    """A deterministic model that remembers every text it embedded."""

    seen: list[str] = []  # noqa: RUF012 (pydantic field default, copied per instance)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.seen.extend(texts)
        return super().embed_documents(texts)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)


def write_notes(root: Path) -> None:
    root.mkdir()
    for name in ("a", "b", "c"):
        body = "".join(PARAGRAPH.format(n=n, name=name) for n in range(12))
        (root / f"{name}.md").write_text(f"# {name}\n\n{body}", encoding="utf-8")


def build_legacy(model: CountingEmbedding, folder: str) -> list[Document]:
    """What a LangChain user has: relative sources, LangChain's splitter, a pickle folder."""
    docs = [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": f"notes/{p.name}"})
        for p in sorted(Path("notes").glob("*.md"))
    ]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=300, chunk_overlap=40, add_start_index=True
    )
    chunks = splitter.split_documents(docs)
    FAISS.from_documents(chunks, model).save_local(folder)
    return chunks


async def test_first_run_after_conversion_embeds_only_new_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_notes(tmp_path / "notes")
    model = CountingEmbedding(size=32, seen=[])
    chunks = build_legacy(model, "faiss_index")
    old_texts = {c.page_content for c in chunks}
    by_file = {n: sum(c.metadata["source"] == f"notes/{n}.md" for c in chunks) for n in "abc"}
    # After the legacy index was built: b.md gets a new paragraph, c.md is deleted.
    with (tmp_path / "notes" / "b.md").open("a", encoding="utf-8") as f:
        f.write("A brand new closing paragraph about cancellation scopes and deadlines.\n")
    (tmp_path / "notes" / "c.md").unlink()

    summary = await aconvert_langchain_faiss(
        "faiss_index", "converted", model, allow_dangerous_deserialization=True, source_dir="notes"
    )
    assert summary.model_id == index_model_id(model)
    assert summary.chunks == len(chunks) == summary.vectors_cached == summary.records
    assert (summary.files_adopted, summary.files_changed, summary.files_gone) == (1, 1, 1)
    assert summary.chunks_outside == 0
    async with SQLiteRecordManager(
        RECORDS_NAMESPACE, db_path=tmp_path / "converted" / RECORDS_FILE
    ) as rm:
        assert len(await rm.alist_keys()) == len(chunks)
        files = await rm.aget_files()
    assert sorted(Path(p).name for p in files) == ["a.md", "c.md"]  # b.md: read again

    model.seen.clear()
    run = await aindex_directory("notes", index_dir="converted", embeddings=model)
    assert run.files_skipped == 1  # a.md, unread
    assert run.files_indexed == 1 and run.files_deleted == 1  # b.md re-split, c.md gone
    # Deletions are counted: c.md's chunks and every old chunk of b.md not produced again.
    assert run.chunks_deleted >= by_file["c"] + 1
    assert run.chunks_embedded > 0  # the new paragraph
    assert model.seen and not old_texts.intersection(model.seen)  # no old text re-embedded

    again = await aindex_directory("notes", index_dir="converted", embeddings=model)
    assert again.files_skipped == 2 and again.chunks_embedded == 0 == again.chunks_deleted

    store = await AsyncFAISS.aload_local("converted", model, expected_model_id=summary.model_id)
    docs = await store.aget_by_ids([str(i) for i in store.index_to_docstore_id.values()])
    sources = {Path(str(d.metadata["source"])).name for d in docs}
    assert sources == {"a.md", "b.md"}


async def test_converted_index_is_stamped_and_refuses_another_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_notes(tmp_path / "notes")
    model = CountingEmbedding(size=32, seen=[])
    build_legacy(model, "faiss_index")
    with pytest.raises(VectorStoreError, match="allow_dangerous_deserialization"):
        await aconvert_langchain_faiss("faiss_index", "converted", model)
    summary = await aconvert_langchain_faiss(
        "faiss_index", "converted", model, allow_dangerous_deserialization=True
    )
    assert summary.records == 0 and summary.chunks_outside == summary.chunks > 0
    async with AsyncRAGEngine(index_dir="converted", embeddings=model) as engine:
        assert await engine.aquery("queues and locks", k=2)
    other = DeterministicFakeEmbedding(size=32)
    with pytest.raises(EmbeddingModelMismatchError):
        async with AsyncRAGEngine(index_dir="converted", embeddings=other) as engine:
            await engine.aquery("queues", k=1)


def test_sync_twin_and_a_custom_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_notes(tmp_path / "notes")
    model = CountingEmbedding(size=32, seen=[])
    build_legacy(model, "faiss_index")
    summary = convert_langchain_faiss(
        "faiss_index",
        "converted",
        model,
        allow_dangerous_deserialization=True,
        source_dir=tmp_path / "notes",
        model_id="team-model-v2",
    )
    assert summary.model_id == "team-model-v2" and summary.files_adopted == 3
    store = AsyncFAISS.load_local("converted", model, expected_model_id="team-model-v2")
    assert store.embedding_model_id == "team-model-v2"
    with pytest.raises(ConfigurationError, match="already holds an index"):
        convert_langchain_faiss(
            "faiss_index", "converted", model, allow_dangerous_deserialization=True
        )


async def test_an_interrupted_conversion_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and cache are written before the manifest: without it, the rerun completes."""
    monkeypatch.chdir(tmp_path)
    write_notes(tmp_path / "notes")
    model = CountingEmbedding(size=32, seen=[])
    build_legacy(model, "faiss_index")
    options = {"allow_dangerous_deserialization": True, "source_dir": "notes"}
    first = await aconvert_langchain_faiss("faiss_index", "converted", model, **options)
    (tmp_path / "converted" / "manifest.json").unlink()  # as if stopped before the save

    again = await aconvert_langchain_faiss("faiss_index", "converted", model, **options)

    assert again == first
    model.seen.clear()
    run = await aindex_directory("notes", index_dir="converted", embeddings=model)
    assert run.files_skipped == 3 and run.chunks_embedded == 0 == run.chunks_deleted
    assert model.seen == []
