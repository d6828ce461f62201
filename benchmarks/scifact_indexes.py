"""The SciFact indexes the retrieval benchmark searches: cached vectors, FAISS and FTS5.

Vectors come from the default offline model (``LocalMiniLMEmbeddings``) and are cached in
``.bench/scifact/`` (gitignored), so only the first run pays the ~5 minutes of embedding.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.embeddings import Embeddings

from langchain_rag_async import AsyncFAISS, FTS5Index, LocalMiniLMEmbeddings
from langchain_rag_async.embeddings.local import LOCAL_MODEL_ID

from .corpus import PROJECT_ROOT, SciFact

__all__ = (
    "CACHE_DIR",
    "LOCAL_MODEL_ID",
    "Indexes",
    "PrecomputedQueryEmbeddings",
    "build_indexes",
    "cached_vectors",
)

CACHE_DIR = PROJECT_ROOT / ".bench" / "scifact"
EMBED_CHUNK = 256  # texts per embedding call (progress is reported per chunk)


def _fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256(LOCAL_MODEL_ID.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


async def cached_vectors(
    name: str, texts: Sequence[str], embeddings: Embeddings
) -> npt.NDArray[np.float32]:
    """Vectors of ``texts``, from ``.bench/scifact/<name>-<fingerprint>.npy`` when present."""
    path = CACHE_DIR / f"{name}-{_fingerprint(texts)}.npy"
    if path.exists():
        vectors: npt.NDArray[np.float32] = np.load(path)
        return vectors
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        parts.append(await embeddings.aembed_documents(list(texts[start : start + EMBED_CHUNK])))
        done = min(start + EMBED_CHUNK, len(texts))
        rate = done / (time.perf_counter() - started)
        print(f"  embedded {done}/{len(texts)} {name} ({rate:.1f} texts/s)", file=sys.stderr)
    vectors = np.asarray([v for part in parts for v in part], dtype=np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


class PrecomputedQueryEmbeddings(Embeddings):
    """Looks query vectors up (computed once, cached on disk); other texts go to the model.

    Used for the quality runs only, so they measure ranking, not the model's speed; the
    latency and stall runs embed every query with the model, as a server would.
    """

    def __init__(self, model: Embeddings, vectors: dict[str, list[float]]) -> None:
        self._model = model
        self._vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed with the model."""
        return self._model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """The precomputed vector of ``text``, or the model's."""
        found = self._vectors.get(text)
        return found if found is not None else self._model.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed with the model."""
        return await self._model.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """The precomputed vector of ``text``, or the model's."""
        found = self._vectors.get(text)
        return found if found is not None else await self._model.aembed_query(text)


@dataclass(slots=True)
class Indexes:
    """The dense index twice (queries embedded by the model, or looked up) and the sparse one."""

    store: AsyncFAISS  # queries embedded by the model
    fast_store: AsyncFAISS  # the same index, query vectors looked up
    sparse: FTS5Index


async def build_indexes(data: SciFact, model: LocalMiniLMEmbeddings) -> Indexes:
    """Fill FAISS from the cached vectors and a fresh FTS5 index from the abstracts."""
    texts = [doc.page_content for doc in data.documents]
    vectors = await cached_vectors("corpus", texts, model)
    query_texts = list(data.queries.values())
    query_vectors = await cached_vectors("queries", query_texts, model)
    lookup = {
        text: vector.tolist() for text, vector in zip(query_texts, query_vectors, strict=True)
    }
    store = AsyncFAISS.create(
        model,
        dimension=vectors.shape[1],
        distance_strategy=DistanceStrategy.COSINE,  # inner product of L2-normalised vectors
        embedding_model_id=LOCAL_MODEL_ID,
    )
    await store.aadd_embeddings(
        zip(texts, vectors.tolist(), strict=True), ids=[str(doc.id) for doc in data.documents]
    )
    fast_store = AsyncFAISS(
        PrecomputedQueryEmbeddings(model, lookup),
        store.index,
        store.docstore,
        store.index_to_docstore_id,
        normalize_L2=True,
        distance_strategy=DistanceStrategy.COSINE,
        embedding_model_id=LOCAL_MODEL_ID,
    )
    db_path = CACHE_DIR / "sparse.sqlite"
    for stale in CACHE_DIR.glob("sparse.sqlite*"):
        stale.unlink()
    sparse = FTS5Index(db_path)
    await sparse.aupsert(data.documents)
    return Indexes(store=store, fast_store=fast_store, sparse=sparse)
