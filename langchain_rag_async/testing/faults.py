"""Seeded random service faults and strict rate limits for the fake OpenAI server.

A :class:`FaultMix` gives, per ``POST /v1/embeddings`` request, the probability of each
fault kind (HTTP errors, hangs, connection resets, broken JSON, bad vectors), plus
:class:`PersistentFault` markers: any request whose input contains the marker always fails.
A :class:`SlidingWindowLimit` admits at most N requests in any sliding window of W seconds
and describes itself in OpenAI's ``x-ratelimit-*`` headers (:class:`SlidingWindowLog`).
The pure helpers here decide and shape the faults; the server only applies them.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "HTTP_FAULTS",
    "VECTOR_FAULTS",
    "FaultKind",
    "FaultMix",
    "PersistentFault",
    "SlidingWindowLimit",
    "SlidingWindowLog",
    "WindowDecision",
    "corrupt_vectors",
    "draw_fault",
    "format_reset",
)

FaultKind = Literal[
    "429",
    "429_no_retry_after",
    "500",
    "503",
    "hang",
    "reset",
    "truncated",
    "malformed",
    "wrong_dimension",
    "nan",
    "missing_vectors",
    "persistent",
]

# The FaultMix field of each random fault kind, in the order they are drawn.
_FIELD_OF_KIND: dict[FaultKind, str] = {
    "429": "rate_limited",
    "429_no_retry_after": "rate_limited_no_header",
    "500": "server_error",
    "503": "unavailable",
    "hang": "hang",
    "reset": "reset",
    "truncated": "truncated",
    "malformed": "malformed",
    "wrong_dimension": "wrong_dimension",
    "nan": "nan",
    "missing_vectors": "missing_vectors",
}
HTTP_FAULTS: frozenset[FaultKind] = frozenset({"429", "429_no_retry_after", "500", "503"})
"""Faults answered with an HTTP error status."""
VECTOR_FAULTS: frozenset[FaultKind] = frozenset({"wrong_dimension", "nan", "missing_vectors"})
"""Faults answered with a well-formed response that holds bad vectors."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PersistentFault:
    """Every embeddings request whose input contains ``marker`` fails with ``status``.

    Attributes:
        marker: A substring of a text (e.g. a word planted in one file).
        status: The HTTP error status answered (400-599).
    """

    marker: str
    status: int = 500

    def __post_init__(self) -> None:
        if not self.marker:
            raise ConfigurationError("a persistent fault needs a non-empty marker")
        if not 400 <= self.status <= 599:
            raise ConfigurationError(f"status must be an HTTP error status; got {self.status}")


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultMix:
    """Probabilities of random faults per embeddings request, drawn from a seeded generator.

    At most one fault is drawn per request; the probabilities must add up to at most 1.

    Attributes:
        rate_limited: 429 with ``Retry-After`` (:attr:`retry_after` seconds).
        rate_limited_no_header: 429 without ``Retry-After``.
        server_error: 500.
        unavailable: 503.
        hang: Never answer (until the client gives up or the server stops).
        reset: Abort the connection without answering.
        truncated: Send the headers and half of the JSON body, then abort the connection.
        malformed: A complete 200 response whose body is not valid JSON.
        wrong_dimension: A 200 response whose last vector is one number short.
        nan: A 200 response whose last vector holds a NaN.
        missing_vectors: A 200 response with one vector fewer than the texts.
        retry_after: Seconds sent in ``Retry-After`` with :attr:`rate_limited`.
        seed: Seed of the generator (the draws follow the order requests arrive in).
        persistent: Markers that always fail, checked before any random fault.
    """

    rate_limited: float = 0.0
    rate_limited_no_header: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    hang: float = 0.0
    reset: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    wrong_dimension: float = 0.0
    nan: float = 0.0
    missing_vectors: float = 0.0
    retry_after: float = 0.2
    seed: int = 0
    persistent: tuple[PersistentFault, ...] = ()

    def __post_init__(self) -> None:
        for name in _FIELD_OF_KIND.values():
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigurationError(f"{name} must be a probability in [0, 1]; got {value}")
        if self.total > 1.0 + 1e-9:
            raise ConfigurationError(f"the fault probabilities add up to {self.total}, above 1")
        if not (math.isfinite(self.retry_after) and self.retry_after >= 0):
            raise ConfigurationError(f"retry_after must be >= 0; got {self.retry_after}")

    @property
    def total(self) -> float:
        """Probability that a request gets a random fault."""
        return float(sum(getattr(self, name) for name in _FIELD_OF_KIND.values()))

    @classmethod
    def every_kind(cls, probability: float, *, seed: int = 0, **overrides: Any) -> FaultMix:
        """A mix with ``probability`` for each of the eleven random fault kinds.

        Args:
            probability: Probability of each kind (at most 1/11).
            seed: Seed of the generator.
            **overrides: Other fields to set.
        """
        values: dict[str, Any] = dict.fromkeys(_FIELD_OF_KIND.values(), probability)
        values.update(overrides)
        return cls(seed=seed, **values)

    def describe(self) -> str:
        """The non-zero probabilities as text, e.g. ``"429 20%, 500 5%, hang 2%"``."""
        parts = [
            f"{kind} {getattr(self, name):.0%}"
            for kind, name in _FIELD_OF_KIND.items()
            if getattr(self, name)
        ]
        parts.extend(f"persistent {p.status} on {p.marker!r}" for p in self.persistent)
        return ", ".join(parts) or "no faults"


