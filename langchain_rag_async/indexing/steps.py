"""The indexing run's two steps, ``plan`` (scan and diff) and ``index`` (the pipeline).

Plain coroutines with no LangGraph in them: ``aindex_directory`` (and so ``rag-async
index``) calls them in turn, and the indexing graph (``indexing/graph.py``) wraps each in
a node, so a run through either is the same code. Progress events go to ``write``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.embeddings import Embeddings

from langchain_rag_async._paths import aresolve
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.indexing.events import FailedFile
from langchain_rag_async.indexing.lock import run_lock
from langchain_rag_async.indexing.pipeline import IndexingPipeline
from langchain_rag_async.indexing.plan import IndexPlan, plan_indexing
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.indexing.resources import (
    RECORDS_FILE,
    RECORDS_NAMESPACE,
    check_model,
    make_index_dir,
    open_index_resources,
    reconcile_records,
    reconcile_sparse,
    resolve_model_id,
)
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.loaders import AsyncDirectoryLoader, FileInfo
from langchain_rag_async.metrics import DOCUMENTS_PROCESSED
from langchain_rag_async.observability import span
from langchain_rag_async.sparse_index import SparseIndex
from langchain_rag_async.splitters import RunnableTextSplitter

__all__ = ("IndexingContext", "IndexingState", "ProgressWriter", "index_step", "plan_step")

ProgressWriter = Callable[[dict[str, Any]], None]
"""Receives each progress event (LangGraph's stream writer has this shape)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IndexingContext:
    """What an indexing run needs besides its input.

    Attributes:
        config: All settings; ``config.index_dir`` is where the index lives.
        embeddings: A caller's own base embedding model (replaces the configured one).
        limiter: The one shared limiter of the embedding service.
        sparse: A sparse index to keep in step with the vector store.
    """

    config: RAGConfig = field(default_factory=RAGConfig)
    embeddings: Embeddings | None = None
    limiter: ServiceLimiter | None = None
    sparse: SparseIndex | None = None


class IndexingState(TypedDict, total=False):
    """State of the indexing graph (JSON-serialisable)."""

    path: str
    index_dir: str
    plan: dict[str, Any]
    summary: dict[str, Any]


def _plan_to_state(plan: IndexPlan, failed: list[FailedFile]) -> dict[str, Any]:
    return {
        "to_load": [[f.source, f.size, f.mtime] for f in plan.to_load],
        "unchanged": [[f.source, f.size, f.mtime] for f in plan.unchanged],
        "deleted": list(plan.deleted),
        "scan_failures": [[f.path, f.reason] for f in failed],
    }


def _plan_from_state(data: dict[str, Any]) -> tuple[IndexPlan, list[FailedFile]]:
    plan = IndexPlan(
        to_load=tuple(FileInfo(Path(p), int(s), float(m)) for p, s, m in data["to_load"]),
        unchanged=tuple(FileInfo(Path(p), int(s), float(m)) for p, s, m in data["unchanged"]),
        deleted=tuple(data["deleted"]),
    )
    return plan, [FailedFile(p, r) for p, r in data["scan_failures"]]


async def plan_step(
    state: IndexingState, ctx: IndexingContext, write: ProgressWriter
) -> IndexingState:
    """Walk the directory and compare it with the file table (nothing is read yet)."""
    config = ctx.config
    root = await aresolve(state["path"])
    if config.store_url:  # the index lives in PostgreSQL
        from langchain_rag_async.postgres.indexing import aplan

        plan, failures, where = await aplan(root, config, ctx.embeddings)
        return _planned(plan, failures, where, write)
    index_dir = await aresolve(state.get("index_dir") or config.index_dir)
    await make_index_dir(index_dir)
    with span("plan", path=str(root)):
        async with run_lock(index_dir):
            return await _plan(root, index_dir, ctx, write)


async def _plan(
    root: Path, index_dir: Path, ctx: IndexingContext, write: ProgressWriter
) -> IndexingState:
    config = ctx.config
    model_id = resolve_model_id(config, ctx.embeddings)
    await check_model(index_dir, model_id, lost_manifest_is_fatal=False)  # fail early
    loader = AsyncDirectoryLoader(root, config=config.loader)
    scanned = await loader.ascan()
    failures = [FailedFile(f.path, f.reason) for f in loader.failures]
    async with SQLiteRecordManager(RECORDS_NAMESPACE, db_path=index_dir / RECORDS_FILE) as records:
        await records.acreate_schema()
        known = await records.aget_files()
    plan = plan_indexing(
        root, scanned, known, excluded=[f.path for f in failures], index_dir=index_dir
    )
    return _planned(plan, failures, str(index_dir), write)


def _planned(
    plan: IndexPlan, failures: list[FailedFile], where: str, write: ProgressWriter
) -> IndexingState:
    write(
        {
            "type": "plan",
            "files_to_load": len(plan.to_load),
            "files_unchanged": len(plan.unchanged),
            "files_deleted": len(plan.deleted),
        }
    )
    return {"index_dir": where, "plan": _plan_to_state(plan, failures)}


async def index_step(
    state: IndexingState, ctx: IndexingContext, write: ProgressWriter
) -> IndexingState:
    """Run the overlapped pipeline over the plan and save the index (under the run lock)."""
    if ctx.config.store_url:  # the index lives in PostgreSQL
        from langchain_rag_async.postgres.indexing import aindex

        plan, scan_failures = _plan_from_state(state["plan"])
        summary = await aindex(Path(state["path"]), plan, ctx, write)
        summary.files_failed[:0] = scan_failures
        return {"summary": summary.to_dict()}
    index_dir = Path(state["index_dir"])
    async with run_lock(index_dir):
        return await _index(state, ctx, index_dir, write)


async def _index(
    state: IndexingState, ctx: IndexingContext, index_dir: Path, write: ProgressWriter
) -> IndexingState:
    config = ctx.config
    plan, scan_failures = _plan_from_state(state["plan"])
    run_config = replace(config, index_dir=index_dir)
    async with open_index_resources(
        run_config, embeddings=ctx.embeddings, limiter=ctx.limiter
    ) as res:
        repaired = await reconcile_records(res.store, res.records)
        if repaired:  # their records were dropped: read them again
            plan = _reload(plan, repaired)
        sparse = ctx.sparse or res.sparse
        if isinstance(sparse, SparseIndex):  # a writer-only object cannot be repaired
            await reconcile_sparse(res.store, sparse)
        pipeline = IndexingPipeline(
            loader=AsyncDirectoryLoader(Path(state["path"]), config=config.loader),
            splitter=RunnableTextSplitter(config=config.splitter),
            embeddings=res.embeddings,
            store=res.store,
            record_manager=res.records,
            index_dir=index_dir,
            config=config.pipeline,
            batch_size=config.embeddings.batch_size,
            concurrency=config.embeddings.concurrency,
            known=await res.records.aget_files(),
            sparse=sparse,
            on_progress=write,
            stage_sparse=ctx.sparse is None,  # ours alone: no query waits on its connection
        )
        summary = await pipeline.arun(plan)
    summary.files_failed[:0] = scan_failures
    DOCUMENTS_PROCESSED.labels(outcome="failed").inc(len(scan_failures))  # not the pipeline's
    return {"summary": summary.to_dict()}


def _reload(plan: IndexPlan, sources: set[str]) -> IndexPlan:
    """Move ``sources`` from the plan's unchanged files to the files to read."""
    return IndexPlan(
        to_load=plan.to_load + tuple(f for f in plan.unchanged if f.source in sources),
        unchanged=tuple(f for f in plan.unchanged if f.source not in sources),
        deleted=plan.deleted,
    )
