"""``rag-async doctor``: a healthy index, then damaged ones (each finding names its file)."""

from __future__ import annotations

import contextlib
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


def current_docstore(index_dir: Path) -> Path:
    return next(index_dir.glob("docstore.*.json"))


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
    # records out of step with the store: what a run stopped mid-checkpoint leaves; queries
    # are not affected and the next run reconciles them, so a warning, not an error
    assert ("counts", str(records)) not in errors(report)
    assert any(
        f.level == "warning" and f.check == "counts" and f.file == str(records)
        for f in report.findings
    )
    assert report.healthy
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


# -- rebuilding a lost store from the records, texts and embedding cache ----------------------

MODEL_ID = "custom:DeterministicFakeEmbedding"


async def answers(index_dir: Path) -> list[tuple[str | None, str]]:
    async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding()) as e:
        return [(d.id, d.page_content) for d in await e.aquery("cargo builds the code", k=3)]


def repaired(report: object, check: str) -> list[str]:
    return [f.message for f in report.findings if f.check == check and f.repaired]  # type: ignore[attr-defined]


async def test_a_lost_faiss_file_is_rebuilt_from_the_docstore_and_the_cache(
    index_dir: Path,
) -> None:
    before = await answers(index_dir)
    faiss_file = current_faiss(index_dir)
    faiss_file.unlink()
    report = await adiagnose(index_dir, repair=True)
    assert report.healthy, report.to_dict()
    (message,) = repaired(report, "manifest")
    assert str(faiss_file) in message and "from the docstore" in message
    assert not faiss_file.exists() and current_faiss(index_dir) != faiss_file  # a new generation
    assert await answers(index_dir) == before
    assert (await adiagnose(index_dir)).healthy


async def test_a_corrupt_docstore_is_rebuilt_from_the_sparse_index(index_dir: Path) -> None:
    before = await answers(index_dir)
    docstore = current_docstore(index_dir)
    docstore.write_bytes(docstore.read_bytes()[:50])
    report = await adiagnose(index_dir, repair=True)
    assert report.healthy, report.to_dict()
    assert "from the sparse index" in repaired(report, "manifest")[0]
    assert await answers(index_dir) == before


async def test_a_lost_manifest_is_named_by_queries_and_rebuilt_with_the_model_id(
    index_dir: Path,
) -> None:
    before = await answers(index_dir)
    manifest = index_dir / "manifest.json"
    manifest.unlink()
    with pytest.raises(IndexCorruptedError, match=r"manifest\.json.*missing.*rag-async doctor"):
        await answers(index_dir)
    assert ("manifest", str(manifest)) in errors(await adiagnose(index_dir))
    unknown = await adiagnose(index_dir, repair=True)  # which model? the manifest said it
    assert not unknown.healthy
    assert any("embedding model is unknown" in f.message for f in unknown.findings)
    report = await adiagnose(index_dir, repair=True, model_id=MODEL_ID)
    assert report.healthy, report.to_dict()
    assert await answers(index_dir) == before


async def test_chunks_without_a_cached_vector_are_named_and_reindexed_later(
    index_dir: Path, tmp_path: Path
) -> None:
    before = await answers(index_dir)
    current_faiss(index_dir).unlink()
    with sqlite3.connect(index_dir / "embedding_cache.sqlite") as conn:
        conn.execute(
            "DELETE FROM embedding_cache WHERE rowid = (SELECT MIN(rowid) FROM embedding_cache)"
        )
    conn.close()
    report = await adiagnose(index_dir, repair=True)
    (lost,) = [f for f in report.findings if f.check == "rebuild"]
    assert lost.level == "error" and not lost.repaired
    assert "1 of 3 chunks could not be rebuilt (1 without a cached vector" in lost.message
    assert "run `rag-async index`" in lost.message and str(tmp_path / "docs") in lost.message
    after = await adiagnose(index_dir)
    assert after.healthy, after.to_dict()  # consistent: the file's records were dropped
    async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding()) as e:
        summary = await e.aindex_directory(tmp_path / "docs")
    assert summary.files_indexed == 1 and summary.chunks_embedded == 1
    assert await answers(index_dir) == before


async def test_a_damaged_sqlite_file_is_set_aside_and_the_sparse_index_rebuilt(
    index_dir: Path,
) -> None:
    before = await answers(index_dir)
    remove_sparse_files(index_dir).write_bytes(b"garbage, not SQLite" * 300)
    report = await adiagnose(index_dir)
    assert ("sqlite", str(index_dir / "sparse.sqlite")) in errors(report)
    fixed = await adiagnose(index_dir, repair=True)
    assert fixed.healthy, fixed.to_dict()
    assert "moved aside to sparse.sqlite.damaged" in repaired(fixed, "sqlite")[0]
    assert (index_dir / "sparse.sqlite.damaged").exists()
    assert await answers(index_dir) == before


