"""Convert a LangChain pickled FAISS folder into an engine index, records included.

:func:`aconvert_langchain_faiss` writes the pickle-free store stamped with the embedding
model, seeds the embedding cache with the old vectors and, given the source directory,
the record manager's chunk keys and file table, so the first incremental run into the
new index skips unchanged files and embeds nothing it already has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._paths import aresolve
from langchain_rag_async.aio import run_sync
from langchain_rag_async.config import LoaderConfig, RAGConfig
from langchain_rag_async.embeddings.cache import SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import EMBEDDING_CACHE_FILE
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.ids import content_hash
from langchain_rag_async.indexing.record_manager import FileRecord, SQLiteRecordManager
from langchain_rag_async.indexing.resources import (
    RECORDS_FILE,
    RECORDS_NAMESPACE,
    make_index_dir,
    resolve_model_id,
)
from langchain_rag_async.loaders import AsyncDirectoryLoader
from langchain_rag_async.observability import get_logger
from langchain_rag_async.vectorstores import AsyncFAISS
from langchain_rag_async.vectorstores.faiss import read_manifest

__all__ = ("ConversionSummary", "aconvert_langchain_faiss", "convert_langchain_faiss")

_log = get_logger(__name__)

#: File-table size of a source the legacy index knew but the walk did not find: the
#: first indexing run counts the file as deleted and removes (and counts) its chunks.
_GONE = -1


@dataclass(frozen=True, slots=True)
class ConversionSummary:
    """What :func:`aconvert_langchain_faiss` wrote.

    Attributes:
        model_id: The embedding model identity stamped on the index.
        chunks: Chunks in the converted store.
        vectors_cached: Vectors copied into the embedding cache (0 when the FAISS index
            cannot give its vectors back).
        records: Chunk keys written to the record manager (0 without ``source_dir``).
        files_adopted: Source files whose current text is exactly covered by their
            chunks: recorded as indexed, so the first run skips them unread.
        files_changed: Source files that changed since the legacy index was built: the
            first run reads and splits them again, embeds only text it has no vector
            for, and removes (and counts) their stale chunks.
        files_gone: Sources under ``source_dir`` no longer found: the first run removes
            (and counts) their chunks.
        chunks_outside: Chunks whose source is not under ``source_dir`` (or has none):
            kept in the store, but no run will update or delete them.
    """

    model_id: str
    chunks: int
    vectors_cached: int
    records: int
    files_adopted: int
    files_changed: int
    files_gone: int
    chunks_outside: int


async def aconvert_langchain_faiss(
    legacy_dir: str | Path,
    index_dir: str | Path,
    embeddings: Embeddings,
    *,
    allow_dangerous_deserialization: bool = False,
    source_dir: str | Path | None = None,
    model_id: str | None = None,
    config: RAGConfig | None = None,
    index_name: str = "index",
) -> ConversionSummary:
    """Convert a folder written by LangChain's ``FAISS.save_local`` into an engine index.

    Reads ``index.faiss`` + ``index.pkl`` (pickle: only for folders you trust), and
    writes into ``index_dir`` what :func:`~langchain_rag_async.aindex_directory` and
    :class:`~langchain_rag_async.AsyncRAGEngine` expect: the pickle-free store stamped
    with ``model_id``, the embedding cache holding every old vector under that model
    (so text seen before is never embedded again) and, when ``source_dir`` is given,
    the record manager's keys (grouped by source file) and file table. A file whose
    current text is exactly covered by its old chunks is recorded as indexed: the first
    incremental run skips it. Other files are read again; their changed chunks are
    embedded and their stale ones deleted and counted in the run's summary.

    The store's manifest is written last: if the conversion is interrupted, run it again.

    Args:
        legacy_dir: The LangChain folder.
        index_dir: The new index directory; must not hold an index yet.
        embeddings: Your embedding model (the same one that made the old vectors).
        allow_dangerous_deserialization: Must be ``True``: reading a pickle can run
            arbitrary code.
        source_dir: The directory the legacy chunks were loaded from (their ``source``
            metadata, absolute or relative to the current directory or to it).
        model_id: The identity to stamp; default :func:`index_model_id` of
            ``embeddings``, which is what the engine checks when you pass the same model.
        config: Settings whose ``loader`` walks ``source_dir`` as your indexing runs
            will (default: :class:`~langchain_rag_async.RAGConfig` defaults).
        index_name: Name of the legacy index inside ``legacy_dir``.

    Returns:
        What was written.

    Raises:
        VectorStoreError: No opt-in was given.
        ConfigurationError: ``index_dir`` already holds an index, or ``source_dir`` is
            not a directory.
        IndexNotFoundError: ``legacy_dir`` holds no index.
        IndexCorruptedError: The legacy files are unreadable.
    """
    config = config or RAGConfig()
    target = await aresolve(index_dir)
    if await run_in_executor(None, read_manifest, str(target)) is not None:
        raise ConfigurationError(
            f"{target} already holds an index; convert into a new, empty directory"
        )
    stamp = model_id or resolve_model_id(config, embeddings)
    legacy = await AsyncFAISS.aload_local(
        str(legacy_dir),
        embeddings,
        index_name,
        allow_dangerous_deserialization=allow_dangerous_deserialization,
    )
    ids = [str(i) for _, i in sorted(legacy.index_to_docstore_id.items())]
    docs = await legacy.aget_by_ids(ids)
    vectors = await run_in_executor(None, _vectors_of, legacy)
    root = await aresolve(source_dir) if source_dir is not None else None
    if root is not None and not await run_in_executor(None, root.is_dir):
        raise ConfigurationError(f"source_dir {root} is not a directory")
    if root is not None:  # stat calls: off the loop
        docs = await run_in_executor(None, _with_sources, docs, root)
    await make_index_dir(target)
    if vectors is not None:
        await _seed_cache(target, stamp, docs, vectors)
    store = await _rebuilt_store(legacy, docs, vectors, embeddings, stamp)
    plan = _Adoption()
    if root is not None:
        plan = await _plan_records(root, docs, config.loader)
        async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=target / RECORDS_FILE) as rm:
            await rm.acreate_schema()
            await rm.acommit_file_batch(
                files=plan.files, keys=plan.keys, group_ids=list(plan.groups), delete_keys=[]
            )
    # The manifest is the commit point, written last: an interrupted conversion leaves no
    # index, and running it again rewrites the records and cache rows (upserts) and saves.
    await store.asave_local(target)
    summary = ConversionSummary(
        model_id=stamp,
        chunks=len(docs),
        vectors_cached=len(docs) if vectors is not None else 0,
        records=len(plan.keys),
        files_adopted=plan.adopted,
        files_changed=plan.changed,
        files_gone=plan.gone,
        chunks_outside=len(docs) - len(plan.keys) if root is not None else len(docs),
    )
    _log.info("converted a LangChain FAISS folder", path=str(target), summary=str(summary))
    return summary


def convert_langchain_faiss(
    legacy_dir: str | Path,
    index_dir: str | Path,
    embeddings: Embeddings,
    *,
    allow_dangerous_deserialization: bool = False,
    source_dir: str | Path | None = None,
    model_id: str | None = None,
    config: RAGConfig | None = None,
    index_name: str = "index",
) -> ConversionSummary:
    """Sync twin of :func:`aconvert_langchain_faiss` (runs it on the package's loop)."""
    return run_sync(
        aconvert_langchain_faiss(
            legacy_dir,
            index_dir,
            embeddings,
            allow_dangerous_deserialization=allow_dangerous_deserialization,
            source_dir=source_dir,
            model_id=model_id,
            config=config,
            index_name=index_name,
        )
    )


async def _rebuilt_store(
    legacy: AsyncFAISS,
    docs: Sequence[Document],
    vectors: list[list[float]] | None,
    embeddings: Embeddings,
    model_id: str,
) -> AsyncFAISS:
    """A new store with the legacy store's settings and vectors, stamped with ``model_id``."""
    store = AsyncFAISS.create(
        embeddings,
        distance_strategy=legacy.distance_strategy,
        normalize_L2=legacy._normalize_L2,  # our own class: the legacy store's setting
        embedding_model_id=model_id,
    )
    if docs:
        if vectors is None:  # an index that cannot give vectors back: embed once more
            vectors = await embeddings.aembed_documents([d.page_content for d in docs])
        await store.aadd_embeddings(
            zip([d.page_content for d in docs], vectors, strict=True),
            [d.metadata for d in docs],
            ids=[str(d.id) for d in docs],
        )
    return store


def _vectors_of(store: AsyncFAISS) -> list[list[float]] | None:
    """The stored vectors in position order, or ``None`` if the index cannot give them."""
    try:
        matrix = store.index.reconstruct_n(0, store.index.ntotal)
    except RuntimeError:  # e.g. a compressed index without a direct map
        return None
    return [list(map(float, row)) for row in matrix]


def _with_sources(docs: Sequence[Document], root: Path) -> list[Document]:
    return [_with_source(doc, root) for doc in docs]


def _with_source(doc: Document, root: Path | None) -> Document:
    """``doc`` with its ``source`` as the absolute path the engine's loader gives."""
    source = doc.metadata.get("source")
    if root is None or not isinstance(source, str) or not source:
        return doc
    given = Path(source)
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, root / given]
    candidates += [root / given.name] if not given.is_absolute() else []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_relative_to(root) and resolved.exists():
            return doc.model_copy(update={"metadata": {**doc.metadata, "source": str(resolved)}})
    first = candidates[0].resolve()
    if first.is_relative_to(root):  # under the root but gone: the first run deletes it
        return doc.model_copy(update={"metadata": {**doc.metadata, "source": str(first)}})
    return doc


