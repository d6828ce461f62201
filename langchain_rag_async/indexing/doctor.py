"""``rag-async doctor``: check an index directory, and repair what needs no source files.

Checks: the manifest and every file it names (size, SHA-256, parse), the counts (FAISS
vectors == documents == record keys == sparse rows, and the same ids), the embedding
model's identity, files of stale generations, the locks, and SQLite's ``integrity_check``
of every SQLite file. ``repair=True`` rebuilds the sparse index from the store and
removes stale generation files; what it cannot fix is said so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import filelock
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._sqlite import SQLiteDatabase
from langchain_rag_async.embeddings.factory import EMBEDDING_CACHE_FILE
from langchain_rag_async.errors import IndexCorruptedError, IndexLockedError, RAGError
from langchain_rag_async.indexing.lock import RUN_LOCK_FILE, run_lock
from langchain_rag_async.indexing.rebuild import (
    LOADER_EMBEDDINGS,
    RebuildOutcome,
    arebuild_store,
    survivors,
)
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import (
    RECORDS_FILE,
    RECORDS_NAMESPACE,
    reconcile_sparse,
)
from langchain_rag_async.sparse_index import SPARSE_INDEX_FILENAME, FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS
from langchain_rag_async.vectorstores._persistence import (
    LoadedIndex,
    read_index,
    remove_stale_generations,
    stale_generation_files,
)

__all__ = ("DoctorReport", "Finding", "adiagnose")

Level = Literal["ok", "warning", "error"]
_LOCK_FILES = (".lock", RUN_LOCK_FILE)
_REPAIR_LOCK_TIMEOUT = 10.0  # seconds to wait for an indexing run before repairing


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


async def adiagnose(
    index_dir: str | Path, *, repair: bool = False, model_id: str | None = None
) -> DoctorReport:
    """Check ``index_dir``; with ``repair``, fix what can be fixed without the sources.

    Args:
        index_dir: The index directory.
        repair: Rebuild the sparse index from the store, the store from the records,
            texts and embedding cache when its files are lost or damaged, and remove
            stale generations.
        model_id: The embedding model's identity (``provider:model``) the index was
            built with; only needed to rebuild a store whose manifest is unreadable.

    Returns:
        The findings, in the order the checks ran.
    """
    path = Path(index_dir)
    report = DoctorReport(index_dir=str(path))
    loaded, failure = await _load(path)
    if loaded is None:
        loaded = await _recover(path, failure, report, repair=repair, model_id=model_id)
        if loaded is None:
            return report
    manifest = loaded.manifest
    report.add(
        "ok",
        "manifest",
        f"generation {manifest['generation']}: every file's size and SHA-256 match, and both parse",
        path / "manifest.json",
    )
    report.add("ok", "model", f"built with embedding model {manifest['embedding_model_id']}")
    damaged = await _check_sqlite_files(path, report, repair=repair)
    await _check_counts(path, loaded.documents, report, repair=repair, damaged=damaged)
    await _check_generations(path, report, repair=repair)
    await _check_locks(path, report)
    return report


async def _recover(
    path: Path,
    failure: Finding | None,
    report: DoctorReport,
    *,
    repair: bool,
    model_id: str | None,
) -> LoadedIndex | None:
    """Report why the store does not load; with ``repair``, rebuild it when possible."""
    failure = failure or Finding("error", "manifest", "the index cannot be read")
    rebuildable = await run_in_executor(None, survivors, path)
    if failure.check == "missing" and not rebuildable:
        report.findings.append(replace(failure, check="manifest"))
        return None
    can_rebuild = repair and bool(rebuildable) and failure.check != "unusable"
    failure = replace(failure, check="manifest")
    if not can_rebuild:
        report.findings.append(failure)
    if not (can_rebuild and await _rebuild(path, failure, report, model_id)):
        await _check_sqlite_files(path, report, repair=repair)
        return None
    loaded, again = await _load(path)
    if loaded is None:
        report.findings.append(replace(again or failure, check="manifest"))
    return loaded


async def _load(path: Path) -> tuple[LoadedIndex | None, Finding | None]:
    """The verified current generation, or the finding that says why there is none.

    A missing manifest gives check ``missing`` (no index, unless other files survive).
    """
    manifest = path / "manifest.json"
    if not await run_in_executor(None, manifest.is_file):
        message = (
            "no index here (manifest.json missing); build one with "
            "`rag-async index PATH --index-dir DIR`, or, when the records, sparse index "
            "and embedding cache survive, rebuild it with `rag-async doctor --repair`"
        )
        return None, Finding("error", "missing", message, str(manifest))
    try:
        return await run_in_executor(None, read_index, path), None
    except IndexCorruptedError as exc:
        return None, Finding("error", "manifest", str(exc), exc.path)
    except RAGError as exc:  # a newer format, a held lock: nothing to rebuild
        return None, Finding("error", "unusable", str(exc), str(manifest))


async def _rebuild(
    path: Path, failure: Finding, report: DoctorReport, model_id: str | None
) -> bool:
    """Rebuild the store; report the damage as repaired and what could not be rebuilt."""
    try:
        async with run_lock(path, timeout=_REPAIR_LOCK_TIMEOUT):
            outcome = await arebuild_store(path, model_id=model_id)
    except IndexLockedError as exc:
        report.findings.append(failure)
        report.add("warning", "locks", f"not repaired: {exc}", path / RUN_LOCK_FILE)
        return False
    if outcome.problem is not None:
        report.findings.append(failure)
        report.add("error", "rebuild", f"the store cannot be rebuilt: {outcome.problem}")
        return False
    fixed = (
        f"{failure.message.rstrip('.')}. Rebuilt a new generation from the "
        f"{outcome.text_source} and the embedding cache ({outcome.rebuilt} of "
        f"{outcome.known} chunks, no network used)"
    )
    report.findings.append(replace(failure, message=fixed, repaired=True))
    if not outcome.complete:
        report.add("error", "rebuild", _unrebuilt_message(outcome), path / EMBEDDING_CACHE_FILE)
    return True


def _unrebuilt_message(outcome: RebuildOutcome) -> str:
    lost = len(outcome.without_text) + len(outcome.without_vector)
    files = ", ".join(outcome.files_to_reindex[:10]) or "(their records were missing)"
    more = len(outcome.files_to_reindex) - 10
    return (
        f"{lost} of {outcome.known} chunks could not be rebuilt "
        f"({len(outcome.without_vector)} without a cached vector, "
        f"{len(outcome.without_text)} without a surviving text). Their files' records were "
        "dropped, so run `rag-async index` on the same sources to read and embed them "
        f"again: {files}" + (f" and {more} more" if more > 0 else "")
    )


async def _check_counts(
    path: Path,
    documents: list[Document],
    report: DoctorReport,
    *,
    repair: bool,
    damaged: set[str],
) -> None:
    ids = {str(doc.id) for doc in documents}
    if RECORDS_FILE not in damaged:
        await _check_records(path, ids, report)
    if SPARSE_INDEX_FILENAME not in damaged:
        await _check_sparse(path, documents, report, repair=repair)


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
    # What a run stopped between saving the store and committing its records leaves (a
    # kill, a full disk): queries answer from the store, and the records only steer the
    # next run, which reconciles them with the store first. Worth knowing, not damage.
    report.add(
        "warning",
        "counts",
        f"the records hold {len(keys)} keys for {len(ids)} stored "
        f"chunks ({len(keys - ids)} unknown, {len(ids - keys)} missing), as a run stopped "
        "mid-checkpoint leaves them; queries are not affected, and the next "
        "`rag-async index` run reconciles them",
        file,
    )


async def _check_sparse(
    path: Path, documents: list[Document], report: DoctorReport, *, repair: bool
) -> None:
    file = path / SPARSE_INDEX_FILENAME
    if not repair and not await run_in_executor(None, file.exists):  # a check never creates it
        report.add(
            "error",
            "counts",
            "the sparse index is missing; `rag-async doctor --repair` rebuilds it from the store",
            file,
        )
        return
    ids = {str(doc.id) for doc in documents}
    async with FTS5Index.in_index_dir(path) as sparse:
        sparse_ids = await sparse.aids()
        if sparse_ids == ids:
            await _check_sparse_texts(sparse, documents, report, repair=repair)
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
        store = await AsyncFAISS.aload_local(str(path), LOADER_EMBEDDINGS)
        await reconcile_sparse(store, sparse)
        finding = Finding("error", "counts", message + "; rebuilt from the store", str(file), True)
        report.findings.append(finding)
        await _check_sparse_texts(sparse, documents, report, repair=repair)


async def _check_sparse_texts(
    sparse: FTS5Index, documents: list[Document], report: DoctorReport, *, repair: bool
) -> None:
    """Every sparse row holds the text and metadata of the store's document."""
    file = None if sparse.db_path is None else Path(sparse.db_path)
    rows = {str(doc.id): doc for doc in await sparse.aget_by_ids([str(d.id) for d in documents])}
    differ = [doc for doc in documents if not _same_chunk(rows.get(str(doc.id)), doc)]
    if not differ:
        report.add("ok", "counts", f"the sparse index holds the same {len(documents)} chunks")
        return
    message = f"{len(differ)} chunk(s) of the sparse index differ from the store's text or metadata"
    if not repair:
        report.add("error", "counts", f"{message}; `rag-async doctor --repair` rewrites them", file)
        return
    await sparse.aapply(upserts=differ)
    await sparse.aseal()
    report.findings.append(Finding("error", "counts", f"{message}; rewritten", str(file), True))


