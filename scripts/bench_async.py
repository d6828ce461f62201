"""Indexing throughput: langchain-rag-async against LangChain as users write it today.

Every approach embeds through the real ``langchain_openai.OpenAIEmbeddings`` client, talking
to the local fake OpenAI server (``127.0.0.1`` only, its own event loop in a thread) that
answers each request after ``--latency`` seconds. Compared in one run:

(a) ``DirectoryLoader`` + ``RecursiveCharacterTextSplitter`` + ``FAISS.from_documents`` (sync);
(b) the same loader and splitter (their async methods) + ``langchain_core.indexing.aindex``
    with a record manager into LangChain's FAISS;
LlamaIndex: ``IngestionPipeline([SentenceSplitter, OpenAIEmbedding]).arun`` (when the
    optional ``bench`` extra is installed; the row is skipped with a message otherwise);
ours: ``langchain_rag_async.aindex_directory`` with ``--concurrency`` requests in flight,
    with its default (Markdown-aware) splitter, and again with the plain splitter, which
    cuts exactly the chunks LangChain's does (the same work, request for request).

``--whole-process`` also times each approach as a fresh process (spawn to exit), and
``--profile`` adds a per-stage profile of one more run of ours. Then a rate-limited
scenario: the server allows ``--rate`` requests/s (429 + Retry-After above it); ours runs
paced by its own limiter (``rpm = rate * 60``) and once unpaced, relying on 429 handling.
Each figure is printed next to its target with PASS/FAIL. The exit status is 0 even when a
target is missed: this is a measurement, not a test.

The fake server has its own event loop, so its work does not run on the measured loop, but
it shares this process's GIL and the machine's cores. Results are in docs/benchmarks.md.
The measuring code is in the ``benchmarks`` package (``benchmarks/indexing.py``); this script
parses the command line and prints the report.

    .venv/bin/python scripts/bench_async.py            # the full run (a few minutes)
    .venv/bin/python scripts/bench_async.py --files 10 --skip-langchain --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.indexing import report_text, run  # noqa: E402
from benchmarks.report import missed_banner  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--files", type=int, default=None, help="only the first N .md files")
    parser.add_argument("--concurrency", type=int, default=16, help="our requests in flight")
    parser.add_argument("--latency", type=float, default=0.1, help="server s/request")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per request")
    parser.add_argument("--dimension", type=int, default=256, help="vector length")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="server limit in requests/s (0: skip)"
    )
    parser.add_argument(
        "--rate-batch-size",
        type=int,
        default=4,
        help="texts per request in the rate-limited runs (smaller: more requests, longer run)",
    )
    parser.add_argument(
        "--skip-unpaced", action="store_true", help="skip the rate-limited run without --rpm"
    )
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument(
        "--skip-llamaindex", action="store_true", help="skip LlamaIndex (also when not installed)"
    )
    parser.add_argument(
        "--whole-process",
        action="store_true",
        help="also time each approach as a fresh process, spawn to exit (whole corpus only)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more run of ours, profiled per stage"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.files is not None and args.files < 1:
        parser.error("--files must be at least 1")
    if not args.corpus.is_dir():
        parser.error(f"corpus not found: {args.corpus}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    banner = missed_banner(report["checks"])
    if args.json:
        print(json.dumps(report, indent=2))
        print(banner, file=sys.stderr)
    else:
        print(report_text(report))
        print()
        print(banner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
