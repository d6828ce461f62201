"""Hybrid search over PostgreSQL in one statement: dense and keyword CTEs, fused in SQL.

:class:`~langchain_rag_async.HybridRetriever` over a :class:`PostgresVectorStore` (and
no sparse index) runs here: the store's ``ahybrid_search`` embeds the question once, then
one statement searches both sides, fuses them (reciprocal rank, or weighted min-max,
exactly as :func:`~langchain_rag_async.retrievers.fusion.fuse_ranked_ids` computes them,
ties broken the same way) and returns the ``k`` winners with their text and
``metadata["scores"] = {"dense", "sparse", "fused"}``: one round trip per query.
``PostgresHybridRetriever`` is kept as another name of ``HybridRetriever``.

The keyword side is PostgreSQL full-text search: the chunk table's generated
``tsvector`` (GIN index) against the question's lexemes joined by OR (``plainto_tsquery``
joins them by AND, which a natural-language question almost never fully matches), ranked
by ``ts_rank(content_tsv, query, 1)``: term frequency, divided by 1 + log(document length).
Measured on SciFact (``scripts/eval_postgres_keyword.py``, docs/postgres.md), nDCG@10:
0.617 for it, 0.601 for plain ``ts_rank``, 0.424 and 0.380 for ``ts_rank_cd`` with and
without that normalisation (cover density rewards terms close together, which an OR of a
question's words rarely are); FTS5's BM25 scores 0.700 on the same queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from sqlalchemy import text

from langchain_rag_async.config import FusionMethod, RetrievalConfig
from langchain_rag_async.errors import RAGError, RetrievalError
from langchain_rag_async.postgres._sql import (
    TEXT_SEARCH_CONFIG,
    TableNames,
    document_from_row,
    filter_clause,
    vector_literal,
)
from langchain_rag_async.retrievers.hybrid import HybridRetriever

if TYPE_CHECKING:
    from langchain_rag_async.postgres.store import PostgresVectorStore

__all__ = (
    "HNSW_DEFAULT_EF_SEARCH",
    "KEYWORD_RANKING",
    "PostgresHybridRetriever",
    "acandidates",
    "ahybrid_search",
    "hybrid_sql",
    "side_sql",
)

PostgresHybridRetriever = HybridRetriever
"""The former name of hybrid search over PostgreSQL: ``HybridRetriever`` does it now."""
HNSW_DEFAULT_EF_SEARCH = 40
"""pgvector's default ``hnsw.ef_search``: an HNSW scan returns at most this many rows."""
_NO_RANK = 2_147_483_647
KEYWORD_RANKING = "ts_rank(content_tsv, query, 1)"
"""How keyword matches are ranked (the module docstring has the SciFact figures)."""


def _tsquery() -> str:
    """The question's lexemes, any of them (OR), as a ``tsquery``."""
    return (
        f"replace(plainto_tsquery('{TEXT_SEARCH_CONFIG}'::regconfig, :qt)::text, "
        "' & ', ' | ')::tsquery"
    )


def side_sql(names: TableNames, where: str) -> tuple[str, str]:
    """The two ranked candidate lists as CTE bodies: ``(dense, sparse)``.

    ``dense``: the ``:n`` nearest chunks by cosine distance (the HNSW index serves the
    inner ``ORDER BY ... LIMIT``), scored ``1 - distance``; ``sparse``: the ``:n`` best
    keyword matches by :data:`KEYWORD_RANKING`. Both number their rows (``rank`` from 1) in the
    order the fusion reads them.
    """
    table = names.chunks
    dense = (
        "SELECT id, 1 - distance AS score, "
        'row_number() OVER (ORDER BY distance, id COLLATE "C") AS rank FROM ('
        f"SELECT id, embedding <=> CAST(:qv AS vector) AS distance FROM {table} "
        f"WHERE {where} ORDER BY embedding <=> CAST(:qv AS vector) LIMIT :n) AS nearest"
    )
    sparse = (
        "SELECT id, score, "
        'row_number() OVER (ORDER BY score DESC, id COLLATE "C") AS rank FROM ('
        f"SELECT id, {KEYWORD_RANKING}::float8 AS score "
        f"FROM {table}, (SELECT {_tsquery()} AS query) AS q "
        f"WHERE content_tsv @@ query AND {where} "
        'ORDER BY score DESC, id COLLATE "C" LIMIT :n) AS matched'
    )
    return dense, sparse


