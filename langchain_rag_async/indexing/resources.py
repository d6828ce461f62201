"""Open what an index directory holds: vector store, record manager, embedding stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._paths import aresolve
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import (
    aclose_base_embeddings,
    build_embeddings,
    embedding_model_id,
)
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingModelMismatchError,
    IndexCorruptedError,
    RAGError,
)
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.observability import get_logger, span
from langchain_rag_async.sparse_index import FTS5Index, SparseIndex, seal_sparse
from langchain_rag_async.vectorstores import AsyncFAISS
from langchain_rag_async.vectorstores._persistence import leftover_generation_files
from langchain_rag_async.vectorstores.faiss import read_manifest

__all__ = (
    "MANIFEST_FILE",
    "RECORDS_FILE",
    "RECORDS_NAMESPACE",
    "IndexResources",
    "index_model_id",
    "make_index_dir",
    "open_index_resources",
    "reconcile_records",
    "reconcile_sparse",
)

_log = get_logger(__name__)

RECORDS_FILE = "records.sqlite"
MANIFEST_FILE = "manifest.json"
RECORDS_NAMESPACE = "rag-async"
_WARM_UP_HASH = "0" * 64  # looked up once to open the embedding cache (never a text's hash)


@dataclass(slots=True)
class IndexResources:
    """The live objects of one index directory.

    Attributes:
        index_dir: The directory.
        model_id: Identity of the embedding model (``provider:model``).
        embeddings: The full embedding stack (cache, limits, retries).
        store: The FAISS store, loaded or new.
        records: The record manager with its file table.
        sparse: The sparse (FTS5) index, kept in step with the store.
        is_new: True when no index had been saved in the directory yet.
    """

    index_dir: Path
    model_id: str
    embeddings: Embeddings
    store: AsyncFAISS
    records: SQLiteRecordManager
    sparse: FTS5Index
    is_new: bool


def resolve_model_id(config: RAGConfig, base: Embeddings | None) -> str:
    """Identity stored with the index: from the config, or from a caller's own model."""
    if base is None:
        return embedding_model_id(config.embeddings)
    own = next(
        (
            value
            for attr in ("model_id", "model", "model_name")
            if isinstance(value := getattr(base, attr, None), str) and value
        ),
        None,
    )
    return f"custom:{type(base).__name__}" + (f":{own}" if isinstance(own, str) else "")


def index_model_id(embeddings: Embeddings | None = None, *, config: RAGConfig | None = None) -> str:
    """The embedding model identity an index records, and the engine checks on open.

    Use it to stamp an index you build or convert yourself (``AsyncFAISS(...,
    embedding_model_id=index_model_id(my_model))``, ``aconvert_langchain_faiss``), so the
    engine opened with the same model accepts it and one opened with another refuses it.

    Args:
        embeddings: Your own model, as you pass it to the engine (``embeddings=``);
            ``None`` for the model the configuration builds.
        config: The settings (only ``config.embeddings`` matters); default
            :class:`~langchain_rag_async.RAGConfig` defaults.

    Returns:
        ``provider:model`` for a configured model, ``custom:<class>[:<model name>]`` for
        your own.
    """
    return resolve_model_id(config or RAGConfig(), embeddings)


def _innermost(embeddings: Embeddings) -> Embeddings:
    """Unwrap cache and rate-limit layers down to the provider's own model."""
    while True:
        inner = getattr(embeddings, "inner", None) or getattr(embeddings, "_inner", None)
        if not isinstance(inner, Embeddings):
            return embeddings
        embeddings = inner


def _known_dimension(config: RAGConfig, base: Embeddings | None) -> int | None:
    if base is None and config.embeddings.provider == "local":
        from langchain_rag_async.embeddings.local import LOCAL_DIMENSION

        return LOCAL_DIMENSION
    return None


async def make_index_dir(index_dir: Path) -> None:
    """Create the index directory (and its parents) if needed.

    Raises:
        ConfigurationError: The path exists as a file, or cannot be created.
    """
    try:
        await run_in_executor(None, partial(index_dir.mkdir, parents=True, exist_ok=True))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot use {index_dir} as the index directory ({exc.strerror or exc}); "
            "pass --index-dir a directory path"
        ) from exc


