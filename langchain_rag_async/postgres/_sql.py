"""The SQL of the Postgres backend, built with no I/O: tables, writes, the keyword query.

One table holds the chunks: the id (our chunk id) as primary key, the text, the vector
(pgvector, HNSW index, cosine), the metadata as JSONB, and two generated columns: the
``source`` of the chunk (B-tree, so deleting a file's chunks is one statement) and the
text's ``tsvector`` (GIN). Being generated from the row, the keyword side is written by
the same statement, in the same transaction, as the vector: the two can never drift.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.documents import Document

from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "TEXT_SEARCH_CONFIG",
    "TableNames",
    "chunk_rows",
    "document_from_row",
    "filter_clause",
    "schema_sql",
    "vector_literal",
)

TEXT_SEARCH_CONFIG = "english"
"""PostgreSQL text search configuration of the keyword side (stemming, English stop words)."""


@dataclass(frozen=True, slots=True)
class TableNames:
    """The tables of one index, all named after one prefix (default ``rag``)."""

    prefix: str = "rag"

    @property
    def chunks(self) -> str:
        """Chunks: text, vector, metadata, generated source and tsvector."""
        return f"{self.prefix}_chunks"

    @property
    def keys(self) -> str:
        """Record manager: chunk keys by source."""
        return f"{self.prefix}_record_keys"

    @property
    def files(self) -> str:
        """Record manager: the file table."""
        return f"{self.prefix}_record_files"

    @property
    def cache(self) -> str:
        """Embedding cache."""
        return f"{self.prefix}_embedding_cache"

    @property
    def meta(self) -> str:
        """What the directory's manifest says: model identity, dimension."""
        return f"{self.prefix}_index_meta"

    def lock_key(self, purpose: str) -> int:
        """A 63-bit advisory lock key for this index and ``purpose`` (stable across hosts)."""
        return zlib.crc32(f"{self.prefix}:{purpose}".encode()) | (1 << 40)


def schema_sql(names: TableNames) -> list[str]:
    """Tables that need no dimension (records, cache, meta); idempotent."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {names.meta} (
            key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {names.keys} (
            namespace TEXT NOT NULL, key TEXT NOT NULL, group_id TEXT,
            updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (namespace, key))""",
        f"CREATE INDEX IF NOT EXISTS {names.keys}_updated ON {names.keys} (namespace, updated_at)",
        f"""CREATE INDEX IF NOT EXISTS {names.keys}_group
            ON {names.keys} (namespace, group_id, updated_at)""",
        f"""CREATE TABLE IF NOT EXISTS {names.files} (
            namespace TEXT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL,
            mtime DOUBLE PRECISION NOT NULL, content_hash TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('indexed', 'failed')),
            chunk_count INTEGER NOT NULL DEFAULT 0, error TEXT,
            updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (namespace, path))""",
        f"""CREATE TABLE IF NOT EXISTS {names.cache} (
            model_id TEXT NOT NULL, content_hash TEXT NOT NULL, dimension INTEGER NOT NULL,
            vector BYTEA NOT NULL, PRIMARY KEY (model_id, content_hash))""",
    ]


def chunks_sql(names: TableNames, dimension: int) -> list[str]:
    """The chunk table and its three indexes (HNSW cosine, GIN, source); idempotent."""
    if dimension <= 0:
        raise ConfigurationError(f"vector dimension must be positive; got {dimension}")
    table = names.chunks
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"""CREATE TABLE IF NOT EXISTS {table} (
            id TEXT PRIMARY KEY,
            content TEXT NOT NULL,
            embedding vector({dimension}) NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{{}}'::jsonb,
            source TEXT GENERATED ALWAYS AS (metadata ->> 'source') STORED,
            content_tsv tsvector GENERATED ALWAYS AS
                (to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, content)) STORED)""",
        f"""CREATE INDEX IF NOT EXISTS {table}_embedding_hnsw
            ON {table} USING hnsw (embedding vector_cosine_ops)""",
        f"CREATE INDEX IF NOT EXISTS {table}_tsv_gin ON {table} USING gin (content_tsv)",
        f"CREATE INDEX IF NOT EXISTS {table}_source ON {table} (source)",
    ]


def vector_literal(vector: Sequence[float]) -> str:
    """A vector as pgvector's text form (``[1.0,2.0]``), cast with ``CAST(... AS vector)``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def upsert_chunks_sql(names: TableNames) -> str:
    """Insert or replace one chunk (executed for many rows at once)."""
    return (
        f"INSERT INTO {names.chunks} (id, content, embedding, metadata) "
        "VALUES (:id, :content, CAST(:embedding AS vector), CAST(:metadata AS jsonb)) "
        "ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, "
        "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
    )


def chunk_rows(
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    metadatas: Sequence[Mapping[str, Any]],
    ids: Sequence[str],
) -> list[dict[str, Any]]:
    """The parameters of :func:`upsert_chunks_sql`, one dict per chunk.

    Raises:
        ConfigurationError: The sequences differ in length, or an id repeats.
    """
    if not len(texts) == len(vectors) == len(metadatas) == len(ids):
        raise ConfigurationError(
            f"got {len(texts)} texts, {len(vectors)} vectors, {len(metadatas)} metadatas and "
            f"{len(ids)} ids; give one of each per chunk"
        )
    if len(set(ids)) != len(ids):
        raise ConfigurationError("ids must be unique within one write")
    return [
        {
            "id": chunk_id,
            "content": content,
            "embedding": vector_literal(vector),
            "metadata": json.dumps(dict(meta), ensure_ascii=False, default=str),
        }
        for content, vector, meta, chunk_id in zip(texts, vectors, metadatas, ids, strict=True)
    ]


def document_from_row(chunk_id: str, content: str, metadata: Any) -> Document:
    """A Document from a chunk row (the JSONB metadata decoded by psycopg)."""
    meta = dict(metadata) if isinstance(metadata, Mapping) else json.loads(metadata or "{}")
    return Document(id=str(chunk_id), page_content=content, metadata=meta)


def filter_clause(
    filter_: Mapping[str, Any] | None, *, alias: str = "", prefix: str = "f"
) -> tuple[str, dict[str, Any]]:
    """An exact-match metadata filter (as ``HybridRetriever`` takes it) as SQL.

    A scalar matches equal values, a list any of its values, ``None`` a missing key;
    all keys must match. Values compare as JSON, so ``1`` and ``"1"`` differ, as in the
    FAISS store's filter.

    Returns:
        ``(sql, params)``: ``"TRUE"`` without a filter.
    """
    if not filter_:
        return "TRUE", {}
    column = f"{alias}.metadata" if alias else "metadata"
    parts: list[str] = []
    params: dict[str, Any] = {}
    for n, (key, value) in enumerate(sorted(filter_.items())):
        key_param = f"{prefix}k{n}"
        params[key_param] = str(key)
        if value is None:
            parts.append(f"NOT jsonb_exists({column}, :{key_param})")
            continue
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        options = []
        for m, item in enumerate(values):
            value_param = f"{prefix}v{n}_{m}"
            params[value_param] = json.dumps(item)
            options.append(f"{column} -> :{key_param} = CAST(:{value_param} AS jsonb)")
        parts.append("(" + (" OR ".join(options) or "FALSE") + ")")
    return " AND ".join(parts), params
