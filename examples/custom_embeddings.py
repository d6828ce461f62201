"""Plug in your own embedding model: any LangChain ``Embeddings`` works.

Run it from the project root:

    python examples/custom_embeddings.py

Pass the model as ``AsyncRAGEngine(embeddings=...)`` (or ``RAGEngine``,
``aindex_directory(..., embeddings=...)``, ``HybridRetriever.from_documents(...,
embedding=...)``, ``AsyncFAISS.from_documents(docs, ...)``). The engine wraps it in the
same stack as the built-in models: the SQLite embedding cache (a chunk is embedded once,
ever), batching, the concurrency and rate limits of ``EmbeddingConfig``, and retries.
The model's identity is saved with the index (``custom:<class>:<model name>``) and an
index is never searched with vectors of another model.

The model here is a small real one: feature hashing of words and word pairs. It needs
no weights and no network; replace it by ``OpenAIEmbeddings``, ``OllamaEmbeddings``,
``HuggingFaceEmbeddings``... A model with real async I/O should also implement
``aembed_documents`` / ``aembed_query``; a CPU-bound one like this inherits LangChain's
defaults, which run the sync methods in an executor thread, off the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from langchain_rag_async import AsyncRAGEngine, EmbeddingModelMismatchError

CORPUS = Path(__file__).resolve().parent / "corpus"


class HashingEmbeddings(Embeddings):
    """Words and word pairs hashed into ``dimension`` buckets, L2-normalised."""

    def __init__(self, dimension: int = 512) -> None:
        self.dimension = dimension
        self.model_name = f"hashing-{dimension}"  # part of the identity saved with the index
        self.texts_embedded = 0

    def _embed(self, text: str) -> list[float]:
        words = re.findall(r"\w+", text.lower())
        vector = np.zeros(self.dimension, dtype=np.float32)
        for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0  # a signed hash
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm else vector).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts_embedded += len(texts)
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        self.texts_embedded += 1
        return self._embed(text)


async def main(corpus: Path, index_dir: Path, question: str) -> None:
    model = HashingEmbeddings()
    async with AsyncRAGEngine(index_dir=index_dir, embeddings=model) as engine:
        summary = await engine.aindex_directory(corpus)
        print(f"indexed {summary.chunks_added} chunks; the model embedded {model.texts_embedded}")
        again = await engine.aindex_directory(corpus)
        print(f"second run: {again.chunks_embedded} embedded ({again.files_skipped} files skipped)")
        hits = await engine.aquery(question, k=2)
        print(f"top hit: {Path(hits[0].metadata['source']).name}")
        result = await engine.aanswer(question, k=2)
        print(f"answer: {result.answer.splitlines()[-1]}")

    manifest = json.loads((index_dir / "manifest.json").read_text())
    print(f"saved with the index: {manifest['embedding_model_id']}")

    # Another model (even the same class with another dimension) is refused, by name.
    async with AsyncRAGEngine(index_dir=index_dir, embeddings=HashingEmbeddings(256)) as other:
        try:
            await other.aquery(question)
        except EmbeddingModelMismatchError as exc:
            print(f"refused: {exc.index_model} built it, {exc.configured_model} asked")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    parser.add_argument("--question", default="What does a client do when it gets a 429?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-custom-") as scratch:
        asyncio.run(main(args.corpus, Path(scratch), args.question))