async def test_a_sparse_row_with_another_text_is_found_and_rewritten(index_dir: Path) -> None:
    # Without a seal (a file an older version wrote), the row is compared with the store.
    with sqlite3.connect(index_dir / "sparse.sqlite") as conn:
        conn.execute(
            "UPDATE chunks SET page_content = 'flipped' WHERE pk = (SELECT MIN(pk) FROM chunks)"
        )
        conn.execute("DELETE FROM seal")
    conn.close()
    report = await adiagnose(index_dir)
    assert ("counts", str(index_dir / "sparse.sqlite")) in errors(report)
    assert (await adiagnose(index_dir, repair=True)).healthy
    assert (await adiagnose(index_dir)).healthy
    async with FTS5Index.in_index_dir(index_dir) as sparse:
        assert await sparse.acheck_seal() == "sound"  # the repair sealed it again


async def test_a_sparse_index_changed_behind_its_seal_is_refused_then_rebuilt(
    index_dir: Path,
) -> None:
    # An edit from outside (or a bit flip) that SQLite and FTS5's own check both accept.
    before = await answers(index_dir)
    with sqlite3.connect(index_dir / "sparse.sqlite") as conn:
        conn.execute(
            """UPDATE chunks SET metadata = '{"source": "elsewhere"}' """
            "WHERE pk = (SELECT MIN(pk) FROM chunks)"
        )
        conn.execute(FTS5_CHECK)
    conn.close()
    report = await adiagnose(index_dir)
    (finding,) = [f for f in report.findings if f.level == "error"]
    assert (finding.check, finding.file) == ("sqlite", str(index_dir / "sparse.sqlite"))
    assert "do not match their seal" in finding.message
    with pytest.raises(IndexCorruptedError, match=r"sparse\.sqlite.*seal.*rag-async doctor"):
        await answers(index_dir)
    docs = index_dir.parent / "docs"
    with pytest.raises(IndexCorruptedError, match=r"sparse\.sqlite.*seal"):  # indexing too
        async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding()) as e:
            await e.aindex_directory(docs)
    fixed = await adiagnose(index_dir, repair=True)
    assert fixed.healthy, fixed.to_dict()
    assert await answers(index_dir) == before


async def test_generation_files_without_a_manifest_or_records_are_a_first_save_cut_short(
    tmp_path: Path,
) -> None:
    # A crash during the first save: files of generation 1, records still empty.
    from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
    from langchain_rag_async.indexing.resources import check_model

    (tmp_path / "index.1.faiss").write_bytes(b"x")
    async with SQLiteRecordManager("rag-async", db_path=tmp_path / "records.sqlite") as records:
        await records.acreate_schema()
        assert await check_model(tmp_path, MODEL_ID) is None  # a new index, not a damaged one
        await records.aupdate(["chunk-1"], group_ids=["a.md"])
    with pytest.raises(IndexCorruptedError, match="manifest.json"):
        await check_model(tmp_path, MODEL_ID)


FTS5_CHECK = "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)"


def _flip_inside_the_full_text_index(sparse_file: Path) -> None:
    """Flip bits until FTS5's own check fails while SQLite's page checks still pass."""
    original = sparse_file.read_bytes()
    for position in range(len(original) - 1, 100, -7):
        data = bytearray(original)
        data[position] ^= 0x08
        sparse_file.write_bytes(bytes(data))
        with contextlib.closing(sqlite3.connect(sparse_file)) as conn:
            try:
                if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    continue
                conn.execute(
                    "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)"
                )
            except sqlite3.Error:
                return  # damaged where only FTS5's check looks
            except UnicodeDecodeError:
                continue
    pytest.skip("no single-bit flip found that only FTS5's check catches")


@pytest.mark.allow_blocking  # flips bytes in a file and probes it with sqlite3
async def test_damage_inside_the_full_text_index_is_found_and_repaired(index_dir: Path) -> None:
    sparse_file = index_dir / "sparse.sqlite"
    _flip_inside_the_full_text_index(sparse_file)
    report = await adiagnose(index_dir)
    assert ("sqlite", str(sparse_file)) in errors(report)
    fixed = await adiagnose(index_dir, repair=True)
    assert fixed.healthy, fixed.findings
    assert (await adiagnose(index_dir)).healthy
