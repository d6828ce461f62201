"""`aindex_directory` / `index_directory`: index a folder (plan, then the pipeline).

The run calls the indexing graph's two steps directly (``indexing/steps.py``), so that a
run, and ``rag-async index``, loads no LangGraph (~10 MiB of peak RSS and its import
time); ``build_indexing_graph`` runs the same steps as graph nodes for deployments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from opentelemetry.trace import Span

from langchain_rag_async.aio import run_sync
from langchain_rag_async.aio.deadline import deadline
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.errors import IndexingError, IndexingTimeoutError
from langchain_rag_async.indexing.events import IndexingSummary
from langchain_rag_async.indexing.steps import IndexingContext, IndexingState, index_step, plan_step
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.observability import bind_request_id, get_logger, span
from langchain_rag_async.sparse_index import SparseIndex

__all__ = ("aindex_directory", "index_directory")

ProgressHandler = Callable[[dict[str, Any]], None]
_log = get_logger(__name__)


async def aindex_directory(
    path: str | Path,
    *,
    index_dir: str | Path | None = None,
    store_url: str | None = None,
    config: RAGConfig | None = None,
    embeddings: Embeddings | None = None,
    limiter: ServiceLimiter | None = None,
    sparse: SparseIndex | None = None,
    on_progress: ProgressHandler | None = None,
    timeout: float | None = None,
) -> IndexingSummary:
    """Index ``path`` incrementally into ``index_dir``.

    Unchanged files are skipped without being read; changed files have only their new
    chunks embedded and their stale chunks removed; deleted files lose their chunks.

    Args:
        path: Directory (or single file) to index.
        index_dir: Where the index lives; ``config.index_dir`` by default.
        store_url: ``postgresql://...``: the index lives in that database instead
            (``config.store_url`` by default; see :mod:`langchain_rag_async.postgres`).
        config: Settings; :meth:`RAGConfig.from_env` by default.
        embeddings: Your own base embedding model instead of the configured one.
        limiter: The shared limiter of the embedding service.
        sparse: A sparse index to keep in step with the vector store.
        on_progress: Called with each progress event dict.
        timeout: Seconds before the run is cancelled (the saved index stays consistent).

    Returns:
        The run's summary.

    Raises:
        LoadingError: ``path`` does not exist.
        EmbeddingModelMismatchError: The index was built with another model.
        IndexingError: The run ended without a summary.
        IndexingTimeoutError: ``timeout`` expired; the run was cancelled and the index
            is as of its last checkpoint.
    """
    config = config or RAGConfig.from_env()
    if index_dir is not None:
        config = replace(config, index_dir=Path(index_dir))
    if store_url is not None:
        config = replace(config, store_url=store_url)
    context = IndexingContext(config=config, embeddings=embeddings, limiter=limiter, sparse=sparse)
    write = on_progress or _ignore
    bind_request_id()
    emb = config.embeddings
    with span(
        "index_directory",
        path=str(path),
        index_dir=str(config.index_dir),
        batch_size=emb.batch_size,
        concurrency=emb.concurrency,
    ) as run:
        async with deadline(timeout, _timed_out):
            state: IndexingState = {"path": str(path), "index_dir": str(config.index_dir)}
            state.update(await plan_step(state, context, write))
            state.update(await index_step(state, context, write))
        if "summary" not in state:
            raise IndexingError(f"indexing {path} ended without a summary")
        summary = IndexingSummary.from_dict(state["summary"])
        _report(summary, run)
    return summary


def _ignore(event: dict[str, Any]) -> None:
    """No progress handler: drop the event."""


def _timed_out(seconds: float) -> IndexingTimeoutError:
    return IndexingTimeoutError(
        f"the indexing run did not finish within {seconds:g} s; the index is as of its last "
        "checkpoint and a rerun goes on from there. Allow more time (timeout=)",
        timeout=seconds,
    )


def _report(summary: IndexingSummary, run: Span) -> None:
    """Put the run's figures on its span and in the log (the pipeline counted its files)."""
    figures = {
        "files_indexed": summary.files_indexed,
        "files_skipped": summary.files_skipped,
        "files_failed": len(summary.files_failed),
        "files_deleted": summary.files_deleted,
        "chunks_added": summary.chunks_added,
        "chunks_deleted": summary.chunks_deleted,
        "chunks_embedded": summary.chunks_embedded,
        "chunks_cached": summary.chunks_cached,
    }
    run.set_attributes(figures)
    _log.info("indexing run finished", seconds=round(summary.seconds, 3), **figures)


def index_directory(
    path: str | Path,
    *,
    index_dir: str | Path | None = None,
    config: RAGConfig | None = None,
    embeddings: Embeddings | None = None,
    on_progress: ProgressHandler | None = None,
    timeout: float | None = None,
) -> IndexingSummary:
    """Sync twin of :func:`aindex_directory` (works inside a running loop too)."""
    return run_sync(
        aindex_directory(
            path,
            index_dir=index_dir,
            config=config,
            embeddings=embeddings,
            on_progress=on_progress,
            timeout=timeout,
        )
    )
