"""Request pacing: when the next request to a service may start.

Sliding windows of a stated rate and of the limits the service states in its answers
(OpenAI's ``x-ratelimit-*`` headers and ``Retry-After``, see :class:`LimitAnswer`), and a
rate learnt from refusals that state nothing. No I/O and no clock: the
:class:`~langchain_rag_async.limits.ServiceLimiter` of each service drives a
:class:`RequestPacer` with its event loop's time.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = (
    "BURST_SECONDS",
    "DISTRUST_SECONDS",
    "MAX_LEARNED_WINDOW",
    "MAX_WINDOW_MARGIN",
    "MIN_LEARNT_RATE",
    "PEAK_SHARE",
    "PROBATION_REFUSALS",
    "PROBATION_REQUESTS",
    "RATE_BACKOFF",
    "RATE_GROWTH",
    "LearntLimits",
    "LimitAnswer",
    "RequestPacer",
    "RequestWindow",
    "request_windows",
)


BURST_SECONDS = 1.0
"""A rate is paced as its share of a window this long: 1200 per minute as 20 per second."""
MAX_LEARNED_WINDOW = 60.0
"""Longest window learnt from a ``reset`` header; longer ones (daily limits) are not paced."""
MAX_WINDOW_MARGIN = 0.25
"""The most a window is lengthened by after refusals met while paced (a fraction)."""
_UNPACED_LOG = 256  # request starts kept while no window is known (to learn from answers)
RATE_BACKOFF = 0.9
"""After a refusal that names no limit, requests are spaced at this share of the rate the
service admitted just before."""
RATE_GROWTH = 0.03
"""Requests per second a learnt rate grows by with each success (about 3 % a second)."""
MIN_LEARNT_RATE = 0.5
"""The slowest a learnt rate goes, in requests per second."""
LIMIT_REFUSALS = 2
"""Refusals naming no limit within a second, at least, before a rate is learnt from them."""
LIMIT_REFUSED_SHARE = 0.5
"""...and at least this many per request admitted in that second: a limit refuses a burst's
tail; a flaky service (one refusal in five, say) is answered with holds, not a rate."""
PROBATION_REQUESTS = 20
"""Requests started after a rate was learnt that put it to the test: a limit refuses
(nearly) none of them once they are spaced below what it admitted..."""
PROBATION_REFUSALS = 2
"""...so this many refusals among them show that the refusals did not come from the rate
(random faults of a flaky service, clustered by chance): the rate is dropped, and none is
learnt again for :data:`DISTRUST_SECONDS`."""
DISTRUST_SECONDS = 30.0
"""How long refusals naming no limit teach no rate after a learnt one failed its test."""
PEAK_SHARE = 0.4
"""A learnt rate never falls below this share of the highest admitted rate seen, so that
refusals at random (faults, not a limit) cost at most that share of the throughput."""


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """At most :attr:`requests` requests may start in any :attr:`seconds` (sliding)."""

    requests: int
    seconds: float


def request_windows(requests: float, seconds: float = 60.0) -> tuple[RequestWindow, ...]:
    """The sliding windows that pace ``requests`` per ``seconds``.

    A limit stated per minute is often enforced over a second or ten, and a bucket holding a
    minute of requests (or even a second of them, refilled as it drains) lets through more
    than a second's share within one second. So the rate is paced as a sliding window of its
    :data:`BURST_SECONDS` share (at least one request): 1200 per minute as 20 in any second,
    which also keeps every longer window (10 s, a minute) within its share. A window
    shorter than that is kept as it is.

    Args:
        requests: Requests allowed per ``seconds``.
        seconds: Length of the window the limit is stated for.
    """
    rate = requests / seconds
    burst = max(1, math.floor(rate * BURST_SECONDS + 1e-9))
    if burst >= requests:  # the window is a second or less (or holds under one request)
        return (RequestWindow(burst, burst / rate),)
    return (RequestWindow(math.floor(requests + 1e-9), seconds), RequestWindow(burst, burst / rate))


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitAnswer:
    """What one answer of the service said about its request limit.

    Read from OpenAI's ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
    ``x-ratelimit-reset-requests`` (the time until the limit is back to its initial state)
    and ``retry-after`` headers (any of them may be missing).

    Attributes:
        limit: Requests allowed per window.
        remaining: Requests left in the window when this request was counted.
        reset: Seconds until the window is back to its full limit.
        retry_after: Seconds the service asked to wait (on a refusal).
        refused: The answer was a 429.
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None
    refused: bool = False


