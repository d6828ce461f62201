"""``rag-async doctor``: check an index directory, and repair what needs no source files.

Checks: the manifest and every file it names (size, SHA-256, parse), the counts (FAISS
vectors == documents == record keys == sparse rows, and the same ids), the embedding
model's identity, files of stale generations, the locks, and SQLite's ``integrity_check``
of every SQLite file. ``repair=True`` rebuilds the sparse index from the store and
removes stale generation files; what it cannot fix is said so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import filelock
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._sqlite import SQLiteDatabase
from langchain_rag_async.embeddings.factory import EMBEDDING_CACHE_FILE
from langchain_rag_async.errors import RAGError
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import (
    RECORDS_FILE,
    RECORDS_NAMESPACE,
    reconcile_sparse,
)
from langchain_rag_async.sparse_index import SPARSE_INDEX_FILENAME, FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS
from langchain_rag_async.vectorstores._persistence import (
    read_index,
    remove_stale_generations,
    stale_generation_files,
)

__all__ = ("DoctorReport", "Finding", "adiagnose")

Level = Literal["ok", "warning", "error"]
_LOCK_FILES = (".lock", ".run.lock")


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check.

    Attributes:
        level: ``ok``, ``warning`` (harmless but worth knowing) or ``error``.
        check: Which check (``manifest``, ``counts``, ``model``, ``generations``,
            ``locks``, ``sqlite``).
        message: What was found, and what to do.
        file: The file concerned, when there is one.
        repaired: Whether ``repair`` fixed it.
    """

    level: Level
    check: str
    message: str
    file: str | None = None
    repaired: bool = False


@dataclass(slots=True)
class DoctorReport:
    """All findings about one index directory."""

    index_dir: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No error is left (repaired ones do not count)."""
        return not any(f.level == "error" and not f.repaired for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``rag-async doctor --json`` prints)."""
        return {
            "index_dir": self.index_dir,
            "healthy": self.healthy,
            "findings": [asdict(f) for f in self.findings],
        }

    def add(self, level: Level, check: str, message: str, file: Path | None = None) -> None:
        """Record a finding (not repaired)."""
        self.findings.append(Finding(level, check, message, None if file is None else str(file)))


async def adiagnose(index_dir: str | Path, *, repair: bool = False) -> DoctorReport:
    """Check ``index_dir``; with ``repair``, fix what can be fixed without the sources.

    Args:
        index_dir: The index directory.
        repair: Rebuild the sparse index from the store and remove stale generations.

    Returns:
        The findings, in the order the checks ran.
    """
    path = Path(index_dir)
    report = DoctorReport(index_dir=str(path))
    if not await run_in_executor(None, (path / "manifest.json").is_file):
        report.add(
            "error",
            "manifest",
            "no index here (manifest.json missing); build one with "
            "`rag-async index PATH --index-dir DIR`",
            path / "manifest.json",
        )
        return report
    try:
        loaded = await run_in_executor(None, read_index, path)
    except RAGError as exc:
        file = getattr(exc, "path", None)
        report.add("error", "manifest", f"{exc}", None if file is None else Path(file))
        await _check_sqlite_files(path, report)
        return report
    manifest = loaded.manifest
    report.add(
        "ok",
        "manifest",
        f"generation {manifest['generation']}: every file's size and SHA-256 match, and both parse",
        path / "manifest.json",
    )
    report.add("ok", "model", f"built with embedding model {manifest['embedding_model_id']}")
    store_ids = [str(doc.id) for doc in loaded.documents]
    await _check_counts(path, store_ids, report, repair=repair)
    await _check_generations(path, report, repair=repair)
    await _check_locks(path, report)
    await _check_sqlite_files(path, report)
    return report


async def _check_counts(
    path: Path, store_ids: list[str], report: DoctorReport, *, repair: bool
) -> None:
    ids = set(store_ids)
    await _check_records(path, ids, report)
    await _check_sparse(path, ids, report, repair=repair)


