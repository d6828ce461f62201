"""Retrieval quality and latency of dense, sparse and hybrid search on BEIR SciFact (train).

Builds the indexes in-process, then prints nDCG@10 and recall@100 per method (dense,
sparse, hybrid with RRF and with weighted fusion), the sequential latency (mean and median)
of hybrid vs dense-only and sparse-only, each both as a retriever called through ``ainvoke``
and as the store's raw search call (targets: hybrid nDCG@10 >= 0.70, hybrid latency <= 1.1x
the slower side), and the longest event-loop stall while 100 hybrid searches run at once
(target <= 50 ms; three rounds as loaded, three after ``freeze_long_lived()``, which
AsyncRAGEngine runs after loading an index). It ends with a PASS/FAIL line per target
(latency judged on the median) but exits 0 whatever the figures.

One document per abstract (``title + "\\n" + text``), no chunking: SciFact abstracts are
short (a few hundred words), so the whole abstract is one retrieval unit, as in BEIR.
Vectors come from the default offline model (LocalMiniLMEmbeddings) and are cached in
``.bench/scifact/`` (gitignored), so only the first run pays the ~5 minutes of embedding.
Only the train split is available, so every number here, tuning included, is on train
queries.

The measuring code is in the ``benchmarks`` package (``benchmarks/retrieval.py``); this
script parses the command line and prints the report.

Usage:
    .venv/bin/python scripts/eval_retrieval.py [--limit-queries N] [--fusion rrf|weighted|both]
        [--dense-weight W] [--sparse-weight W] [--rrf-c C] [--fetch-k N]
        [--latency-queries N] [--no-speed] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.retrieval import report_text, run  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--limit-queries",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N train queries (default: all 809)",
    )
    parser.add_argument(
        "--fusion",
        choices=["rrf", "weighted", "both"],
        default="both",
        help="hybrid fusion(s) to evaluate (default: both)",
    )
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--sparse-weight", type=float, default=1.0)
    parser.add_argument("--rrf-c", type=int, default=60)
    parser.add_argument(
        "--fetch-k",
        type=int,
        default=30,
        help="candidates per side before fusion (default: 30, as RetrievalConfig)",
    )
    parser.add_argument(
        "--latency-queries",
        type=int,
        default=300,
        metavar="N",
        help="queries timed one by one for the latency comparison",
    )
    parser.add_argument(
        "--no-speed",
        action="store_true",
        help="skip the latency and stall measurements (for tuning runs)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2) if args.json else report_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
