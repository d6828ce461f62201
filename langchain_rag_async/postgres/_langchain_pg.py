"""``langchain_postgres``' own vector store over our chunk table, and where it stops.

:class:`~langchain_rag_async.postgres.PostgresVectorStore` reads through
``langchain_postgres``' ``AsyncPGVectorStore`` (v2) wherever that one does what ours
promises: similarity search by vector with cosine distances, reading by ids, maximal
marginal relevance, and filters on ``source``, which PGVectorStore addresses as a metadata
*column* (our generated, B-tree indexed ``source``), so its ``WHERE source = ...``
can use that index. Any other metadata filter is an exact JSON match in our SQL: in
PGVectorStore's filter language a key of the JSON column compares as text (or cast to the
value's type: ``(metadata->>'k')::INTEGER``, which fails on rows holding another type),
with no "missing key" (``None``) and no plain list meaning "any of".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_postgres import PGEngine
from langchain_postgres.v2.async_vectorstore import AsyncPGVectorStore
from langchain_postgres.v2.indexes import DistanceStrategy, QueryOptions
from sqlalchemy.ext.asyncio import AsyncEngine

from langchain_rag_async.aio import LoopBound
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames

__all__ = (
    "ITERATIVE_SCAN",
    "PG_VECTORSTORE_COLUMNS",
    "IterativeScanOptions",
    "PGStores",
    "acreate_pg_store",
    "source_filter",
)

PG_VECTORSTORE_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "id_column": "id",
        "content_column": "content",
        "embedding_column": "embedding",
        "metadata_json_column": "metadata",
    }
)
"""How ``PGVectorStore.create(...)`` names our chunk table's columns (cosine distance)."""

ITERATIVE_SCAN = "strict_order"
"""``hnsw.iterative_scan`` of filtered dense searches (pgvector 0.8).

An HNSW scan yields at most ``hnsw.ef_search`` (40) rows; a filter applied after it can
leave fewer than ``k``, or miss nearer matches. With an iterative scan the index goes on
until ``k`` rows pass, in exact distance order.
"""


@dataclass
class IterativeScanOptions(QueryOptions):
    """PGVectorStore's per-query settings for a filtered search: an iterative HNSW scan."""

    def to_parameter(self) -> list[str]:
        """What PGVectorStore runs as ``SET LOCAL`` before the search."""
        return [f"hnsw.iterative_scan = {ITERATIVE_SCAN}"]

    def to_string(self) -> str:
        """The same, as one string."""
        return f"hnsw.iterative_scan = {ITERATIVE_SCAN}"


SOURCE_COLUMN = "source"
"""The generated column PGVectorStore may treat as a metadata column (reads only)."""


async def acreate_pg_store(
    engine: AsyncEngine, embedding: Embeddings, names: TableNames, *, by_source: bool
) -> AsyncPGVectorStore:
    """``AsyncPGVectorStore`` over ``names.chunks`` on ``engine`` (the table must exist).

    ``by_source`` declares ``source`` a metadata column: filters on it then address the
    indexed column, and the HNSW scan is iterative (:data:`ITERATIVE_SCAN`). Such a store
    is for reads filtered by source only: it would try to write the generated column, and
    it reports ``source: None`` for a chunk without one.
    """
    return await AsyncPGVectorStore.create(
        PGEngine.from_engine(engine),
        embedding,
        names.chunks,
        id_column=PG_VECTORSTORE_COLUMNS["id_column"],
        content_column=PG_VECTORSTORE_COLUMNS["content_column"],
        embedding_column=PG_VECTORSTORE_COLUMNS["embedding_column"],
        metadata_json_column=PG_VECTORSTORE_COLUMNS["metadata_json_column"],
        metadata_columns=[SOURCE_COLUMN] if by_source else [],
        distance_strategy=DistanceStrategy.COSINE_DISTANCE,
        index_query_options=IterativeScanOptions() if by_source else None,
    )


@dataclass(slots=True)
class _Made:
    engine: AsyncEngine
    store: asyncio.Future[AsyncPGVectorStore]


class PGStores:
    """The two ``AsyncPGVectorStore`` views of one index, per event loop and pool.

    Made on first use (one catalogue query each) and remade when the database's pool for
    this loop was replaced (after ``aclose``) or the last attempt failed.
    """

    __slots__ = ("_made", "db", "embedding", "names")

    def __init__(self, db: PostgresDatabase, embedding: Embeddings, names: TableNames) -> None:
        self.db = db
        self.embedding = embedding
        self.names = names
        self._made: LoopBound[dict[bool, _Made]] = LoopBound(dict)

    async def aget(self, *, by_source: bool = False) -> AsyncPGVectorStore:
        """This loop's store (``by_source``: with ``source`` as a metadata column)."""
        engine = self.db.engine()
        made = self._made.get()
        entry = made.get(by_source)
        failed = entry is not None and entry.store.done() and _failed(entry.store)
        if entry is None or entry.engine is not engine or failed:
            future = asyncio.ensure_future(
                acreate_pg_store(engine, self.embedding, self.names, by_source=by_source)
            )
            entry = made[by_source] = _Made(engine, future)
        return await asyncio.shield(entry.store)


def _failed(future: asyncio.Future[AsyncPGVectorStore]) -> bool:
    return future.cancelled() or future.exception() is not None


def source_filter(filter_: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """PGVectorStore's filter for one of ours that names ``source`` alone, by strings.

    ``{"source": "a.md"}`` and ``{"source": ["a.md", "b.md"]}`` (any of) translate to the
    ``source`` column; anything else (other keys, numbers, ``None``, an empty list) does
    not, and returns ``None``: our SQL then matches the JSON exactly.
    """
    if not filter_ or set(filter_) != {SOURCE_COLUMN}:
        return None
    value = filter_[SOURCE_COLUMN]
    if isinstance(value, str):
        return {SOURCE_COLUMN: {"$eq": value}}
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return {SOURCE_COLUMN: {"$in": list(value)}}
    return None
