"""Peak RSS of ``rag-async index`` next to LangChain's sync ``FAISS.from_documents`` path.

Both index the same corpus (the rust-book by default) through the real OpenAI client
against the local fake server, ``--batch-size`` texts per request, each in its own child
process; the figure is the child's ``VmHWM``. The design's target: ours at most 10 % above
LangChain's. The measuring code is in ``benchmarks/memory.py``. Exit status 0 even when
the target is missed: this is a measurement, not a test.

    .venv/bin/python scripts/bench_memory.py              # best of 3, about a minute
    .venv/bin/python scripts/bench_memory.py --repeat 1 --json

``--scaling 1,4,16`` measures both sides at 1x, 4x and 16x the corpus instead (renamed,
line-marked copies generated in a temporary directory; ``benchmarks/memory_scaling.py``)
and draws the plot into ``--plot`` (default ``docs/img/memory-scaling.png``) with
matplotlib, from the ``bench`` extra (``pip install -e '.[bench]'``):

    nice .venv/bin/python scripts/bench_memory.py --scaling 1,4,16 --repeat 1   # ~6 min
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.corpus import RUST_BOOK  # noqa: E402
from benchmarks.memory import report_text, run  # noqa: E402
from benchmarks.memory_scaling import parse_factors, plot, run_scaling  # noqa: E402
from benchmarks.memory_scaling import report_text as scaling_text  # noqa: E402

DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "memory-scaling.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--batch-size", type=int, default=16, help="texts per request")
    parser.add_argument("--dimension", type=int, default=1536, help="vector length")
    parser.add_argument("--latency", type=float, default=0.0, help="server s/request")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; best is kept")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--scaling",
        type=parse_factors,
        metavar="1,4,16",
        help="measure at these multiples of the corpus and plot them",
    )
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG for --scaling")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"corpus not found: {args.corpus}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scaling:
        return _scaling(args)
    report = run(args)
    print(json.dumps(report, indent=2) if args.json else report_text(report))
    return 0


def _scaling(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401  # checked before minutes of measuring
    except ModuleNotFoundError:
        print(
            "matplotlib is missing: the plot needs the bench extra "
            "(.venv/bin/pip install -e '.[bench]'); measuring anyway, no plot will be written",
            file=sys.stderr,
        )
        missing = True
    else:
        missing = False
    report = run_scaling(args)
    print(json.dumps(report, indent=2) if args.json else scaling_text(report))
    if missing:
        print("no plot written: matplotlib is missing (the bench extra)", file=sys.stderr)
        return 1
    plot(report, args.plot)
    print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
