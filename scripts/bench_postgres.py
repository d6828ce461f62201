"""The index in PostgreSQL against the index directory, side by side (see benchmarks/postgres.py).

Usage::

    .venv/bin/python scripts/bench_postgres.py                     # rust-book, 100 queries, 200k
    .venv/bin/python scripts/bench_postgres.py --synthetic 0 --json
    .venv/bin/python scripts/bench_postgres.py --langchain-postgres  # PGVectorStore vs ours
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.fake_openai import keep_traffic_local  # noqa: E402
from benchmarks.postgres import run  # noqa: E402
from benchmarks.postgres_langchain import run as run_langchain  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--concurrency", type=int, default=100, help="hybrid queries at once")
    parser.add_argument("--synthetic", type=int, default=200_000, help="chunks (0: skip)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--langchain-postgres",
        action="store_true",
        help="instead: PGVectorStore's writes and dense search against ours (same table)",
    )
    args = parser.parse_args()
    keep_traffic_local()
    if args.langchain_postgres:
        return langchain_report(run_langchain(args.corpus), as_json=args.json)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    report = run(args.corpus, concurrency=args.concurrency, synthetic=args.synthetic, env=env)
    with open("/proc/loadavg") as f:
        report["loadavg"] = f.read().split()[:3]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    d, p = report["directory"], report["postgres"]
    print(f"{'':28}{'directory':>12}{'postgres':>12}")
    print(f"{'index rust-book (s)':28}{d['index_seconds']:>12}{p['index_seconds']:>12}")
    print(f"{'  ratio postgres/directory':28}{'':>12}{report['index_time_ratio']:>12}")
    print(f"{'chunks':28}{d['chunks']:>12}{p['chunks']:>12}")
    label = f"{d['queries']} concurrent queries"
    print(f"{label + ' p50 (ms)':28}{d['p50_ms']:>12}{p['p50_ms']:>12}")
    print(f"{label + ' p99 (ms)':28}{d['p99_ms']:>12}{p['p99_ms']:>12}")
    if "synthetic" in report:
        s = report["synthetic"]
        print(
            f"synthetic {s['chunks']} chunks: load + HNSW {s['load_and_hnsw_seconds']} s; "
            f"{s['queries']} sequential queries p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms; "
            f"query process peak RSS {s['rss_peak_mb']} MB"
        )
    print(f"load average: {' '.join(report['loadavg'])}")
    return 0


def langchain_report(report: dict[str, Any], *, as_json: bool) -> int:
    """Print :func:`benchmarks.postgres_langchain.run`'s figures."""
    with open("/proc/loadavg") as f:
        report["loadavg"] = f.read().split()[:3]
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    w = report["writes"]
    print(f"write {w['chunks']} rust-book chunks ({w['dimension']}-d) into an empty chunk table:")
    print(f"{'':28}{'ours':>12}{'PGVectorStore':>15}")
    for key in ("seconds_median", "statements", "transactions"):
        print(f"{key:28}{w['ours'][key]:>12}{w['langchain_postgres'][key]:>15}")
    print(f"{'  time ratio PGVectorStore/ours':28}{w['time_ratio_lc_over_ours']:>27}")
    for label, s in report["dense_search"].items():
        o, lc = s["ours"], s["langchain_postgres"]
        print(
            f"dense search {label}: p50 {o['p50_ms']} ms ours, {lc['p50_ms']} ms PGVectorStore "
            f"(x{s['p50_ratio_lc_over_ours']}); p99 {o['p99_ms']} / {lc['p99_ms']} ms; "
            f"same ids {s['same_ids']}"
        )
    print(f"load average: {' '.join(report['loadavg'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