def hybrid_sql(names: TableNames, method: FusionMethod, where: str) -> str:
    """Both searches, the fusion and the winners' rows, in one statement.

    Parameters: ``:qv`` (query vector), ``:qt`` (query text), ``:n`` (candidates per
    side), ``:k``, ``:wd`` and ``:ws`` (weights), ``:c`` (RRF constant) and the filter's.
    """
    dense, sparse = side_sql(names, where)
    if method == "rrf":
        dense_term = "CAST(:wd AS float8) / (CAST(:c AS float8) + d.rank)"
        sparse_term = "CAST(:ws AS float8) / (CAST(:c AS float8) + s.rank)"
    else:  # weighted: min-max per list; a list whose scores are all equal maps them to 1
        dense_term = (
            "CASE WHEN d.hi = d.lo THEN CAST(:wd AS float8) "
            "ELSE CAST(:wd AS float8) * ((d.score - d.lo) / (d.hi - d.lo)) END"
        )
        sparse_term = (
            "CASE WHEN s.hi = s.lo THEN CAST(:ws AS float8) "
            "ELSE CAST(:ws AS float8) * ((s.score - s.lo) / (s.hi - s.lo)) END"
        )
    return (
        f"WITH dense AS ({dense}), sparse AS ({sparse}), "
        "dense_n AS (SELECT *, min(score) OVER () AS lo, max(score) OVER () AS hi FROM dense), "
        "sparse_n AS (SELECT *, min(score) OVER () AS lo, max(score) OVER () AS hi FROM sparse), "
        "fused AS (SELECT coalesce(d.id, s.id) AS chunk_id, d.score AS dense, s.score AS sparse, "
        f"coalesce({dense_term}, 0) + coalesce({sparse_term}, 0) AS fused, "
        f"least(coalesce(d.rank, {_NO_RANK}), coalesce(s.rank, {_NO_RANK})) AS best "
        "FROM dense_n AS d FULL OUTER JOIN sparse_n AS s ON d.id = s.id "
        'ORDER BY fused DESC, best, coalesce(d.id, s.id) COLLATE "C" LIMIT :k) '
        "SELECT f.chunk_id, c.content, c.metadata, f.dense, f.sparse, f.fused "
        f"FROM fused AS f JOIN {names.chunks} AS c ON c.id = f.chunk_id "
        'ORDER BY f.fused DESC, f.best, f.chunk_id COLLATE "C"'
    )


def _documents(rows: list[Any]) -> list[Document]:
    documents = []
    for chunk_id, content, metadata, dense, sparse, fused in rows:
        document = document_from_row(chunk_id, content, metadata)
        document.metadata["scores"] = {
            "dense": None if dense is None else float(dense),
            "sparse": None if sparse is None else float(sparse),
            "fused": float(fused),
        }
        documents.append(document)
    return documents


async def ahybrid_search(
    store: PostgresVectorStore,
    query: str,
    *,
    k: int,
    fetch_k: int,
    filter: dict[str, Any] | None,
    settings: RetrievalConfig,
) -> list[Document]:
    """Embed ``query`` once, then search, fuse and read the winners in one statement.

    Raises:
        RetrievalError: The database failed (the package's own errors pass unchanged).
    """
    vector = await store.embedding.aembed_query(query)
    try:
        rows = await _arun(store, vector, query, k, max(k, fetch_k), filter, settings)
    except RAGError:
        raise
    except Exception as exc:
        raise RetrievalError(
            f"hybrid search for {query!r} in {store.db.where} failed: "
            f"{type(exc).__name__}: {exc}. Check that the database is reachable and "
            "the index was built (rag-async index --store-url ...)"
        ) from exc
    return _documents(rows)


async def _arun(
    store: PostgresVectorStore,
    vector: list[float],
    query: str,
    k: int,
    per_side: int,
    filter_: dict[str, Any] | None,
    settings: RetrievalConfig,
) -> list[Any]:
    if not await store.ahas_table():
        return []
    where, params = filter_clause(filter_)
    params.update(
        qv=vector_literal(vector),
        qt=query,
        n=per_side,
        k=k,
        wd=settings.dense_weight,
        ws=settings.sparse_weight,
        c=settings.rrf_c,
    )
    sql = hybrid_sql(store.names, settings.fusion, where)
    async with store.db.connect() as conn:
        # For this transaction only. An HNSW scan yields at most ef_search rows, and a
        # filter discards some of them: let the scan go on until enough pass (pgvector
        # 0.8). And the keyword side reads the GIN index: on a small table the planner
        # prefers a sequential scan, which tests `@@` on every row (measured on the
        # rust-book, 1,863 chunks: 8 ms of the statement's 9; docs/postgres.md).
        await conn.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef, true), "
                "set_config('hnsw.iterative_scan', :iterate, true), "
                "set_config('enable_seqscan', 'off', true)"
            ),
            {
                "ef": str(max(HNSW_DEFAULT_EF_SEARCH, per_side)),
                "iterate": "relaxed_order" if filter_ else "off",
            },
        )
        result = await conn.execute(text(sql), params)
        rows = list(result.fetchall())
        await conn.rollback()
    return rows


async def acandidates(
    store: PostgresVectorStore, query: str, *, fetch_k: int, filter: dict[str, Any] | None
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Each side's ranked ``(id, score)`` candidates, as the fused statement sees them.

    For checks and evaluation: fusing these with
    :func:`~langchain_rag_async.retrievers.fusion.fuse_ranked_ids` gives what the
    hybrid search returns.
    """
    vector = await store.embedding.aembed_query(query)
    where, params = filter_clause(filter)
    params.update(qv=vector_literal(vector), qt=query, n=fetch_k)
    dense_sql, sparse_sql = side_sql(store.names, where)
    lists = []
    for body in (dense_sql, sparse_sql):
        rows = await store.db.afetchall(
            f"SELECT id, score FROM ({body}) AS side ORDER BY rank", params
        )
        lists.append([(str(i), float(s)) for i, s in rows])
    return lists[0], lists[1]