@dataclass(slots=True)
class LearntLimits:
    """What the answers taught about the service's window (shared by every loop's pacer)."""

    limit: int | None = None
    window: float = 0.0
    windows: tuple[RequestWindow, ...] = ()
    margin: float = 0.03
    widened_at: int = 0  # the ticket count when the margin was last widened
    rate: float = 0.0  # requests per second learnt from refusals that name no limit (0: none)
    peak: float = 0.0  # the highest admitted rate measured at a refusal
    cut_at: int = 0  # the ticket count when the rate was last cut
    tested_from: float = math.inf  # when the learnt rate's test began (inf: no test running)
    tested: int = 0  # requests started since then and answered or refused
    tested_refused: int = 0  # ...of them refused
    distrust_until: float = -math.inf  # no rate is learnt from refusals before this time

    def test_outcome(self, started: float, refused: bool, now: float) -> bool | None:
        """Count an answer to a request that started at ``started`` toward the rate's test.

        Returns:
            ``None`` when no test counts it (none running, or the request started before);
            else whether the rate failed its test and was dropped.
        """
        if self.rate <= 0 or started < self.tested_from:
            return None
        self.tested += 1
        self.tested_refused += refused
        if self.tested_refused >= PROBATION_REFUSALS:
            self.rate = 0.0
            self.distrust_until = now + DISTRUST_SECONDS
            self.tested_from = math.inf
            return True
        if self.tested >= PROBATION_REQUESTS:
            self.tested_from = math.inf  # passed: a limit it is
        return False