def _persistent_fault(mix: FaultMix, inputs: Sequence[object]) -> PersistentFault | None:
    for fault in mix.persistent:
        if any(isinstance(text, str) and fault.marker in text for text in inputs):
            return fault
    return None


def draw_fault(
    mix: FaultMix, rng: random.Random, inputs: Sequence[object]
) -> tuple[FaultKind | None, int | None]:
    """The fault for one request: a persistent one if a marker matches, else a random one.

    One number is drawn from ``rng`` per request (also when a persistent fault matches, so
    that markers do not shift the random faults of the other requests).

    Returns:
        ``(kind, status)``: the kind (``None``: answer normally) and, for HTTP faults, the
        status to answer.
    """
    draw = rng.random()
    persistent = _persistent_fault(mix, inputs)
    if persistent is not None:
        return "persistent", persistent.status
    threshold = 0.0
    for kind, name in _FIELD_OF_KIND.items():
        threshold += getattr(mix, name)
        if draw < threshold:
            status = {"429": 429, "429_no_retry_after": 429, "500": 500, "503": 503}.get(kind)
            return kind, status
    return None, None


def corrupt_vectors(kind: FaultKind | None, vectors: list[list[float]]) -> list[list[float]]:
    """Spoil well-formed ``vectors`` as ``kind`` says (other kinds: unchanged).

    ``wrong_dimension`` drops the last number of the last vector, ``nan`` sets its first
    number to NaN, ``missing_vectors`` drops the last vector.
    """
    if kind not in VECTOR_FAULTS or not vectors:
        return vectors
    if kind == "missing_vectors":
        return vectors[:-1]
    last = list(vectors[-1])
    if kind == "wrong_dimension":
        last = last[:-1] if len(last) > 1 else [*last, 0.0]
    else:
        last[0] = math.nan
    return [*vectors[:-1], last]


# -- strict rate limits: a sliding window, described as OpenAI does ---------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SlidingWindowLimit:
    """At most :attr:`requests` POST requests in any sliding window of :attr:`seconds`.

    Stricter than a bucket of the same average rate: a request is refused while
    :attr:`requests` others arrived less than :attr:`seconds` ago, however evenly. Some
    providers enforce their limits this way over a second or ten, even when they state
    them per minute.

    Attributes:
        requests: Requests admitted per window (at least 1).
        seconds: Length of the window.
    """

    requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigurationError(f"requests must be at least 1; got {self.requests}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigurationError(f"seconds must be positive; got {self.seconds}")


@dataclass(frozen=True, slots=True)
class WindowDecision:
    """Whether a request was admitted, and the headers its answer carries.

    Attributes:
        admitted: ``False``: answer 429.
        headers: ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
            ``x-ratelimit-reset-requests`` (every answer), plus ``retry-after`` and
            ``retry-after-ms`` when refused.
    """

    admitted: bool
    headers: dict[str, str]


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it (Go style).

    ``0.02`` -> ``"20ms"``, ``1`` -> ``"1s"``, ``8.64`` -> ``"8.64s"``, ``360`` ->
    ``"6m0s"``, ``3725.5`` -> ``"1h2m5.5s"``.
    """
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, rest = divmod(rest, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


class SlidingWindowLog:
    """The arrival times of the requests admitted in the last window; admits or refuses.

    Refused requests do not count. The headers describe the window as OpenAI's do: the
    limit, what remains now, and the time until the window is back to its initial state
    (the newest admitted request leaves it). A refusal also says when the oldest leaves
    (``retry-after``). No I/O and no clock of its own: the server passes ``now``.
    """

    __slots__ = ("_admitted", "limit")

    def __init__(self, limit: SlidingWindowLimit) -> None:
        self.limit = limit
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> WindowDecision:
        """Decide on a request arriving at ``now`` (seconds, any monotonic clock)."""
        window = self.limit.seconds
        while self._admitted and self._admitted[0] <= now - window:
            self._admitted.popleft()
        admitted = len(self._admitted) < self.limit.requests
        if admitted:
            self._admitted.append(now)
        reset = self._admitted[-1] + window - now if self._admitted else 0.0
        headers = {
            "x-ratelimit-limit-requests": str(self.limit.requests),
            "x-ratelimit-remaining-requests": str(self.limit.requests - len(self._admitted)),
            "x-ratelimit-reset-requests": format_reset(reset),
        }
        if not admitted:
            wait = self._admitted[0] + window - now
            headers["retry-after"] = f"{wait:.3f}"
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return WindowDecision(admitted, headers)
