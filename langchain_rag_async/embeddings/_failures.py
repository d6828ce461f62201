"""What a failed embedding request means, and how long to wait before the next attempt.

Retryable or not, rate limited, a bad response, the wait the service asked for, backoff,
and what an answer's ``x-ratelimit-*`` headers say about the service's limit.

Pure helpers (no I/O) shared by the async and sync paths of ``RateLimitedEmbeddings``.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from langchain_rag_async.config import RetryConfig
from langchain_rag_async.errors import EmbeddingResponseError
from langchain_rag_async.limits import LimitAnswer

__all__ = (
    "backoff_delay",
    "failure_kind",
    "is_bad_response",
    "is_rate_limited",
    "is_retryable",
    "limit_answer",
    "limit_answer_of",
    "loaded_error_types",
    "parse_duration",
    "retry_after_seconds",
    "status_code_of",
)

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_MAX_EXPONENT = 32


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
# An answer that arrived but cannot be read: a body cut short or not JSON (the ``openai``
# client lets ``json.JSONDecodeError`` through), or one its strict validation refused.
_BAD_RESPONSE_ERRORS = ("openai.APIResponseValidationError",)


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


def is_quota_exhausted(exc: BaseException) -> bool:
    """Whether a 429 says the account's quota is spent (OpenAI's ``insufficient_quota``).

    Unlike a rate limit, waiting does not help: no retry.
    """
    return is_rate_limited(exc) and getattr(exc, "code", None) == "insufficient_quota"


def is_bad_response(exc: BaseException) -> bool:
    """Whether ``exc`` says the service answered with something unusable.

    Vectors that failed validation (:class:`EmbeddingResponseError`), a body that is not
    JSON (``json.JSONDecodeError``, which the ``openai`` client lets through), or one its
    strict response validation refused.
    """
    return isinstance(
        exc,
        (EmbeddingResponseError, json.JSONDecodeError, *loaded_error_types(*_BAD_RESPONSE_ERRORS)),
    )


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed.

    408/409/429, 5xx, timeouts, transport errors (resets, bodies cut short) and bad
    responses (see :func:`is_bad_response`). Other 4xx statuses (bad request,
    authentication, not found...) fail fast.
    """
    status = status_code_of(exc)
    if status is not None:
        if is_quota_exhausted(exc):
            return False
        return status >= 500 or status in _RETRYABLE_STATUSES
    return is_bad_response(exc) or isinstance(
        exc, (TimeoutError, *loaded_error_types(*_CONNECTION_ERRORS))
    )


def failure_kind(exc: BaseException) -> str:
    """A short name of the kind of failure, for the retry budget's statistics.

    The HTTP status, ``timeout``, ``bad_response``, ``connection``, or the exception's type.
    """
    status = status_code_of(exc)
    if status is not None:
        return str(status)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if is_bad_response(exc):
        return "bad_response"
    if isinstance(exc, loaded_error_types(*_CONNECTION_ERRORS)):
        return "connection"
    return type(exc).__name__


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):  # a plain, case-sensitive mapping
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return None if value is None else str(value)


def _headers_of(exc: BaseException) -> Any:
    """``exc.response.headers`` (``openai``, ``httpx``) or ``exc.headers`` (``aiohttp``)."""
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None) or getattr(exc, "headers", None)


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
    headers = _headers_of(exc)
    if headers is None:
        return None
    return _retry_after(headers, now)


def _retry_after(headers: Any, now: float | None = None) -> float | None:
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Seconds in a duration as OpenAI's ``x-ratelimit-reset-*`` headers write it.

    Go-style durations (``"20ms"``, ``"1s"``, ``"8.64s"``, ``"6m0s"``, ``"1h2m3.5s"``) or a
    plain number of seconds (``"1.5"``). ``None`` for anything else.
    """
    text = text.strip()
    plain = _finite(text)
    if plain is not None:
        return plain if plain >= 0 else None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def _count(headers: Any, name: str) -> int | None:
    value = _header(headers, name)
    number = None if value is None else _finite(value)
    return None if number is None or number < 0 else int(number)


def limit_answer(headers: Any, *, refused: bool = False) -> LimitAnswer | None:
    """What a response's headers say about the request limit (``None``: nothing).

    Reads ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
    ``x-ratelimit-reset-requests`` (see :func:`parse_duration`) and ``retry-after-ms`` /
    ``retry-after``.

    Args:
        headers: The response's headers (any mapping with ``get``; names in lower case).
        refused: The response was a 429.
    """
    reset_text = _header(headers, "x-ratelimit-reset-requests")
    answer = LimitAnswer(
        limit=_count(headers, "x-ratelimit-limit-requests"),
        remaining=_count(headers, "x-ratelimit-remaining-requests"),
        reset=None if reset_text is None else parse_duration(reset_text),
        retry_after=_retry_after(headers),
        refused=refused,
    )
    if answer.limit is None and answer.retry_after is None and not refused:
        return None
    return answer


def limit_answer_of(exc: BaseException) -> LimitAnswer | None:
    """What a failed attempt's response said about the request limit (429s only)."""
    headers = _headers_of(exc)
    if headers is None or not is_rate_limited(exc):
        return None
    return limit_answer(headers, refused=True)


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

    ``retry_after`` when the service gave one (plus up to 10 % jitter), else exponential
    backoff ``initial_backoff * 2**(attempt-1)`` with "equal jitter" (between half and all
    of it); capped by ``max_backoff`` and by the time left of ``max_total_seconds``.

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
        # The service said when: wait that long (plus up to 10 %, so that the clients it
        # refused together do not all come back at the same instant), as the openai client
        # does, rather than at least our own exponential backoff.
        delay = retry_after * (1.0 + 0.1 * spread)
    time_left = max(0.0, retry.max_total_seconds - elapsed)
    return min(delay, retry.max_backoff, time_left)
