"""Quickstart: index a folder, search it, and stream a cited answer (async, offline).

Run it from the project root:

    python examples/quickstart.py                       # indexes examples/corpus/
    python examples/quickstart.py ~/notes --question "what did I write about X?"

Everything runs on this machine: the bundled MiniLM model embeds, SQLite FTS5 ranks the
keywords, and the offline extractive model writes the answer (it quotes the sources and
cites them as [n]). No API key, no download.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from langchain_rag_async import AsyncRAGEngine

CORPUS = Path(__file__).resolve().parent / "corpus"


def show_progress(event: dict[str, Any]) -> None:
    # Progress events of the indexing steps (the graph streams the same on "custom").
    if event.get("type") == "progress" and event["stage"] == "done":
        print(f"  stored {event['chunks_stored']} chunks from {event['files_done']} files")


async def main(corpus: Path, index_dir: Path, question: str) -> None:
    # One engine per index directory. `async with` closes its SQLite files at the end.
    async with AsyncRAGEngine(index_dir=index_dir) as engine:
        # 1. Index: load → split → embed → store, overlapped. Incremental: files whose
        #    size and mtime did not change are skipped without being read.
        summary = await engine.aindex_directory(corpus, on_progress=show_progress)
        print(
            f"indexed {summary.files_indexed} files, {summary.chunks_added} chunks "
            f"in {summary.seconds:.1f} s"
        )
        again = await engine.aindex_directory(corpus)
        print(
            f"second run: {again.files_skipped} files skipped, "
            f"{again.chunks_embedded} chunks embedded"
        )

        # 2. Search: dense (FAISS) and sparse (BM25) concurrently, fused into one ranking.
        print(f"\ntop chunks for {question!r}:")
        for doc in await engine.aquery(question, k=3):
            scores = doc.metadata["scores"]
            print(f"  {doc.metadata['source']} (fused {scores['fused']:.3f}) id={doc.id}")

        # 3. Answer: a `sources` event, then `token` events, then `done` (or `error`).
        print("\nanswer:")
        async for event in engine.astream_answer(question):
            if event.type == "token":
                print(event.text, end="", flush=True)
            elif event.type == "done":
                print("\n\nsources:")
                for source in event.sources:
                    print(f"  [{source['n']}] {source['source']}")
            elif event.type == "error":  # the partial answer is kept in event.answer
                print(f"\nerror ({event.kind}): {event.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    parser.add_argument(
        "--index-dir", type=Path, help="where the index lives (default: a temp dir)"
    )
    parser.add_argument("--question", default="What happens when a task is cancelled?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-quickstart-") as scratch:
        asyncio.run(main(args.corpus, args.index_dir or Path(scratch), args.question))
