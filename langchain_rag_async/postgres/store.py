"""PostgresVectorStore: the dense side in PostgreSQL + pgvector (HNSW, cosine).

The chunk table (:mod:`._sql`) has the shape ``langchain_postgres.PGVectorStore`` (v2)
works with (``id_column="id"``, ``content_column="content"``,
``metadata_json_column="metadata"``), and reads go through PGVectorStore's own async
implementation wherever it does what this store promises (:mod:`._langchain_pg`):
similarity search by vector, reading by ids, maximal marginal relevance, filters on
``source``. Our SQL stays for what it cannot do the same way: writes (its
``aadd_embeddings`` sends and commits one row per statement, where this store writes a
batch in one transaction: measured in docs/postgres.md), exact-match filters on any other
metadata key, and the one-statement hybrid search (:mod:`.hybrid`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from langchain_postgres.v2.async_vectorstore import AsyncPGVectorStore
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from langchain_rag_async._checks import check_filter
from langchain_rag_async.aio import run_sync
from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._langchain_pg import ITERATIVE_SCAN, PGStores, source_filter
from langchain_rag_async.postgres._sql import (
    TableNames,
    chunk_rows,
    document_from_row,
    filter_clause,
    upsert_chunks_sql,
    vector_literal,
)
from langchain_rag_async.postgres.schema import aensure_chunks, aread_meta

__all__ = ("PostgresVectorStore",)

_IDS_PER_READ = 1000
"""Ids per ``aget_by_ids`` statement of PGVectorStore (it binds one parameter per id)."""


class PostgresVectorStore(VectorStore):
    """A LangChain vector store over one chunk table in PostgreSQL (pgvector, cosine).

    Ids are the callers' (our chunk ids); the chunk's ``source`` metadata is a generated,
    indexed column, so :meth:`adelete_sources` removes a file's chunks in one statement.
    The table is created at the first write, for that write's vector length. Relevance
    scores are ``1 - cosine distance``. Async methods are the real ones; the sync twins run
    them on the package's sync bridge.

    Args:
        db: The database.
        embedding: The embedding model of queries and added texts.
        names: The index's table names (prefix ``rag`` by default).
    """

    def __init__(
        self, db: PostgresDatabase, embedding: Embeddings, *, names: TableNames | None = None
    ) -> None:
        self.db = db
        self.embedding = embedding
        self.names = names or TableNames()
        self._ready = False
        self._pg_stores = PGStores(db, embedding, self.names)

    @property
    def embeddings(self) -> Embeddings:
        """The embedding model."""
        return self.embedding

    def _select_relevance_score_fn(self) -> Any:
        return lambda distance: 1.0 - distance

    # -- the table ------------------------------------------------------------------------

    async def ahas_table(self) -> bool:
        """Whether the chunk table exists (checked once; created at the first write)."""
        if not self._ready:
            meta = await aread_meta(self.db, self.names)
            self._ready = "dimension" in meta
        return self._ready

    async def aensure_table(self, dimension: int) -> None:
        """Create the chunk table for ``dimension``-long vectors (no-op when it exists)."""
        if not await self.ahas_table():
            await aensure_chunks(self.db, self.names, dimension)
            self._ready = True

    async def apg_vectorstore(self, *, by_source: bool = False) -> AsyncPGVectorStore:
        """``langchain_postgres``' own store over the same table (this event loop's).

        With ``by_source``, ``source`` is one of its metadata columns (for reads filtered
        by source; see :mod:`._langchain_pg`). The table must exist.
        """
        with self.db.connection_errors():
            return await self._pg_stores.aget(by_source=by_source)

    # -- writes ---------------------------------------------------------------------------

    async def aadd_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Insert or replace chunks with their vectors, in one transaction."""
        pairs = list(text_embeddings)
        if not pairs:
            return []
        chunk_ids = list(ids) if ids is not None else [_new_id() for _ in pairs]
        metas = list(metadatas) if metadatas is not None else [{} for _ in pairs]
        rows = chunk_rows([t for t, _ in pairs], [v for _, v in pairs], metas, chunk_ids)
        await self.aensure_table(len(pairs[0][1]))
        async with self.db.transaction() as conn:
            await awrite_chunks(conn, self.names, rows)
        return chunk_ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` and add them (ids: the given ones, or new UUIDs)."""
        texts = list(texts)
        if not texts:
            return []
        vectors = await self.embedding.aembed_documents(texts)
        if ids is not None:
            ids = [i if i is not None else _new_id() for i in ids]
        return await self.aadd_embeddings(zip(texts, vectors, strict=True), metadatas, ids)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Sync twin of :meth:`aadd_texts`."""
        return run_sync(self.aadd_texts(list(texts), metadatas, ids=ids))

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Embed and add documents; their own ids are kept unless ``ids=`` is given."""
        ids = kwargs.pop("ids", None) or [doc.id or _new_id() for doc in documents]
        return await self.aadd_texts(
            [d.page_content for d in documents], [d.metadata for d in documents], ids=ids
        )

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Sync twin of :meth:`aadd_documents`."""
        return run_sync(self.aadd_documents(documents, **kwargs))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete chunks by id in one statement (unknown ids are ignored)."""
        if not ids or not await self.ahas_table():
            return True
        async with self.db.transaction() as conn:
            await adelete_chunks(conn, self.names, ids)
        return True

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Sync twin of :meth:`adelete`."""
        return run_sync(self.adelete(ids))

    async def adelete_sources(self, sources: Sequence[str]) -> int:
        """Delete every chunk of these source files, in one statement; returns the count."""
        if not sources or not await self.ahas_table():
            return 0
        async with self.db.transaction() as conn:
            result = await conn.execute(
                text(f"DELETE FROM {self.names.chunks} WHERE source = ANY(:s)"),
                {"s": list(sources)},
            )
        return int(result.rowcount)

    # -- reads ----------------------------------------------------------------------------

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The chunks of ``ids`` that exist, in the order of ``ids`` (PGVectorStore's read)."""
        if not ids or not await self.ahas_table():
            return []
        wanted = list(dict.fromkeys(ids))
        pg = await self.apg_vectorstore()
        found: dict[str, Document] = {}
        with self.db.connection_errors():
            for start in range(0, len(wanted), _IDS_PER_READ):
                for doc in await pg.aget_by_ids(wanted[start : start + _IDS_PER_READ]):
                    found[str(doc.id)] = doc
        return [found[i] for i in wanted if i in found]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Sync twin of :meth:`aget_by_ids`."""
        return run_sync(self.aget_by_ids(list(ids)))

    async def acount(self) -> int:
        """How many chunks the table holds."""
        if not await self.ahas_table():
            return 0
        rows = await self.db.afetchall(f"SELECT count(*) FROM {self.names.chunks}")  # noqa: S608
        return int(rows[0][0])

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """The ``k`` nearest chunks and their cosine distances (lower is closer).

        PGVectorStore's search without a filter or with one on ``source``; our SQL for
        exact matches on other metadata keys. Equal distances come in the HNSW scan's
        order.
        """
        if not await self.ahas_table():
            return []
        checked = check_filter(filter)
        by_source = source_filter(checked)
        if checked is None or by_source is not None:
            pg = await self.apg_vectorstore(by_source=by_source is not None)
            with self.db.connection_errors():
                hits = await pg.asimilarity_search_with_score_by_vector(
                    embedding, k=k, filter=by_source
                )
            return [(doc, float(distance)) for doc, distance in hits]
        rows = await self._anearest(embedding, k, checked, with_vectors=False)
        return [(document_from_row(i, c, m), float(d)) for i, c, m, d in rows]

    async def _anearest(
        self, embedding: list[float], k: int, filter_: dict[str, Any] | None, *, with_vectors: bool
    ) -> list[Any]:
        """Our SQL: rows ``(id, content, metadata, distance[, embedding])``, nearest first."""
        where, params = filter_clause(filter_)
        vectors = ", embedding::text" if with_vectors else ""
        sql = (
            f"SELECT id, content, metadata, embedding <=> CAST(:q AS vector) AS distance"
            f"{vectors} FROM {self.names.chunks} WHERE {where} "
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"
        )
        params.update(q=vector_literal(embedding), k=k)
        if not filter_:
            return await self.db.afetchall(sql, params)
        async with self.db.connect() as conn:  # an iterative HNSW scan, this query only
            await conn.execute(
                text("SELECT set_config('hnsw.iterative_scan', :mode, true)"),
                {"mode": ITERATIVE_SCAN},
            )
            rows = list((await conn.execute(text(sql), params)).fetchall())
            await conn.rollback()
        return rows

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Embed ``query`` and return the ``k`` nearest chunks with cosine distances."""
        vector = await self.embedding.aembed_query(query)
        return await self.asimilarity_search_with_score_by_vector(vector, k, filter)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Sync twin of :meth:`asimilarity_search_with_score`."""
        return run_sync(self.asimilarity_search_with_score(query, k, filter))

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` nearest chunks of a vector."""
        hits = await self.asimilarity_search_with_score_by_vector(
            embedding, k, kwargs.get("filter")
        )
        return [doc for doc, _ in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Sync twin of :meth:`asimilarity_search_by_vector`."""
        return run_sync(self.asimilarity_search_by_vector(embedding, k, **kwargs))

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` chunks nearest to ``query``."""
        hits = await self.asimilarity_search_with_score(query, k, kwargs.get("filter"))
        return [doc for doc, _ in hits]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Sync twin of :meth:`asimilarity_search`."""
        return run_sync(self.asimilarity_search(query, k, **kwargs))

    async def ahybrid_search(
        self,
        query: str,
        *,
        k: int,
        fetch_k: int,
        filter: dict[str, Any] | None,
        settings: RetrievalConfig,
    ) -> list[Document]:
        """Dense and keyword search fused in one SQL statement (see :mod:`.hybrid`).

        What :class:`~langchain_rag_async.HybridRetriever` calls over this store.
        """
        from langchain_rag_async.postgres.hybrid import ahybrid_search

        return await ahybrid_search(
            self, query, k=k, fetch_k=fetch_k, filter=filter, settings=settings
        )

    def hybrid_search(
        self,
        query: str,
        *,
        k: int,
        fetch_k: int,
        filter: dict[str, Any] | None,
        settings: RetrievalConfig,
    ) -> list[Document]:
        """Sync twin of :meth:`ahybrid_search`."""
        return run_sync(
            self.ahybrid_search(query, k=k, fetch_k=fetch_k, filter=filter, settings=settings)
        )

    async def ahybrid_candidates(
        self, query: str, *, fetch_k: int, filter: dict[str, Any] | None = None
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """Each side's ranked ``(id, score)`` candidates of :meth:`ahybrid_search`."""
        from langchain_rag_async.postgres.hybrid import acandidates

        return await acandidates(self, query, fetch_k=fetch_k, filter=check_filter(filter))

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance, by ``langchain_postgres``' own implementation.

        Over a filter on another key than ``source`` (or ``lambda_mult=0``, which
        PGVectorStore replaces by its default 0.5), the candidates come from our SQL and
        the same selection (``langchain_core``'s ``maximal_marginal_relevance``) runs here.
        Either way the chosen chunks come nearest first, as PGVectorStore returns them.
        """
        if not await self.ahas_table():
            return []
        checked = check_filter(kwargs.get("filter"))
        by_source = source_filter(checked)
        if (checked is None or by_source is not None) and lambda_mult != 0:
            pg = await self.apg_vectorstore(by_source=by_source is not None)
            with self.db.connection_errors():
                return await pg.amax_marginal_relevance_search(
                    query, k=k, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=by_source
                )
        vector = await self.embedding.aembed_query(query)
        rows = await self._anearest(vector, fetch_k, checked, with_vectors=True)
        chosen = maximal_marginal_relevance(
            np.array(vector, dtype=np.float32),
            [json.loads(row[4]) for row in rows],
            k=k,
            lambda_mult=lambda_mult,
        )
        return [document_from_row(*rows[i][:3]) for i in sorted(chosen)]  # as PGVectorStore

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Sync twin of :meth:`amax_marginal_relevance_search`."""
        return run_sync(
            self.amax_marginal_relevance_search(query, k, fetch_k, lambda_mult, **kwargs)
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store_url: str = "",
        **kwargs: Any,
    ) -> PostgresVectorStore:
        """A store over ``store_url``'s database (``rag_*`` tables) holding ``texts``."""
        store = cls(PostgresDatabase(store_url), embedding)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    async def aclose(self) -> None:
        """Close this event loop's connections."""
        await self.db.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose` (closes the sync bridge's connections)."""
        run_sync(self.db.aclose())


# -- statements shared with the indexing writer -----------------------------------------------


async def awrite_chunks(
    conn: AsyncConnection, names: TableNames, rows: Sequence[dict[str, Any]]
) -> None:
    """Upsert chunk rows on ``conn`` (its transaction; psycopg pipelines the batch)."""
    if rows:
        await conn.execute(text(upsert_chunks_sql(names)), list(rows))


async def adelete_chunks(conn: AsyncConnection, names: TableNames, ids: Sequence[str]) -> None:
    """Delete chunks by id on ``conn``, in one statement."""
    if ids:
        await conn.execute(
            text(f"DELETE FROM {names.chunks} WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )


async def aread_chunks(
    conn: AsyncConnection, names: TableNames, ids: Sequence[str]
) -> list[Document]:
    """The chunks of ``ids`` that exist on ``conn``, in the order of ``ids``."""
    result = await conn.execute(
        text(f"SELECT id, content, metadata FROM {names.chunks} WHERE id = ANY(:ids)"),
        {"ids": list(ids)},
    )
    found = {str(i): document_from_row(i, c, m) for i, c, m in result.fetchall()}
    return [found[i] for i in dict.fromkeys(ids) if i in found]


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