class RequestPacer:
    """Decides when the next request may start: sliding windows over past request starts.

    The windows are those of the stated rate (:func:`request_windows`) and those learnt
    from the service's answers (:meth:`observe`): its limit per window, the window's length
    (the longest ``reset`` seen: the time until a window that just counted a request is
    clear again), the requests it counts that this pacer did not send (other clients, an
    earlier run), and the ``Retry-After`` of a 429 that names the limit. Every window is
    checked ``1 + margin`` times as long.

    A service that refuses without naming its limit (no ``x-ratelimit-limit-requests``)
    while no window is known is paced by a rate learnt AIMD-style: at a refusal (once per
    congestion event), requests are held for its ``Retry-After`` and then spaced at
    :data:`RATE_BACKOFF` of the rate the service admitted (requests started and not
    refused) over the last second (and the last ten, once the run is that old), one at
    a time; each success raises the rate by
    :data:`RATE_GROWTH` (nothing is learnt without a success in the last ten seconds: a
    spent quota, an outage). So the requests refused together come back one by one at a rate
    the service accepts, instead of all at once after the same ``Retry-After``. A learnt rate
    is then put to the test: if :data:`PROBATION_REFUSALS` of the first
    :data:`PROBATION_REQUESTS` requests started under it are refused too, the refusals were
    not the rate's doing (a flaky service's, clustered by chance) and it is dropped.

    A request is counted from when the service most likely received it: its start, or,
    once answered, its answer's time less the quickest answer seen, if that is later. The
    first requests of a run wait for their connections and reach the service tens of
    milliseconds after they start, later ones a millisecond after: counted from their
    starts, the windows would clear too soon.

    No I/O and no clock of its own: callers pass ``now`` (the event loop's time), so tests
    drive it with made-up times.

    Args:
        stated: The windows of the configured rate.
        margin: The fraction every window is lengthened by, at first.
        shared: What the other pacers of the same limiter learnt (one per event loop).
    """

    __slots__ = (
        "_answers",
        "_entries",
        "_foreign",
        "_first_start",
        "_hold_until",
        "_last_start",
        "_learnt",
        "_quickest",
        "_refused",
        "_starts",
        "_times",
        "stated",
    )

    def __init__(
        self,
        stated: tuple[RequestWindow, ...] = (),
        *,
        margin: float = 0.03,
        shared: LearntLimits | None = None,
    ) -> None:
        self.stated = stated
        self._learnt = shared if shared is not None else LearntLimits(margin=margin)
        self._entries = 0  # requests counted so far
        self._starts: dict[int, float] = {}  # entry -> start (in start order)
        self._answers: dict[int, float] = {}  # entry -> successful answer
        self._foreign: list[float] = []  # when the service's other requests count
        self._times: list[float] | None = None  # when each request counts, sorted (a cache)
        self._quickest = math.inf  # the quickest answer seen, in seconds
        self._hold_until = -math.inf
        self._first_start = math.inf
        self._last_start = -math.inf
        self._refused: set[float] = set()  # starts of the requests refused (no limit named)

    @property
    def windows(self) -> tuple[RequestWindow, ...]:
        """Every window now paced: stated, then learnt."""
        return self.stated + self._learnt.windows

    @property
    def margin(self) -> float:
        """The fraction every window is lengthened by."""
        return self._learnt.margin

    @property
    def learnt_rate(self) -> float | None:
        """Requests per second learnt from refusals that name no limit (``None``: none)."""
        return self._learnt.rate or None

    def delay(self, now: float) -> float:
        """Seconds until a request may start (0: now)."""
        wait = self._hold_until - now
        if self._learnt.rate > 0:
            wait = max(wait, self._last_start + 1.0 / self._learnt.rate - now)
        windows = self.windows
        if windows:
            times = self._counted()
            stretch = 1.0 + self._learnt.margin
            for window in windows:
                if len(times) >= window.requests:
                    wait = max(wait, times[-window.requests] + window.seconds * stretch - now)
        return max(0.0, wait)

    def record_start(self, now: float) -> int:
        """Count a request starting at ``now``; return its entry (for :meth:`record_answer`)."""
        self._entries += 1
        number = self._entries
        self._starts[number] = now
        self._first_start = min(self._first_start, now)
        self._last_start = max(self._last_start, now)
        self._times = None
        keep = 2 * max([w.requests for w in self.windows] + [_UNPACED_LOG]) + 64
        if len(self._starts) > 2 * keep:
            for old in list(self._starts)[:-keep]:
                del self._starts[old]
                self._answers.pop(old, None)
            horizon = now - 2.0 * max([w.seconds for w in self.windows] + [MAX_LEARNED_WINDOW])
            self._foreign = [t for t in self._foreign if t >= horizon]
        return number

    def record_answer(self, number: int, now: float) -> None:
        """The request of entry ``number`` was answered successfully at ``now``.

        The first call counts: the answer's arrival, not the end of the work done with it.
        """
        started = self._starts.get(number)
        if started is None or number in self._answers:
            return
        self._answers[number] = now
        self._quickest = min(self._quickest, now - started)
        self._times = None
        if self._learnt.rate > 0:
            self._learnt.rate += RATE_GROWTH
            self._learnt.test_outcome(started, False, now)

    def _counted(self) -> list[float]:
        """When each request counts for the service, sorted (see the class docstring)."""
        if self._times is None:
            quickest, answers = self._quickest, self._answers
            self._times = sorted(
                [
                    max(start, answers[number] - quickest) if number in answers else start
                    for number, start in self._starts.items()
                ]
                + self._foreign
            )
        return self._times

    def observe(
        self, answer: LimitAnswer, *, started: float, now: float, ticket: int = 0, issued: int = 0
    ) -> None:
        """Learn from the answer to a request that started at ``started``, read at ``now``.

        Args:
            answer: What the answer said.
            started: When the request was let through (``now`` when unknown).
            now: The current time.
            ticket: The request's number (0: unknown), to widen the margin once per event.
            issued: Requests let through so far.
        """
        learnt = self._learnt
        if answer.limit is None or answer.limit < 1:
            if answer.refused and not self.windows:
                self._refused.add(started)
                if learnt.test_outcome(started, True, now) is None:
                    self._cut_rate(answer, now=now, ticket=ticket, issued=issued)
                # else: under the rate's test (which may have dropped it), no cut and no
                # hold for every request; the refused one's retry waits its Retry-After
            return  # not about a request window
        if answer.refused:
            if answer.retry_after is not None:  # for every request, not only the refused one
                self._hold_until = max(self._hold_until, now + answer.retry_after)
            if self.windows and (ticket == 0 or ticket > learnt.widened_at):
                learnt.margin = min(MAX_WINDOW_MARGIN, max(0.01, learnt.margin * 2))
                learnt.widened_at = issued
        if answer.reset is not None and 0 < answer.reset <= MAX_LEARNED_WINDOW:
            learnt.window = max(learnt.window, answer.reset)
        if learnt.window <= 0:
            return
        if answer.limit != learnt.limit or learnt.windows[:1] != (
            RequestWindow(answer.limit, learnt.window),
        ):
            learnt.limit = answer.limit
            learnt.windows = request_windows(answer.limit, learnt.window)
        if answer.remaining is not None:
            self._count_foreign(answer, started, now)

    def _cut_rate(self, answer: LimitAnswer, *, now: float, ticket: int, issued: int) -> None:
        """Refusals naming no limit, like a limit's: hold for ``Retry-After``, space by a rate.

        Once per congestion event: a refusal of a request let through before the last cut
        reports the congestion already reacted to. Scattered refusals (see
        :meth:`_refusing_a_share`) are left to the refused requests' own retries.
        """
        learnt = self._learnt
        if ticket and ticket <= learnt.cut_at:
            return
        if not self._refusing_a_share(now):
            # scattered refusals (a flaky service) say nothing about a rate, nor hold every
            # request: the refused one's retry waits its Retry-After
            return
        learnt.cut_at = issued
        if answer.retry_after is not None and answer.retry_after > 0:
            self._hold_until = max(self._hold_until, now + answer.retry_after)
        if not any(t >= now - 10.0 for t in self._answers.values()):
            return  # no success lately: no rate to learn (a spent quota, an outage)
        if now < learnt.distrust_until:
            return  # a learnt rate failed its test lately: these refusals are random too
        admitted = self._admitted_rate(now)
        learnt.peak = max(learnt.peak, admitted)
        learnt.rate = max(MIN_LEARNT_RATE, PEAK_SHARE * learnt.peak, RATE_BACKOFF * admitted)
        learnt.tested_from, learnt.tested, learnt.tested_refused = now, 0, 0

    def scattered_refusals(self, now: float) -> bool:
        """Whether the last second's refusals (none naming a limit) are a flaky service's.

        True when there were some, no window is paced, and they are too few for a limit's
        (:meth:`_refusing_a_share`) or a rate learnt from refusals lately failed its test.
        The limiter then leaves its concurrency alone: halving it at each random refusal
        would hold a flaky service's throughput at a fraction (one in five refused held
        8 requests in flight at 2 to 3).
        """
        if self.windows or not any(t >= now - 1.0 for t in self._refused):
            return False
        return now < self._learnt.distrust_until or not self._refusing_a_share(now)

    def _refusing_a_share(self, now: float) -> bool:
        """Whether the last second's refusals look like a limit's, not a flaky service's.

        At least :data:`LIMIT_REFUSALS` of them, and at least :data:`LIMIT_REFUSED_SHARE`
        per request admitted beside them: a service that refuses one request in five at
        random (a fault, not a rate) must not be paced down to a crawl.
        """
        since = now - 1.0
        starts = [t for t in self._starts.values() if t >= since]
        refused = sum(1 for t in starts if t in self._refused)
        return refused >= max(LIMIT_REFUSALS, LIMIT_REFUSED_SHARE * (len(starts) - refused))

    def _admitted_rate(self, now: float) -> float:
        """Requests per second the service admitted lately: started, and not refused.

        Requests still in flight count as admitted (a burst is refused while its first
        requests are still being answered). The lowest over the last second and, once
        this pacer is that old, the last ten: a service with a ten-second window admits
        a burst, then nothing.
        """
        refused = self._refused
        admitted = sorted(t for t in self._starts.values() if t not in refused)
        horizon = now - 11.0  # older refusals fall out of both horizons
        self._refused = {t for t in refused if t >= horizon}
        rates = []
        for seconds in (1.0, 10.0):
            if seconds == 1.0 or now - self._first_start >= seconds:
                count = len(admitted) - bisect.bisect_left(admitted, now - seconds)
                rates.append(count / seconds)
        return min(rates)

    def _count_foreign(self, answer: LimitAnswer, started: float, now: float) -> None:
        """Add the requests the service counts in its window that this pacer did not send.

        Ours are at most those counted since a window before ``started`` (the foreign ones
        found earlier included); the rest came from elsewhere and leave the window at the
        latest when it resets.
        """
        limit, remaining = answer.limit or 0, answer.remaining or 0
        window = self._learnt.window
        counted = max(0, limit - max(0, remaining))
        times = self._counted()
        ours = len(times) - bisect.bisect_left(times, started - window)
        foreign = counted - ours
        if foreign > 0:
            reset = window if answer.reset is None else min(answer.reset, window)
            self._foreign.extend([min(now, now + reset - window)] * foreign)
            self._times = None
