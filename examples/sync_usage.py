"""Sync use: from a plain script, and from inside a running event loop (Jupyter-style).

Run it from the project root:

    python examples/sync_usage.py
    python examples/sync_usage.py ~/notes --question "..."

``RAGEngine`` has the constructor of ``AsyncRAGEngine`` and a sync twin of each method.
Each call hands the coroutine to the package's one sync bridge (a "portal": one event
loop in a daemon thread, shared by the process) and waits for the result. So:

- a plain script needs no ``asyncio.run``;
- code that already runs inside an event loop (a Jupyter cell, an async web handler
  calling a sync library) can call it too, where ``asyncio.run`` would raise
  "cannot be called from a running event loop". The calling loop is blocked while it
  waits, as with any sync call; in async code, prefer ``AsyncRAGEngine``.
- loop-bound clients (SQLite connections, ``ChatOpenAI``'s HTTP pool) stay valid from one
  call to the next, because every call runs on the same portal loop.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

from langchain_rag_async import RAGEngine, index_directory

CORPUS = Path(__file__).resolve().parent / "corpus"


def plain_script(corpus: Path, index_dir: Path, question: str) -> list[str]:
    # No event loop anywhere in this function.
    summary = index_directory(corpus, index_dir=index_dir)  # sync twin of aindex_directory
    print(f"script: indexed {summary.files_indexed} files, {summary.chunks_added} chunks")
    with RAGEngine(index_dir=index_dir) as engine:  # `with` closes its files
        hits = engine.query(question, k=3)
        result = engine.answer(question, k=3)
    print(f"script: answer cites {sorted(set(cited(result.answer)))} of {len(result.sources)}")
    for source in result.sources:
        print(f"script:   [{source['n']}] {Path(source['source']).name}")
    return [str(doc.id) for doc in hits]


async def notebook_cell(index_dir: Path, question: str) -> list[str]:
    # This coroutine runs inside a running loop, like a Jupyter cell does.
    coro = asyncio.sleep(0)
    try:
        asyncio.run(coro)
    except RuntimeError as exc:
        coro.close()
        print(f"notebook: asyncio.run fails here: {exc}")
    # ... and yet the sync engine works:
    engine = RAGEngine(index_dir=index_dir)
    try:
        hits = engine.query(question, k=3)
        print(f"notebook: top hit {Path(hits[0].metadata['source']).name}")
        print(f"notebook: answer cites {sorted(set(cited(engine.answer(question).answer)))}")
    finally:
        engine.close()
    return [str(doc.id) for doc in hits]


def cited(answer: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d+)\]", answer)]


def main(corpus: Path, index_dir: Path, question: str) -> None:
    from_script = plain_script(corpus, index_dir, question)
    from_loop = asyncio.run(notebook_cell(index_dir, question))
    print(f"same top 3 from both: {from_script == from_loop}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    parser.add_argument("--question", default="Why does a blocking call stop the event loop?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-sync-") as scratch:
        main(args.corpus, Path(scratch), args.question)
