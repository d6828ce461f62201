"""Indexing under concurrency, crashes and odd trees: nothing indexed is ever lost."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.errors import VectorStoreError
from langchain_rag_async.indexing.api import aindex_directory
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.vectorstores import AsyncFAISS

from .test_indexing_pipeline import (
    CountingEmbedding,
    config_for,
    make_corpus,
    store_and_record_ids,
)


@pytest.fixture
def emb() -> CountingEmbedding:
    return CountingEmbedding(size=32)


async def sources_in(index_dir: Path) -> set[str]:
    store = await AsyncFAISS.aload_local(str(index_dir), DeterministicFakeEmbedding(size=32))
    return {Path(d.metadata["source"]).name for d in store.docstore._dict.values()}


async def test_two_runs_at_once_on_one_index_lose_nothing(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    a = make_corpus(tmp_path / "a", files=4)
    b = tmp_path / "b"
    b.mkdir()
    for i in range(4):
        (b / f"other-{i}.md").write_text(f"# Other {i}\n\nSomething else entirely, {i}.\n")
    config = config_for(tmp_path / "index")
    first, second = await asyncio.gather(
        aindex_directory(a, config=config, embeddings=emb),
        aindex_directory(b, config=config, embeddings=emb),
    )
    assert first.files_indexed == 4 and second.files_indexed == 4
    dense, keys = await store_and_record_ids(tmp_path / "index")
    assert dense == keys
    names = await sources_in(tmp_path / "index")
    assert {f"chapter-{i:02d}.md" for i in range(4)} | {f"other-{i}.md" for i in range(4)} == names


async def test_undecodable_file_name_fails_alone(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    bad = Path(os.fsdecode(os.fsencode(corpus) + b"/bad\xff.md"))
    bad.write_bytes(b"# Bad name\n\nFine content.\n")  # noqa: ASYNC240
    config = config_for(tmp_path / "index")
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_indexed == 2
    [failed] = summary.files_failed
    assert "UTF-8" in failed.reason and "bad" in failed.path
    (corpus / "late.md").write_text("# Late\n\nAdded later.\n")
    again = await aindex_directory(corpus, config=config, embeddings=emb)
    assert again.files_indexed == 1 and len(again.files_failed) == 1


async def test_unlistable_directory_keeps_its_indexed_files(
    tmp_path: Path, emb: CountingEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=1)
    make_corpus(corpus / "sub", files=3)
    config = config_for(tmp_path / "index")
    await aindex_directory(corpus, config=config, embeddings=emb)
    real_scandir = os.scandir
    locked = str(corpus / "sub")

    def scandir(path: Any = ".") -> Any:
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_deleted == 0
    assert any("sub" in f.path and "list" in f.reason for f in summary.files_failed)
    store = await AsyncFAISS.aload_local(
        str(tmp_path / "index"), DeterministicFakeEmbedding(size=32)
    )
    assert len({d.metadata["source"] for d in store.docstore._dict.values()}) == 4


async def test_cache_is_keyed_by_the_model_actually_used(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "docs", files=1)
    index_dir = tmp_path / "index"
    first = CountingEmbedding(size=32)
    await aindex_directory(corpus, config=config_for(index_dir), embeddings=first)
    for name in ("manifest.json", "records.sqlite", "sparse.sqlite"):
        (index_dir / name).unlink()

    class OtherEmbedding(CountingEmbedding):
        pass

    other = OtherEmbedding(size=32)
    summary = await aindex_directory(corpus, config=config_for(index_dir), embeddings=other)
    assert summary.chunks_cached == 0 and other.texts == summary.chunks_added > 0


async def test_failed_record_commit_is_repaired_next_run(
    tmp_path: Path, emb: CountingEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=3)
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    await aindex_directory(corpus, config=config, embeddings=emb)
    target = corpus / "chapter-01.md"
    target.write_text(target.read_text("utf-8").replace("paragraph 2.", "paragraph two!"))

    async def crash(self: Any, **kwargs: Any) -> None:
        raise VectorStoreError("simulated crash between the save and the record commit")

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteRecordManager, "acommit_file_batch", crash)
        with pytest.raises(VectorStoreError, match="simulated crash"):
            await aindex_directory(corpus, config=config, embeddings=emb)
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_failed == []
    dense, keys = await store_and_record_ids(index_dir)
    assert dense == keys
    store = await AsyncFAISS.aload_local(str(index_dir), DeterministicFakeEmbedding(size=32))
    texts = " ".join(d.page_content for d in store.docstore._dict.values())
    assert "paragraph two!" in texts and "File 1, paragraph 2." not in texts


async def test_index_inside_the_tree_does_not_index_itself(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    config = config_for(corpus / "index")  # not hidden, inside the indexed root
    first = await aindex_directory(corpus, config=config, embeddings=emb)
    second = await aindex_directory(corpus, config=config, embeddings=emb)
    assert first.files_indexed == 2 and second.files_indexed == 0 and second.chunks_added == 0
    assert await sources_in(corpus / "index") == {"chapter-00.md", "chapter-01.md"}


async def test_removing_a_symlink_removes_its_chunks(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=1)
    outside = tmp_path / "elsewhere.md"
    outside.write_text("# Elsewhere\n\nA file outside the indexed tree.\n")
    (corpus / "linked.md").symlink_to(outside)
    config = config_for(tmp_path / "index")
    await aindex_directory(corpus, config=config, embeddings=emb)
    assert "linked.md" in await sources_in(tmp_path / "index")
    (corpus / "linked.md").unlink()
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_deleted == 1
    assert await sources_in(tmp_path / "index") == {"chapter-00.md"}


async def test_a_stage_error_reaches_the_caller_as_itself(
    tmp_path: Path, emb: CountingEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)

    async def full_disk(self: Any, *args: Any, **kwargs: Any) -> list[str]:
        raise VectorStoreError("no space left on device")

    monkeypatch.setattr(AsyncFAISS, "aadd_embeddings", full_disk)
    with pytest.raises(VectorStoreError, match="no space left"):
        await aindex_directory(corpus, config=config_for(tmp_path / "index"), embeddings=emb)


async def test_store_removed_by_hand_is_rebuilt_from_the_files(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=3)
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    first = await aindex_directory(corpus, config=config, embeddings=emb)
    (index_dir / "manifest.json").unlink()  # records.sqlite still says "all indexed"
    again = await aindex_directory(corpus, config=config, embeddings=emb)
    assert again.files_indexed == 3 and again.chunks_added == first.chunks_added
    dense, keys = await store_and_record_ids(index_dir)
    assert dense == keys and len(dense) == first.chunks_added
