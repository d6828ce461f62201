"""Concurrent, rate-limited, retrying embeddings: wraps any LangChain ``Embeddings``.

Texts are cut into sub-batches that are sent concurrently through the shared
:class:`~langchain_rag_async.limits.ServiceLimiter` of the service, retried with
exponential backoff and jitter (honouring ``Retry-After``), and put back in input order.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from functools import partial
from typing import Any, TypeVar

from langchain_core.embeddings import Embeddings
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.aio import LoopBound, first_error
from langchain_rag_async.config import RetryConfig
from langchain_rag_async.embeddings._coalesce import QueryCoalescer
from langchain_rag_async.errors import ConfigurationError, EmbeddingError
from langchain_rag_async.limits import ServiceLimiter, min_request_interval
from langchain_rag_async.metrics import EMBEDDING_REQUESTS, QUERY_LATENCY, provider_of
from langchain_rag_async.observability import get_logger, span

__all__ = (
    "WORKER_TASK_PREFIX",
    "RateLimitedEmbeddings",
    "backoff_delay",
    "is_rate_limited",
    "is_retryable",
    "plan_batches",
    "retry_after_seconds",
    "status_code_of",
)

T = TypeVar("T")
Vectors = list[list[float]]

WORKER_TASK_PREFIX = "rag-embed-worker-"
"""Name prefix of the tasks that send sub-batches (handy to find leftovers in tests)."""

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_MAX_EXPONENT = 32


# -- pure helpers shared by the async and sync paths -----------------------------------------


def plan_batches(count: int, batch_size: int) -> list[tuple[int, int]]:
    """Cut ``count`` texts into ``(start, stop)`` ranges of at most ``batch_size`` texts."""
    return [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def loaded_error_types(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes named ``"module.Class"`` whose module is already imported.

    An exception can only come from a library that was imported, so a library missing from
    ``sys.modules`` cannot have raised it. Looking the classes up this way keeps ``openai``,
    ``httpx`` and ``aiohttp`` (about 60k objects the garbage collector must walk on every
    full collection) out of processes that only use the local model.
    """
    found: list[type[BaseException]] = []
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        cls = getattr(sys.modules.get(module_name), attribute, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


# Recent ``openai`` releases are built on ``httpx2``; other clients still use ``httpx``.
_STATUS_ERRORS = ("httpx.HTTPStatusError", "httpx2.HTTPStatusError")
_TRANSPORT_ERRORS = ("httpx.TransportError", "httpx2.TransportError")
_CONNECTION_ERRORS = ("openai.APIConnectionError", "aiohttp.ClientError", *_TRANSPORT_ERRORS)


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status carried by an ``openai``, ``httpx`` or ``aiohttp`` error, if any."""
    status: object = None
    if isinstance(exc, loaded_error_types("openai.APIStatusError")):
        status = getattr(exc, "status_code", None)
    elif isinstance(exc, loaded_error_types(*_STATUS_ERRORS)):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    elif isinstance(exc, loaded_error_types("aiohttp.ClientResponseError")):
        status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def is_rate_limited(exc: BaseException) -> bool:
    """Whether ``exc`` is the service saying "too many requests" (HTTP 429)."""
    return (
        isinstance(exc, loaded_error_types("openai.RateLimitError")) or status_code_of(exc) == 429
    )


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: 408/409/429, 5xx, timeouts and transport errors.

    Other 4xx statuses (bad request, authentication, not found...) fail fast.
    """
    status = status_code_of(exc)
    if status is not None:
        return status >= 500 or status in _RETRYABLE_STATUSES
    return isinstance(exc, (TimeoutError, *loaded_error_types(*_CONNECTION_ERRORS)))


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):  # a plain, case-sensitive mapping
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return None if value is None else str(value)


