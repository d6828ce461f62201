"""Rebuild a lost or damaged vector store from what survives it, without the network.

The record manager names the chunks, the docstore (when intact) or the sparse index
holds their texts and metadata, and the embedding cache their vectors (keyed by model id
and content hash). ``rag-async doctor --repair`` calls :func:`arebuild_store` when the
FAISS file, the docstore or the manifest is missing or damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.embeddings.cache import SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import EMBEDDING_CACHE_FILE
from langchain_rag_async.errors import IndexCorruptedError, RAGError
from langchain_rag_async.ids import content_hash
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import (
    RECORDS_FILE,
    RECORDS_NAMESPACE,
    reconcile_records,
)
from langchain_rag_async.observability import get_logger, span
from langchain_rag_async.sparse_index import SPARSE_INDEX_FILENAME, FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS
from langchain_rag_async.vectorstores._persistence import read_manifest, read_verified_documents

__all__ = ("LOADER_EMBEDDINGS", "RebuildOutcome", "arebuild_store", "survivors")

_log = get_logger(__name__)

LOADER_EMBEDDINGS = DeterministicFakeEmbedding(size=1)
"""Loading or rebuilding a store for repairs embeds nothing; any model object will do."""


@dataclass(slots=True)
class RebuildOutcome:
    """What :func:`arebuild_store` did.

    Attributes:
        rebuilt: Chunks written to the new generation.
        known: Chunks the survivors name (record keys, else the texts found).
        text_source: Where the texts came from (``docstore`` or ``sparse index``).
        without_text: Ids of chunks whose text survives nowhere.
        without_vector: Ids of chunks whose vector is not in the embedding cache.
        files_to_reindex: Sources whose records were dropped (the next
            ``rag-async index`` run reads and embeds them again).
        problem: Why nothing was rebuilt, or ``None`` when a generation was written.
    """

    rebuilt: int = 0
    known: int = 0
    text_source: str = ""
    without_text: list[str] = field(default_factory=list)
    without_vector: list[str] = field(default_factory=list)
    files_to_reindex: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        """A generation was written and every known chunk is in it."""
        return self.problem is None and not self.without_text and not self.without_vector


def survivors(index_dir: Path) -> list[Path]:
    """The files a store can be rebuilt from that exist in ``index_dir``."""
    names = (RECORDS_FILE, SPARSE_INDEX_FILENAME, EMBEDDING_CACHE_FILE)
    return [index_dir / name for name in names if (index_dir / name).is_file()]


async def arebuild_store(index_dir: Path, *, model_id: str | None = None) -> RebuildOutcome:
    """Write a new generation of the store from the records, texts and cached vectors.

    Saved as any save is (new files, fsync, manifest swap), so a crash during the
    rebuild leaves the directory as it was. Records of chunks that could not be rebuilt
    are dropped with the records of their files, so the index stays consistent and the
    next ``rag-async index`` run reads exactly those files again.

    Args:
        index_dir: The index directory.
        model_id: The embedding model's identity, used when the manifest is unreadable
            (the manifest's own one wins otherwise).

    Returns:
        What was rebuilt and what was not.
    """
    outcome = RebuildOutcome()
    with span("doctor.rebuild_store", path=str(index_dir)):
        manifest = await run_in_executor(None, _readable_manifest, index_dir)
        model = (manifest or {}).get("embedding_model_id") or model_id
        if not model:
            outcome.problem = (
                "the manifest is unreadable, so the embedding model is unknown; run "
                "`rag-async doctor --repair` with the RAG_EMBEDDINGS / RAG_EMBEDDING_MODEL "
                "settings the index was built with"
            )
            return outcome
        keys = await _record_keys(index_dir)
        documents = await _documents(index_dir, keys, outcome)
        if documents is None:
            return outcome
        found = {str(doc.id) for doc in documents}
        known = keys if keys is not None else sorted(found)
        outcome.known = len(known)
        outcome.without_text = [key for key in known if key not in found]
        vectors = await _cached_vectors(index_dir, str(model), documents)
        if vectors is None:
            outcome.problem = (
                f"the embedding cache ({EMBEDDING_CACHE_FILE}) is missing or unreadable, so "
                "no vector can be recovered; rebuild with `rag-async index`"
            )
            return outcome
        pairs = [(doc, vec) for doc, vec in zip(documents, vectors, strict=True) if vec is not None]
        outcome.without_vector = [
            str(doc.id) for doc, vec in zip(documents, vectors, strict=True) if vec is None
        ]
        store = _new_store(manifest, str(model), pairs)
        if pairs:
            await store.aadd_embeddings(
                [(doc.page_content, vec) for doc, vec in pairs],
                metadatas=[dict(doc.metadata) for doc, _ in pairs],
                ids=[str(doc.id) for doc, _ in pairs],
            )
        await store.asave_local(str(index_dir))
        outcome.rebuilt = len(pairs)
        if keys is not None:
            async with _records(index_dir) as records:
                outcome.files_to_reindex = sorted(await reconcile_records(store, records))
    _log.info("store rebuilt", rebuilt=outcome.rebuilt, known=outcome.known)
    return outcome


def _readable_manifest(index_dir: Path) -> dict[str, object] | None:
    try:
        return read_manifest(index_dir)
    except (IndexCorruptedError, RAGError):
        return None


def _records(index_dir: Path) -> SQLiteRecordManager:
    return SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE)


async def _record_keys(index_dir: Path) -> list[str] | None:
    """The chunk ids the records hold, or ``None`` when there are no usable records."""
    if not await run_in_executor(None, (index_dir / RECORDS_FILE).is_file):
        return None
    try:
        async with _records(index_dir) as records:
            return sorted(await records.alist_keys())
    except RAGError as exc:
        _log.warning("records unreadable for the rebuild", error=str(exc))
        return None


async def _documents(
    index_dir: Path, keys: Sequence[str] | None, outcome: RebuildOutcome
) -> list[Document] | None:
    """The texts and metadata: the intact docstore first, else the sparse index."""
    docstore = await run_in_executor(None, read_verified_documents, index_dir)
    if docstore is not None:
        outcome.text_source = "docstore"
        wanted = None if keys is None else set(keys)
        return [doc for doc in docstore if wanted is None or str(doc.id) in wanted]
    if not await run_in_executor(None, (index_dir / SPARSE_INDEX_FILENAME).is_file):
        outcome.problem = (
            "neither the docstore nor the sparse index survives, so the chunk texts are "
            "lost; rebuild with `rag-async index`"
        )
        return None
    try:
        async with FTS5Index.in_index_dir(index_dir) as sparse:
            ids = sorted(await sparse.aids()) if keys is None else list(keys)
            documents = await sparse.aget_by_ids(ids)
    except RAGError as exc:
        outcome.problem = (
            f"the docstore is damaged and the sparse index unreadable ({exc}), so the "
            "chunk texts are lost; rebuild with `rag-async index`"
        )
        return None
    outcome.text_source = "sparse index"
    return documents


async def _cached_vectors(
    index_dir: Path, model_id: str, documents: Sequence[Document]
) -> list[list[float] | None] | None:
    file = index_dir / EMBEDDING_CACHE_FILE
    if not await run_in_executor(None, file.is_file):
        return None
    cache = SQLiteEmbeddingCache(file)
    try:
        hashes = [content_hash(doc.page_content) for doc in documents]
        return await cache.aget_many(model_id, hashes)
    except RAGError as exc:
        _log.warning("embedding cache unreadable for the rebuild", error=str(exc))
        return None
    finally:
        await cache.aclose()


def _new_store(
    manifest: dict[str, object] | None,
    model_id: str,
    pairs: Sequence[tuple[Document, list[float]]],
) -> AsyncFAISS:
    """An empty store with the saved settings (the defaults `rag-async index` uses)."""
    settings = manifest or {}
    dimension = len(pairs[0][1]) if pairs else settings.get("dimension")
    return AsyncFAISS.create(
        LOADER_EMBEDDINGS,
        dimension=dimension if isinstance(dimension, int) else None,
        distance_strategy=_strategy(settings.get("distance_strategy")),
        normalize_L2=bool(settings.get("normalize_L2", False)),
        embedding_model_id=model_id,
    )


def _strategy(value: object) -> DistanceStrategy:
    try:
        return DistanceStrategy(value)
    except ValueError:
        return DistanceStrategy.EUCLIDEAN_DISTANCE