def _same_chunk(row: Document | None, doc: Document) -> bool:
    return row is not None and row.page_content == doc.page_content and row.metadata == doc.metadata


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


async def _check_sqlite_files(path: Path, report: DoctorReport, *, repair: bool) -> set[str]:
    """``integrity_check`` every SQLite file; with ``repair``, set damaged ones aside.

    Returns:
        The names of damaged files left in place (later checks skip them).
    """
    damaged: set[str] = set()
    for name in (RECORDS_FILE, SPARSE_INDEX_FILENAME, EMBEDDING_CACHE_FILE):
        file = path / name
        if not await run_in_executor(None, file.exists):
            continue
        problem = await _sqlite_problem(file)
        if problem is None:
            report.add("ok", "sqlite", "integrity_check: ok", file)
        elif repair:
            aside = await run_in_executor(None, set_aside, file)
            after = _AFTER_SET_ASIDE[name]
            message = f"{problem.rstrip('.')}; moved aside to {aside.name}: {after}"
            report.findings.append(Finding("error", "sqlite", message, str(file), True))
        else:
            damaged.add(name)
            hint = f"`rag-async doctor --repair` sets it aside: {_AFTER_SET_ASIDE[name]}"
            report.add("error", "sqlite", f"{problem.rstrip('.')}; {hint}", file)
    return damaged


