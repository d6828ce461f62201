"""Write the chaos suite's hostile corpus into a directory, or index it and check the outcome.

The corpus (``DIR/corpus``, with ``DIR/outside`` for the links that leave it): binary files
under text names, empty files, a huge file, undecodable and BOM-less UTF-16 text, NUL bytes,
a single 10 MB line, thousands of tiny files, 40-deep folders, link loops and links out of
the root, names with newlines and invalid UTF-8 bytes, files a background thread rewrites,
and a few normal Markdown files. See ``benchmarks/reliability/hostile.py``.

Usage:
    .venv/bin/python scripts/make_hostile_corpus.py DIR [--big-mb 200] [--line-mb 10]
        [--tiny 10000] [--depth 40] [--volatile 24] [--seed 0]
    .venv/bin/python scripts/make_hostile_corpus.py DIR --run [--trials 1]
        [--max-file-size BYTES] [--rss-limit-mb 1024] [--json]

``rag-async index DIR/corpus`` then shows how the CLI reports each bad file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.reliability.hostile import MB, CorpusSizes, make_corpus, run  # noqa: E402


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="where to write corpus/ and outside/")
    parser.add_argument("--big-mb", type=float, default=200, help="size of big/huge.txt")
    parser.add_argument("--line-mb", type=float, default=10, help="size of the one-line file")
    parser.add_argument("--tiny", type=int, default=10_000, help="how many tiny files")
    parser.add_argument("--depth", type=int, default=40, help="how deep deep/ nests")
    parser.add_argument("--volatile", type=int, default=24, help="files the mutator changes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="store_true", help="index it and check (the scenario)")
    parser.add_argument("--trials", type=int, default=1, help="with --run: corpora to index")
    parser.add_argument("--max-file-size", type=int, default=None, help="RAG_MAX_FILE_SIZE")
    parser.add_argument("--rss-limit-mb", type=float, default=1024.0)
    parser.add_argument("--json", action="store_true", help="with --run: print JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    sizes = CorpusSizes(
        big_bytes=int(args.big_mb * MB),
        line_bytes=int(args.line_mb * MB),
        tiny_files=args.tiny,
        depth=args.depth,
        volatile_files=args.volatile,
    )
    if not args.run:
        corpus = make_corpus(args.dir, sizes, seed=args.seed)
        print(f"wrote {corpus.root} ({len(corpus.good)} good files, {len(corpus.failed)} bad)")
        for rel, reason in sorted(corpus.failed.items()):
            print(f"  bad  {rel!r}: {reason or 'decoded or rejected'}")
        return 0
    result = run(
        args.trials,
        args.dir,
        sizes=sizes,
        max_file_size=args.max_file_size,
        rss_limit_mb=args.rss_limit_mb,
        seed=args.seed,
    )
    report = {
        "scenario": result.name,
        "trials": result.trials,
        "survived": result.survived,
        "failures": result.failures,
        "figures": result.figures,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{result.name}: {result.survived}/{result.trials} survived")
        for failure in result.failures:
            print(f"  FAILED {failure}")
        for key, value in result.figures.items():
            print(f"  {key}: {value}")
    return 0 if result.all_survived else 1


if __name__ == "__main__":
    sys.exit(main())
