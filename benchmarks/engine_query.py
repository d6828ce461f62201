"""Query latency through ``AsyncRAGEngine`` with the local model: hybrid against each side.

The engine wraps the local model in ``RateLimitedEmbeddings`` (its limiter, retries and
query coalescing). Each query is timed one at a time, the methods taking turns (rotating
order) so that the machine's load hits them alike:

- ``engine.aquery``: the hybrid search as users call it;
- ``hybrid retriever``: the engine's ``HybridRetriever`` through ``ainvoke``;
- ``dense retriever``: the engine's store (the same wrapped model) as a retriever;
- ``sparse retriever``: an ``FTS5Retriever`` over the engine's sparse index;

and, for comparison in the same run, the hybrid retriever and the dense retriever with the
query embedded and searched in two executor calls (as before ``aembed_query_then``).
``scripts/bench_engine_query.py`` prints the report; results in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_rag_async import (
    AsyncFAISS,
    AsyncRAGEngine,
    FTS5Retriever,
    HybridRetriever,
    RAGConfig,
)
from langchain_rag_async.config import LoaderConfig, RetrievalConfig

from .corpus import corpus_files, our_include, select_files
from .report import check, checks_table, markdown_table, progress

__all__ = ("LATENCY_TARGET", "report_text", "run")

LATENCY_TARGET = 1.1  # hybrid p50 / slowest single retriever's p50
Search = Callable[[str], Awaitable[Any]]


@contextmanager
def two_executor_calls() -> Iterator[None]:
    """Embed and search in two executor calls, as before ``aembed_query_then``."""
    original = AsyncFAISS._search_then
    AsyncFAISS._search_then = lambda self, *steps: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        AsyncFAISS._search_then = original  # type: ignore[method-assign]


def questions(corpus: Path, files: Sequence[Path]) -> list[str]:
    """The Markdown headings of ``files``, as questions (distinct, in file order)."""
    found: dict[str, None] = {}
    for path in files:
        for line in path.read_text("utf-8").splitlines():
            if line.startswith("#") and len(line.strip("# ")) > 8:
                found[line.strip("# ").strip()] = None
    return list(found)


async def _timed(searches: dict[str, Search], texts: Sequence[str]) -> dict[str, list[float]]:
    names = list(searches)
    for text in texts[:10]:  # warm-up: model session, SQLite pages, executor threads
        for name in names:
            await searches[name](text)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i, text in enumerate(texts):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            if name.endswith("(two executor calls)"):
                with two_executor_calls():
                    started = time.perf_counter()
                    await searches[name](text)
            else:
                started = time.perf_counter()
                await searches[name](text)
            seconds[name].append(time.perf_counter() - started)
    return seconds


async def run(corpus: Path, files_limit: int, queries: int, index_dir: Path) -> dict[str, Any]:
    """Index ``files_limit`` files with the local model (cached), then time the queries."""
    files = select_files(corpus, files_limit) or []
    config = RAGConfig(
        index_dir=index_dir,
        loader=LoaderConfig(include=our_include(corpus, files)),
        retrieval=RetrievalConfig(refresh_interval=3600.0),
    )
    texts = questions(corpus, corpus_files(corpus, None))[:queries]  # the whole book's
    async with AsyncRAGEngine(config=config) as engine:
        progress(f"indexing {len(files)} files with the local model (cached after a run) ...")
        await engine.aindex_directory(corpus)
        hybrid = await engine.aretriever(k=10)
        if not isinstance(hybrid, HybridRetriever) or hybrid.sparse is None:
            raise SystemExit("this benchmark measures the local directory index, not Postgres")
        store = hybrid.vectorstore
        chunks = len(store.index_to_docstore_id) if isinstance(store, AsyncFAISS) else None
        dense = hybrid.vectorstore.as_retriever(search_kwargs={"k": 10})
        sparse = FTS5Retriever(index=hybrid.sparse, k=10)

        async def aquery(text: str) -> Any:
            return await engine.aquery(text, k=10)

        searches: dict[str, Search] = {
            "engine.aquery (hybrid)": aquery,
            "hybrid retriever": hybrid.ainvoke,
            "dense retriever": dense.ainvoke,
            "sparse retriever": sparse.ainvoke,
            "hybrid retriever (two executor calls)": hybrid.ainvoke,
            "dense retriever (two executor calls)": dense.ainvoke,
        }
        progress(f"timing {len(texts)} queries x {len(searches)} methods ...")
        seconds = await _timed(searches, texts)
    medians = {name: 1000 * statistics.median(values) for name, values in seconds.items()}
    means = {name: 1000 * statistics.fmean(values) for name, values in seconds.items()}
    slowest = max(medians["dense retriever"], medians["sparse retriever"])
    return {
        "chunks": chunks,
        "files": len(files),
        "queries": len(texts),
        "median_ms": medians,
        "mean_ms": means,
        "checks": [
            check(
                f"{name} p50 / slowest single retriever p50",
                f"{medians[name] / slowest:.3f}x",
                f"<= {LATENCY_TARGET}x",
                medians[name] / slowest <= LATENCY_TARGET,
            )
            for name in ("engine.aquery (hybrid)", "hybrid retriever")
        ],
    }


def report_text(report: dict[str, Any]) -> str:
    """The latency table and the verdicts."""
    rows = [
        [name, f"{report['median_ms'][name]:.2f}", f"{report['mean_ms'][name]:.2f}"]
        for name in report["median_ms"]
    ]
    head = (
        f"{report['queries']} queries, one at a time, k=10, over {report['files']} files "
        f"({report['chunks']} chunks) "
        "indexed with the local model, through AsyncRAGEngine:"
    )
    table = markdown_table(["method", "p50 (ms)", "mean (ms)"], rows)
    return f"{head}\n{table}\n\n{checks_table(report['checks'])}"
