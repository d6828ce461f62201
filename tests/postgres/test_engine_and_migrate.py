"""The engine, the CLI and migrate over PostgreSQL, with the real OpenAI client and fake server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from subprocess import PIPE

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from benchmarks.reliability import cli_env
from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import EmbeddingConfig, RAGConfig
from langchain_rag_async.postgres import PostgresDatabase, PostgresVectorStore
from langchain_rag_async.postgres.record_manager import PostgresRecordManager
from langchain_rag_async.testing.openai_server import FakeOpenAIServer
from langchain_rag_async.vectorstores import AsyncFAISS
from tests.conftest import RUST_BOOK

FILES = [
    "ch04-01-what-is-ownership.md",
    "ch04-02-references-and-borrowing.md",
    "ch10-03-lifetime-syntax.md",
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer.run_in_thread() as running:
        yield running


def corpus(tmp_path: Path, names: list[str] = FILES) -> Path:
    root = tmp_path / "docs"
    root.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(RUST_BOOK / name, root / name)
    return root


async def counts(url: str) -> tuple[int, int, int]:
    db = PostgresDatabase(url)
    try:
        store = PostgresVectorStore(db, DeterministicFakeEmbedding(size=4))
        records = PostgresRecordManager("rag-async", db=db)
        keys = await records.alist_keys()
        assert len(keys) == len(set(keys))
        return await store.acount(), len(keys), len(await records.aget_files())
    finally:
        await db.aclose()


async def test_engine_indexes_incrementally_and_queries(pg_url: str, tmp_path: Path) -> None:
    root = corpus(tmp_path)
    embeddings = DeterministicFakeEmbedding(size=32)
    async with AsyncRAGEngine(store_url=pg_url, embeddings=embeddings) as engine:
        first = await engine.aindex_directory(root)
        assert first.files_indexed == 3 and first.chunks_added > 10 and not first.files_failed
        chunks, keys, files = await counts(pg_url)
        assert chunks == keys == first.chunks_added and files == 3
        hits = await engine.aquery("what are lifetimes?", k=4)
        assert len(hits) == 4 and hits[0].metadata["scores"]["fused"] > 0
        assert {"dense", "sparse", "fused"} == hits[0].metadata["scores"].keys()
        assert any(h.metadata["scores"]["sparse"] for h in hits)
        again = await engine.aindex_directory(root)
        assert again.files_skipped == 3 and again.chunks_added == 0
        (root / FILES[0]).unlink()
        gone = await engine.aindex_directory(root)
        assert gone.files_deleted == 1 and gone.chunks_deleted > 0
        chunks, keys, files = await counts(pg_url)
        assert chunks == keys == first.chunks_added - gone.chunks_deleted and files == 2
        hits = await engine.aquery("ownership", k=20)
        assert all(not h.metadata["source"].endswith(FILES[0]) for h in hits)


def test_cli_index_and_query_with_store_url(
    pg_url: str, tmp_path: Path, server: FakeOpenAIServer
) -> None:
    root = corpus(tmp_path, FILES[:2])
    env = cli_env(server.base_url, RAG_STORE_URL=pg_url)
    cli = [sys.executable, "-m", "langchain_rag_async.cli"]
    index = subprocess.run(
        [*cli, "index", str(root), "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert index.returncode == 0, index.stderr
    summary = json.loads(index.stdout)
    assert summary["files_indexed"] == 2 and summary["index_dir"].startswith("postgresql")
    query = subprocess.run(
        [*cli, "query", "borrowing", "--json", "-k", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert len(rows) == 3 and rows[0]["scores"]["fused"] > 0


async def test_migrate_copies_without_embedding(
    pg_url: str, tmp_path: Path, server: FakeOpenAIServer
) -> None:
    root = corpus(tmp_path)
    config = replace(
        RAGConfig(index_dir=tmp_path / "index"),
        embeddings=EmbeddingConfig(
            provider="openai", openai_api_key="k", openai_base_url=server.base_url
        ),
    )
    async with AsyncRAGEngine(config=config) as engine:
        summary = await engine.aindex_directory(root)
    before = server.stats.requests
    cli = [sys.executable, "-m", "langchain_rag_async.cli", "migrate", "--json"]
    done = await asyncio.create_subprocess_exec(
        *cli,
        "--from",
        str(tmp_path / "index"),
        "--to",
        pg_url,
        env=cli_env(server.base_url),
        stdout=PIPE,
        stderr=PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    assert server.stats.requests == before  # nothing re-embedded
    report = json.loads(out)
    assert report["chunks"] == summary.chunks_added == report["keys"] and report["files"] == 3
    assert report["cached_vectors"] == summary.chunks_embedded
    chunks, keys, files = await counts(pg_url)
    assert (chunks, keys, files) == (report["chunks"], report["keys"], 3)
    probe = DeterministicFakeEmbedding(size=64)  # the fake server's dimension
    faiss = await AsyncFAISS.aload_local(str(tmp_path / "index"), probe)
    db = PostgresDatabase(pg_url)
    pg = PostgresVectorStore(db, probe)
    try:
        for question in ("ownership and moves", "dangling references", "lifetime annotations"):
            vector = await probe.aembed_query(question)
            want = [
                d.id for d, _ in await faiss.asimilarity_search_with_score_by_vector(vector, k=5)
            ]
            got = [d.id for d, _ in await pg.asimilarity_search_with_score_by_vector(vector, k=5)]
            assert got == want
        async with AsyncRAGEngine(config=replace(config, store_url=pg_url)) as engine:
            assert len(await engine.aquery("borrowing rules", k=3)) == 3
    finally:
        await db.aclose()


def test_readyz_counts_the_chunks_in_postgres(pg_url: str, tmp_path: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from langchain_rag_async.config import ServerConfig
    from langchain_rag_async.server import create_app

    root = corpus(tmp_path)
    engine = AsyncRAGEngine(store_url=pg_url, embeddings=DeterministicFakeEmbedding(size=32))
    app = create_app(engine, ServerConfig(roots=(root.parent,)))
    with TestClient(app, base_url="http://localhost") as client:  # a loopback Host
        job = client.post("/index", json={"path": str(root)}).json()["job_id"]
        while (state := client.get(f"/index/{job}").json())["state"] == "running":
            time.sleep(0.05)
        ready = client.get("/readyz").json()
    assert state["state"] == "succeeded", state
    chunks, _, _ = asyncio.run(counts(pg_url))
    assert ready["status"] == "ready" and ready["chunks"] == chunks > 10
