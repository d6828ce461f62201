"""Retrieval quality and latency of dense, sparse and hybrid search on BEIR SciFact (train).

``scripts/eval_retrieval.py`` (its docstring tells what is measured and the targets) parses
the command line, calls :func:`run` and prints :func:`report_text`. Results and their
explanations: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.retrievers import BaseRetriever

from langchain_rag_async import (
    AsyncFAISS,
    FTS5Index,
    FTS5Retriever,
    HybridRetriever,
    LocalMiniLMEmbeddings,
    freeze_long_lived,
)
from langchain_rag_async.config import FusionMethod

from .corpus import SciFact, load_scifact
from .report import check, verdict_lines
from .scifact_indexes import LOCAL_MODEL_ID, Indexes, build_indexes
from .timing import HEARTBEAT_INTERVAL, gc_pauses, heartbeat_while

__all__ = (
    "LATENCY_TARGET",
    "NDCG_TARGET",
    "STALL_TARGET_MS",
    "ndcg_at",
    "recall_at",
    "report_text",
    "run",
    "targets",
)

STALL_CALLS = 100  # concurrent ainvoke calls in the stall test
NDCG_TARGET = 0.70
LATENCY_TARGET = 1.1  # hybrid / slower retriever, median, query embedded by the model
STALL_TARGET_MS = 50.0


# -- metrics ----------------------------------------------------------------------------------


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the first ``k`` ids of ``ranked``."""
    dcg = sum(relevant.get(doc_id, 0) / math.log2(i + 2) for i, doc_id in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    """The share of the relevant ids among the first ``k`` of ``ranked``."""
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


Search = Callable[[str, int], Awaitable[list[str]]]


async def run_queries(
    search: Search, queries: dict[str, str], k: int, concurrency: int = 8
) -> dict[str, list[str]]:
    """Ranked doc ids per query id; at most ``concurrency`` searches in flight."""
    limit = asyncio.Semaphore(concurrency)
    results: dict[str, list[str]] = {}

    async def one(query_id: str, text: str) -> None:
        async with limit:
            results[query_id] = await search(text, k)

    async with asyncio.TaskGroup() as group:
        for query_id, text in queries.items():
            group.create_task(one(query_id, text))
    return results


@dataclass(frozen=True, slots=True)
class Quality:
    """One method's mean nDCG@10 and recall@100 over the queries."""

    method: str
    ndcg10: float
    recall100: float


async def evaluate(
    name: str, search: Search, data: SciFact, queries: dict[str, str], *, ndcg_k: int = 10
) -> Quality:
    """nDCG@10 from a k=10 search and recall@100 from a k=100 search, as configured."""
    top10 = await run_queries(search, queries, ndcg_k)
    top100 = await run_queries(search, queries, 100)
    ndcg = statistics.fmean(ndcg_at(top10[q], data.qrels[q]) for q in queries)
    recall = statistics.fmean(recall_at(top100[q], data.qrels[q]) for q in queries)
    return Quality(name, ndcg, recall)


def dense_search(store: AsyncFAISS) -> Search:
    """The store's own search call, ids only."""

    async def search(query: str, k: int) -> list[str]:
        hits = await store.asimilarity_search_with_relevance_scores(query, k=k)
        return [str(doc.id) for doc, _ in hits]

    return search


def sparse_search(sparse: FTS5Index) -> Search:
    """The sparse index's own search call, ids only."""

    async def search(query: str, k: int) -> list[str]:
        return [str(doc.id) for doc, _ in await sparse.asearch(query, k)]

    return search


def retriever_search(retriever: BaseRetriever) -> Search:
    """A retriever called through ``ainvoke`` (LangChain's callback machinery), ids only."""

    async def search(query: str, k: int) -> list[str]:
        return [str(doc.id) for doc in await retriever.ainvoke(query, k=k)]

    return search


# -- speed ------------------------------------------------------------------------------------


LATENCY_METHODS = ("dense", "sparse", "dense retriever", "sparse retriever", "hybrid")


@dataclass(frozen=True, slots=True)
class Latency:
    """Per-method seconds of each query, one query at a time."""

    queries: int
    seconds: dict[str, list[float]]

    def mean_ms(self, method: str) -> float:
        """The mean time of ``method`` in ms."""
        return 1000 * statistics.fmean(self.seconds[method])

    def median_ms(self, method: str) -> float:
        """The median time of ``method`` in ms."""
        return 1000 * statistics.median(self.seconds[method])

    def ratios(self, stat: Callable[[str], float]) -> dict[str, float]:
        """Hybrid over the slower side alone (1.0 would be perfect overlap), two ways.

        ``retrievers``: against the dense and sparse retrievers, each called through
        ``ainvoke`` as the hybrid is (LangChain's callback machinery on every side): the
        like-for-like comparison, and the target's. ``raw calls``: against the stores'
        search methods called directly, without that machinery (a stricter bar).
        """
        hybrid = stat("hybrid")
        return {
            "retrievers": hybrid / max(stat("dense retriever"), stat("sparse retriever")),
            "raw calls": hybrid / max(stat("dense"), stat("sparse")),
            "raw sum": hybrid / (stat("dense") + stat("sparse")),
        }


async def measure_latency(searches: dict[str, Search], queries: Sequence[str], k: int) -> Latency:
    """Seconds per query of each search, one query at a time.

    The searches take turns on every query (in rotating order), so drift in the
    machine's load hits them alike.
    """
    names = list(searches)
    for query in queries[:10]:  # warm-up: model session, SQLite pages, executor threads
        for name in names:
            await searches[name](query, k)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i, query in enumerate(queries):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            await searches[name](query, k)
            seconds[name].append(time.perf_counter() - started)
    return Latency(len(queries), seconds)


async def measure_stall(
    retriever: HybridRetriever, queries: Sequence[str], k: int
) -> dict[str, Any]:
    """Run ``len(queries)`` ainvoke calls at once while a 5 ms heartbeat measures lateness.

    The heartbeat first runs alone for a second: what the machine itself (other
    processes on the shared cores) adds, for comparison (``idle_max_stall_ms``).
    ``max_gc_pause_ms`` is the longest garbage collection during the calls (it stops
    every thread).
    """
    idle = await heartbeat_while(asyncio.sleep(1.0))

    async def fan_out() -> None:
        async with asyncio.TaskGroup() as group:
            for query in queries:
                group.create_task(retriever.ainvoke(query, k=k))

    with gc_pauses() as pauses:
        started = time.perf_counter()
        lateness = sorted(await heartbeat_while(fan_out()))
        seconds = time.perf_counter() - started
    p99 = lateness[min(len(lateness) - 1, int(0.99 * len(lateness)))]
    return {
        "calls": len(queries),
        "max_stall_ms": 1000 * lateness[-1],
        "p99_stall_ms": 1000 * p99,
        "seconds": seconds,
        "idle_max_stall_ms": 1000 * max(idle),
        "max_gc_pause_ms": 1000 * max(pauses, default=0.0),
        "gc_frozen": gc.get_freeze_count() > 0,
    }


async def measure_speed(
    indexes: Indexes, retriever: HybridRetriever, texts: list[str], latency_queries: int
) -> dict[str, Any]:
    """Latency (query embedded by the model, and looked up) and the loop-stall rounds."""
    latency: dict[str, Any] = {}
    sparse_retriever = FTS5Retriever(index=indexes.sparse, k=10)
    for label, store in (("model", indexes.store), ("precomputed", indexes.fast_store)):
        timed = retriever.model_copy(update={"vectorstore": store})
        dense_retriever = store.as_retriever(search_kwargs={"k": 10})
        searches = {
            "dense": dense_search(store),
            "sparse": sparse_search(indexes.sparse),
            "dense retriever": retriever_search(dense_retriever),
            "sparse retriever": retriever_search(sparse_retriever),
            "hybrid": retriever_search(timed),
        }
        measured = await measure_latency(searches, texts[:latency_queries], 10)
        latency[label] = {
            "queries": measured.queries,
            "mean_ms": {m: measured.mean_ms(m) for m in LATENCY_METHODS},
            "median_ms": {m: measured.median_ms(m) for m in LATENCY_METHODS},
            "mean_ratios": measured.ratios(measured.mean_ms),
            "median_ratios": measured.ratios(measured.median_ms),
        }
    speed: dict[str, Any] = {"latency": latency, "gc_tracked_objects": len(gc.get_objects())}
    rounds = []
    for offset in range(0, 6 * STALL_CALLS, STALL_CALLS):  # 3 rounds, then 3 frozen
        if offset == 3 * STALL_CALLS:
            # What AsyncRAGEngine does after loading an index (gc_tuning).
            freeze_long_lived()
        batch = (texts * 6)[offset : offset + STALL_CALLS]
        rounds.append(await measure_stall(retriever, batch, 10))
    speed["stall"] = rounds
    return speed


# -- driver and report ------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the indexes, then measure what ``args`` asks for; the report as a dict."""
    data = load_scifact()
    queries = dict(list(data.queries.items())[: args.limit_queries])
    model = LocalMiniLMEmbeddings()
    await model.aload()
    indexes = await build_indexes(data, model)
    fusions: list[FusionMethod] = ["rrf", "weighted"] if args.fusion == "both" else [args.fusion]
    settings = {
        "fetch_k": args.fetch_k,
        "dense_weight": args.dense_weight,
        "sparse_weight": args.sparse_weight,
        "rrf_c": args.rrf_c,
    }
    report: dict[str, Any] = {
        "dataset": "BEIR SciFact train (the only split available)",
        "queries": len(queries),
        "documents": len(data.documents),
        "model": LOCAL_MODEL_ID,
        "settings": settings,
    }
    try:
        results = [
            await evaluate("dense", dense_search(indexes.fast_store), data, queries),
            await evaluate("sparse", sparse_search(indexes.sparse), data, queries),
        ]
        for fusion in fusions:
            retriever = HybridRetriever(
                vectorstore=indexes.fast_store, sparse=indexes.sparse, fusion=fusion, **settings
            )
            results.append(
                await evaluate(f"hybrid-{fusion}", retriever_search(retriever), data, queries)
            )
        report["quality"] = [
            {"method": r.method, "ndcg@10": r.ndcg10, "recall@100": r.recall100} for r in results
        ]
        if not args.no_speed:
            retriever = HybridRetriever(
                vectorstore=indexes.store, sparse=indexes.sparse, fusion=fusions[0], **settings
            )
            texts = list(queries.values())
            report |= await measure_speed(indexes, retriever, texts, args.latency_queries)
    finally:
        await indexes.sparse.aclose()
    return report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict (a ``report.check``) of each target of the issue found in ``report``.

    Latency is judged on the median with the query embedded by the model (what retrieval
    costs a caller), against the slower of the dense and sparse retrievers; the stall on
    the rounds after ``freeze_long_lived()``, as ``AsyncRAGEngine`` runs.
    """
    rows = []
    for row in report["quality"]:
        if row["method"].startswith("hybrid"):
            ndcg = row["ndcg@10"]
            rows.append(
                check(
                    f"{row['method']} nDCG@10",
                    f"{ndcg:.4f}",
                    f">= {NDCG_TARGET}",
                    ndcg >= NDCG_TARGET,
                )
            )
    if "latency" in report:
        model = report["latency"]["model"]
        median = model["median_ratios"]["retrievers"]
        mean = model["mean_ratios"]["retrievers"]
        rows.append(
            check(
                "hybrid latency / slower retriever (median; mean shown)",
                f"{median:.3f}x; {mean:.3f}x",
                f"<= {LATENCY_TARGET}x",
                median <= LATENCY_TARGET,
            )
        )
        frozen = [st["max_stall_ms"] for st in report["stall"] if st["gc_frozen"]]
        rows.append(
            check(
                f"largest loop stall, {STALL_CALLS} concurrent ainvoke, after freeze (ms)",
                " / ".join(f"{ms:.1f}" for ms in frozen),
                f"<= {STALL_TARGET_MS:g}",
                all(ms <= STALL_TARGET_MS for ms in frozen),
            )
        )
    return rows


def _speed_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "latency, ms per query, one query at a time (k=10; hybrid fetches fetch_k a side)",
        "  raw: the store's search method called directly; retriever: through ainvoke",
    ]
    cols = "".join(f"{m:>18}" for m in LATENCY_METHODS)
    for label, row in report["latency"].items():
        lines += [f"query vector: {label} ({row['queries']} queries)", f"  {'':<8}{cols}"]
        for stat in ("mean", "median"):
            values = "".join(f"{row[stat + '_ms'][m]:>18.2f}" for m in LATENCY_METHODS)
            lines.append(f"  {stat:<8}{values}")
        for stat in ("mean", "median"):
            r = row[stat + "_ratios"]
            lines.append(
                f"  {stat} hybrid / slower side: {r['retrievers']:.3f}x vs retrievers "
                f"(target <= {LATENCY_TARGET}x), {r['raw calls']:.3f}x vs raw calls; "
                f"hybrid / (dense + sparse raw) {r['raw sum']:.2f}x"
            )
    lines += [
        "",
        f"loop stall, {1000 * HEARTBEAT_INTERVAL:g} ms heartbeat, {STALL_CALLS} concurrent "
        f"ainvoke per round ({report['gc_tracked_objects']:,} objects tracked by the garbage "
        "collector):",
    ]
    for st in report["stall"]:
        lines.append(
            f"  {'frozen' if st['gc_frozen'] else 'as loaded':<10} max "
            f"{st['max_stall_ms']:6.1f} ms, p99 {st['p99_stall_ms']:5.1f} ms, "
            f"longest GC pause {st['max_gc_pause_ms']:6.1f} ms, done in {st['seconds']:.2f} s"
            f" (heartbeat alone just before: max {st['idle_max_stall_ms']:.1f} ms)"
        )
    return lines


def report_text(report: dict[str, Any]) -> str:
    """The report as text: quality per method, latency, stalls, then PASS/FAIL per target."""
    s = report["settings"]
    lines = [
        f"{report['dataset']}: {report['queries']} queries, {report['documents']:,} abstracts "
        f"(one document each), model {report['model']}",
        f"hybrid: fetch_k={s['fetch_k']} per side, weights dense {s['dense_weight']} / "
        f"sparse {s['sparse_weight']}, rrf_c={s['rrf_c']}",
        "",
        f"{'method':<18}{'nDCG@10':>9}{'recall@100':>12}",
    ]
    for row in report["quality"]:
        lines.append(f"{row['method']:<18}{row['ndcg@10']:>9.4f}{row['recall@100']:>12.4f}")
    if "latency" in report:
        lines += _speed_lines(report)
    lines += ["", "targets:", *verdict_lines(targets(report))]
    return "\n".join(lines)