def retry_after_seconds(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds the service asked to wait, from ``retry-after-ms`` or ``retry-after`` headers.

    The headers are read from ``exc.response.headers`` (``openai``, ``httpx``) or
    ``exc.headers`` (``aiohttp``). ``retry-after`` may be seconds or an HTTP date.

    Args:
        exc: The failed attempt's exception.
        now: Current Unix time, for HTTP dates (``time.time()`` by default).

    Returns:
        A non-negative number of seconds, or ``None`` when no usable header is present.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if headers is None:
        return None
    milliseconds = _header(headers, "retry-after-ms")
    if milliseconds is not None:
        with_ms = _finite(milliseconds)
        if with_ms is not None:
            return max(0.0, with_ms / 1000.0)
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def backoff_delay(
    attempt: int,
    retry: RetryConfig,
    *,
    retry_after: float | None = None,
    elapsed: float = 0.0,
    jitter: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential backoff ``initial_backoff * 2**(attempt-1)`` with "equal jitter" (between half
    and all of it), at least ``retry_after``, capped by ``max_backoff`` and by the time left
    of ``max_total_seconds``.

    Args:
        attempt: The attempt that just failed, starting at 1.
        retry: The retry policy.
        retry_after: Seconds the service asked to wait, if it did.
        elapsed: Seconds spent on this request so far.
        jitter: A number in ``[0, 1)``; random when ``None``.
    """
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    base = min(retry.max_backoff, retry.initial_backoff * 2.0**exponent)
    spread = random.random() if jitter is None else jitter
    delay = base * (0.5 + 0.5 * spread)
    if retry_after is not None:
        delay = max(delay, retry_after)
    time_left = max(0.0, retry.max_total_seconds - elapsed)
    return min(delay, retry.max_backoff, time_left)


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


def _checked_vectors(vectors: Vectors, expected: int) -> Vectors:
    if len(vectors) != expected:
        raise EmbeddingError(
            f"the embedding model returned {len(vectors)} vectors for {expected} texts; "
            "check that the model and endpoint are an embeddings API"
        )
    return vectors


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Attempts:
    count: int = 0


# -- the wrapper ---------------------------------------------------------------------------


class RateLimitedEmbeddings(Embeddings):
    """Embed through a shared per-service limiter, concurrently, with retries; order preserved.

    Build the inner model without its own retries (``OpenAIEmbeddings(max_retries=0)``) so
    that this wrapper is the only retry layer, and with a chunk size of at least
    ``batch_size`` so that one sub-batch is one request.

    Args:
        inner: The embeddings model that makes the actual requests.
        limiter: The service's shared limiter (concurrency, requests and tokens per minute).
        batch_size: Texts per request.
        retry: Retry policy; ``RetryConfig()`` by default.
        request_timeout: Seconds before one attempt is abandoned and retried (async only;
            sync calls rely on the inner client's timeout). ``None``: no limit.
    """

    def __init__(
        self,
        inner: Embeddings,
        *,
        limiter: ServiceLimiter,
        batch_size: int = 16,
        retry: RetryConfig | None = None,
        request_timeout: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1; got {batch_size}")
        if request_timeout is not None and request_timeout <= 0:
            raise ConfigurationError(f"request_timeout must be positive; got {request_timeout}")
        self.inner = inner
        self.limiter = limiter
        self.batch_size = batch_size
        self.retry = retry or RetryConfig()
        self.request_timeout = request_timeout
        self._stats = _Stats()
        # Models whose queries embed as documents get concurrent queries coalesced.
        self._coalescers: LoopBound[QueryCoalescer] | None = None
        if getattr(type(inner), "queries_embed_as_documents", False):
            self._coalescers = LoopBound(
                lambda: QueryCoalescer(self._aembed_query_batch, self.batch_size)
            )
        self._pace_lock = threading.Lock()
        self._sync_ready_at = 0.0

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation: ``requests``, ``retries``, ``rate_limited``, ``failures``."""
        return asdict(self._stats)

    # -- async (the real implementation) -------------------------------------------------

    async def aembed_documents(
        self,
        texts: list[str],
        *,
        sources: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - house style: long coroutines take it
    ) -> list[list[float]]:
        """Embed ``texts`` in concurrent sub-batches; vectors come back in input order.

        Args:
            texts: The texts to embed.
            sources: One ``source`` per text, named in the error when texts fail.
            timeout: Seconds for the whole call; ``None``: no limit.

        Returns:
            One vector per text, in the order of ``texts``.

        Raises:
            EmbeddingError: A sub-batch failed for good (the other ones are cancelled) or
                ``timeout`` expired; it tells how many texts failed and from which sources.
            ConfigurationError: ``sources`` does not have one entry per text.
        """
        texts = list(texts)
        known_sources = _checked_sources(texts, sources)
        plan = plan_batches(len(texts), self.batch_size)
        results: list[Vectors | None] = [None] * len(plan)
        pending = iter(range(len(plan)))

        async def worker() -> None:
            for index in pending:
                start, stop = plan[index]
                batch = texts[start:stop]
                call = partial(self.inner.aembed_documents, batch)
                vectors = await self._with_retry(
                    call, size=len(batch), tokens=estimate_tokens(batch)
                )
                results[index] = _checked_vectors(vectors, len(batch))

        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for number in range(min(self.limiter.max_concurrency, len(plan))):
                    group.create_task(worker(), name=f"{WORKER_TASK_PREFIX}{number}")
        except (ExceptionGroup, TimeoutError) as exc:
            cause = None if isinstance(exc, TimeoutError) else first_error(exc)
            failed = _unfinished(plan, results)
            raise self._error(
                cause,
                failed=len(failed),
                total=len(texts),
                sources=_distinct(known_sources[i] for i in failed) if known_sources else (),
                timeout=timeout,
            ) from (cause or exc)
        return [vector for part in results if part is not None for vector in part]

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query through the same limiter and retry policy.

        Raises:
            EmbeddingError: The query could not be embedded, even after retries.
        """
        with QUERY_LATENCY.labels(stage="embed").time():
            if self._coalescers is not None:  # with the queries of other callers, if any
                return await self._coalescers.get().embed(text)
            try:
                return await self._with_retry(
                    partial(self.inner.aembed_query, text), size=1, tokens=estimate_tokens([text])
                )
            except Exception as exc:
                raise self._error(exc, failed=1, total=1, sources=()) from exc

    async def _aembed_query_batch(self, texts: list[str]) -> list[list[float]]:
        """Queries embedded as one request (they embed as documents: see ``__init__``)."""
        try:
            vectors = await self._with_retry(
                partial(self.inner.aembed_documents, texts),
                size=len(texts),
                tokens=estimate_tokens(texts),
            )
            return _checked_vectors(vectors, len(texts))
        except Exception as exc:
            raise self._error(exc, failed=len(texts), total=len(texts), sources=()) from exc

    async def _with_retry(self, call: Callable[[], Awaitable[T]], *, size: int, tokens: int) -> T:
        attempts = _Attempts()
        with span("embed_batch", batch_size=size, tokens=tokens) as batch_span:
            try:
                attempt = partial(self._attempt, call, size, tokens, attempts)
                return await AsyncRetrying(**self._policy())(attempt)
            except Exception:
                self._stats.failures += 1
                raise
            finally:
                batch_span.set_attribute("attempts", attempts.count)

    async def _attempt(
        self, call: Callable[[], Awaitable[T]], size: int, tokens: int, attempts: _Attempts
    ) -> T:
        attempts.count += 1
        with span("embed", batch_size=size, attempt=attempts.count):
            async with self.limiter.slot(tokens):
                self._stats.requests += 1
                try:
                    async with asyncio.timeout(self.request_timeout):
                        result = await call()
                except Exception as exc:
                    self._record_failure(exc)
                    raise
            self._record_success()
            return result

    # -- sync twin -----------------------------------------------------------------------

    def embed_documents(
        self, texts: list[str], *, sources: Sequence[str] | None = None
    ) -> list[list[float]]:
        """Embed ``texts`` in sequential sub-batches, paced to the service's rate limit.

        Args:
            texts: The texts to embed.
            sources: One ``source`` per text, named in the error when texts fail.

        Raises:
            EmbeddingError: A sub-batch failed for good; the remaining texts are not sent.
            ConfigurationError: ``sources`` does not have one entry per text.
        """
        texts = list(texts)
        known_sources = _checked_sources(texts, sources)
        vectors: Vectors = []
        for start, stop in plan_batches(len(texts), self.batch_size):
            batch = texts[start:stop]
            call = partial(self.inner.embed_documents, batch)
            try:
                part = self._with_retry_sync(call, size=len(batch), tokens=estimate_tokens(batch))
                vectors.extend(_checked_vectors(part, len(batch)))
            except Exception as exc:
                raise self._error(
                    exc,
                    failed=len(texts) - start,
                    total=len(texts),
                    sources=_distinct(known_sources[start:]),
                ) from exc
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the same retry policy and pacing.

        Raises:
            EmbeddingError: The query could not be embedded, even after retries.
        """
        try:
            return self._with_retry_sync(
                partial(self.inner.embed_query, text), size=1, tokens=estimate_tokens([text])
            )
        except Exception as exc:
            raise self._error(exc, failed=1, total=1, sources=()) from exc

    def _with_retry_sync(self, call: Callable[[], T], *, size: int, tokens: int) -> T:
        attempts = _Attempts()
        with span("embed_batch", batch_size=size, tokens=tokens) as batch_span:
            try:
                attempt = partial(self._attempt_sync, call, size, tokens, attempts)
                return Retrying(**self._policy())(attempt)
            except Exception:
                self._stats.failures += 1
                raise
            finally:
                batch_span.set_attribute("attempts", attempts.count)

    def _attempt_sync(
        self, call: Callable[[], T], size: int, tokens: int, attempts: _Attempts
    ) -> T:
        attempts.count += 1
        self._pace(tokens)
        with span("embed", batch_size=size, attempt=attempts.count):
            self._stats.requests += 1
            try:
                result = call()
            except Exception as exc:
                self._record_failure(exc)
                raise
            self._record_success()
            return result

    def _pace(self, tokens: int) -> None:
        """Sleep until this thread's request fits the request and token rates."""
        interval = min_request_interval(self.limiter.rate_limit, tokens)
        with self._pace_lock:
            now = time.monotonic()
            start = max(now, self._sync_ready_at)
            self._sync_ready_at = start + interval
        if start > now:
            time.sleep(start - now)

    # -- shared ----------------------------------------------------------------------------

    def _policy(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retry.max_attempts)
            | stop_after_delay(self.retry.max_total_seconds),
            "wait": self._wait,
            "retry": retry_if_exception(is_retryable),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return backoff_delay(
            state.attempt_number,
            self.retry,
            retry_after=None if exc is None else retry_after_seconds(exc),
            elapsed=state.seconds_since_start or 0.0,
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        self._stats.retries += 1
        self._count("retry")
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        get_logger(__name__).warning(
            "embedding request failed; retrying",
            service=self.limiter.name,
            attempt=state.attempt_number,
            delay=round(delay, 3),
            error=f"{type(exc).__name__}: {exc}",
        )

    def _record_success(self) -> None:
        self.limiter.record_success()
        self._count("ok")

    def _record_failure(self, exc: BaseException) -> None:
        if is_rate_limited(exc):
            self._stats.rate_limited += 1
            self.limiter.record_rate_limited()
            self._count("429")
        else:
            self._count("error")

    def _count(self, outcome: str) -> None:
        provider = provider_of(self.limiter.name)
        EMBEDDING_REQUESTS.labels(provider=provider, outcome=outcome).inc()

    def _error(
        self,
        cause: BaseException | None,
        *,
        failed: int,
        total: int,
        sources: Sequence[str],
        timeout: float | None = None,
    ) -> EmbeddingError:
        service = self.limiter.name
        if cause is None:
            message = (
                f"embedding {total} text(s) with {service} did not finish within {timeout} s; "
                "pass a larger timeout, or raise the service's rate limit or concurrency "
                "(RAG_EMBEDDING_RPM, RAG_EMBEDDING_CONCURRENCY) if it allows more"
            )
        elif isinstance(cause, EmbeddingError):
            message = str(cause)
        elif is_retryable(cause):
            message = (
                f"{service} kept failing after up to {self.retry.max_attempts} attempt(s) "
                f"({type(cause).__name__}: {cause}). Check the service's status and quota, "
                "lower RAG_EMBEDDING_CONCURRENCY or RAG_EMBEDDING_RPM, and run again"
            )
        else:
            message = (
                f"{service} rejected the request ({type(cause).__name__}: {cause}). Check the "
                "model name, API key and base URL (RAG_EMBEDDING_MODEL, OPENAI_API_KEY, "
                "OPENAI_BASE_URL); retrying will not help"
            )
        return EmbeddingError(message, failed_count=failed, sources=sources)