async def _check_records(path: Path, ids: set[str], report: DoctorReport) -> None:
    file = path / RECORDS_FILE
    if not await run_in_executor(None, file.exists):  # opening it would create it
        report.add(
            "error",
            "counts",
            "the record manager's database is missing; the next "
            "`rag-async index` run reads every file again",
            file,
        )
        return
    async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=file) as records:
        keys = set(await records.alist_keys())
    if keys == ids:
        report.add("ok", "counts", f"{len(ids)} vectors, documents and record keys agree")
        return
    report.add(
        "error",
        "counts",
        f"the records hold {len(keys)} keys for {len(ids)} stored "
        f"chunks ({len(keys - ids)} unknown, {len(ids - keys)} missing); the next "
        "`rag-async index` run reconciles them",
        file,
    )


async def _check_sparse(path: Path, ids: set[str], report: DoctorReport, *, repair: bool) -> None:
    file = path / SPARSE_INDEX_FILENAME
    if not repair and not await run_in_executor(None, file.exists):  # a check never creates it
        report.add(
            "error",
            "counts",
            "the sparse index is missing; `rag-async doctor --repair` rebuilds it from the store",
            file,
        )
        return
    async with FTS5Index.in_index_dir(path) as sparse:
        sparse_ids = await sparse.aids()
        if sparse_ids == ids:
            report.add("ok", "counts", f"the sparse index holds the same {len(ids)} chunks")
            return
        message = (
            f"the sparse index holds {len(sparse_ids)} chunks for {len(ids)} stored "
            f"({len(sparse_ids - ids)} extra, {len(ids - sparse_ids)} missing)"
        )
        if not repair:
            report.add(
                "error", "counts", message + "; `rag-async doctor --repair` rebuilds it", file
            )
            return
        store = await AsyncFAISS.aload_local(str(path), _LOADER_EMBEDDINGS)
        await reconcile_sparse(store, sparse)
        finding = Finding("error", "counts", message + "; rebuilt from the store", str(file), True)
        report.findings.append(finding)


# Loading a store for repairs embeds nothing; any model object will do.
_LOADER_EMBEDDINGS = DeterministicFakeEmbedding(size=1)


async def _check_generations(path: Path, report: DoctorReport, *, repair: bool) -> None:
    stale = await run_in_executor(None, stale_generation_files, path)
    if not stale:
        report.add("ok", "generations", "no files of older generations")
        return
    if repair:
        await run_in_executor(None, remove_stale_generations, path)
    for file in stale:
        report.findings.append(
            Finding(
                "warning",
                "generations",
                "removed"
                if repair
                else "a file of an older generation (a crash before its "
                "clean-up); harmless, `--repair` removes it",
                str(file),
                repaired=repair,
            )
        )


async def _check_locks(path: Path, report: DoctorReport) -> None:
    for name in _LOCK_FILES:
        lock_path = path / name
        if not await run_in_executor(None, lock_path.exists):
            continue
        lock = filelock.FileLock(str(lock_path))
        try:
            await run_in_executor(None, lock.acquire, 0)
        except filelock.Timeout:
            report.add(
                "warning",
                "locks",
                "held by a running process (an indexing run or a "
                "save); wait for it before repairing",
                lock_path,
            )
        else:
            await run_in_executor(None, lock.release)
            report.add("ok", "locks", "free (a lock file left behind is harmless)", lock_path)


async def _check_sqlite_files(path: Path, report: DoctorReport) -> None:
    for name in (RECORDS_FILE, SPARSE_INDEX_FILENAME, EMBEDDING_CACHE_FILE):
        file = path / name
        if not await run_in_executor(None, file.exists):
            continue
        database = SQLiteDatabase(file, schema="", schema_version=None)
        try:
            rows = await database.afetchall("PRAGMA integrity_check")
        except RAGError as exc:
            report.add("error", "sqlite", str(exc), file)
            continue
        finally:
            await database.aclose()
        verdict = ", ".join(str(row[0]) for row in rows)
        if verdict == "ok":
            report.add("ok", "sqlite", "integrity_check: ok", file)
        else:
            report.add("error", "sqlite", f"integrity_check: {verdict[:300]}", file)