async def check_model(
    index_dir: Path, model_id: str, *, lost_manifest_is_fatal: bool = True
) -> dict[str, Any] | None:
    """Read the saved manifest and refuse an index built with another model.

    Args:
        index_dir: The index directory.
        model_id: The model the caller embeds with.
        lost_manifest_is_fatal: Raise when the manifest is gone but a saved generation's
            files and records remain. An indexing run passes ``False``: it has the source
            files, so it rebuilds the index from them (and says so in the log).

    Returns:
        The manifest, or ``None`` when no index was saved in ``index_dir``.

    Raises:
        EmbeddingModelMismatchError: The index was built with another model.
        IndexCorruptedError: The manifest is damaged, or missing while the files of a
            committed generation and the records of its chunks remain.
    """
    manifest = await run_in_executor(None, read_manifest, str(index_dir))
    if manifest is None:
        try:
            await _check_lost_manifest(index_dir)
        except IndexCorruptedError:
            if lost_manifest_is_fatal:
                raise
            _log.warning("manifest lost; rebuilding the index from the files", path=str(index_dir))
        return None
    stored = manifest.get("embedding_model_id")
    if stored and stored != model_id:
        raise EmbeddingModelMismatchError(str(stored), model_id, where=str(index_dir))
    return manifest


async def _check_lost_manifest(index_dir: Path) -> None:
    """Refuse a directory whose manifest was lost after a save committed chunks.

    Files of a generation without a manifest are also what a crash during the first save
    leaves; then the records hold no chunk yet (they are committed after the save), and
    the directory is simply new.
    """
    leftovers = await run_in_executor(None, leftover_generation_files, index_dir)
    if not leftovers or not await run_in_executor(None, (index_dir / RECORDS_FILE).is_file):
        return
    try:
        async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE) as rm:
            committed = bool(await rm.alist_keys(limit=1))
    except RAGError:  # damaged records: the run that opens them reports it
        return
    if committed:
        names = ", ".join(p.name for p in leftovers)
        raise IndexCorruptedError(
            index_dir / MANIFEST_FILE,
            f"it is missing, while the files of a saved generation ({names}) and the "
            "records of its chunks remain",
        )


@asynccontextmanager
async def open_index_resources(
    config: RAGConfig,
    *,
    embeddings: Embeddings | None = None,
    limiter: ServiceLimiter | None = None,
    create: bool = True,
) -> AsyncIterator[IndexResources]:
    """Open (or create) the index in ``config.index_dir``.

    Args:
        config: Settings; ``config.index_dir`` is the directory.
        embeddings: A caller's own base model instead of the configured one.
        limiter: The shared limiter of the embedding service.
        create: Create the directory and an empty store when none exists.

    Yields:
        The open resources; closed again on exit.
    """
    index_dir = await aresolve(config.index_dir)
    if create:
        await make_index_dir(index_dir)
    model_id = resolve_model_id(config, embeddings)
    manifest = await check_model(index_dir, model_id, lost_manifest_is_fatal=False)
    records = SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE)
    sparse = FTS5Index.in_index_dir(index_dir)
    stack: Embeddings | None = None
    try:
        # Three independent openings, each on its own thread, at once: they came one after
        # the other before the first request of every run.
        building, *others = await asyncio.gather(
            _abuild_stack(config, embeddings, limiter, index_dir, model_id),
            records.acreate_schema(),
            sparse.averify(),  # damage since its last write: `rag-async doctor --repair`
            return_exceptions=True,
        )
        if isinstance(building, BaseException):
            raise building
        stack = building  # closed on the way out, whatever fails next
        for outcome in others:
            if isinstance(outcome, BaseException):
                raise outcome
        if manifest is None:
            store = AsyncFAISS.create(
                stack,
                dimension=_known_dimension(config, embeddings),
                embedding_model_id=model_id,
            )
        else:
            store = await AsyncFAISS.aload_local(str(index_dir), stack, expected_model_id=model_id)
        yield IndexResources(
            index_dir=index_dir,
            model_id=model_id,
            embeddings=stack,
            store=store,
            records=records,
            sparse=sparse,
            is_new=manifest is None,
        )
    finally:
        with span("close_index_resources"):
            await _close_all(
                sparse.aclose(),
                records.aclose(),
                _aclose_stack(stack, own_base=embeddings is None),
            )


