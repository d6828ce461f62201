"""Short garbage-collection pauses for processes that serve queries.

A full collection of CPython's cyclic garbage collector walks every tracked object while
the event loop stands still. The objects of the imported libraries alone (LangChain,
LangGraph, pydantic, numpy... about 120k here) make that walk take 50 to 90 ms on the
2 shared cores of the benchmark machine (``docs/benchmarks.md``), so a burst of queries
that triggers one stalls every request in flight. Those objects live as long as the
process: :func:`freeze_long_lived` moves them out of the collector's sight with
``gc.freeze()`` (the Python documentation's recommendation for long-lived state), so
later collections only walk what requests allocate.

:class:`~langchain_rag_async.AsyncRAGEngine` calls it after loading an index unless
``RAGConfig(freeze_gc=False)`` (or ``RAG_FREEZE_GC=0``), once per process: when nothing
is frozen yet. Frozen objects are still freed by reference counting; only reference
cycles among them are never collected, which is why it runs after a collection and only
at load time.
"""

from __future__ import annotations

import gc

__all__ = ("freeze_long_lived",)


def freeze_long_lived(*, once: bool = False) -> int:
    """Collect garbage now, then freeze every object still alive.

    Call it once the process has loaded what it keeps (modules, models, indexes). The
    collection itself pauses the process once, for as long as one full collection takes.

    Args:
        once: Do nothing if objects are already frozen (by an earlier call or by the
            application). The engine passes it, so re-loading an index after a re-index
            neither pauses the process again nor freezes the host's request objects;
            later generations of the index add few tracked objects (``CompactDocstore``).

    Returns:
        How many objects are frozen in total (``gc.get_freeze_count()``).
    """
    if once and gc.get_freeze_count():
        return gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
