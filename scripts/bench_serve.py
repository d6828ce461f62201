"""Serving under load: ``rag-async serve`` against a FastAPI + LangChain sync route.

Indexes the first ``--files`` rust-book files with the bundled model, starts each server in
its own process on loopback, and drives it with ``C`` concurrent streaming chats through the
``openai`` async client, for each ``--clients`` level. Prints, side by side: errors, time to
first token and whole-answer time (p50/p99), tokens/s, requests/s, the server's largest
event-loop stall, its memory (RSS idle and peak) and the CPU time per request of the server
and of the load generator, then PASS/FAIL per target (0 errors,
stall <= 50 ms, TTFT p99 <= 1 s at 100 clients, >= 3x the LangChain way's requests/s).
It exits 0 whatever the figures: it measures, it does not test.

Usage:
    .venv/bin/python scripts/bench_serve.py [--files N] [--clients 100 200] [--remote]

With ``--remote`` both servers also run a second round answering through a remote chat
model: the fake OpenAI server in its own process, streaming a 36-word reply 20 ms a token
(the I/O-bound case the async design is for).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.serve import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30, help="rust-book files to index")
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 200])
    parser.add_argument(
        "--remote", action="store_true", help="also answer through a remote, latency-bound LLM"
    )
    args = parser.parse_args()
    run(files=args.files, levels=tuple(args.clients), remote=args.remote)


if __name__ == "__main__":
    main()
