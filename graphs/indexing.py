"""The indexing graph for LangGraph deployments: ``graph`` (plan → index).

Run it with ``graph.ainvoke({"path": "docs", "index_dir": ".rag-index"})``; pass
``context=IndexingContext(config=...)`` to override settings, and stream progress with
``graph.astream(..., stream_mode=["custom", "values"])``.
"""

from __future__ import annotations

from langchain_rag_async.indexing.graph import IndexingContext, build_indexing_graph

__all__ = ("IndexingContext", "graph")

graph = build_indexing_graph()
