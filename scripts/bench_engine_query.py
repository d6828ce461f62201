"""Query latency through AsyncRAGEngine (local model): hybrid against the slowest side.

Indexes the first ``--files`` files of the rust-book with the bundled local model into
``--index-dir`` (kept: a second run reuses it), then times ``--queries`` questions (the
books' headings) one at a time through the engine: ``engine.aquery``, its hybrid retriever,
a dense retriever over the engine's store and a sparse retriever over its FTS5 index, plus
the hybrid and dense ones with the query embedded and searched in two executor calls (as
before ``aembed_query_then``). The code: ``benchmarks/engine_query.py``.

    .venv/bin/python scripts/bench_engine_query.py            # ~1 minute the first time

``--concurrent`` measures instead the design's query target: ``--concurrency`` (100)
concurrent hybrid queries through ``AsyncRAGEngine`` against the same questions through
LangChain's sync ``EnsembleRetriever`` (BM25 + FAISS, langchain-classic) from a thread pool,
over the whole rust-book embedded by the fake OpenAI server; p50/p99, throughput and peak
RSS side by side (``benchmarks/query_concurrent.py``):

    nice .venv/bin/python scripts/bench_engine_query.py --concurrent     # ~2 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks import query_concurrent  # noqa: E402
from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.engine_query import report_text, run  # noqa: E402
from benchmarks.report import machine, missed_banner  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--files", type=int, default=20, help="the first N .md files")
    parser.add_argument("--queries", type=int, default=200, help="questions timed")
    parser.add_argument("--index-dir", type=Path, default=Path(".bench/engine-query"))
    parser.add_argument("--json", action="store_true")
    concurrent = parser.add_argument_group("--concurrent: ours against LangChain's sync ensemble")
    concurrent.add_argument("--concurrent", action="store_true", help="run this comparison")
    concurrent.add_argument("--concurrency", type=int, default=100, help="queries at once")
    concurrent.add_argument("--rounds", type=int, default=5, help="rounds of --concurrency")
    concurrent.add_argument("--repeat", type=int, default=1, help="child runs per side")
    concurrent.add_argument("--latency", type=float, default=0.0, help="server s/request")
    concurrent.add_argument("--dimension", type=int, default=256, help="vector length")
    concurrent.add_argument("--timeout", type=float, default=900.0, help="s per child")
    args = parser.parse_args(argv)
    if args.concurrent:
        result = query_concurrent.run(args)
        print(json.dumps(result, indent=2) if args.json else query_concurrent.report_text(result))
        return 0
    report = asyncio.run(run(args.corpus, args.files, args.queries, args.index_dir))
    report["machine"] = machine()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"machine: {report['machine']['summary']}")
        print(report_text(report))
        print()
        print(missed_banner(report["checks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
