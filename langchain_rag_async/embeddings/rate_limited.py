"""Concurrent, rate-limited, retrying embeddings: wraps any LangChain ``Embeddings``.

Texts are cut into sub-batches that are sent concurrently through the shared
:class:`~langchain_rag_async.limits.ServiceLimiter` of the service, each attempt under an
adaptive deadline, every response validated, retried with exponential backoff and jitter
(honouring ``Retry-After``) within a run-wide retry budget, and put back in input order.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.aio import LoopBound, first_error
from langchain_rag_async.config import RetryConfig
from langchain_rag_async.embeddings._batches import (
    BatchCallback,
    Vectors,
    VectorsCall,
    _Attempts,
    _checked_sources,
    _distinct,
    _embed_then,
    _Failure,
    _kept,
    _run_thens,
    _Stats,
    _unfinished,
    plan_batches,
)
from langchain_rag_async.embeddings._coalesce import (
    QueryCoalescer,
    Then,
    queries_embed_as_documents,
)
from langchain_rag_async.embeddings._failures import (
    backoff_delay,
    failure_kind,
    is_bad_response,
    is_rate_limited,
    is_retryable,
    limit_answer,
    limit_answer_of,
    retry_after_seconds,
    status_code_of,
)
from langchain_rag_async.embeddings._resilience import (
    AdaptiveDeadline,
    RetryBudget,
    checked_vectors,
)
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingResponseError,
    EmbeddingTimeoutError,
)
from langchain_rag_async.limits import ServiceLimiter, min_request_interval
from langchain_rag_async.metrics import EMBEDDING_REQUESTS, QUERY_LATENCY, provider_of
from langchain_rag_async.observability import get_logger, span

__all__ = (
    "WORKER_TASK_PREFIX",
    "RateLimitedEmbeddings",
    "backoff_delay",
    "failure_kind",
    "is_rate_limited",
    "is_retryable",
    "plan_batches",
    "retry_after_seconds",
    "status_code_of",
)

T = TypeVar("T")
WORKER_TASK_PREFIX = "rag-embed-worker-"
"""Name prefix of the tasks that send sub-batches (handy to find leftovers in tests)."""
PACING_WINDOW = 10.0
"""Seconds since the service's last success within which a 429 is pacing (a free retry)."""


# -- the wrapper ---------------------------------------------------------------------------


