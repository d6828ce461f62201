"""Process memory tuning: short garbage-collection pauses, and few malloc arenas.

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

:func:`limit_malloc_arenas` is for the one-shot ``rag-async`` commands (see its note).
"""

from __future__ import annotations

import gc
import os

__all__ = ("MALLOC_ARENAS", "freeze_long_lived", "limit_malloc_arenas")

MALLOC_ARENAS = 2
"""Malloc arenas of a one-shot ``rag-async`` command (glibc's default: up to 8 per core)."""

_M_ARENA_MAX = -8  # glibc's <malloc.h>


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


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas for this process.

    glibc gives each thread that allocates an arena of its own, up to 8 per core, and what
    is freed in one arena serves only the threads bound to it. ``rag-async index`` runs
    about ten threads for a few seconds (the executor's, one per SQLite connection, the
    log writer): their arenas held 3.5 MiB of its 160 MiB peak RSS on the rust-book, for
    no measurable CPU time (``docs/benchmarks.md``, "Indexing memory against LangChain").
    This is ``MALLOC_ARENA_MAX=2``, set from inside: call it before any thread starts
    (glibc fixes the limit when a second thread first allocates).

    Args:
        arenas: The limit.

    Returns:
        Whether the limit was set: not on another C library, nor when the environment
        sets ``MALLOC_ARENA_MAX`` itself (glibc has read it; the user's choice stands).
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # no confstr, or not this name
        return False
    if not libc or not libc.startswith("glibc"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
