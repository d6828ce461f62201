"""Dense search over a saved index (the ``rag-async search`` command and its API)."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._paths import aresolve
from langchain_rag_async._sync import run_sync
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.embeddings.factory import build_base_embeddings
from langchain_rag_async.errors import IndexNotFoundError, RetrievalError
from langchain_rag_async.indexing.resources import check_model, resolve_model_id
from langchain_rag_async.vectorstores import AsyncFAISS

__all__ = ["aload_store", "asearch_index", "search_index"]


async def aload_store(config: RAGConfig) -> AsyncFAISS:
    """Load the saved vector store of ``config.index_dir`` for querying.

    Raises:
        IndexNotFoundError: Nothing was ever indexed there.
        EmbeddingModelMismatchError: The configured model is not the one that built it.
    """
    index_dir = await aresolve(config.index_dir)
    if not await run_in_executor(None, index_dir.is_dir):
        raise IndexNotFoundError(index_dir)
    model_id = resolve_model_id(config, None)
    if await check_model(index_dir, model_id) is None:
        raise IndexNotFoundError(index_dir)
    embeddings = build_base_embeddings(config.embeddings)
    return await AsyncFAISS.aload_local(str(index_dir), embeddings, expected_model_id=model_id)


async def asearch_index(
    question: str, *, config: RAGConfig | None = None, k: int = 4
) -> list[dict[str, Any]]:
    """Return the ``k`` chunks most similar to ``question`` as JSON-ready dicts.

    Raises:
        RetrievalError: The question is empty.
        IndexNotFoundError: Nothing was ever indexed in the index directory.
    """
    if not question.strip():
        raise RetrievalError("the question is empty; ask something, e.g. 'how do lifetimes work?'")
    config = config or RAGConfig.from_env()
    store = await aload_store(config)
    hits = await store.asimilarity_search_with_relevance_scores(question, k=k)
    return [
        {
            "id": doc.id,
            "source": doc.metadata.get("source"),
            "chunk_index": doc.metadata.get("chunk_index"),
            "start_index": doc.metadata.get("start_index"),
            "score": float(score),
            "text": doc.page_content,
        }
        for doc, score in hits
    ]


def search_index(
    question: str, *, config: RAGConfig | None = None, k: int = 4
) -> list[dict[str, Any]]:
    """Sync twin of :func:`asearch_index`."""
    return run_sync(asearch_index(question, config=config, k=k))
