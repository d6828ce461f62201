"""``rag-async doctor``: a healthy index, then damaged ones (each finding names its file)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.errors import IndexCorruptedError
from langchain_rag_async.indexing.doctor import adiagnose
from langchain_rag_async.sparse_index import FTS5Index

from .server_support import config_for, embedding, write_topics

RAG_ASYNC = str(Path(sys.executable).parent / "rag-async")


@pytest.fixture
async def index_dir(tmp_path: Path) -> Path:
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding()) as e:
        await e.aindex_directory(write_topics(tmp_path / "docs"))
    return tmp_path / "idx"


def current_faiss(index_dir: Path) -> Path:
    return next(index_dir.glob("index.*.faiss"))


def errors(report: object) -> list[tuple[str, str | None]]:
    return [(f.check, f.file) for f in report.findings if f.level == "error" and not f.repaired]  # type: ignore[attr-defined]


async def test_a_healthy_index(index_dir: Path) -> None:
    report = await adiagnose(index_dir)
    assert report.healthy, report.to_dict()
    checks = {f.check for f in report.findings}
    assert {"manifest", "model", "counts", "generations", "sqlite"} <= checks


async def test_a_truncated_faiss_file_is_named_and_loading_points_to_doctor(
    index_dir: Path,
) -> None:
    faiss_file = current_faiss(index_dir)
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    report = await adiagnose(index_dir)
    assert not report.healthy
    assert ("manifest", str(faiss_file)) in errors(report)
    with pytest.raises(IndexCorruptedError, match="rag-async doctor"):
        async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding()) as e:
            await e.aquery("cargo")


async def test_a_lagging_sparse_index_is_found_and_repaired(index_dir: Path) -> None:
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        first = sorted(await sparse.aids())[0]
        await sparse.adelete([first])
    report = await adiagnose(index_dir)
    assert ("counts", str(index_dir / "sparse.sqlite")) in errors(report)
    repaired = await adiagnose(index_dir, repair=True)
    assert repaired.healthy and any(f.repaired for f in repaired.findings)
    assert (await adiagnose(index_dir)).healthy
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        assert first in await sparse.aids()


async def test_files_of_an_older_generation_are_reported_then_removed(index_dir: Path) -> None:
    current = current_faiss(index_dir)
    stale = index_dir / "index.1.faiss"
    if stale == current:
        stale = index_dir / "index.99.faiss"
    shutil.copy(current, stale)
    report = await adiagnose(index_dir)
    assert report.healthy  # harmless: a warning
    assert any(f.check == "generations" and f.file == str(stale) for f in report.findings)
    await adiagnose(index_dir, repair=True)
    assert not stale.exists() and current.exists()


async def test_records_out_of_step_and_a_broken_sqlite_file(index_dir: Path) -> None:
    records = index_dir / "records.sqlite"
    with sqlite3.connect(records) as conn:
        conn.execute(
            "DELETE FROM record_manager_keys WHERE key = "
            "(SELECT key FROM record_manager_keys ORDER BY key LIMIT 1)"
        )
    report = await adiagnose(index_dir)
    assert ("counts", str(records)) in errors(report)
    cache = index_dir / "embedding_cache.sqlite"
    if cache.exists():
        cache.write_bytes(b"not a database at all" * 100)
        broken = await adiagnose(index_dir)
        assert ("sqlite", str(cache)) in errors(broken)


def test_the_cli_prints_json_and_exits_1_on_problems(tmp_path: Path) -> None:
    done = subprocess.run(
        [RAG_ASYNC, "doctor", "--index-dir", str(tmp_path / "none"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is False and report["findings"][0]["check"] == "manifest"


def remove_sparse_files(index_dir: Path) -> Path:
    for file in index_dir.glob("sparse.sqlite*"):
        file.unlink()
    return index_dir / "sparse.sqlite"


async def test_a_missing_sparse_index_is_reported_without_creating_it(index_dir: Path) -> None:
    sparse = remove_sparse_files(index_dir)
    report = await adiagnose(index_dir)
    assert ("counts", str(sparse)) in errors(report)
    assert not sparse.exists()  # the check wrote nothing
    assert (await adiagnose(index_dir, repair=True)).healthy
    assert (await adiagnose(index_dir)).healthy
