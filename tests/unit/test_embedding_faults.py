"""Service faults: the fake server's fault mix, and how RateLimitedEmbeddings survives it.

The real ``openai``-based ``OpenAIEmbeddings`` talks to the local fake server; nothing is
mocked. No timing asserts: a hung request that were not cut by the adaptive deadline would
hold the test until the per-test timeout instead.
"""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from langchain_rag_async.config import RetryConfig
from langchain_rag_async.embeddings._resilience import (
    MIN_LATENCY_SAMPLES,
    AdaptiveDeadline,
    RetryBudget,
    checked_vectors,
    quantile,
)
from langchain_rag_async.embeddings.rate_limited import (
    WORKER_TASK_PREFIX,
    RateLimitedEmbeddings,
    failure_kind,
    is_bad_response,
    is_retryable,
)
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingResponseError,
)
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.testing import FakeOpenAIServer, FaultMix, PersistentFault
from langchain_rag_async.testing.faults import corrupt_vectors, draw_fault
from langchain_rag_async.testing.openai_server import fake_embedding

# Quick retries and a low deadline floor, so hung attempts are cut in a fraction of a second.
RETRY = RetryConfig(
    max_attempts=12,
    initial_backoff=0.01,
    max_backoff=0.05,
    max_total_seconds=60.0,
    min_attempt_timeout=0.3,
)
KINDS = (
    "rate_limited",
    "rate_limited_no_header",
    "server_error",
    "unavailable",
    "hang",
    "reset",
    "truncated",
    "malformed",
    "wrong_dimension",
    "nan",
    "missing_vectors",
)


def make_embeddings(
    server: FakeOpenAIServer,
    *,
    retry: RetryConfig = RETRY,
    batch_size: int = 4,
    concurrency: int = 4,
    request_timeout: float | None = 60.0,
) -> RateLimitedEmbeddings:
    inner = OpenAIEmbeddings(
        model="text-embedding-3-small",
        api_key=SecretStr("test"),
        base_url=server.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        chunk_size=batch_size,
    )
    limiter = ServiceLimiter("fake-openai", max_concurrency=concurrency)
    return RateLimitedEmbeddings(
        inner, limiter=limiter, batch_size=batch_size, retry=retry, request_timeout=request_timeout
    )


def texts_of(count: int) -> list[str]:
    return [f"fault test text {i}" for i in range(count)]


def no_worker_tasks() -> bool:
    return not any(t.get_name().startswith(WORKER_TASK_PREFIX) for t in asyncio.all_tasks())


# -- the fault mix ---------------------------------------------------------------------------


def test_fault_mix_rejects_impossible_probabilities() -> None:
    with pytest.raises(ConfigurationError, match="add up"):
        FaultMix(rate_limited=0.6, server_error=0.6)
    with pytest.raises(ConfigurationError, match="probability"):
        FaultMix(hang=-0.1)
    with pytest.raises(ConfigurationError, match="status"):
        PersistentFault(marker="x", status=200)
    assert math.isclose(FaultMix.every_kind(0.02).total, 0.22)
    assert "hang 2%" in FaultMix(hang=0.02).describe()