_AFTER_SET_ASIDE = {
    RECORDS_FILE: "the next `rag-async index` run reads every file again (unchanged "
    "chunks take their vectors from the embedding cache)",
    SPARSE_INDEX_FILENAME: "the sparse index is rebuilt from the store",
    EMBEDDING_CACHE_FILE: "queries do not need it; the next `rag-async index` run embeds "
    "only new or changed chunks, as always",
}


async def _sqlite_problem(file: Path) -> str | None:
    database = SQLiteDatabase(file, schema="", schema_version=None)
    try:
        rows = await database.afetchall("PRAGMA integrity_check")
    except RAGError as exc:
        return str(exc)
    finally:
        await database.aclose()
    verdict = ", ".join(str(row[0]) for row in rows)
    if verdict != "ok":
        return f"integrity_check: {verdict[:300]}"
    if file.name == SPARSE_INDEX_FILENAME:  # damage inside the full-text index itself
        sparse = FTS5Index(file)
        try:
            problem = await sparse.aintegrity_problem()
            seal = "sound" if problem is not None else await sparse.acheck_seal()
        finally:
            await sparse.aclose()
        if problem is not None:
            return f"the full-text index does not match its rows ({problem[:300]})"
        if seal == "mismatch":
            return (
                "its contents changed since they were last written (they do not match "
                "their seal: a bit flip or an edit from outside)"
            )
    return None


def set_aside(file: Path) -> Path:
    """Rename a damaged SQLite file (and its journal files) to ``<name>.damaged``."""
    aside = file.with_name(f"{file.name}.damaged")
    os.replace(file, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = file.with_name(file.name + suffix)
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    return aside
