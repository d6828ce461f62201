"""100 concurrent hybrid queries: ``AsyncRAGEngine`` against LangChain's sync ``EnsembleRetriever``.

Each side runs in its own child process (its own interpreter, GIL and memory), both against
the parent's fake OpenAI server (loopback, its own thread; every query is embedded by the
real OpenAI client over HTTP, ``--latency`` seconds per request):

- ours: ``AsyncRAGEngine`` over the rust-book indexed by ``aindex_directory``; a round is
  ``asyncio.gather`` of ``--concurrency`` ``engine.aquery(q, k=10)`` (FAISS + SQLite FTS5,
  fused); its embedding requests pass the engine's limiter, at most
  ``RAG_EMBEDDING_CONCURRENCY`` (8) in flight, as configured from the environment;
- LangChain (sync): ``DirectoryLoader`` + ``RecursiveCharacterTextSplitter(1000, 150)`` +
  ``FAISS.from_documents`` with ``OpenAIEmbeddings``, and ``BM25Retriever.from_documents``
  on the same chunks, in ``EnsembleRetriever([bm25, faiss], weights=[0.5, 0.5])``
  (langchain-classic); a round is ``--concurrency`` ``ensemble.invoke(q)`` submitted to a
  ``ThreadPoolExecutor(max_workers=concurrency)``, as a sync app serves concurrent users.

Index building is not timed. Each query's latency runs from the round's start (all are
submitted at once) to its own result; throughput is queries / round wall time. Every round
uses questions not asked before (the book's headings), so no side answers from a cache.
The parent also records each child's peak RSS (``VmHWM``), and each child its process CPU
time over the rounds (all its threads; the fake server's, in the parent, is not counted),
per query: a figure the machine's load disturbs less than latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.corpus import corpus_files
from benchmarks.engine_query import questions
from benchmarks.fake_openai import FakeOpenAIServer, keep_traffic_local, openai_embeddings
from benchmarks.memory import child_env, langchain_chunks, measure

__all__ = ("LATENCY_TARGET", "report_text", "run")

LATENCY_TARGET = 0.5
"""The design's bound: our p50 at most half of the sync path's."""
WARM_UP = 20


def _round_questions(corpus: Path, concurrency: int, rounds: int) -> list[list[str]]:
    texts = questions(corpus, corpus_files(corpus, None))
    needed = WARM_UP + concurrency * rounds
    if len(texts) < needed:
        texts = [f"{t} ({i})" for i in range(needed // len(texts) + 1) for t in texts]
    body = texts[WARM_UP:]
    return [body[i * concurrency : (i + 1) * concurrency] for i in range(rounds)]


def _summary(latencies: list[float], walls: list[float], cpu: float) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "cpu_ms_per_query": round(1000 * cpu / len(latencies), 2),
        "queries": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * cuts[98], 1),
        "max_ms": round(1000 * max(latencies), 1),
        "throughput_qps": round(len(latencies) / sum(walls), 1),
        "round_seconds": [round(w, 3) for w in walls],
    }


# -- the children -------------------------------------------------------------------------


async def ours(corpus: Path, index_dir: Path, concurrency: int, rounds: int) -> dict[str, Any]:
    """The child's work for ours: index, then ``rounds`` rounds of concurrent ``aquery``."""
    from langchain_rag_async import AsyncRAGEngine, RAGConfig

    base = RAGConfig.from_env().with_overrides(index_dir=index_dir, provider="openai")
    config = replace(base, loader=replace(base.loader, include=("*.md",)))  # LangChain's glob
    batches = _round_questions(corpus, concurrency, rounds)
    warm = questions(corpus, corpus_files(corpus, None))[:WARM_UP]
    latencies: list[float] = []
    walls: list[float] = []
    async with AsyncRAGEngine(config=config) as engine:
        summary = await engine.aindex_directory(corpus)
        for text in warm:
            await engine.aquery(text, k=10)

        async def one(text: str, started: float) -> float:
            await engine.aquery(text, k=10)
            return time.perf_counter() - started

        cpu = time.process_time()
        for batch in batches:
            started = time.perf_counter()
            latencies += await asyncio.gather(*(one(t, started) for t in batch))
            walls.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
    return {
        "chunks": summary.chunks_added,
        "embedding_concurrency": config.embeddings.concurrency,  # RAG_EMBEDDING_CONCURRENCY
        **_summary(latencies, walls, cpu),
    }