def test_fault_draws_are_seeded_and_persistent_markers_win() -> None:
    mix = FaultMix(rate_limited=0.3, hang=0.1, persistent=(PersistentFault(marker="BAD"),))
    first = [draw_fault(mix, random.Random(7), ["a"]) for _ in range(1)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    draws_a = [draw_fault(mix, rng_a, ["a"])[0] for _ in range(200)]
    draws_b = [draw_fault(mix, rng_b, ["a"])[0] for _ in range(200)]
    assert draws_a == draws_b and first[0][0] == draws_a[0]
    assert 30 < draws_a.count("429") < 90 and 5 < draws_a.count("hang") < 40
    assert draw_fault(mix, random.Random(1), ["ok", "a BAD text"]) == ("persistent", 500)


def test_corrupt_vectors_spoils_only_the_last_vector() -> None:
    vectors = [[1.0, 2.0], [3.0, 4.0]]
    assert corrupt_vectors("missing_vectors", vectors) == [[1.0, 2.0]]
    assert corrupt_vectors("wrong_dimension", vectors) == [[1.0, 2.0], [3.0]]
    assert math.isnan(corrupt_vectors("nan", vectors)[1][0])
    assert corrupt_vectors(None, vectors) is vectors


@pytest.mark.parametrize("kind", KINDS)
async def test_every_fault_kind_is_a_retryable_failure_and_counted(
    openai_server: FakeOpenAIServer, kind: str
) -> None:
    """One attempt allowed: each kind fails the request, classified as transient."""
    openai_server.set_fault_mix(FaultMix(**{kind: 1.0}))
    retry = RetryConfig(max_attempts=1, min_attempt_timeout=0.2)
    embeddings = make_embeddings(openai_server, retry=retry)
    # Teach the deadline what a normal latency is, so that a hang is cut quickly.
    for _ in range(MIN_LATENCY_SAMPLES):
        embeddings._deadline.record(0.01)
    with pytest.raises(EmbeddingError) as caught:
        await embeddings.aembed_documents(texts_of(3))
    cause = caught.value.__cause__
    assert cause is not None and is_retryable(cause), repr(cause)
    assert "kept failing" in str(caught.value)
    assert sum(openai_server.stats.faults_injected.values()) == 1
    if kind in ("malformed", "wrong_dimension", "nan", "missing_vectors"):
        assert isinstance(caught.value, EmbeddingResponseError)
        assert embeddings.stats["bad_responses"] == 1
    if kind == "hang":
        assert embeddings.stats["timeouts"] == 1
    assert no_worker_tasks()


async def test_server_counts_vectors_only_for_good_answers(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.set_fault_mix(FaultMix(nan=1.0))
    embeddings = make_embeddings(openai_server, retry=RetryConfig(max_attempts=1))
    with pytest.raises(EmbeddingError):
        await embeddings.aembed_documents(texts_of(2))
    assert openai_server.stats.embedded_texts == 0
    assert openai_server.stats.faults_injected == {"nan": 1}


# -- validation -------------------------------------------------------------------------------


def test_checked_vectors_accepts_good_vectors_and_learns_the_dimension() -> None:
    vectors, dimension = checked_vectors([[0.1, 0.2], [0.3, 0.4]], 2, None)
    assert vectors == [[0.1, 0.2], [0.3, 0.4]] and dimension == 2
    assert checked_vectors([[1.0, 0.0]], 1, 2)[1] == 2


@pytest.mark.parametrize(
    ("vectors", "expected", "dimension", "match"),
    [
        ([[0.1, 0.2]], 2, None, "1 vector"),
        ({"data": []}, 1, None, "dict vector"),
        ([[0.1, 0.2], [0.3]], 2, None, "dimension 1, expected 2"),
        ([[0.1, 0.2, 0.3]], 1, 2, "dimension 3, expected 2"),
        ([[0.1, math.nan]], 1, None, "not finite"),
        ([[0.1, math.inf]], 1, None, "not finite"),
        ([[0.1, "x"]], 1, None, "not a number"),
        ([[]], 1, None, "empty"),
    ],
)
def test_checked_vectors_refuses_bad_responses(
    vectors: object, expected: int, dimension: int | None, match: str
) -> None:
    with pytest.raises(EmbeddingResponseError, match=match):
        checked_vectors(vectors, expected, dimension)


def test_bad_responses_are_retryable_and_named() -> None:
    broken = json.JSONDecodeError("Expecting value", "{", 1)
    assert is_bad_response(broken) and is_retryable(broken)
    assert failure_kind(broken) == "bad_response"
    assert is_retryable(EmbeddingResponseError("3 vectors for 4 texts"))
    assert failure_kind(TimeoutError()) == "timeout"
    assert not is_retryable(ValueError("a bug"))


async def test_nothing_from_a_bad_response_is_returned(openai_server: FakeOpenAIServer) -> None:
    """Half the answers are broken in some way; every vector returned is the right one."""
    openai_server.set_fault_mix(
        FaultMix(
            malformed=0.1,
            truncated=0.1,
            wrong_dimension=0.1,
            nan=0.1,
            missing_vectors=0.1,
            seed=3,
        )
    )
    embeddings = make_embeddings(openai_server)
    texts = texts_of(40)
    vectors = await embeddings.aembed_documents(texts)
    assert vectors == [fake_embedding(t) for t in texts]
    assert sum(openai_server.stats.faults_injected.values()) > 0
    assert embeddings.stats["bad_responses"] > 0


async def test_a_later_response_of_another_dimension_is_refused(
    openai_server: FakeOpenAIServer,
) -> None:
    embeddings = make_embeddings(openai_server, retry=RetryConfig(max_attempts=1))
    await embeddings.aembed_documents(texts_of(2))
    openai_server.dimension = 32  # the service changed model under our feet
    with pytest.raises(EmbeddingResponseError, match="dimension 32, expected 64"):
        await embeddings.aembed_documents(["another text"])


def test_sync_twin_validates_and_retries(threaded_openai_server: FakeOpenAIServer) -> None:
    threaded_openai_server.set_fault_mix(FaultMix(missing_vectors=0.5, seed=1))
    embeddings = make_embeddings(threaded_openai_server)
    texts = texts_of(12)
    assert embeddings.embed_documents(texts) == [fake_embedding(t) for t in texts]
    assert (
        embeddings.stats["bad_responses"]
        == threaded_openai_server.stats.faults_injected["missing_vectors"]
    )


# -- adaptive deadline ------------------------------------------------------------------------


def test_adaptive_deadline_rule() -> None:
    retry = RetryConfig(attempt_timeout_multiplier=4.0, min_attempt_timeout=0.5)
    deadline = AdaptiveDeadline(retry, cap=60.0)
    assert deadline.current() == 60.0  # nothing learnt yet: the request timeout
    for seconds in (0.1, 0.1, 0.2, 0.2, 0.3):
        deadline.record(seconds)
    assert deadline.current() == pytest.approx(4 * 0.3)
    assert deadline.current(stretch=4.0) == pytest.approx(4.8)
    assert deadline.current(stretch=1000.0) == 60.0  # capped by the request timeout
    for _ in range(200):
        deadline.record(0.01)
    assert deadline.current() == 0.5  # the floor
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0


async def test_a_hung_request_is_cut_by_the_learnt_deadline(
    openai_server: FakeOpenAIServer,
) -> None:
    embeddings = make_embeddings(openai_server, concurrency=1, request_timeout=600.0)
    await embeddings.aembed_documents(texts_of(4 * MIN_LATENCY_SAMPLES))  # learn latencies
    learnt = embeddings.attempt_deadline
    assert learnt is not None and learnt < 600.0
    openai_server.hang_next(1)
    texts = texts_of(8)
    assert await embeddings.aembed_documents(texts) == [fake_embedding(t) for t in texts]
    assert embeddings.stats["timeouts"] == 1
    assert embeddings.stats["retries"] == 1
    assert no_worker_tasks()


async def test_a_request_hung_from_the_start_is_cut_once_others_answer(
    openai_server: FakeOpenAIServer,
) -> None:
    """Nothing learnt when it starts (deadline: 600 s); the others' latencies shorten it."""
    embeddings = make_embeddings(openai_server, concurrency=4, request_timeout=600.0)
    openai_server.hang_next(1)
    texts = texts_of(4 * 12)
    assert await embeddings.aembed_documents(texts) == [fake_embedding(t) for t in texts]
    assert embeddings.stats["timeouts"] == 1
    assert openai_server.stats.in_flight == 0
    assert no_worker_tasks()


# -- retry budget -----------------------------------------------------------------------------


def test_retry_budget_arithmetic() -> None:
    budget = RetryBudget(ratio=0.5, minimum=2)
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()
    for _ in range(4):
        budget.record_attempt(first=True)
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()
    assert budget.retries == 4


def test_streak_likelihood_uses_the_other_requests_rates() -> None:
    budget = RetryBudget(ratio=1.0, minimum=0)
    for number in range(100):
        budget.record_attempt(first=True)
        if number % 20 == 0:
            budget.record_failure("500")  # 5 % of the others' attempts fail with 500
    own = ["500"] * 5
    for kind in own:
        budget.record_attempt(first=False)
        budget.record_failure(kind)
    assert budget.streak_likelihood(own) == pytest.approx((6 / 102) ** 5)
    assert budget.streak_likelihood(["500", "429"]) > budget.streak_likelihood(own)
    assert budget.streak_likelihood([]) == 1.0


async def test_a_dead_service_is_retried_within_the_budget_only(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.set_fault_mix(FaultMix(unavailable=1.0))
    retry = RetryConfig(
        max_attempts=50,
        initial_backoff=0.0,
        max_backoff=0.0,
        retry_budget_min=5,
        retry_budget_ratio=0.0,
        persistent_probability=0.0,
    )
    embeddings = make_embeddings(openai_server, retry=retry, concurrency=2)
    with pytest.raises(EmbeddingError, match="retry budget is spent") as caught:
        await embeddings.aembed_documents(texts_of(16))
    assert caught.value.failed_count == 16
    assert openai_server.stats.requests == 4 + 5  # four first attempts, five retries
    assert no_worker_tasks()


async def test_a_persistent_fault_gives_up_early_while_others_pass(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.set_fault_mix(FaultMix(persistent=(PersistentFault(marker="POISON"),)))
    embeddings = make_embeddings(openai_server, concurrency=2)
    texts = texts_of(60)
    texts[45] = "a POISON text"
    sources = [f"file{i // 4}.md" for i in range(60)]
    with pytest.raises(EmbeddingError, match="looks persistent") as caught:
        await embeddings.aembed_documents(texts, sources=sources)
    assert caught.value.sources == ("file11.md",)
    assert caught.value.failed_count == 4
    attempts = openai_server.stats.faults_injected["persistent"]
    assert 2 <= attempts < RETRY.max_attempts
    assert openai_server.stats.embedded_texts == 56  # every other sub-batch was embedded


async def test_transient_mix_keeps_every_batch(openai_server: FakeOpenAIServer) -> None:
    """The issue's mix (20 % 429, 5 % 500, 2 % hangs) and more: no text is lost."""
    openai_server.set_fault_mix(
        FaultMix(rate_limited=0.2, server_error=0.05, hang=0.02, reset=0.02, retry_after=0.0)
    )
    embeddings = make_embeddings(openai_server)
    texts = texts_of(160)
    assert await embeddings.aembed_documents(texts) == [fake_embedding(t) for t in texts]
    assert embeddings.stats["failures"] == 0
    assert no_worker_tasks()


async def test_429s_while_the_service_admits_others_are_pacing_not_spent_retries(
    openai_server: FakeOpenAIServer,
) -> None:
    # A run faster than an unstated limit (the server: 8 requests/s, 429 + Retry-After
    # above): most first attempts are refused, yet nothing fails, even with no budget.
    openai_server.requests_per_second = 8.0
    retry = RetryConfig(
        max_attempts=40, retry_budget_min=0, retry_budget_ratio=0.0, persistent_probability=0.0
    )
    embeddings = make_embeddings(openai_server, retry=retry, batch_size=2, concurrency=4)
    vectors = await embeddings.aembed_documents(texts_of(40))
    assert len(vectors) == 40
    assert openai_server.stats.status_counts[429] > 0  # it was paced, for free
    assert no_worker_tasks()


async def test_429s_without_any_success_spend_the_budget(
    openai_server: FakeOpenAIServer,
) -> None:
    # A service refusing everyone (a spent quota that does not say so): not retried forever.
    openai_server.set_fault_mix(FaultMix(rate_limited=1.0, retry_after=0.0))
    retry = RetryConfig(
        max_attempts=50,
        initial_backoff=0.0,
        max_backoff=0.0,
        retry_budget_min=5,
        retry_budget_ratio=0.0,
        persistent_probability=0.0,
    )
    embeddings = make_embeddings(openai_server, retry=retry, concurrency=2)
    with pytest.raises(EmbeddingError, match="retry budget is spent"):
        await embeddings.aembed_documents(texts_of(16))
    assert openai_server.stats.requests == 4 + 5


def test_a_spent_quota_is_not_retried() -> None:
    import httpx
    import openai

    from langchain_rag_async.embeddings._failures import is_quota_exhausted, is_retryable

    response = httpx.Response(429, request=httpx.Request("POST", "http://x/v1/embeddings"))
    quota = openai.RateLimitError(
        "You exceeded your current quota",
        response=response,
        body={"code": "insufficient_quota", "type": "insufficient_quota"},
    )
    limit = openai.RateLimitError("Rate limit reached", response=response, body=None)
    assert is_quota_exhausted(quota) and not is_retryable(quota)
    assert not is_quota_exhausted(limit) and is_retryable(limit)
