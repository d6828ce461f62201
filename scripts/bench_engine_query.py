"""Query latency through AsyncRAGEngine (local model): hybrid against the slowest side.

Indexes the first ``--files`` files of the rust-book with the bundled local model into
``--index-dir`` (kept: a second run reuses it), then times ``--queries`` questions (the
books' headings) one at a time through the engine: ``engine.aquery``, its hybrid retriever,
a dense retriever over the engine's store and a sparse retriever over its FTS5 index, plus
the hybrid and dense ones with the query embedded and searched in two executor calls (as
before ``aembed_query_then``). The code: ``benchmarks/engine_query.py``.

    .venv/bin/python scripts/bench_engine_query.py            # ~1 minute the first time
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

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
    args = parser.parse_args(argv)
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
