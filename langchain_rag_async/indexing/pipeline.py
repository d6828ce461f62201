"""The overlapped indexing pipeline: load → split → embed → store over bounded queues.

Each stage is a task under one :class:`asyncio.TaskGroup`; the queues between them are
bounded, so a slow stage pushes back on the ones before it and memory stays bounded
whatever the corpus size. The index is saved at checkpoints: first the vector store
(atomically), then the sparse index (one transaction), then the record manager, so a crash
or cancellation at any point leaves a saved index that agrees with its records (at worst
the next run re-stores a few chunks), and readers see the sparse rows of the saved store.
The pipeline's own FTS5 index takes each batch as the store does, inside one transaction
committed (with its seal) after the store's save, so its work overlaps the embedding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_rag_async._introspect import accepted_keywords
from langchain_rag_async.aio import first_error
from langchain_rag_async.aio.queues import ResizableQueue
from langchain_rag_async.config import PipelineConfig
from langchain_rag_async.embeddings.cache import CachedEmbeddings
from langchain_rag_async.errors import EmbeddingError, IndexingError, RAGError
from langchain_rag_async.indexing.events import FailedFile, IndexingProgress, IndexingSummary
from langchain_rag_async.indexing.memory import AdaptiveBatching, MemoryReading
from langchain_rag_async.indexing.pipeline_protocols import IndexRecords, IndexStore
from langchain_rag_async.indexing.plan import IndexPlan
from langchain_rag_async.indexing.record_manager import FileRecord
from langchain_rag_async.loaders import AsyncDirectoryLoader
from langchain_rag_async.metrics import DOCUMENTS_PROCESSED, RunningTotals
from langchain_rag_async.observability import bind_task_id, get_logger, span
from langchain_rag_async.sparse_index import FTS5Index, SparseIndex, seal_sparse
from langchain_rag_async.sparse_index.fts5 import StagedWrites
from langchain_rag_async.splitters import RunnableTextSplitter

__all__ = ("IndexingPipeline", "ProgressCallback")

ProgressCallback = Callable[[dict[str, Any]], None]
_DONE = object()
_log = get_logger(__name__)


@dataclass(slots=True)
class _FileWork:
    """One file travelling through split → embed → store."""

    record: FileRecord
    chunks: list[Document] = field(default_factory=list)
    new_chunks: list[Document] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)
    chunk_ids: list[str] = field(default_factory=list)
    vectors: list[list[float] | None] = field(default_factory=list)
    remaining: int = 0
    error: str | None = None
    unchanged_content: bool = False


class IndexingPipeline:
    """Run one indexing plan through the four overlapped stages.

    Args:
        loader: Reads the files of the plan.
        splitter: Cuts documents into chunks with deterministic ids.
        embeddings: The embedding stack (ideally cached and rate limited).
        store: The vector store to update.
        record_manager: Keeps chunk keys and the file table.
        index_dir: Where checkpoints are saved.
        config: Queue sizes, workers, checkpoint interval and the low-memory threshold.
        batch_size: Texts per embedding call (at most: halved while memory is low).
        concurrency: Embedding calls in flight at most.
        known: The file table as read before the run, by source.
        sparse: An optional sparse index kept in step with the store.
        on_progress: Called with a progress event dict after every change.
        memory_reading: Where available memory is read (``psutil`` by default; tests
            inject a fake).
        stage_sparse: Write an :class:`FTS5Index` ``sparse`` batch by batch in one
            transaction per checkpoint (its connection is then busy for the run: pass
            ``False`` for an index that also serves queries meanwhile).
    """

    def __init__(
        self,
        *,
        loader: AsyncDirectoryLoader,
        splitter: RunnableTextSplitter,
        embeddings: Embeddings,
        store: IndexStore,
        record_manager: IndexRecords,
        index_dir: Path,
        config: PipelineConfig,
        batch_size: int,
        concurrency: int,
        known: dict[str, FileRecord],
        sparse: SparseIndex | None = None,
        on_progress: ProgressCallback | None = None,
        memory_reading: MemoryReading | None = None,
        stage_sparse: bool = False,
    ) -> None:
        self._loader = loader
        self._splitter = splitter
        self._embeddings = embeddings
        self._pass_sources = _accepts_sources(embeddings)
        self._store = store
        self._records = record_manager
        self._index_dir = index_dir
        self._config = config
        self.batching = AdaptiveBatching(
            batch_size=batch_size,
            queue_size=config.queue_size,
            low_memory=config.low_memory_bytes,
            interval=config.memory_check_interval,
            read=memory_reading,
        )
        self._concurrency = concurrency
        self._known = known
        self._sparse = sparse
        self._on_progress = on_progress
        self.progress = IndexingProgress()
        self.summary = IndexingSummary(index_dir=str(index_dir))
        self._documents = RunningTotals(DOCUMENTS_PROCESSED)  # files by outcome, as they go
        self._pending: list[_FileWork] = []
        self._pending_deletes: list[str] = []
        self._deleted_files: list[str] = []
        self._stored_since_checkpoint = 0
        self._sparse_upserts: list[str] = []  # ids: the documents are in the store
        self._sparse_deletes: list[str] = []
        self._staged_index = sparse if stage_sparse and isinstance(sparse, FTS5Index) else None
        self._staging: contextlib.AbstractAsyncContextManager[StagedWrites] | None = None
        self._staged: StagedWrites | None = None
        self._look_up_old_keys = True  # until the run finds that no file to read has any

    # -- public -----------------------------------------------------------------------

    async def arun(self, plan: IndexPlan) -> IndexingSummary:
        """Execute ``plan`` and return the summary (also kept in ``self.summary``)."""
        started = time.perf_counter()
        self.summary.files_skipped = len(plan.unchanged)
        self.progress.files_total = len(plan.to_load)
        self._emit("plan")
        counters = _CacheCounters.start(self._embeddings)
        self._look_up_old_keys = await self._any_old_keys(plan)
        q = self._config.queue_size
        split_q: ResizableQueue[Any] = ResizableQueue(q)
        embed_q: ResizableQueue[Any] = ResizableQueue(q)
        store_q: ResizableQueue[Any] = ResizableQueue(q)
        try:
            try:
                async with (
                    self.batching.watching((split_q, embed_q, store_q)),
                    asyncio.TaskGroup() as tg,
                ):
                    tg.create_task(_as_task("load", self._load_stage(plan, split_q)))
                    tg.create_task(_as_task("split", self._split_stage(split_q, embed_q)))
                    tg.create_task(
                        _as_task(
                            "embed",
                            self._embed_stage(embed_q, store_q),
                            batch_size=self.batching.batch_size,
                            concurrency=self._concurrency,
                        )
                    )
                    tg.create_task(_as_task("store", self._store_stage(store_q)))
            except BaseExceptionGroup as group:
                # Callers catch RAGError (the CLI prints it): hand them the stage's own error.
                cause = first_error(group)
                if isinstance(cause, asyncio.CancelledError):
                    raise
                raise cause from group
            await self._forget_deleted(plan.deleted)
            await self._checkpoint()
        except BaseException as exc:
            await self._end_staging(exc)  # roll back sparse rows of an unsaved store
            raise
        self.summary.chunks_embedded, self.summary.chunks_cached = counters.finish(
            self._embeddings, self.progress.chunks_to_embed
        )
        self.summary.seconds = time.perf_counter() - started
        self._emit("done")
        return self.summary

    async def _any_old_keys(self, plan: IndexPlan) -> bool:
        """Whether any file to read has chunk keys recorded (one query for the run).

        When none has (a new index, or only new files), each file's chunks are all new
        and the per-file lookup in ``_prepare_file`` is skipped: a round trip to the
        records' thread per file, before its first chunk can be embedded.
        """
        sources = [info.source for info in plan.to_load]
        if not sources:
            return False
        return bool(await self._records.alist_keys(group_ids=sources, limit=1))

    # -- stages -----------------------------------------------------------------------

    async def _load_stage(self, plan: IndexPlan, out: ResizableQueue[Any]) -> None:
        with span("load", files=len(plan.to_load)):
            seen: set[str] = set()
            docs = self._loader.alazy_load_files(plan.to_load)
            async with contextlib.aclosing(docs):
                async for doc in docs:
                    seen.add(str(doc.metadata["source"]))
                    self.progress.files_loaded += 1
                    self._emit("load")
                    await out.put(doc)
            for failure in self._loader.failures:
                seen.add(failure.path)
                self.summary.files_failed.append(FailedFile(failure.path, failure.reason))
                self.progress.files_done += 1
            # Files that read as empty: index them as having no chunks.
            for info in plan.to_load:
                if info.source not in seen:
                    await out.put(_empty_document(info.source, info.size, info.mtime))
        for _ in range(self._config.split_workers):
            await out.put(_DONE)

    async def _split_stage(self, inbox: ResizableQueue[Any], out: ResizableQueue[Any]) -> None:
        with span("split", workers=self._config.split_workers):
            async with asyncio.TaskGroup() as tg:
                for _ in range(self._config.split_workers):
                    tg.create_task(self._split_worker(inbox, out))
        await out.put(_DONE)

    async def _split_worker(self, inbox: ResizableQueue[Any], out: ResizableQueue[Any]) -> None:
        while (doc := await inbox.get()) is not _DONE:
            try:
                out_work = await self._prepare_file(doc)
            except (RAGError, ValueError, UnicodeError, OSError) as exc:
                # One file that cannot be split or looked up fails alone, not the run.
                _log.warning("file failed before embedding", source=doc.metadata.get("source"))
                out_work = _failed_work(doc, f"could not be split: {type(exc).__name__}: {exc}")
            self.progress.chunks_total += len(out_work.chunks)
            self.progress.chunks_to_embed += len(out_work.new_chunks)
            self._emit("split")
            await out.put(out_work)

    async def _prepare_file(self, doc: Document) -> _FileWork:
        record = _record_of(doc)
        known = self._known.get(record.path)
        if (
            known is not None
            and known.status == "indexed"
            and known.content_hash
            and known.content_hash == record.content_hash
        ):
            # Only the mtime moved: same bytes, same chunks. Just refresh the record.
            keep = replace(record, chunk_count=known.chunk_count)
            return _FileWork(record=keep, unchanged_content=True)
        source = record.path
        chunks = await self._splitter.asplit_document(doc) if doc.page_content else []
        old_keys: set[str] = set()
        if self._look_up_old_keys:
            old_keys.update(await self._records.alist_keys(group_ids=[source]))
        new_chunks = [c for c in chunks if c.id not in old_keys]
        stale = sorted(old_keys - {str(c.id) for c in chunks})
        record = replace(record, chunk_count=len(chunks))
        return _FileWork(
            record=record,
            chunks=chunks,
            new_chunks=new_chunks,
            stale_ids=stale,
            chunk_ids=[str(c.id) for c in chunks],
            vectors=[None] * len(new_chunks),
            remaining=len(new_chunks),
        )

    async def _embed_stage(self, inbox: ResizableQueue[Any], out: ResizableQueue[Any]) -> None:
        # Twice the request bound: while some batches wait on the embedding cache (SQLite),
        # others keep the service's slots busy. The service limiter still caps requests.
        slots = asyncio.Semaphore(2 * self._concurrency)
        buffer: list[tuple[_FileWork, int]] = []
        async with asyncio.TaskGroup() as tg:

            async def flush(items: list[tuple[_FileWork, int]]) -> None:
                await slots.acquire()  # back-pressure: at most `concurrency` batches
                tg.create_task(self._embed_batch(items, slots, out))

            while (work := await inbox.get()) is not _DONE:
                if work.remaining == 0:
                    await out.put(work)
                    continue
                buffer.extend((work, i) for i in range(len(work.new_chunks)))
                while len(buffer) >= (size := self.batching.batch_size):  # memory-adaptive
                    batch, buffer = buffer[:size], buffer[size:]
                    await flush(batch)
                if buffer and inbox.empty():
                    # Nothing else is waiting: send the partial batch rather than idle.
                    batch, buffer = buffer, []
                    await flush(batch)
            if buffer:
                await flush(buffer)
        await out.put(_DONE)

    async def _embed_batch(
        self,
        items: list[tuple[_FileWork, int]],
        slots: asyncio.Semaphore,
        out: ResizableQueue[Any],
    ) -> None:
        try:
            vectors = await self._embed_items(items)
        finally:
            slots.release()
        finished: list[_FileWork] = []
        for (work, i), vector in zip(items, vectors, strict=True):
            work.vectors[i] = vector
            work.remaining -= 1
            if work.remaining == 0:
                finished.append(work)
        self.progress.chunks_embedded += len(items)
        self._emit("embed")
        for work in finished:
            await out.put(work)

    async def _embed_items(self, items: list[tuple[_FileWork, int]]) -> list[list[float] | None]:
        """Vectors of the items' chunks; ``None`` for the chunks of files that failed.

        A batch mixes chunks of several files. When it fails for good, each file's chunks
        are tried again on their own, so that only the files the service keeps refusing
        fail (a text it rejects fails its own file, not its neighbours in the batch).
        """
        texts = [work.new_chunks[i].page_content for work, i in items]
        sources = [work.record.path for work, _ in items]
        try:
            return list(await self._embed_texts(texts, sources))
        except EmbeddingError as exc:
            if len(set(sources)) == 1:
                return self._fail_items(items, exc)
            _log.warning("embedding failed; retrying file by file", texts=len(texts))
        vectors: list[list[float] | None] = [None] * len(items)
        for source in dict.fromkeys(sources):
            positions = [p for p, s in enumerate(sources) if s == source]
            part = [items[p] for p in positions]
            try:
                found: list[list[float] | None] = list(
                    await self._embed_texts([texts[p] for p in positions], [source] * len(part))
                )
            except EmbeddingError as exc:
                found = self._fail_items(part, exc)
            for p, vector in zip(positions, found, strict=True):
                vectors[p] = vector
        return vectors

    @staticmethod
    def _fail_items(
        items: list[tuple[_FileWork, int]], exc: EmbeddingError
    ) -> list[list[float] | None]:
        _log.warning("embedding failed", error=str(exc), texts=len(items))
        for work, _ in items:
            work.error = work.error or f"embedding failed: {exc}"
        return [None] * len(items)

    async def _embed_texts(self, texts: list[str], sources: list[str]) -> list[list[float]]:
        if self._pass_sources:  # our wrappers name failed sources in their errors
            embed: Any = self._embeddings.aembed_documents
            result: list[list[float]] = await embed(texts, sources=sources)
            return result
        return await self._embeddings.aembed_documents(texts)

    async def _store_stage(self, inbox: ResizableQueue[Any]) -> None:
        batch: list[_FileWork] = []
        size = 0
        while (work := await inbox.get()) is not _DONE:
            batch.append(work)
            size += len(work.new_chunks) + len(work.stale_ids)
            if size >= self._config.store_batch_size or inbox.empty():
                await self._store_batch(batch)
                batch, size = [], 0
        if batch:
            await self._store_batch(batch)

    # -- store and checkpoints ----------------------------------------------------------

    async def _store_batch(self, works: list[_FileWork]) -> None:
        good = [w for w in works if w.error is None]
        for work in works:
            if work.error is not None:
                self.summary.files_failed.append(FailedFile(work.record.path, work.error))
        adds = [c for w in good for c in w.new_chunks]
        vectors = [v for w in good for v in w.vectors]
        deletes = [i for w in good for i in w.stale_ids]
        with span("store", chunks_added=len(adds), chunks_deleted=len(deletes)):
            if adds:
                await self._store.aadd_embeddings(
                    [(c.page_content, _vector(v)) for c, v in zip(adds, vectors, strict=True)],
                    metadatas=[dict(c.metadata) for c in adds],
                    ids=[str(c.id) for c in adds],
                )
            if deletes:
                await self._store.adelete(deletes)
        # The sparse index changes with the saved store, at the checkpoint: until then,
        # readers (other processes too) see the sparse rows of the saved generation.
        if self._staged_index is not None and (adds or deletes):  # written now, committed then
            staged = await self._staged_writes()
            # The chunks as the store holds them (it copied their metadata; nothing changed
            # them since): the rows are encoded before this call first waits.
            await staged.aapply(upserts=adds, deletes=deletes)
        else:
            self._sparse_upserts.extend(str(c.id) for c in adds)
            self._sparse_deletes.extend(deletes)
        for work in good:  # until the checkpoint, a file needs only its record and ids
            work.chunks, work.new_chunks, work.vectors = [], [], []
        for work in good:
            if work.unchanged_content:
                self.summary.files_skipped += 1
            else:
                self.summary.files_indexed += 1
        self.summary.chunks_added += len(adds)
        self.summary.chunks_deleted += len(deletes)
        self.progress.chunks_stored += len(adds)
        self.progress.files_done += len(works)
        self._pending.extend(good)
        self._stored_since_checkpoint += len(adds) + len(deletes)
        self._emit("store")
        every = self._config.checkpoint_every
        if every and self._stored_since_checkpoint >= every:
            await self._checkpoint()

    async def _forget_deleted(self, deleted: Sequence[str]) -> None:
        if not deleted:
            return
        keys = await self._records.alist_keys(group_ids=list(deleted))
        with span("store", chunks_deleted=len(keys), files_deleted=len(deleted)):
            if keys:
                await self._store.adelete(keys)
                self._sparse_deletes.extend(keys)
        self._pending_deletes.extend(keys)
        self._deleted_files = list(deleted)
        self.summary.files_deleted = len(deleted)
        self.summary.chunks_deleted += len(keys)

    async def _checkpoint(self) -> None:
        """Save the store, then record what it now holds, as one uncancellable step.

        A cancellation arriving meanwhile waits for both halves to finish and is then
        re-raised: a save without its record commit would leave the records claiming
        chunks the saved index no longer has (harmless, but untidy until the next run).
        """
        step = asyncio.ensure_future(self._save_and_commit())
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            await step
            raise

    async def _save_and_commit(self) -> None:
        works, self._pending = self._pending, []
        deletes, self._pending_deletes = self._pending_deletes, []
        deleted_files, self._deleted_files = self._deleted_files, []
        upserts, self._sparse_upserts = self._sparse_upserts, []
        sparse_deletes, self._sparse_deletes = self._sparse_deletes, []
        self._stored_since_checkpoint = 0
        with span("checkpoint", files=len(works)):
            if self._staged is not None or (self._staged_index is not None and sparse_deletes):
                staged = await self._staged_writes()
                await staged.aapply(deletes=sparse_deletes)  # files deleted from disk
                sparse_deletes = []
                try:
                    async with asyncio.TaskGroup() as tg:  # seal while the store saves
                        tg.create_task(self._store.asave_local(str(self._index_dir)))
                        tg.create_task(staged.aseal())
                except BaseExceptionGroup as group:
                    raise first_error(group) from group
                await self._end_staging(None)  # commit: after the save, as below
            else:
                await self._store.asave_local(str(self._index_dir))
            if self._sparse is not None and (upserts or sparse_deletes):
                # One transaction; a crash before it is repaired from the saved store.
                documents = await self._store.aget_by_ids(upserts) if upserts else []
                await self._sparse.aapply(upserts=documents, deletes=sparse_deletes)
                await seal_sparse(self._sparse)
            keys = [i for w in works for i in w.chunk_ids]
            groups: list[str | None] = [w.record.path for w in works for _ in w.chunk_ids]
            stale = [i for w in works for i in w.stale_ids] + deletes
            with span("records.commit", files=len(works), keys=len(keys)):
                await self._records.acommit_file_batch(
                    files=[w.record for w in works], keys=keys, group_ids=groups, delete_keys=stale
                )
                if deleted_files:
                    await self._records.adelete_files(deleted_files)

    async def _staged_writes(self) -> StagedWrites:
        """The open staged transaction of the sparse index (opened on first use)."""
        if self._staged is None and self._staged_index is not None:
            self._staging = self._staged_index.astaged()
            self._staged = await self._staging.__aenter__()
        if self._staged is None:
            raise IndexingError("internal error: sparse writes staged without an FTS5 index")
        return self._staged

    async def _end_staging(self, exc: BaseException | None) -> None:
        """Commit the staged sparse rows (``exc`` is ``None``), or roll them back."""
        staging, self._staging, self._staged = self._staging, None, None
        if staging is None:
            return
        if exc is None:
            await staging.__aexit__(None, None, None)
        else:
            await staging.__aexit__(type(exc), exc, exc.__traceback__)

    def _emit(self, stage: str) -> None:
        self.progress.stage = stage
        s = self.summary
        self._documents.update(
            indexed=s.files_indexed,
            skipped=s.files_skipped,
            failed=len(s.files_failed),
            deleted=s.files_deleted,
        )
        if self._on_progress is not None:
            self._on_progress(self.progress.to_event())


@dataclass(slots=True)
class _CacheCounters:
    hits: int = 0
    misses: int = 0

    @classmethod
    def start(cls, embeddings: Embeddings) -> _CacheCounters:
        if isinstance(embeddings, CachedEmbeddings):
            return cls(hits=embeddings.hits, misses=embeddings.misses)
        return cls()

    def finish(self, embeddings: Embeddings, total: int) -> tuple[int, int]:
        """Return (embedded by the model, served from cache) during the run."""
        if isinstance(embeddings, CachedEmbeddings):
            return embeddings.misses - self.misses, embeddings.hits - self.hits
        return total, 0


async def _as_task(task_id: str, coro: Coroutine[Any, Any, None], **attributes: int | str) -> None:
    """Run a stage in its span (``embed_stage``), with its ``task_id`` bound for its logs."""
    bind_task_id(task_id)  # each task runs in its own copy of the context
    with span(f"{task_id}_stage", **attributes):
        await coro


def _record_of(doc: Document) -> FileRecord:
    """The file-table row of a loaded document (before its chunks are counted)."""
    meta = doc.metadata
    return FileRecord(
        path=str(meta.get("source", "")),
        size=int(meta.get("size", 0)),
        mtime=float(meta.get("mtime", 0.0)),
        content_hash=str(meta.get("content_hash", "")),
        status="indexed",
    )


def _failed_work(doc: Document, reason: str) -> _FileWork:
    return _FileWork(record=_record_of(doc), error=reason)


def _vector(value: list[float] | None) -> list[float]:
    if value is None:  # only files whose every batch succeeded reach the store
        raise IndexingError(
            "internal error: a chunk without a vector reached the store stage; nothing of "
            "it was stored. Please report this with the command line that caused it."
        )
    return value


def _empty_document(source: str, size: int, mtime: float) -> Document:
    meta = {"source": source, "size": size, "mtime": mtime, "content_hash": ""}
    return Document(page_content="", metadata=meta)


def _accepts_sources(embeddings: Embeddings) -> bool:
    """Whether ``aembed_documents`` takes ``sources=`` (our cache and rate-limit wrappers)."""
    return "sources" in accepted_keywords(embeddings.aembed_documents, ("sources",))