async def _abuild_stack(
    config: RAGConfig,
    base: Embeddings | None,
    limiter: ServiceLimiter | None,
    index_dir: Path,
    model_id: str,
) -> Embeddings:
    """Build the embedding stack off the loop, then open its cache's file.

    Building reads certificates and package metadata (not on the loop). The cache opens
    its file on first use: opened here, that is not waited for by the first request. A
    cache that cannot be opened is left to fail there, as it did before.
    """
    stack = await run_in_executor(
        None,
        partial(
            build_embeddings, limiter=limiter, cache_dir=index_dir, base=base, model_id=model_id
        ),
        config.embeddings,
    )
    if isinstance(stack, CachedEmbeddings) and isinstance(stack.cache, SQLiteEmbeddingCache):
        with contextlib.suppress(RAGError):
            await stack.cache.aget_many(model_id, [_WARM_UP_HASH])
    return stack


async def _aclose_stack(stack: Embeddings | None, *, own_base: bool) -> None:
    """Close the embedding stack's cache, then the base model's clients if we built it."""
    if stack is None:  # its build failed
        return
    close = getattr(stack, "aclose", None)
    if close is not None:
        await close()
    if own_base:
        await aclose_base_embeddings(_innermost(stack))


async def _close_all(*closing: Coroutine[Any, Any, None]) -> None:
    """Run the ``closing`` coroutines at once (each ends its own threads or sockets).

    Every one runs to its end even when another fails; the first failure is raised then.
    Closed one after the other, they added their times at the end of every run.
    """
    outcomes = await asyncio.gather(*closing, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def reconcile_sparse(store: AsyncFAISS, sparse: SparseIndex) -> tuple[int, int]:
    """Bring the sparse index in step with the saved vector store.

    The store stage commits sparse rows per batch while the vector store is saved at
    checkpoints, so after a crash the sparse index may hold a few chunks more or fewer.
    This repairs it from the vector store, which is the reference.

    Returns:
        (chunks added to, chunks removed from) the sparse index.
    """
    with span("reconcile_sparse"):
        dense_ids = {str(i) for i in store.index_to_docstore_id.values()}
        sparse_ids = await sparse.aids()
        missing = sorted(dense_ids - sparse_ids)
        extra = sorted(sparse_ids - dense_ids)
        upserts = await store.aget_by_ids(missing) if missing else []
        if upserts or extra:
            await sparse.aapply(upserts=upserts, deletes=extra)
            await seal_sparse(sparse)
            _log.info("sparse index repaired", added=len(upserts), removed=len(extra))
        return len(upserts), len(extra)


async def reconcile_records(store: AsyncFAISS, records: SQLiteRecordManager) -> set[str]:
    """Bring the records in step with the saved vector store, which is the reference.

    A crash between saving the store and committing the records leaves chunks in the
    store that no record knows (they would never be cleaned up) or, for deletions, records
    of chunks the store no longer has. The first are deleted from the store; for the
    second, the files that own them lose their records so that they are read again.

    Returns:
        The sources whose records were dropped (to be indexed again in this run).
    """
    with span("reconcile_records"):
        dense_ids = {str(i) for i in store.index_to_docstore_id.values()}
        keys = set(await records.alist_keys())
        if dense_ids == keys:
            return set()
        orphans = sorted(dense_ids - keys)
        if orphans:
            await store.adelete(orphans)
        missing = keys - dense_ids
        owners: set[str] = set()
        if missing:
            for source in await records.aget_files():
                if missing.intersection(await records.alist_keys(group_ids=[source])):
                    owners.add(source)
            await records.adelete_keys(sorted(missing))
            await records.adelete_files(sorted(owners))
        _log.warning("records repaired", orphan_chunks=len(orphans), missing_chunks=len(missing))
        return owners
