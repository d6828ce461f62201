"""The index in PostgreSQL against the index directory, side by side (see benchmarks/postgres.py).

Usage::

    .venv/bin/python scripts/bench_postgres.py                     # rust-book, 100 queries, 200k
    .venv/bin/python scripts/bench_postgres.py --synthetic 0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.fake_openai import keep_traffic_local  # noqa: E402
from benchmarks.postgres import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--concurrency", type=int, default=100, help="hybrid queries at once")
    parser.add_argument("--synthetic", type=int, default=200_000, help="chunks (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keep_traffic_local()
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


if __name__ == "__main__":
    sys.exit(main())
