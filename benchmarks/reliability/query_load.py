"""A query process for the concurrency scenarios: rounds of concurrent queries until told to stop.

``python -m benchmarks.reliability.query_load --index-dir DIR --stop-file F`` queries the
index through :class:`~langchain_rag_async.AsyncRAGEngine`; with ``--url`` it queries a
running ``rag-async serve`` over HTTP (``POST /query``) instead. Each round sends
``--concurrency`` queries at once; rounds go on until the stop file exists, then one more
round runs after ``--settle`` seconds (so it sees the index saved last). Every query writes
one JSON line to stdout: ``{"round": n, "final": bool, "ids": [...], "error": str | null}``.
The settings (embedding model, server) come from the environment, as for ``rag-async``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

QUESTIONS = (
    "How does ownership work?",
    "What is a closure?",
    "How do I handle errors with Result?",
    "What are lifetimes?",
    "How does cargo build a project?",
    "What is a trait object?",
    "How do threads share data?",
    "What does the borrow checker check?",
    "How do I write tests?",
    "What are smart pointers?",
)


async def _engine_rounds(args: argparse.Namespace) -> None:
    from langchain_rag_async import AsyncRAGEngine, RAGConfig

    config = RAGConfig.from_env()
    retrieval = replace(config.retrieval, refresh_interval=args.refresh)
    config = replace(config, index_dir=Path(args.index_dir), retrieval=retrieval)
    async with AsyncRAGEngine(config=config) as engine:

        async def one(question: str) -> dict[str, Any]:
            docs = await engine.aquery(question, k=args.k)
            return {"ids": [doc.id for doc in docs]}

        await _rounds(args, one)


async def _http_rounds(args: argparse.Namespace) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=args.url, timeout=60, trust_env=False) as client:

        async def one(question: str) -> dict[str, Any]:
            response = await client.post("/query", json={"question": question, "k": args.k})
            if response.status_code != 200:
                return {"error": f"HTTP {response.status_code}: {response.text[:200]}"}
            return {"ids": [hit["id"] for hit in response.json()["hits"]]}

        await _rounds(args, one)


async def _rounds(args: argparse.Namespace, one: Any) -> None:
    stop = Path(args.stop_file)
    number = 0
    final = False
    while True:
        questions = [QUESTIONS[(number + i) % len(QUESTIONS)] for i in range(args.concurrency)]
        outcomes = await asyncio.gather(*(one(q) for q in questions), return_exceptions=True)
        for outcome in outcomes:
            line: dict[str, Any] = {"round": number, "final": final, "ids": [], "error": None}
            if isinstance(outcome, BaseException):
                line["error"] = f"{type(outcome).__name__}: {outcome}"
            else:
                line.update(outcome)
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        number += 1
        if final:
            return
        if await asyncio.to_thread(stop.exists):
            await asyncio.sleep(args.settle)
            final = True


def main() -> None:
    """Parse the arguments and run the rounds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index-dir", help="the index (engine mode)")
    parser.add_argument("--url", help="a running rag-async serve (HTTP mode)")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("-k", type=int, default=6)
    parser.add_argument("--refresh", type=float, default=0.2, help="engine refresh_interval")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds before the last round")
    args = parser.parse_args()
    asyncio.run(_http_rounds(args) if args.url else _engine_rounds(args))


if __name__ == "__main__":
    main()