class RateLimitedEmbeddings(Embeddings):
    """Embed through a shared per-service limiter, concurrently, with retries; order preserved.

    Build the inner model without its own retries (``OpenAIEmbeddings(max_retries=0)``) so
    that this wrapper is the only retry layer, and with a chunk size of at least
    ``batch_size`` so that one sub-batch is one request.

    What it does against a faulty service (the rules are those of :class:`RetryConfig`):

    - **Validation.** Every response is checked before use: one vector per text, all of
      one dimension, the same as every earlier response of this wrapper, every number
      finite. A bad response (or a body that is not JSON) is a retryable
      :class:`~langchain_rag_async.errors.EmbeddingResponseError`; nothing from it is
      returned.
    - **Adaptive deadline (async).** An attempt is abandoned (and retried) after
      ``attempt_timeout_multiplier`` times the ``attempt_timeout_quantile`` of the latencies
      of the last 128 successful attempts, at least ``min_attempt_timeout`` and at most
      ``request_timeout``; doubled for each earlier timeout of the same sub-batch. Before
      5 successes it is ``request_timeout``, and attempts in flight get the learnt deadline
      as soon as there is one. So a hung request costs a few typical latencies, not a
      fixed 60 s. Abandoned attempts are cancelled (their connection is closed), never
      left running.
    - **Retry budget per run.** Retries come from one budget shared by every request of
      this wrapper (``retry_budget_min + retry_budget_ratio * first attempts``); a
      sub-batch also stops after ``max_attempts`` attempts, ``max_total_seconds``, or once
      its failure streak is implausible for a transient fault at the failure rate observed
      (``persistent_probability``): a transient mix keeps being retried, a persistent
      fault fails after a few attempts, and a dead service is not retried forever. A 429
      while the service still admits other requests (one succeeded in the last
      :data:`PACING_WINDOW` seconds) is pacing, not a fault: its retry is free, so a run
      that is merely faster than an unstated limit loses no file. OpenAI's
      ``insufficient_quota`` 429 is not retried at all.
    - **Failures are precise.** A sub-batch that fails for good does not cancel the
      others; the error names the texts and sources of the failed sub-batches only.
    - **Limits stated by the service are paced.** The ``x-ratelimit-*-requests`` and
      ``Retry-After`` headers of every answer go to the limiter
      (:meth:`~langchain_rag_async.limits.ServiceLimiter.observe`), which paces the next
      requests by them. Those of a 429 are always read; those of successful answers when
      the inner model has an ``http_async_client`` with httpx ``event_hooks`` (as
      ``OpenAIEmbeddings(http_async_client=openai.DefaultAsyncHttpxClient())``): a
      response hook is added to it.

    Args:
        inner: The embeddings model that makes the actual requests.
        limiter: The service's shared limiter (concurrency, requests and tokens per minute).
        batch_size: Texts per request.
        retry: Retry policy; ``RetryConfig()`` by default.
        request_timeout: Longest an attempt may take, in seconds (the cap of the adaptive
            deadline; async only: sync calls rely on the inner client's timeout).
            ``None``: no cap.
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
        self._failure_streak = 0  # failures in a row, over all requests (reset on a success)
        self._last_success = -math.inf  # time.monotonic() of the last successful request
        self._budget = RetryBudget(
            ratio=self.retry.retry_budget_ratio, minimum=self.retry.retry_budget_min
        )
        self._deadline = AdaptiveDeadline(self.retry, request_timeout)
        self._dimension: int | None = None
        # Models whose queries embed as documents get concurrent queries coalesced: up
        # to the service's concurrency limit of batches in flight at once.
        self._coalescers: LoopBound[QueryCoalescer] | None = None
        if queries_embed_as_documents(inner):
            self._coalescers = LoopBound(
                lambda: QueryCoalescer(
                    self._aembed_query_batch,
                    self.batch_size,
                    max_flushes=lambda: self.limiter.concurrency_limit,
                )
            )
        self._pace_lock = threading.Lock()
        self._sync_ready_at = 0.0
        self._watch_responses(inner)

    def _watch_responses(self, inner: Embeddings) -> None:
        """Add :meth:`_observe_response` to the response hooks of the inner async client."""
        hooks = getattr(getattr(inner, "http_async_client", None), "event_hooks", None)
        if isinstance(hooks, dict) and isinstance(hooks.get("response"), list):
            if self._observe_response not in hooks["response"]:
                hooks["response"].append(self._observe_response)

    async def _observe_response(self, response: Any) -> None:
        """An httpx response hook: what the answer says about the limit, to the limiter."""
        status = getattr(response, "status_code", None)
        answer = limit_answer(getattr(response, "headers", {}), refused=status == 429)
        if answer is not None:
            self.limiter.observe(answer)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation.

        ``requests``, ``retries``, ``rate_limited``, ``failures`` (sub-batches that failed
        for good), ``timeouts`` (attempts past their deadline) and ``bad_responses``.
        """
        return asdict(self._stats)

    @property
    def attempt_deadline(self) -> float | None:
        """Seconds a new attempt may take now (the adaptive deadline; ``None``: no limit)."""
        return self._deadline.current()

    # -- async (the real implementation) -------------------------------------------------

    async def aembed_documents(
        self,
        texts: list[str],
        *,
        sources: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - house style: long coroutines take it
        on_batch: BatchCallback | None = None,
    ) -> list[list[float]]:
        """Embed ``texts`` in concurrent sub-batches; vectors come back in input order.

        Args:
            texts: The texts to embed.
            sources: One ``source`` per text, named in the error when texts fail.
            timeout: Seconds for the whole call; ``None``: no limit.
            on_batch: Awaited with (index of the sub-batch's first text, its vectors) as
                each sub-batch arrives, validated, while its request still holds its slot:
                a durable store (the embedding cache) keeps the vectors before another
                request is sent, so a crash throws away at most the requests in flight.
                Its errors are logged and otherwise ignored.

        Returns:
            One vector per text, in the order of ``texts``.

        Raises:
            EmbeddingError: Sub-batches failed for good (the others still finish) or
                ``timeout`` expired; it tells how many texts failed and from which sources.
            ConfigurationError: ``sources`` does not have one entry per text.
        """
        texts = list(texts)
        known_sources = _checked_sources(texts, sources)
        plan = plan_batches(len(texts), self.batch_size)
        results: list[Vectors | None] = [None] * len(plan)
        failures: dict[int, _Failure] = {}
        pending = iter(range(len(plan)))

        async def worker() -> None:
            for index in pending:
                start, stop = plan[index]
                batch = texts[start:stop]
                attempts = _Attempts()
                keep = None if on_batch is None else partial(on_batch, start)
                try:
                    results[index] = await self._with_retry(
                        partial(self.inner.aembed_documents, batch),
                        size=len(batch),
                        tokens=estimate_tokens(batch),
                        attempts=attempts,
                        keep=keep,
                    )
                except Exception as exc:  # this sub-batch alone fails; the others go on
                    failures[index] = _Failure(exc, attempts)

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
        if failures:
            first = failures[min(failures)]
            failed = _unfinished(plan, results)
            raise self._error(
                first.error,
                failed=len(failed),
                total=len(texts),
                sources=_distinct(known_sources[i] for i in failed) if known_sources else (),
                attempts=first.attempts,
            ) from first.error
        return [vector for part in results if part is not None for vector in part]

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query through the same limiter and retry policy.

        Raises:
            EmbeddingError: The query could not be embedded, even after retries.
        """
        with QUERY_LATENCY.labels(stage="embed").time():
            if self._coalescers is not None:  # with the queries of other callers, if any
                vector: list[float] = await self._coalescers.get().embed(text)
                return vector
            attempts = _Attempts()

            async def one() -> Vectors:
                return [await self.inner.aembed_query(text)]

            try:
                vectors = await self._with_retry(
                    one, size=1, tokens=estimate_tokens([text]), attempts=attempts
                )
            except Exception as exc:
                raise self._error(exc, failed=1, total=1, sources=(), attempts=attempts) from exc
            return vectors[0]

    async def aembed_query_then(self, text: str, then: Callable[[list[float]], T]) -> T:
        """Embed one query and run ``then`` (a blocking search) on its vector.

        Coalesced queries (a model whose queries embed as documents) run their steps
        together: with a model that computes in an executor thread anyway
        (``embeds_in_executor``: the local model), in the executor call that makes their
        vectors (a query costs one executor call, not two); with a remote one (OpenAI),
        in one executor call per batch once its request is answered. Otherwise the query
        is embedded as by :meth:`aembed_query` and ``then`` runs in an executor. Limiter,
        retries and validation are those of :meth:`aembed_query`; an exception of
        ``then`` is raised as it is, to its caller alone, never retried.

        Raises:
            EmbeddingError: The query could not be embedded, even after retries.
        """
        if self._coalescers is not None:
            with QUERY_LATENCY.labels(stage="embed").time():
                result: T = await self._coalescers.get().embed(text, then)
            return result
        vector = await self.aembed_query(text)
        return await run_in_executor(None, then, vector)

    async def _aembed_query_batch(
        self, texts: list[str], thens: Sequence[Then | None] = ()
    ) -> list[Any]:
        """Queries embedded as one request (they embed as documents: see ``__init__``).

        Each query's ``then`` (if any) runs on its vector; in the model's own executor call
        when the model computes in one (see :meth:`aembed_query_then`).
        """
        attempts = _Attempts()
        outcomes: list[Any] = []
        call: VectorsCall = partial(self.inner.aembed_documents, texts)
        if any(thens) and getattr(type(self.inner), "embeds_in_executor", False):
            dimension = self._dimension

            async def call() -> Vectors:
                fused = partial(_embed_then, self.inner, texts, thens, dimension)
                vectors, found = await run_in_executor(None, fused)
                outcomes[:] = found
                return vectors

        try:
            vectors = await self._with_retry(
                call, size=len(texts), tokens=estimate_tokens(texts), attempts=attempts
            )
        except Exception as exc:
            raise self._error(
                exc, failed=len(texts), total=len(texts), sources=(), attempts=attempts
            ) from exc
        if not any(thens):
            return vectors
        if not outcomes:  # a model with its own async I/O: the steps in one executor call
            outcomes = await run_in_executor(None, _run_thens, thens, vectors)
        return outcomes

    async def _with_retry(
        self,
        call: VectorsCall,
        *,
        size: int,
        tokens: int,
        attempts: _Attempts,
        keep: Callable[[Vectors], Awaitable[None]] | None = None,
    ) -> Vectors:
        with span("embed_batch", batch_size=size, tokens=tokens) as batch_span:
            try:
                attempt = partial(self._attempt, call, size, tokens, attempts, keep)
                return await AsyncRetrying(**self._policy(attempts))(attempt)
            except Exception:
                self._stats.failures += 1
                raise
            finally:
                batch_span.set_attributes(
                    {"attempts": attempts.count, "retries": max(0, attempts.count - 1)}
                )

    async def _attempt(
        self,
        call: VectorsCall,
        size: int,
        tokens: int,
        attempts: _Attempts,
        keep: Callable[[Vectors], Awaitable[None]] | None = None,
    ) -> Vectors:
        attempts.count += 1
        concurrency = self.limiter.concurrency_limit
        with span("embed", batch_size=size, attempt=attempts.count, concurrency=concurrency):
            async with self.limiter.slot(tokens):
                self._stats.requests += 1
                self._budget.record_attempt(first=attempts.count == 1)
                loop = asyncio.get_running_loop()
                started = loop.time()
                scope = asyncio.timeout(None)
                try:
                    async with scope:
                        with self._deadline.watch(scope, started, 2.0**attempts.timeouts):
                            raw = await call()
                    self.limiter.record_answered()
                    vectors = self._validated(raw, size)
                except TimeoutError as exc:
                    if not scope.expired():
                        self._record_failure(exc, attempts)
                        raise
                    attempts.timeouts += 1
                    waited = loop.time() - started
                    timed_out = TimeoutError(
                        f"no answer after {waited:.2f} s (the adaptive deadline, learnt from "
                        "recent latencies)"
                    )
                    self._record_failure(timed_out, attempts)
                    raise timed_out from None
                except Exception as exc:
                    self._record_failure(exc, attempts)
                    raise
                self._deadline.record(loop.time() - started)
                if keep is not None:
                    await _kept(keep, vectors)
            self._record_success()
            return vectors

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
            attempts = _Attempts()
            try:
                vectors.extend(
                    self._with_retry_sync(
                        call, size=len(batch), tokens=estimate_tokens(batch), attempts=attempts
                    )
                )
            except Exception as exc:
                raise self._error(
                    exc,
                    failed=len(texts) - start,
                    total=len(texts),
                    sources=_distinct(known_sources[start:]),
                    attempts=attempts,
                ) from exc
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the same retry policy and pacing.

        Raises:
            EmbeddingError: The query could not be embedded, even after retries.
        """
        attempts = _Attempts()
        try:
            return self._with_retry_sync(
                lambda: [self.inner.embed_query(text)],
                size=1,
                tokens=estimate_tokens([text]),
                attempts=attempts,
            )[0]
        except Exception as exc:
            raise self._error(exc, failed=1, total=1, sources=(), attempts=attempts) from exc

    def _with_retry_sync(
        self, call: Callable[[], Vectors], *, size: int, tokens: int, attempts: _Attempts
    ) -> Vectors:
        with span("embed_batch", batch_size=size, tokens=tokens) as batch_span:
            try:
                attempt = partial(self._attempt_sync, call, size, tokens, attempts)
                return Retrying(**self._policy(attempts))(attempt)
            except Exception:
                self._stats.failures += 1
                raise
            finally:
                batch_span.set_attribute("attempts", attempts.count)

    def _attempt_sync(
        self, call: Callable[[], Vectors], size: int, tokens: int, attempts: _Attempts
    ) -> Vectors:
        attempts.count += 1
        self._pace(tokens)
        with span("embed", batch_size=size, attempt=attempts.count):
            self._stats.requests += 1
            self._budget.record_attempt(first=attempts.count == 1)
            started = time.monotonic()
            try:
                vectors = self._validated(call(), size)
            except Exception as exc:
                self._record_failure(exc, attempts)
                raise
            self._deadline.record(time.monotonic() - started)
            self._record_success()
            return vectors

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

    def _validated(self, raw: object, expected: int) -> Vectors:
        """Check a response (see :func:`checked_vectors`); learn the dimension from it."""
        vectors, dimension = checked_vectors(raw, expected, self._dimension)
        if self._dimension is None:
            self._dimension = dimension
        return vectors

    def _policy(self, attempts: _Attempts) -> dict[str, Any]:
        return {
            "stop": partial(self._stop, attempts),
            "wait": self._wait,
            "retry": retry_if_exception(is_retryable),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def _stop(self, attempts: _Attempts, state: RetryCallState) -> bool:
        """Whether a request whose attempt failed with a retryable error gives up.

        Checked in order: ``max_attempts``, ``max_total_seconds``, an implausible failure
        streak (``persistent_probability``), then one retry is taken from the run's budget
        (none left: give up). The reason is kept for the error message.
        """
        count = state.attempt_number
        elapsed = state.seconds_since_start or 0.0
        retry = self.retry
        if count >= retry.max_attempts:
            attempts.gave_up = f"after {count} attempt(s), the most allowed"
        elif elapsed >= retry.max_total_seconds:
            attempts.gave_up = f"after {elapsed:.0f} s, the most allowed"
        elif self._budget.streak_likelihood(attempts.failures) < retry.persistent_probability:
            kinds = ", ".join(f"{k} x{n}" for k, n in Counter(attempts.failures).items())
            attempts.gave_up = (
                f"after {count} failed attempt(s) ({kinds}): a streak this long is "
                "implausible for faults as rare as in the rest of this run, so it looks "
                "persistent"
            )
        elif not self._pacing(state) and not self._budget.try_spend():
            attempts.gave_up = (
                f"after {count} attempt(s): the run's retry budget is spent "
                f"({self._budget.retries} retries for {self._budget.first_attempts} requests)"
            )
        return attempts.gave_up is not None

    def _pacing(self, state: RetryCallState) -> bool:
        """Whether the failed attempt was the service pacing us, so its retry is free.

        A 429 while the service still admits other requests (one succeeded within the
        last :data:`PACING_WINDOW` seconds) is back-pressure, not a fault: the limiter
        slows down and ``Retry-After`` is honoured, and spending the run's retry budget on
        it would fail files of a run that is merely fast. With no success for that long
        (a quota spent, a service refusing everyone), 429 retries spend the budget again.
        """
        exc = state.outcome.exception() if state.outcome is not None else None
        return (
            exc is not None
            and is_rate_limited(exc)
            and time.monotonic() - self._last_success < PACING_WINDOW
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        # The backoff grows with the service's failures in a row, not this request's: when
        # other requests succeed meanwhile, its failures were bad luck, not an overloaded
        # service, and waiting 16 s on the sixth try would only stall the run.
        return backoff_delay(
            min(state.attempt_number, self._failure_streak),
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
        self._failure_streak = 0
        self._last_success = time.monotonic()
        self.limiter.record_success()
        self._count("ok")

    def _record_failure(self, exc: BaseException, attempts: _Attempts) -> None:
        self._failure_streak += 1
        kind = failure_kind(exc)
        attempts.failures.append(kind)
        self._budget.record_failure(kind)
        if is_rate_limited(exc):
            self._stats.rate_limited += 1
            answer = limit_answer_of(exc)
            if answer is not None:
                self.limiter.observe(answer)
            self.limiter.record_rate_limited()
            self._count("429")
        elif isinstance(exc, TimeoutError):
            self._stats.timeouts += 1
            self._count("timeout")
        elif is_bad_response(exc):
            self._stats.bad_responses += 1
            self._count("bad_response")
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
        attempts: _Attempts | None = None,
    ) -> EmbeddingError:
        service = self.limiter.name
        error_type: type[EmbeddingError] = EmbeddingError
        if cause is None:
            error_type = EmbeddingTimeoutError
            message = (
                f"embedding {total} text(s) with {service} did not finish within {timeout} s; "
                "pass a larger timeout, or raise the service's rate limit or concurrency "
                "(RAG_EMBEDDING_RPM, RAG_EMBEDDING_CONCURRENCY) if it allows more"
            )
        elif isinstance(cause, EmbeddingError) and not is_bad_response(cause):
            message = str(cause)
        elif is_retryable(cause):
            if is_bad_response(cause):
                error_type = EmbeddingResponseError
            gave_up = attempts.gave_up if attempts is not None else None
            message = (
                f"{service} kept failing ({type(cause).__name__}: {cause}); gave up "
                f"{gave_up or f'after up to {self.retry.max_attempts} attempt(s)'}. Check the "
                "service's status and quota, lower RAG_EMBEDDING_CONCURRENCY or "
                "RAG_EMBEDDING_RPM, and run again"
            )
        else:
            message = (
                f"{service} rejected the request ({type(cause).__name__}: {cause}). Check the "
                "model name, API key and base URL (RAG_EMBEDDING_MODEL, OPENAI_API_KEY, "
                "OPENAI_BASE_URL); retrying will not help"
            )
        if error_type is EmbeddingTimeoutError:
            return EmbeddingTimeoutError(
                message, timeout=timeout, failed_count=failed, sources=sources
            )
        return error_type(message, failed_count=failed, sources=sources)
