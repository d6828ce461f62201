"""The indexing LangGraph: ``plan`` (scan and diff) → ``index`` (the overlapped pipeline).

Each node runs one of the steps in ``indexing/steps.py`` (``aindex_directory`` runs them
without LangGraph). Progress events go to the ``custom`` stream mode; the final state holds
the summary. Runtime objects (settings, a caller's embedding model, the shared limiter)
travel in the run's ``context`` (:class:`IndexingContext`), never in the checkpointable state.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from langchain_rag_async.indexing.steps import (
    IndexingContext,
    IndexingState,
    index_step,
    plan_step,
)

__all__ = ("IndexingContext", "IndexingState", "build_indexing_graph")


def _context(runtime: Runtime[IndexingContext]) -> IndexingContext:
    return runtime.context if runtime.context is not None else IndexingContext()


async def plan_node(state: IndexingState, runtime: Runtime[IndexingContext]) -> IndexingState:
    """Walk the directory and compare it with the file table (nothing is read yet)."""
    return await plan_step(state, _context(runtime), get_stream_writer())


async def index_node(state: IndexingState, runtime: Runtime[IndexingContext]) -> IndexingState:
    """Run the overlapped pipeline over the plan and save the index (under the run lock)."""
    return await index_step(state, _context(runtime), get_stream_writer())


def build_indexing_graph() -> CompiledStateGraph[IndexingState, IndexingContext, Any, Any]:
    """Compile the indexing graph (``plan`` → ``index``).

    Use it with ``await graph.ainvoke({"path": "docs"}, context=IndexingContext(...))``
    or ``graph.astream(..., stream_mode=["custom", "values"])`` for progress events.
    """
    builder = StateGraph(IndexingState, context_schema=IndexingContext)
    builder.add_node("plan", plan_node)
    builder.add_node("index", index_node)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "index")
    builder.add_edge("index", END)
    return builder.compile(name="indexing")
