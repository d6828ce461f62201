"""The indexing graph's two steps over PostgreSQL: plan (file table) and index (pipeline).

The same planner and the same overlapped pipeline as the directory index; what differs is
where things live: the file table and records in Postgres, the chunks written through a
:class:`~langchain_rag_async.postgres.writer.PostgresIndexWriter` (one transaction per
checkpoint, records included), the embedding cache in Postgres (shared by every
indexer), and the run lock an advisory lock (across hosts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.config import RAGConfig
from langchain_rag_async.embeddings.cache import CachedEmbeddings
from langchain_rag_async.embeddings.factory import (
    aclose_base_embeddings,
    build_base_embeddings,
    build_embeddings,
)
from langchain_rag_async.indexing.events import FailedFile, IndexingSummary
from langchain_rag_async.indexing.pipeline import IndexingPipeline
from langchain_rag_async.indexing.plan import IndexPlan, plan_indexing
from langchain_rag_async.indexing.resources import RECORDS_NAMESPACE, resolve_model_id
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.loaders import AsyncDirectoryLoader
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames
from langchain_rag_async.postgres.cache import PostgresEmbeddingCache
from langchain_rag_async.postgres.lock import run_lock
from langchain_rag_async.postgres.record_manager import PostgresRecordManager
from langchain_rag_async.postgres.schema import acheck_model
from langchain_rag_async.postgres.writer import PostgresIndexWriter
from langchain_rag_async.splitters import RunnableTextSplitter

if TYPE_CHECKING:
    from langchain_rag_async.indexing.steps import IndexingContext

__all__ = ("PostgresResources", "aindex", "aplan", "open_postgres_resources")


@dataclass(slots=True)
class PostgresResources:
    """The live objects of one index in PostgreSQL (the twin of ``IndexResources``)."""

    db: PostgresDatabase
    names: TableNames
    model_id: str
    embeddings: Embeddings
    cache: PostgresEmbeddingCache


@asynccontextmanager
async def open_postgres_resources(
    config: RAGConfig,
    *,
    embeddings: Embeddings | None = None,
    limiter: ServiceLimiter | None = None,
) -> AsyncIterator[PostgresResources]:
    """Open the index at ``config.store_url``: tables, model check, embedding stack.

    Raises:
        EmbeddingModelMismatchError: The index was built with another model.
        VectorStoreError: The database cannot be reached.
    """
    db = PostgresDatabase(str(config.store_url), pool=config.store_pool)
    names = TableNames()
    try:
        model_id = resolve_model_id(config, embeddings)
        await acheck_model(db, names, model_id)
        base = embeddings
        if base is None:
            base = await run_in_executor(None, build_base_embeddings, config.embeddings)
        limited = build_embeddings(config.embeddings, limiter=limiter, base=base, model_id=model_id)
        cache = PostgresEmbeddingCache(db, names)
        stack = CachedEmbeddings(limited, cache, model_id=model_id)
        try:
            yield PostgresResources(
                db=db, names=names, model_id=model_id, embeddings=stack, cache=cache
            )
        finally:
            if embeddings is None:  # we built the base model: we close its clients
                await aclose_base_embeddings(base)
    finally:
        await db.aclose()


async def aplan(
    root: Path, config: RAGConfig, embeddings: Embeddings | None
) -> tuple[IndexPlan, list[FailedFile], str]:
    """Walk ``root`` and compare it with the file table in Postgres (under the run lock).

    Returns:
        The plan, the files the walk refused, and where the index is (password hidden).
    """
    db = PostgresDatabase(str(config.store_url), pool=config.store_pool)
    names = TableNames()
    try:
        async with run_lock(db, names):
            await acheck_model(db, names, resolve_model_id(config, embeddings))  # fail early
            loader = AsyncDirectoryLoader(root, config=config.loader)
            scanned = await loader.ascan()
            failures = [FailedFile(f.path, f.reason) for f in loader.failures]
            records = PostgresRecordManager(RECORDS_NAMESPACE, db=db, names=names)
            known = await records.aget_files()
        plan = plan_indexing(root, scanned, known, excluded=[f.path for f in failures])
        return plan, failures, db.where
    finally:
        await db.aclose()


async def aindex(
    path: Path,
    plan: IndexPlan,
    ctx: IndexingContext,
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> IndexingSummary:
    """Run the pipeline over ``plan`` into Postgres, under the run lock."""
    config = ctx.config
    async with (
        open_postgres_resources(config, embeddings=ctx.embeddings, limiter=ctx.limiter) as res,
        run_lock(res.db, res.names),
        PostgresIndexWriter(res.db, res.names) as writer,
    ):
        records = PostgresRecordManager(
            RECORDS_NAMESPACE, db=res.db, names=res.names, writer=writer
        )
        pipeline = IndexingPipeline(
            loader=AsyncDirectoryLoader(path, config=config.loader),
            splitter=RunnableTextSplitter(config=config.splitter),
            embeddings=res.embeddings,
            store=writer,  # one transaction per checkpoint, records included (writer.py)
            record_manager=records,
            index_dir=Path(res.names.prefix),
            config=config.pipeline,
            batch_size=config.embeddings.batch_size,
            concurrency=config.embeddings.concurrency,
            known=await records.aget_files(),
            sparse=None,  # the keyword side is a generated column of the chunk table
            on_progress=on_progress,
        )
        summary = await pipeline.arun(plan)
    summary.index_dir = res.db.where
    return summary
