"""The answer graph for LangGraph deployments: ``graph`` (rewrite → retrieve → generate).

Run it with ``graph.ainvoke({"question": "...", "history": [...]},
context=AnswerContext(retriever=..., llm=...))``; stream sources and answer tokens with
``graph.astream(..., stream_mode=["updates", "messages"])``. Without a context the run
stops with a ``ConfigurationError`` that says what to pass.
"""

from __future__ import annotations

from langchain_rag_async.answering.graph import AnswerContext, build_answer_graph

__all__ = ["AnswerContext", "graph"]

graph = build_answer_graph()
