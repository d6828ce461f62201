"""Tuning curves for docs/performance_tuning.md: indexing time and throughput per setting.

Indexes the rust-book corpus (``--files`` of it) with ``aindex_directory`` through the real
``langchain_openai.OpenAIEmbeddings`` client against the local fake OpenAI server, which
answers each request after ``--latency`` seconds, once per point of each sweep:

- ``concurrency``: requests in flight (``EmbeddingConfig.concurrency``);
- ``batch_size``: texts per request (``EmbeddingConfig.batch_size``);
- ``rpm``: the server allows ``rpm / 60`` requests/s (429 above it) and the client paces
  itself with ``RateLimitConfig(requests_per_minute=rpm)``;
- ``tpm``: the client paces itself with ``RateLimitConfig(tokens_per_minute=tpm)`` (the fake
  server counts requests, not tokens, so this curve shows the client's own pacing).

Prints one table per sweep (Markdown) and, with ``--plot-dir``, writes one PNG per sweep
(``tuning_<sweep>.png``; needs matplotlib: ``pip install -e '.[bench]'``). Run it under
``nice`` on a shared machine; the load average at start is printed with the results.

    nice .venv/bin/python scripts/bench_tuning.py --plot-dir docs/img
    .venv/bin/python scripts/bench_tuning.py --files 3 --sweeps concurrency --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.tuning import SWEEPS, plot, report_text, run  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--files", type=int, default=40, help="the first N .md files (0: all)")
    parser.add_argument("--latency", type=float, default=0.1, help="server s/request")
    parser.add_argument("--concurrency", type=int, default=8, help="fixed when not swept")
    parser.add_argument("--batch-size", type=int, default=16, help="fixed when not swept")
    parser.add_argument("--dimension", type=int, default=256, help="vector length")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help="comma-separated subset")
    parser.add_argument("--concurrency-values", type=_ints, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--batch-values", type=_ints, default=[1, 4, 16, 64, 256])
    parser.add_argument("--rpm-values", type=_floats, default=[120, 240, 480, 960, 1920])
    parser.add_argument("--tpm-values", type=_floats, default=[40_000, 60_000, 80_000, 120_000])
    parser.add_argument("--plot-dir", type=Path, default=None, help="write the PNGs here")
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON")
    args = parser.parse_args(argv)
    args.files = args.files or None
    args.sweeps = [s for s in args.sweeps.split(",") if s]
    unknown = sorted(set(args.sweeps) - set(SWEEPS))
    if unknown:
        parser.error(f"unknown sweeps {unknown}; choose from {list(SWEEPS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "bench_tuning: --plot-dir needs matplotlib, which is not installed; "
                "install the bench extra: pip install -e '.[bench]'",
                file=sys.stderr,
            )
            return 2
    report = run(args)
    print(json.dumps(report, indent=2) if args.json else report_text(report))
    if args.plot_dir is not None:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
        for path in plot(report, args.plot_dir):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
