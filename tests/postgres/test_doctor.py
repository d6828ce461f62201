"""``rag-async doctor --store-url``: a healthy index in PostgreSQL, then damaged ones, repaired."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from benchmarks.reliability import cli_env
from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import EmbeddingConfig
from langchain_rag_async.embeddings.factory import embedding_model_id
from langchain_rag_async.postgres import TableNames
from langchain_rag_async.postgres.doctor import adiagnose_postgres
from langchain_rag_async.postgres.lock import HOLDER_PREFIX

from .test_engine_and_migrate import corpus

RAG_ASYNC = str(Path(sys.executable).parent / "rag-async")
NAMES = TableNames()


@pytest.fixture
async def indexed(pg_url: str, tmp_path: Path) -> str:
    async with AsyncRAGEngine(
        store_url=pg_url, embeddings=DeterministicFakeEmbedding(size=16)
    ) as engine:
        summary = await engine.aindex_directory(corpus(tmp_path))
    assert summary.chunks_added > 10
    return pg_url


def unrepaired_errors(report: object) -> list[str]:
    return [f.check for f in report.findings if f.level == "error" and not f.repaired]  # type: ignore[attr-defined]


async def test_a_healthy_index_in_postgres(indexed: str) -> None:
    report = await adiagnose_postgres(indexed)
    assert report.healthy, report.to_dict()
    checks = {f.check for f in report.findings if f.level == "ok"}
    assert {"tables", "model", "dimension", "indexes", "locks", "counts"} <= checks
    assert "postgresql" in report.index_dir


async def test_an_empty_database_has_no_index(pg_url: str) -> None:
    report = await adiagnose_postgres(pg_url)
    assert unrepaired_errors(report) == ["missing"]


async def test_another_configured_model_is_an_error(indexed: str) -> None:
    report = await adiagnose_postgres(indexed, model_id="openai:some-other-model")
    assert unrepaired_errors(report) == ["model"]


async def test_missing_indexes_and_orphan_rows_are_found_then_repaired(indexed: str) -> None:
    with psycopg.connect(indexed, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {NAMES.chunks}_embedding_hnsw")
        conn.execute(f"DROP INDEX {NAMES.chunks}_tsv_gin")
        # A chunk whose record is gone, and a record whose chunk is gone.
        orphan = conn.execute(f"SELECT id FROM {NAMES.chunks} ORDER BY id LIMIT 1").fetchone()
        assert orphan is not None
        conn.execute(f"DELETE FROM {NAMES.keys} WHERE key = %s", (orphan[0],))
        lost = conn.execute(
            f"SELECT key, group_id FROM {NAMES.keys} ORDER BY key DESC LIMIT 1"
        ).fetchone()
        assert lost is not None and lost[0] != orphan[0]
        conn.execute(f"DELETE FROM {NAMES.chunks} WHERE id = %s", (lost[0],))

    report = await adiagnose_postgres(indexed)
    assert sorted(unrepaired_errors(report)) == ["counts", "indexes"]
    counts = next(f for f in report.findings if f.check == "counts")
    assert orphan[0] in counts.message and lost[0] in counts.message

    repaired = await adiagnose_postgres(indexed, repair=True)
    assert repaired.healthy, repaired.to_dict()
    assert {f.check for f in repaired.findings if f.repaired} == {"counts", "indexes"}
    assert (await adiagnose_postgres(indexed)).healthy

    with psycopg.connect(indexed, autocommit=True) as conn:
        methods = {
            row[0]
            for row in conn.execute(
                "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = %s::regclass",
                (NAMES.chunks,),
            )
        }
        assert {"hnsw", "gin"} <= methods
        assert conn.execute(
            f"SELECT count(*) FROM {NAMES.chunks} WHERE id = %s", (orphan[0],)
        ).fetchone() == (0,)
        # The file whose chunk was lost is no longer recorded: the next run reads it again.
        assert conn.execute(
            f"SELECT count(*) FROM {NAMES.files} WHERE path = %s", (lost[1],)
        ).fetchone() == (0,)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


async def test_a_lock_held_for_a_dead_process_is_found_and_released(
    indexed: str, dead_pid: int
) -> None:
    key = NAMES.lock_key("run")
    holder = psycopg.connect(indexed, autocommit=True)
    try:
        holder.execute(
            "SELECT set_config('application_name', %s, false)",
            (f"{HOLDER_PREFIX}{socket.gethostname()}:{dead_pid}",),
        )
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        report = await adiagnose_postgres(indexed)
        assert unrepaired_errors(report) == ["locks"]
        repaired = await adiagnose_postgres(indexed, repair=True)
        assert [f.check for f in repaired.findings if f.repaired] == ["locks"]
        with pytest.raises(psycopg.OperationalError):  # its connection was ended
            holder.execute("SELECT 1")
    finally:
        holder.close()
    with psycopg.connect(indexed, autocommit=True) as conn:
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


async def test_a_live_holder_is_a_warning_not_an_error(indexed: str) -> None:
    holder = psycopg.connect(indexed, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (NAMES.lock_key("run"),))
        report = await adiagnose_postgres(indexed, repair=True)
        assert report.healthy
        assert any(f.check == "locks" and f.level == "warning" for f in report.findings)
        assert holder.execute("SELECT 1").fetchone() == (1,)  # not ended
    finally:
        holder.close()


def test_the_cli_checks_postgres_and_prints_json(indexed: str, tmp_path: Path) -> None:
    configured = embedding_model_id(EmbeddingConfig())  # what the CLI's default config names
    with psycopg.connect(indexed, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {NAMES.chunks}_tsv_gin")
        conn.execute(
            f"UPDATE {NAMES.meta} SET value = %s WHERE key = 'embedding_model_id'", (configured,)
        )
    env = {**cli_env(), "RAG_STORE_URL": indexed}
    found = subprocess.run(
        [RAG_ASYNC, "doctor", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert not report["healthy"]
    assert [f["check"] for f in report["findings"] if f["level"] == "error"] == ["indexes"]
    fixed = subprocess.run(
        [RAG_ASYNC, "doctor", "--store-url", indexed, "--repair"],
        env=cli_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixed" in fixed.stdout and "healthy" in fixed.stdout
