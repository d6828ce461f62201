"""The indexing graph end to end on small corpora, with a counting fake embedding model."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.config import EmbeddingConfig, PipelineConfig, RAGConfig, SplitterConfig
from langchain_rag_async.errors import EmbeddingModelMismatchError, LoadingError
from langchain_rag_async.indexing.api import aindex_directory, index_directory
from langchain_rag_async.indexing.graph import IndexingContext, build_indexing_graph
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import RECORDS_FILE, RECORDS_NAMESPACE
from langchain_rag_async.sparse_index import FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS

PARAGRAPH = (
    "Ownership is a set of rules that govern how a Rust program manages memory. "
    "Each value has an owner, there can only be one owner at a time, and when the "
    "owner goes out of scope the value is dropped. "
)


class CountingEmbedding(DeterministicFakeEmbedding):
    """A deterministic fake that counts every text it embeds and can fail on purpose."""

    calls: int = 0
    texts: int = 0
    poison: str | None = None
    gate: Any = None  # an asyncio.Event that async calls wait on, when set

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.poison is not None and any(self.poison in t for t in texts):
            raise ValueError(f"refusing text containing {self.poison!r}")
        self.calls += 1
        self.texts += len(texts)
        return super().embed_documents(texts)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.gate is not None:
            await self.gate.wait()
        return self.embed_documents(texts)


def make_corpus(root: Path, files: int = 6, paragraphs: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n\n".join(f"{PARAGRAPH} File {i}, paragraph {p}." for p in range(paragraphs))
        (root / f"chapter-{i:02d}.md").write_text(f"# Chapter {i}\n\n{body}\n", encoding="utf-8")
    return root


def config_for(index_dir: Path, **pipeline: Any) -> RAGConfig:
    return RAGConfig(
        index_dir=index_dir,
        splitter=SplitterConfig(chunk_size=300, chunk_overlap=30),
        pipeline=PipelineConfig(**pipeline),
    )


async def store_and_record_ids(index_dir: Path) -> tuple[set[str], set[str]]:
    store = await AsyncFAISS.aload_local(str(index_dir), DeterministicFakeEmbedding(size=32))
    async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE) as rm:
        keys = set(await rm.alist_keys())
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        sparse_ids = await sparse.aids()
    assert store.index.ntotal == len(store.index_to_docstore_id) == len(store.docstore._dict)
    dense_ids = set(store.index_to_docstore_id.values())
    assert sparse_ids == dense_ids, "the sparse index must hold exactly the stored chunks"
    return dense_ids, keys


@pytest.fixture
def emb() -> CountingEmbedding:
    return CountingEmbedding(size=32)


async def test_first_run_indexes_everything(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs")
    index_dir = tmp_path / "index"
    summary = await aindex_directory(corpus, config=config_for(index_dir), embeddings=emb)
    assert summary.files_indexed == 6
    assert summary.files_skipped == 0 and summary.files_failed == []
    assert summary.chunks_added > 6
    assert summary.chunks_embedded == emb.texts == summary.chunks_added
    faiss_ids, record_keys = await store_and_record_ids(index_dir)
    assert faiss_ids == record_keys
    assert len(faiss_ids) == summary.chunks_added


async def test_rerun_embeds_nothing_and_reads_nothing(
    tmp_path: Path, emb: CountingEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "docs")
    config = config_for(tmp_path / "index")
    first = await aindex_directory(corpus, config=config, embeddings=emb)
    emb.texts = emb.calls = 0

    from langchain_rag_async.loaders import AsyncDirectoryLoader

    async def no_reads(self: Any, file: Any) -> Any:
        raise AssertionError(f"unchanged file was read: {file}")

    monkeypatch.setattr(AsyncDirectoryLoader, "aload_file", no_reads)
    again = await aindex_directory(corpus, config=config, embeddings=emb)
    assert again.files_skipped == 6 and again.files_indexed == 0
    assert again.chunks_embedded == 0 and again.chunks_added == 0 and again.chunks_deleted == 0
    assert emb.calls == 0
    assert first.chunks_added > 0


async def test_changed_file_reembeds_only_its_new_chunks(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs")
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    await aindex_directory(corpus, config=config, embeddings=emb)
    before, _ = await store_and_record_ids(index_dir)
    emb.texts = 0
    target = corpus / "chapter-03.md"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("paragraph 5.", "paragraph five, rewritten."), "utf-8")
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_indexed == 1 and summary.files_skipped == 5
    assert 1 <= summary.chunks_added <= 2
    assert summary.chunks_deleted == summary.chunks_added
    assert emb.texts == summary.chunks_added
    after, keys = await store_and_record_ids(index_dir)
    assert after == keys
    assert len(before - after) == summary.chunks_deleted


async def test_deleted_file_loses_its_chunks(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs")
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    await aindex_directory(corpus, config=config, embeddings=emb)
    store = await AsyncFAISS.aload_local(str(index_dir), DeterministicFakeEmbedding(size=32))
    victim = str((corpus / "chapter-01.md").resolve())
    owned = {i for i, d in store.docstore._dict.items() if d.metadata["source"] == victim}
    assert owned
    (corpus / "chapter-01.md").unlink()
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_deleted == 1 and summary.chunks_deleted == len(owned)
    after, keys = await store_and_record_ids(index_dir)
    assert not owned & after and after == keys


async def test_touched_file_is_not_reembedded(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs")
    config = config_for(tmp_path / "index")
    await aindex_directory(corpus, config=config, embeddings=emb)
    emb.texts = 0
    target = corpus / "chapter-00.md"
    st = target.stat()
    os.utime(target, (st.st_atime + 100, st.st_mtime + 100))
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_skipped == 6 and summary.files_indexed == 0
    assert emb.texts == 0 and summary.chunks_added == 0


async def test_bad_files_are_reported_not_fatal(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs", files=3)
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    summary = await aindex_directory(corpus, config=config_for(tmp_path / "index"), embeddings=emb)
    assert summary.files_indexed == 3
    failed = {Path(f.path).name: f.reason for f in summary.files_failed}
    assert "blob.txt" in failed and "binary" in failed["blob.txt"].lower()


async def test_embedding_failure_fails_only_that_file_and_keeps_old_chunks(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=3)
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    await aindex_directory(corpus, config=config, embeddings=emb)
    before, _ = await store_and_record_ids(index_dir)
    target = corpus / "chapter-02.md"
    target.write_text(target.read_text("utf-8") + "\n\nPOISON paragraph.\n", "utf-8")
    (corpus / "chapter-09.md").write_text("# New\n\nA brand new chapter.\n", "utf-8")
    emb.poison = "POISON"
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert [Path(f.path).name for f in summary.files_failed] == ["chapter-02.md"]
    assert summary.files_indexed == 1  # the new chapter
    after, keys = await store_and_record_ids(index_dir)
    assert before <= after and after == keys  # nothing indexed before was lost
    emb.poison = None
    retry = await aindex_directory(corpus, config=config, embeddings=emb)
    assert retry.files_indexed == 1 and retry.files_failed == []


async def test_other_model_is_refused(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    config = config_for(tmp_path / "index")
    await aindex_directory(corpus, config=config, embeddings=emb)

    class OtherEmbedding(DeterministicFakeEmbedding):
        pass

    with pytest.raises(EmbeddingModelMismatchError, match="CountingEmbedding"):
        await aindex_directory(corpus, config=config, embeddings=OtherEmbedding(size=32))


async def test_missing_root_is_a_clear_error(tmp_path: Path, emb: CountingEmbedding) -> None:
    with pytest.raises(LoadingError, match="nope"):
        await aindex_directory(
            tmp_path / "nope", config=config_for(tmp_path / "index"), embeddings=emb
        )


async def test_stages_overlap_under_back_pressure(
    tmp_path: Path, emb: CountingEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=30, paragraphs=3)
    events: list[dict[str, Any]] = []
    stored = asyncio.Event()

    def on_progress(event: dict[str, Any]) -> None:
        events.append(event)
        if event.get("type") == "progress" and event["chunks_stored"] > 0:
            stored.set()

    from langchain_rag_async.loaders import AsyncDirectoryLoader

    real_load = AsyncDirectoryLoader.aload_file

    async def load_late_files_after_a_store(self: Any, file: Any) -> Any:
        # The last file can only be read once something has been stored: a pipeline
        # whose stages do not overlap would never get there (and time out here).
        if Path(str(getattr(file, "path", file))).name == "chapter-29.md":
            await asyncio.wait_for(stored.wait(), timeout=30)
        return await real_load(self, file)

    monkeypatch.setattr(AsyncDirectoryLoader, "aload_file", load_late_files_after_a_store)
    config = config_for(tmp_path / "index", queue_size=2, store_batch_size=4, split_workers=1)
    summary = await aindex_directory(corpus, config=config, embeddings=emb, on_progress=on_progress)
    assert summary.files_indexed == 30 and summary.files_failed == []
    progress = [e for e in events if e.get("type") == "progress"]
    assert progress[-1]["stage"] == "done"
    assert progress[-1]["chunks_stored"] == summary.chunks_added
    stored_counts = [e["chunks_stored"] for e in progress]
    assert stored_counts == sorted(stored_counts)


async def test_graph_streams_custom_progress(tmp_path: Path, emb: CountingEmbedding) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    graph = build_indexing_graph()
    seen_modes: set[str] = set()
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"path": str(corpus), "index_dir": str(tmp_path / "index")},
        context=IndexingContext(config=config_for(tmp_path / "index"), embeddings=emb),
        stream_mode=["custom", "updates", "values"],
    ):
        seen_modes.add(mode)
        if mode == "values":
            final = chunk
    assert seen_modes == {"custom", "updates", "values"}
    assert final["summary"]["files_indexed"] == 2


async def test_cancellation_leaves_a_consistent_index(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=12)
    index_dir = tmp_path / "index"
    config = config_for(index_dir, checkpoint_every=8, store_batch_size=4, queue_size=2)
    await aindex_directory(make_corpus(tmp_path / "docs", files=2), config=config, embeddings=emb)
    for i in range(2, 12):  # make the other files new for the next run
        (corpus / f"chapter-{i:02d}.md").write_text(f"# C{i}\n\n{PARAGRAPH * 4} {i}", "utf-8")
    stored: list[int] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("type") == "progress":
            stored.append(event["chunks_stored"])

    gate = asyncio.Event()
    emb.gate = gate
    task = asyncio.create_task(
        aindex_directory(corpus, config=config, embeddings=emb, on_progress=on_progress)
    )
    gate.set()
    while not stored or stored[-1] < 8:
        await asyncio.sleep(0.005)
        if task.done():
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store = await AsyncFAISS.aload_local(str(index_dir), DeterministicFakeEmbedding(size=32))
    async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE) as rm:
        keys = set(await rm.alist_keys())
    assert keys <= set(store.index_to_docstore_id.values())  # records never run ahead
    emb.gate = None
    final = await aindex_directory(corpus, config=config, embeddings=emb)
    faiss_ids, keys = await store_and_record_ids(index_dir)
    assert faiss_ids == keys
    assert final.files_failed == []


class HoldingEmbedding(CountingEmbedding):
    """Embeds texts without ``marker`` at once and holds those with it until released.

    A call holds all its texts when one has the marker: run it with
    :func:`one_text_per_call`, so that the held file's chunks never hold another's.
    """

    marker: str = "HOLD"
    release: Any = None

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.release is not None and any(self.marker in t for t in texts):
            await self.release.wait()
        return self.embed_documents(texts)


def one_text_per_call(config: RAGConfig) -> RAGConfig:
    """``config`` with embedding batches of one text (how files share batches varies)."""
    return replace(config, embeddings=EmbeddingConfig(batch_size=1))


async def test_the_sparse_index_changes_with_the_saved_store_not_before(
    tmp_path: Path,
) -> None:
    # A reader (another process) must not see sparse rows of chunks the saved store does not
    # hold yet: the run applies them right after saving the store, at its checkpoint.
    corpus = make_corpus(tmp_path / "docs", files=2)
    index_dir = tmp_path / "index"
    config = one_text_per_call(config_for(index_dir, store_batch_size=1))
    emb = HoldingEmbedding(size=32)
    await aindex_directory(corpus, config=config, embeddings=emb)
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        before = await sparse.aids()
    (corpus / "a-new.md").write_text(f"# New\n\n{PARAGRAPH} fresh words", "utf-8")
    (corpus / "z-held.md").write_text(f"# Held\n\n{PARAGRAPH} HOLD", "utf-8")
    emb.release = asyncio.Event()
    first_stored = asyncio.Event()

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("type") == "progress" and event["chunks_stored"] > 0:
            first_stored.set()  # a-new.md is in the store (in memory)

    task = asyncio.create_task(
        aindex_directory(corpus, config=config, embeddings=emb, on_progress=on_progress)
    )
    async with asyncio.timeout(30):
        await first_stored.wait()
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        assert await sparse.aids() == before
    emb.release.set()
    summary = await task
    assert summary.files_indexed == 2
    dense_ids, _ = await store_and_record_ids(index_dir)  # sparse == store again
    assert len(dense_ids) > len(before)


async def test_a_cancelled_run_leaves_no_staged_sparse_rows(tmp_path: Path) -> None:
    # The run writes sparse rows as the store takes chunks, in a transaction committed after
    # the store's save: cancelled before it, the sparse index is as it was, still sealed.
    corpus = make_corpus(tmp_path / "docs", files=2)
    index_dir = tmp_path / "index"
    config = one_text_per_call(config_for(index_dir, store_batch_size=1))
    emb = HoldingEmbedding(size=32)
    await aindex_directory(corpus, config=config, embeddings=emb)
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        before = await sparse.aids()
        assert await sparse.acheck_seal() == "sound"
    (corpus / "a-new.md").write_text(f"# New\n\n{PARAGRAPH} fresh words", "utf-8")
    (corpus / "z-held.md").write_text(f"# Held\n\n{PARAGRAPH} HOLD", "utf-8")
    emb.release = asyncio.Event()
    first_stored = asyncio.Event()

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("type") == "progress" and event["chunks_stored"] > 0:
            first_stored.set()  # a-new.md's rows are staged in the sparse index

    task = asyncio.create_task(
        aindex_directory(corpus, config=config, embeddings=emb, on_progress=on_progress)
    )
    async with asyncio.timeout(30):
        await first_stored.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        assert await sparse.aids() == before
        assert await sparse.acheck_seal() == "sound"
    emb.release.set()
    summary = await aindex_directory(corpus, config=config, embeddings=emb)
    assert summary.files_indexed == 2
    dense_ids, _ = await store_and_record_ids(index_dir)  # sparse == store
    assert len(dense_ids) > len(before)
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        assert await sparse.acheck_seal() == "sound"


@pytest.mark.allow_blocking
def test_sync_twin_runs_inside_a_running_loop(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    emb = CountingEmbedding(size=32)
    config = config_for(tmp_path / "index")

    async def caller() -> int:
        # A sync caller inside a running loop (Jupyter-style) must not deadlock.
        return index_directory(corpus, config=config, embeddings=emb).files_indexed

    assert asyncio.run(caller()) == 2
    assert index_directory(corpus, config=config, embeddings=emb).files_skipped == 2


async def test_span_tree(tmp_path: Path, emb: CountingEmbedding, spans: Any) -> None:
    corpus = make_corpus(tmp_path / "docs", files=2)
    await aindex_directory(corpus, config=config_for(tmp_path / "index"), embeddings=emb)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    root = [s for s in finished if s.name == "index_directory"]
    assert len(root) == 1

    def ancestors(s: Any) -> list[str]:
        names = []
        while s.parent is not None and s.parent.span_id in by_id:
            s = by_id[s.parent.span_id]
            names.append(s.name)
        return names

    for name in ("plan", "load", "split", "embed", "store"):
        matching = [s for s in finished if s.name == name]
        assert matching, f"no {name} span"
        assert all("index_directory" in ancestors(s) for s in matching), name
    embed = [s for s in finished if s.name == "embed"][0]
    assert embed.attributes is not None and embed.attributes.get("batch_size")


async def test_sparse_index_is_repaired_after_a_crash(
    tmp_path: Path, emb: CountingEmbedding
) -> None:
    corpus = make_corpus(tmp_path / "docs", files=3)
    index_dir = tmp_path / "index"
    config = config_for(index_dir)
    await aindex_directory(corpus, config=config, embeddings=emb)
    dense, _ = await store_and_record_ids(index_dir)
    lost = sorted(dense)[:3]
    async with FTS5Index.in_index_dir(index_dir) as sparse:  # simulate a torn crash
        await sparse.adelete(lost)
        await sparse.aapply(upserts=[Document(page_content="ghost", id="ghost", metadata={})])
    await aindex_directory(corpus, config=config, embeddings=emb)
    repaired, keys = await store_and_record_ids(index_dir)  # asserts sparse == dense
    assert repaired == dense == keys


def test_a_broken_internal_invariant_is_an_indexing_error_to_report() -> None:
    from langchain_rag_async.errors import IndexingError
    from langchain_rag_async.indexing.pipeline import _vector

    with pytest.raises(IndexingError, match="Please report"):
        _vector(None)
    assert _vector([1.0]) == [1.0]


def test_indexing_does_not_import_the_retrievers() -> None:
    """Layers: indexing writes the sparse index through ``sparse_index``, never ``retrievers``."""
    import subprocess
    import sys

    code = (
        "import sys, langchain_rag_async.indexing.graph, langchain_rag_async.indexing.api\n"
        "print(sorted(m for m in sys.modules if m.startswith('langchain_rag_async.retrievers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
