"""The no-I/O parts of :mod:`~langchain_rag_async.embeddings.rate_limited`.

Batch plans, per-request bookkeeping, and the steps both the async and sync paths share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings

from langchain_rag_async.embeddings._coalesce import Then, ThenFailed
from langchain_rag_async.embeddings._resilience import checked_vectors
from langchain_rag_async.errors import ConfigurationError, EmbeddingResponseError
from langchain_rag_async.observability import get_logger

Vectors = list[list[float]]
VectorsCall = Callable[[], Awaitable[Vectors]]
BatchCallback = Callable[[int, Vectors], Awaitable[None]]
"""``on_batch`` of :meth:`RateLimitedEmbeddings.aembed_documents`: (first index, vectors)."""


async def _kept(keep: Callable[[Vectors], Awaitable[None]], vectors: Vectors) -> None:
    """Hand fresh vectors to ``keep``; a failure there must not lose them for this call."""
    try:
        await keep(vectors)
    except Exception as exc:
        get_logger(__name__).warning(
            "on_batch failed; the vectors are still returned",
            error=f"{type(exc).__name__}: {exc}",
        )


# -- pure helpers shared by the async and sync paths -----------------------------------------


def _run_thens(thens: Sequence[Then | None], vectors: Vectors) -> list[Any]:
    """Each query's ``then`` on its vector (the vector itself where none); errors kept apart."""
    results: list[Any] = []
    for then, vector in zip(thens, vectors, strict=True):
        try:
            results.append(vector if then is None else then(vector))
        except Exception as exc:  # the caller of that query gets it, not the whole batch
            results.append(ThenFailed(exc))
    return results


def _embed_then(
    inner: Embeddings, texts: list[str], thens: Sequence[Then | None], dimension: int | None
) -> tuple[Vectors, list[Any]]:
    """In one executor call: embed ``texts``, then run each ``then`` on a sound vector.

    Unsound vectors get no step run (the caller's validation rejects them and retries).
    """
    vectors = inner.embed_documents(texts)
    try:
        checked_vectors(vectors, len(texts), dimension)
    except EmbeddingResponseError:
        return vectors, []
    return vectors, _run_thens(thens, vectors)


def plan_batches(count: int, batch_size: int) -> list[tuple[int, int]]:
    """Cut ``count`` texts into ``(start, stop)`` ranges of at most ``batch_size`` texts."""
    return [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _unfinished(plan: Sequence[tuple[int, int]], results: Sequence[Vectors | None]) -> list[int]:
    """Indices of the texts whose sub-batch has no result."""
    return [
        i
        for (start, stop), part in zip(plan, results, strict=True)
        if part is None
        for i in range(start, stop)
    ]


def _checked_sources(texts: Sequence[str], sources: Sequence[str] | None) -> Sequence[str]:
    if sources is None:
        return ()
    if len(sources) != len(texts):
        raise ConfigurationError(
            f"sources must have one entry per text: got {len(sources)} for {len(texts)} texts"
        )
    return sources


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    timeouts: int = 0
    bad_responses: int = 0


@dataclass(slots=True)
class _Attempts:
    """One request's attempts: how many, how many timed out, and why it gave up."""

    count: int = 0
    timeouts: int = 0
    failures: list[str] = field(default_factory=list)
    gave_up: str | None = None


@dataclass(slots=True)
class _Failure:
    """A sub-batch that failed for good."""

    error: Exception
    attempts: _Attempts
