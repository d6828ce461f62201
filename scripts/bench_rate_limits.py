"""Strict rate limits: ours against a server that allows N requests in any sliding window.

Before (a git ref, ``main`` as it was by default) and after (this working tree), side by
side in one run, for a 1-second and a 10-second window, with the limit stated
(``requests_per_minute``) and not, calling ``RateLimitedEmbeddings`` directly and (1-second
window) through the whole ``rag-async index`` command. The measuring code is in
``benchmarks/rate_limits.py`` (its docstring tells the set-up); results are in
docs/benchmarks.md ("Strict rate limits"). The exit status is 0 even when a target is
missed: this is a measurement, not a test.

    .venv/bin/python scripts/bench_rate_limits.py              # everything (about 3 min)
    .venv/bin/python scripts/bench_rate_limits.py --windows 1 --before ''   # after only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.rate_limits import BEFORE_REF, report_text, run  # noqa: E402
from benchmarks.report import missed_banner  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="the bound, requests/s")
    parser.add_argument(
        "--windows", type=float, nargs="+", default=[1.0, 10.0], help="window lengths, s"
    )
    parser.add_argument("--latency", type=float, default=0.1, help="server s/request")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per request")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--dimension", type=int, default=256, help="vector length")
    parser.add_argument(
        "--before", default=BEFORE_REF, help="git ref of the 'before' library ('': skip)"
    )
    parser.add_argument(
        "--skip-index", action="store_true", help="skip the whole 'rag-async index' runs"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


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
