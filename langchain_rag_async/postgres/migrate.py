"""``rag-async migrate``: copy an index directory into PostgreSQL without re-embedding.

The vectors are read back from the FAISS index, the texts and metadata from its
docstore, the chunk keys and the file table from ``records.sqlite`` and the cached
vectors from ``embedding_cache.sqlite``. Chunks and records are written in one
transaction (a failed migration leaves the database as it was); the cache follows in
batches. Queries over the copy return the same chunk ids: the ids, texts and vectors are
the directory's own (cosine similarity does not depend on the vectors' length, so FAISS
having stored them normalised changes no ranking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._paths import aresolve
from langchain_rag_async._sqlite import SQLiteDatabase
from langchain_rag_async.embeddings.factory import EMBEDDING_CACHE_FILE
from langchain_rag_async.errors import ConfigurationError, IndexNotFoundError, UsageError
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import RECORDS_FILE, RECORDS_NAMESPACE
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames, chunk_rows
from langchain_rag_async.postgres.cache import PostgresEmbeddingCache
from langchain_rag_async.postgres.lock import run_lock
from langchain_rag_async.postgres.record_manager import PostgresRecordManager
from langchain_rag_async.postgres.schema import acheck_model, aensure_chunks, aread_meta
from langchain_rag_async.postgres.writer import PostgresIndexWriter
from langchain_rag_async.vectorstores import AsyncFAISS, read_manifest

__all__ = ("MigrationReport", "amigrate_directory")

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a migration copied."""

    chunks: int
    keys: int
    files: int
    cached_vectors: int
    model_id: str

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


class _NoQueries(Embeddings):
    """The loaded store is only read back: it never embeds (nothing is re-embedded)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise UsageError("migrate copies vectors; it never embeds")

    def embed_query(self, text: str) -> list[float]:
        raise UsageError("migrate copies vectors; it never embeds")


async def amigrate_directory(source: str | Path, store_url: str) -> MigrationReport:
    """Copy the index in directory ``source`` into the database at ``store_url``.

    Raises:
        IndexNotFoundError: ``source`` holds no saved index.
        ConfigurationError: The database already holds chunks (migrate into an empty one).
        EmbeddingModelMismatchError: The database's index names another model.
    """
    index_dir = await aresolve(source)
    manifest = await run_in_executor(None, read_manifest, str(index_dir))
    if manifest is None:
        raise IndexNotFoundError(index_dir)
    model_id = str(manifest.get("embedding_model_id") or "")
    store = await AsyncFAISS.aload_local(str(index_dir), _NoQueries(), expected_model_id=model_id)
    db = PostgresDatabase(store_url)
    names = TableNames()
    try:
        async with run_lock(db, names):
            if "dimension" in await aread_meta(db, names):
                pg_count = await db.afetchall(f"SELECT count(*) FROM {names.chunks}")  # noqa: S608
                if int(pg_count[0][0]):
                    raise ConfigurationError(
                        f"{db.where} already holds an index ({pg_count[0][0]} chunks); "
                        "migrate into an empty database"
                    )
            await acheck_model(db, names, model_id)
            chunks, keys, files = await _copy_chunks_and_records(store, index_dir, db, names)
        cached = await _copy_cache(index_dir, db, names)
    finally:
        await db.aclose()
    return MigrationReport(
        chunks=chunks, keys=keys, files=files, cached_vectors=cached, model_id=model_id
    )


async def _copy_chunks_and_records(
    store: AsyncFAISS, index_dir: Path, db: PostgresDatabase, names: TableNames
) -> tuple[int, int, int]:
    positions = sorted(store.index_to_docstore_id)
    ids = [str(store.index_to_docstore_id[p]) for p in positions]
    vectors = await run_in_executor(None, _vectors, store, positions)
    async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE) as old:
        known = await old.aget_files()
        grouped = {source: await old.alist_keys(group_ids=[source]) for source in known}
        all_keys = await old.alist_keys()
    vector_of = dict(zip(ids, vectors, strict=True))
    if vectors:
        await aensure_chunks(db, names, len(vectors[0]))
    async with PostgresIndexWriter(db, names) as writer:
        for start in range(0, len(ids), _BATCH):
            part = ids[start : start + _BATCH]
            documents = await store.aget_by_ids(part)
            by_id = {str(d.id): d for d in documents}
            rows_ids = [i for i in part if i in by_id]
            rows = chunk_rows(
                [by_id[i].page_content for i in rows_ids],
                [vector_of[i] for i in rows_ids],
                [dict(by_id[i].metadata) for i in rows_ids],
                rows_ids,
            )
            await writer.awrite_rows(rows)
        records = PostgresRecordManager(RECORDS_NAMESPACE, db=db, names=names, writer=writer)
        group_of = {key: source for source, group in grouped.items() for key in group}
        await records.acommit_file_batch(
            files=list(known.values()),
            keys=all_keys,
            group_ids=[group_of.get(key) for key in all_keys],
        )  # one transaction: the chunks and their records
    return len(ids), len(all_keys), len(known)


def _vectors(store: AsyncFAISS, positions: list[int]) -> list[list[float]]:
    return [store.index.reconstruct(p).tolist() for p in positions]


async def _copy_cache(index_dir: Path, db: PostgresDatabase, names: TableNames) -> int:
    path = index_dir / EMBEDDING_CACHE_FILE
    if not await run_in_executor(None, path.is_file):
        return 0
    source = SQLiteDatabase(path, schema="", label="embedding cache", read_only=True)
    cache = PostgresEmbeddingCache(db, names)
    copied = 0
    last = ("", "")
    try:
        while True:
            rows = await source.afetchall(
                "SELECT model_id, content_hash, dimension, vector FROM embedding_cache "
                "WHERE (model_id, content_hash) > (?, ?) ORDER BY model_id, content_hash "
                f"LIMIT {_BATCH}",
                last,
            )
            if not rows:
                return copied
            await cache.aput_rows(
                [{"m": m, "h": h, "d": int(d), "v": bytes(v)} for m, h, d, v in rows]
            )
            copied += len(rows)
            last = (str(rows[-1][0]), str(rows[-1][1]))
    finally:
        await source.aclose()
