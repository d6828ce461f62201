"""The answer graph for LangGraph deployments: ``graph`` (rewrite → retrieve → generate).

Run it with ``graph.ainvoke({"question": "...", "history": [...]})``; stream sources and
answer tokens with ``graph.astream(..., stream_mode=["updates", "messages"])``.

A run may pass ``context=AnswerContext(retriever=..., llm=...)``. A run that passes none
(a deployment) answers from the index configured in the environment
(``RAG_INDEX_DIR``, ``RAG_EMBEDDINGS``, ``RAG_LLM``, ... see ``RAGConfig.from_env``),
loaded once per process.
"""

from __future__ import annotations

from langchain_rag_async.answering.graph import AnswerContext, build_answer_graph
from langchain_rag_async.engine import AsyncRAGEngine

__all__ = ("AnswerContext", "default_answer_context", "graph")

_engine: AsyncRAGEngine | None = None


async def default_answer_context() -> AnswerContext:
    """The context of runs that pass none: the index and models configured in the env."""
    global _engine
    if _engine is None:
        _engine = AsyncRAGEngine()
    return AnswerContext(
        retriever=await _engine.aretriever(),
        llm=await _engine.allm(),
        k=_engine.config.retrieval.k,
        limiter=_engine.chat_limiter,
    )


graph = build_answer_graph(default_context=default_answer_context)