def langchain_sync(corpus: Path, base_url: str, concurrency: int, rounds: int) -> dict[str, Any]:
    """The child's work for LangChain: build FAISS + BM25, then rounds from a thread pool."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_classic.retrievers import EnsembleRetriever
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS

    _, chunks = langchain_chunks(corpus)
    store = FAISS.from_documents(chunks, openai_embeddings(base_url, 16))
    bm25 = BM25Retriever.from_documents(chunks, k=10)
    dense = store.as_retriever(search_kwargs={"k": 10})
    ensemble = EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5])
    batches = _round_questions(corpus, concurrency, rounds)
    latencies: list[float] = []
    walls: list[float] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for text in questions(corpus, corpus_files(corpus, None))[:WARM_UP]:
            ensemble.invoke(text)

        def one(text: str, started: float) -> float:
            ensemble.invoke(text)
            return time.perf_counter() - started

        cpu = time.process_time()
        for batch in batches:
            started = time.perf_counter()
            futures = [pool.submit(one, t, started) for t in batch]
            latencies += [f.result() for f in futures]
            walls.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
    return {"chunks": len(chunks), **_summary(latencies, walls, cpu)}


# -- the parent ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the embeddings; run each side in a child process (``args.repeat`` times each)."""
    keep_traffic_local()
    python = sys.executable
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "langchain": []}
    with (
        FakeOpenAIServer.run_in_thread(dimension=args.dimension, latency=args.latency) as server,
        tempfile.TemporaryDirectory(prefix="bench-query-") as work,
    ):
        env = child_env(server.base_url)
        common = [str(args.corpus), str(args.concurrency), str(args.rounds)]
        for n in range(args.repeat):  # alternate sides, so load drifts hit both
            for side in ("ours", "langchain"):
                extra = f"{work}/ours-{n}" if side == "ours" else server.base_url
                command = [python, "-m", "benchmarks.query_concurrent", side, *common, extra]
                peak = measure(side, command, env=env, timeout=args.timeout)
                if peak.returncode != 0 or not isinstance(peak.output, dict):
                    raise SystemExit(f"{side} failed: {peak.output}")
                runs[side].append({**peak.output, "peak_rss_mb": peak.peak_rss_mb})
    return _report(runs, args)


def _report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    def best(side: str) -> dict[str, Any]:  # the run least disturbed by the machine's load
        return min(runs[side], key=lambda r: r["p50_ms"])

    ours_best, lc_best = best("ours"), best("langchain")
    ratio = ours_best["p50_ms"] / lc_best["p50_ms"]
    return {
        "corpus": str(args.corpus),
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "latency_s": args.latency,
        "dimension": args.dimension,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "ours": ours_best,
        "langchain_sync": lc_best,
        "p50_ratio": round(ratio, 3),
        "p99_ratio": round(ours_best["p99_ms"] / lc_best["p99_ms"], 3),
        "throughput_ratio": round(ours_best["throughput_qps"] / lc_best["throughput_qps"], 2),
        "target": LATENCY_TARGET,
        "passed": ratio <= LATENCY_TARGET,
        "runs": runs,
    }


def report_text(report: dict[str, Any]) -> str:
    """The two sides side by side, with the verdict."""
    ours, lc = report["ours"], report["langchain_sync"]
    verdict = "PASS" if report["passed"] else "FAIL"
    rows = [
        ("", "LangChain sync (Ensemble)", "AsyncRAGEngine", "ours / LC"),
        ("chunks", str(lc["chunks"]), str(ours["chunks"]), ""),
        ("p50 (ms)", f"{lc['p50_ms']:.1f}", f"{ours['p50_ms']:.1f}", f"{report['p50_ratio']:.3f}"),
        ("p99 (ms)", f"{lc['p99_ms']:.1f}", f"{ours['p99_ms']:.1f}", f"{report['p99_ratio']:.3f}"),
        (
            "throughput (q/s)",
            f"{lc['throughput_qps']:.1f}",
            f"{ours['throughput_qps']:.1f}",
            f"{report['throughput_ratio']:.2f}x",
        ),
        (
            "CPU / query (ms)",
            f"{lc['cpu_ms_per_query']:.2f}",
            f"{ours['cpu_ms_per_query']:.2f}",
            f"{ours['cpu_ms_per_query'] / lc['cpu_ms_per_query']:.2f}x",
        ),
        ("peak RSS (MiB)", f"{lc['peak_rss_mb']:.1f}", f"{ours['peak_rss_mb']:.1f}", ""),
    ]
    lines = [
        f"{report['concurrency']} concurrent hybrid queries (k=10) x {report['rounds']} rounds, "
        f"best of {report['repeat']} per side, fake server {report['latency_s']} s/request, "
        f"{report['dimension']} dims, load average {' '.join(report['loadavg'])}; the engine's "
        f"embedding requests in flight at most: {ours['embedding_concurrency']} "
        "(RAG_EMBEDDING_CONCURRENCY; the thread pool's: unbounded)",
        *(f"  {a:<18}{b:>26}{c:>16}{d:>11}" for a, b, c, d in rows),
        f"  p50 ours / sync {report['p50_ratio']:.3f} (target <= {report['target']}): {verdict}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.query_concurrent ours|langchain CORPUS C ROUNDS EXTRA``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["ours", "langchain"])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("extra", help="ours: index directory; langchain: the server's URL")
    args = parser.parse_args(argv)
    if args.side == "ours":
        result = asyncio.run(ours(args.corpus, Path(args.extra), args.concurrency, args.rounds))
    else:
        result = langchain_sync(args.corpus, args.extra, args.concurrency, args.rounds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