@dataclass(slots=True)
class _Adoption:
    """The record-manager rows a conversion writes (no I/O to build)."""

    files: list[FileRecord] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)
    adopted: int = 0
    changed: int = 0
    gone: int = 0


def _covers(text: str, chunks: Sequence[str]) -> bool:
    """Whether ``chunks``, found in order (overlaps allowed), cover every non-space of ``text``."""
    covered = bytearray(len(text))
    pos = 0
    for chunk in chunks:
        at = text.find(chunk, pos)
        if at < 0:
            at = text.find(chunk)
        if at < 0 or not chunk:
            return False
        covered[at : at + len(chunk)] = b"\x01" * len(chunk)
        pos = at + 1
    return all(covered[i] or char.isspace() for i, char in enumerate(text))


def adoption_plan(docs: Sequence[Document], loaded: Sequence[Document], root: Path) -> _Adoption:
    """Sort the legacy chunks by source file and decide which files are unchanged (no I/O).

    Args:
        docs: The legacy chunks, ``source`` already resolved.
        loaded: The files under ``root`` as the engine's loader reads them now.
        root: The source directory.
    """
    by_source: dict[str, list[Document]] = defaultdict(list)
    for doc in docs:
        source = doc.metadata.get("source")
        if isinstance(source, str) and Path(source).is_relative_to(root):
            by_source[source].append(doc)
    files = {str(doc.metadata["source"]): doc for doc in loaded}
    plan = _Adoption()
    for source, chunks in by_source.items():
        chunks.sort(key=lambda d: int(d.metadata.get("start_index", -1)))
        plan.keys += [str(d.id) for d in chunks]
        plan.groups += [source] * len(chunks)
        now = files.get(source)
        if now is None:
            record = FileRecord(source, _GONE, 0.0, "", "indexed", chunk_count=len(chunks))
            plan.files.append(record)
            plan.gone += 1
        elif _covers(now.page_content, [d.page_content for d in chunks]):
            meta = now.metadata
            record = FileRecord(
                source,
                int(meta["size"]),
                float(meta["mtime"]),
                str(meta["content_hash"]),
                "indexed",
                chunk_count=len(chunks),
            )
            plan.files.append(record)
            plan.adopted += 1
        else:  # no file row: the first run reads it and replaces its stale chunks
            plan.changed += 1
    return plan


async def _plan_records(root: Path, docs: Sequence[Document], loader: LoaderConfig) -> _Adoption:
    loaded = await AsyncDirectoryLoader(root, config=loader).aload()
    return await run_in_executor(None, adoption_plan, docs, loaded, root)


async def _seed_cache(
    index_dir: Path, model_id: str, docs: Sequence[Document], vectors: Sequence[list[float]]
) -> None:
    """Put every old vector in the index's embedding cache under ``model_id``."""
    items = [(content_hash(d.page_content), v) for d, v in zip(docs, vectors, strict=True)]
    async with SQLiteEmbeddingCache(index_dir / EMBEDDING_CACHE_FILE) as cache:
        await cache.aput_many(model_id, items)
