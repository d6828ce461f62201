"""RateLimitedEmbeddings drives the real OpenAIEmbeddings against the local fake server."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import httpx2
import openai
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_openai import OpenAIEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from yarl import URL

from langchain_rag_async.config import RateLimitConfig, RetryConfig
from langchain_rag_async.embeddings._failures import limit_answer, limit_answer_of, parse_duration
from langchain_rag_async.embeddings.rate_limited import (
    WORKER_TASK_PREFIX,
    RateLimitedEmbeddings,
    backoff_delay,
    is_rate_limited,
    is_retryable,
    plan_batches,
    retry_after_seconds,
)
from langchain_rag_async.errors import ConfigurationError, EmbeddingError, EmbeddingTimeoutError
from langchain_rag_async.limits import LimitAnswer, RequestWindow, ServiceLimiter
from langchain_rag_async.testing.faults import SlidingWindowLimit
from langchain_rag_async.testing.openai_server import FakeOpenAIServer, fake_embedding

FAST_RETRY = RetryConfig(
    max_attempts=4, initial_backoff=0.01, max_backoff=2.0, max_total_seconds=20.0
)


def openai_embeddings(server: FakeOpenAIServer, batch_size: int) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(
        model="text-embedding-3-small",
        api_key=SecretStr("test"),
        base_url=server.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        chunk_size=batch_size,
    )


def make_embeddings(
    server: FakeOpenAIServer,
    *,
    batch_size: int = 4,
    concurrency: int = 8,
    rate_limit: RateLimitConfig | None = None,
    retry: RetryConfig = FAST_RETRY,
    request_timeout: float | None = None,
) -> RateLimitedEmbeddings:
    limiter = ServiceLimiter("fake-openai", rate_limit=rate_limit, max_concurrency=concurrency)
    return RateLimitedEmbeddings(
        openai_embeddings(server, batch_size),
        limiter=limiter,
        batch_size=batch_size,
        retry=retry,
        request_timeout=request_timeout,
    )


def texts_of(count: int) -> list[str]:
    return [f"text number {i} " * (1 + i % 3) for i in range(count)]


def expected(texts: list[str]) -> list[list[float]]:
    return [fake_embedding(text) for text in texts]


async def wait_until_in_flight(server: FakeOpenAIServer, count: int) -> None:
    async with asyncio.timeout(10):
        await server.wait_for_in_flight(count)


@functools.cache
def _error_client() -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url="http://127.0.0.1/v1")


def http_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    """The exception the real client raises for this response."""
    request = httpx2.Request("POST", "http://127.0.0.1/v1/embeddings")
    response = httpx2.Response(status, headers=headers, request=request)
    return _error_client()._make_status_error_from_response(response)


# -- pure helpers --------------------------------------------------------------------------


def test_plan_batches_covers_every_text_once() -> None:
    assert plan_batches(0, 4) == []
    assert plan_batches(10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_retryable_errors_are_classified() -> None:
    request = httpx2.Request("POST", "http://x")
    assert is_retryable(http_error(429)) and is_rate_limited(http_error(429))
    assert isinstance(http_error(429), openai.RateLimitError)
    for status in (408, 409, 500, 502, 503):
        assert is_retryable(http_error(status)), status
        assert not is_rate_limited(http_error(status))
    for status in (400, 401, 403, 404, 422):
        assert not is_retryable(http_error(status)), status
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert is_retryable(TimeoutError())
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(httpx2.ReadTimeout("slow"))
    assert is_retryable(aiohttp.ServerDisconnectedError())
    plain_request = httpx.Request("POST", "http://x")
    for status, retryable in ((503, True), (429, True), (403, False)):
        response = httpx.Response(status, request=plain_request)
        error = httpx.HTTPStatusError("boom", request=plain_request, response=response)
        assert is_retryable(error) is retryable
    response2 = httpx2.Response(429, request=request)
    assert is_rate_limited(httpx2.HTTPStatusError("slow down", request=request, response=response2))
    url = URL("http://x")
    info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    assert is_rate_limited(aiohttp.ClientResponseError(info, (), status=429))
    assert not is_retryable(aiohttp.ClientResponseError(info, (), status=401))
    assert not is_retryable(ValueError("a bug"))


def test_retry_after_is_read_from_every_header_form() -> None:
    assert retry_after_seconds(http_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(http_error(429, {"Retry-After": "3"})) == 3.0
    both = {"retry-after": "3", "retry-after-ms": "1500"}
    assert retry_after_seconds(http_error(429, both)) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(http_error(429, {"retry-after": date}), now=1_000_000) == 30.0
    assert retry_after_seconds(http_error(429, {"retry-after": "soon"})) is None
    assert retry_after_seconds(http_error(429, {"retry-after": "-5"})) == 0.0
    assert retry_after_seconds(http_error(429)) is None
    assert retry_after_seconds(ValueError()) is None

    class WithPlainHeaders(Exception):
        headers = {"Retry-After": "2"}

    assert retry_after_seconds(WithPlainHeaders()) == 2.0


def test_reset_durations_are_parsed_as_openai_writes_them() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("2m59.56s") == pytest.approx(179.56)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("8.64s") == pytest.approx(8.64)
    assert parse_duration("1.5") == 1.5  # a plain number of seconds
    for bad in ("", "soon", "1x", "s", "1s2", "-1s", "-3", "1s 2s"):
        assert parse_duration(bad) is None, bad


def test_limit_answers_are_read_from_openai_headers() -> None:
    headers = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
    }
    assert limit_answer(headers) == LimitAnswer(limit=20, remaining=4, reset=1.0)
    assert limit_answer({"content-type": "application/json"}) is None  # says nothing
    odd = {"x-ratelimit-limit-requests": "many", "x-ratelimit-reset-requests": "later"}
    assert limit_answer(odd, refused=True) == LimitAnswer(refused=True)
    refusal = http_error(
        429,
        {"x-ratelimit-limit-requests": "20", "x-ratelimit-remaining-requests": "0",
         "x-ratelimit-reset-requests": "950ms", "retry-after-ms": "120"},
    )  # fmt: skip
    assert limit_answer_of(refusal) == LimitAnswer(
        limit=20, remaining=0, reset=pytest.approx(0.95), retry_after=0.12, refused=True
    )
    assert limit_answer_of(http_error(500, {"retry-after": "1"})) is None  # not a rate limit
    assert limit_answer_of(ValueError()) is None


def test_backoff_grows_with_jitter_and_respects_caps() -> None:
    policy = RetryConfig(initial_backoff=1.0, max_backoff=8.0, max_total_seconds=100.0)
    assert backoff_delay(1, policy, jitter=0.0) == 0.5
    assert backoff_delay(1, policy, jitter=0.999) == pytest.approx(1.0, abs=1e-3)
    assert backoff_delay(3, policy, jitter=0.0) == 2.0
    assert backoff_delay(10, policy, jitter=0.999) <= 8.0
    assert backoff_delay(500, policy) <= 8.0
    assert backoff_delay(1, policy, jitter=0.0, retry_after=5.0) == 5.0
    assert backoff_delay(1, policy, jitter=0.999, retry_after=5.0) == pytest.approx(5.5, 1e-3)
    # the service's word over our exponential backoff, both ways
    assert backoff_delay(4, policy, jitter=0.0, retry_after=0.2) == 0.2
    assert backoff_delay(1, policy, jitter=0.0, retry_after=50.0) == 8.0
    assert backoff_delay(3, policy, jitter=0.0, elapsed=99.5) == 0.5
    assert backoff_delay(3, policy, jitter=0.0, elapsed=150.0) == 0.0


def test_invalid_arguments_are_rejected() -> None:
    limiter = ServiceLimiter("svc")
    inner = OpenAIEmbeddings(api_key=SecretStr("test"), max_retries=0)
    with pytest.raises(ConfigurationError):
        RateLimitedEmbeddings(inner, limiter=limiter, batch_size=0)
    with pytest.raises(ConfigurationError):
        RateLimitedEmbeddings(inner, limiter=limiter, request_timeout=0)


# -- async, against the fake server ----------------------------------------------------------


async def test_sub_batches_run_concurrently_within_the_bound_in_order(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.latency = 0.05
    embeddings = make_embeddings(openai_server, batch_size=4, concurrency=3)
    texts = texts_of(40)
    vectors = await embeddings.aembed_documents(texts)
    stats = openai_server.stats
    assert 1 < stats.peak_in_flight <= 3
    assert embeddings.limiter.peak_in_flight <= 3
    assert stats.requests == 10
    assert stats.embedded_texts == 40
    openai_server.latency = 0.0
    alone = [await embeddings.inner.aembed_query(text) for text in texts]
    assert vectors == alone == expected(texts)
    assert embeddings.stats == {
        "requests": 10,
        "retries": 0,
        "rate_limited": 0,
        "failures": 0,
        "timeouts": 0,
        "bad_responses": 0,
    }


async def test_empty_input_sends_nothing(openai_server: FakeOpenAIServer) -> None:
    embeddings = make_embeddings(openai_server)
    assert await embeddings.aembed_documents([]) == []
    assert openai_server.stats.requests == 0


async def test_request_rate_limit_holds(openai_server: FakeOpenAIServer) -> None:
    embeddings = make_embeddings(
        openai_server, batch_size=1, rate_limit=RateLimitConfig(requests_per_minute=240)
    )
    texts = texts_of(8)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    times = sorted(openai_server.stats.request_times)
    assert len(times) == 8
    # A bucket of 4 requests refilled at 4 a second: the last 4 need at least a second
    # (unlimited, all 8 would arrive within milliseconds). The bounds leave room for jitter.
    assert times[-1] - times[0] >= 0.75
    for first in range(len(times)):
        for last in range(first + 1, len(times)):
            allowed = 4 + 4 * (times[last] - times[first]) + 2
            assert last - first + 1 <= allowed


async def test_429_with_retry_after_is_honoured_then_recovers(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fail_next(2, status=429, retry_after=0.3)
    embeddings = make_embeddings(openai_server, batch_size=4, concurrency=8)
    texts = texts_of(4)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    times = openai_server.stats.request_times
    assert len(times) == 3
    # the backoff alone would wait ~0.01-0.02 s; Retry-After asks for 0.3 s
    assert times[1] - times[0] >= 0.29
    assert times[2] - times[1] >= 0.29
    assert embeddings.stats == {
        "requests": 3,
        "retries": 2,
        "rate_limited": 2,
        "failures": 0,
        "timeouts": 0,
        "bad_responses": 0,
    }
    # 8 -> 4: a lone 429 naming no limit could be a flaky service's (it halves nothing);
    # the second within a second is a limit's pattern. One success is not a window.
    assert embeddings.limiter.concurrency_limit == 4


async def test_server_errors_are_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(3, status=500)
    embeddings = make_embeddings(openai_server, batch_size=2, concurrency=1)
    texts = texts_of(4)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    assert openai_server.stats.status_counts == {500: 3, 200: 2}
    assert embeddings.stats["retries"] == 3
    assert embeddings.limiter.concurrency_limit == 1  # 5xx is not a rate limit: no shrink


async def test_hanging_request_is_retried_after_request_timeout(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.hang_next(1)
    embeddings = make_embeddings(openai_server, batch_size=4, request_timeout=0.3)
    texts = texts_of(4)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    assert embeddings.stats["retries"] == 1
    assert embeddings.stats["requests"] == 2


async def test_the_window_is_learnt_from_successful_answers_through_a_response_hook(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.sliding_window = SlidingWindowLimit(requests=5, seconds=1.0)
    http_client = openai.DefaultAsyncHttpxClient()
    inner = OpenAIEmbeddings(
        http_async_client=http_client,
        model="text-embedding-3-small",
        api_key=SecretStr("test"),
        base_url=openai_server.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        chunk_size=4,
    )
    limiter = ServiceLimiter("fake-openai", max_concurrency=2)
    embeddings = RateLimitedEmbeddings(inner, limiter=limiter, batch_size=4, retry=FAST_RETRY)
    RateLimitedEmbeddings(inner, limiter=limiter, batch_size=4)  # each wrapper adds its hook
    assert len(http_client.event_hooks["response"]) == 2
    assert limiter.paced_windows == ()
    texts = texts_of(4)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    assert openai_server.stats.status_counts == {200: 1}
    assert limiter.paced_windows == (RequestWindow(5, 1.0),)  # from the 200's headers
    await http_client.aclose()


async def test_without_a_hook_the_window_is_learnt_from_a_429(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.sliding_window = SlidingWindowLimit(requests=1, seconds=60.0)
    embeddings = make_embeddings(openai_server, retry=RetryConfig(max_attempts=1))
    texts = texts_of(4)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    assert embeddings.limiter.paced_windows == ()  # a 200's headers are not seen
    with pytest.raises(EmbeddingError):
        await embeddings.aembed_documents(texts_of(5)[1:])
    [window] = embeddings.limiter.paced_windows
    assert window.requests == 1
    assert 59.0 < window.seconds <= 60.0  # the reset of the 429: when the window clears


async def test_concurrency_shrinks_on_429_and_grows_back(openai_server: FakeOpenAIServer) -> None:
    embeddings = make_embeddings(openai_server, batch_size=1, concurrency=8)
    limiter = embeddings.limiter
    openai_server.fail_next(3, status=429)
    await embeddings.aembed_documents(["warm up"])
    # 8 -> 4 -> 2 -> 1, then the final success (a full window at 1) opens a second slot
    assert limiter.concurrency_limit == 2
    assert embeddings.stats["rate_limited"] == 3

    openai_server.latency = 0.05
    limiter.reset_peak()
    openai_server.reset_stats()
    await embeddings.aembed_documents(texts_of(4))
    # it starts at 2 and grows by one per window of successes
    assert openai_server.stats.peak_in_flight <= 3
    assert limiter.peak_in_flight <= 3

    openai_server.latency = 0.0
    await embeddings.aembed_documents(texts_of(40))
    assert limiter.concurrency_limit == 8  # grown back, and never above the bound
    assert limiter.peak_in_flight <= 8


async def test_non_retryable_400_fails_fast(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, status=400)
    embeddings = make_embeddings(openai_server, batch_size=4, concurrency=1)
    texts = texts_of(12)
    sources = ["a.md"] * 6 + ["b.md"] * 6
    with pytest.raises(EmbeddingError) as caught:
        await embeddings.aembed_documents(texts, sources=sources)
    error = caught.value
    assert isinstance(error.__cause__, openai.BadRequestError)
    # Only the rejected sub-batch failed (one attempt); the other two still ran.
    assert error.failed_count == 4
    assert error.sources == ("a.md",)
    assert "rejected" in str(error)
    assert openai_server.stats.requests == 3
    assert embeddings.stats["failures"] == 1
    assert embeddings.limiter.in_flight == 0


async def test_exhausted_retries_name_the_failed_texts_and_sources(
    openai_server: FakeOpenAIServer,
) -> None:
    retry = RetryConfig(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)
    embeddings = make_embeddings(openai_server, batch_size=4, concurrency=1, retry=retry)
    texts = texts_of(12)
    sources = ["a.md"] * 4 + ["b.md"] * 2 + ["c.md"] * 6
    openai_server.fail_next(2, status=503, after=1)  # batch 1 fails twice; batch 2 still runs
    with pytest.raises(EmbeddingError) as caught:
        await embeddings.aembed_documents(texts, sources=sources)
    error = caught.value
    assert error.failed_count == 4
    assert error.sources == ("b.md", "c.md")
    assert "4 text(s) failed" in str(error) and "b.md" in str(error)
    assert "after 2 attempt(s), the most allowed" in str(error)
    assert isinstance(error.__cause__, openai.InternalServerError)
    assert openai_server.stats.requests == 4


async def test_sources_must_match_texts(openai_server: FakeOpenAIServer) -> None:
    embeddings = make_embeddings(openai_server)
    with pytest.raises(ConfigurationError, match="one entry per text"):
        await embeddings.aembed_documents(["a", "b"], sources=["a.md"])


async def test_cancelling_the_caller_leaves_no_running_tasks(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.hang_next(3)
    embeddings = make_embeddings(openai_server, batch_size=2, concurrency=3)
    call = asyncio.create_task(embeddings.aembed_documents(texts_of(20)))
    await wait_until_in_flight(openai_server, 3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(WORKER_TASK_PREFIX) and not task.done()
    ]
    assert leftovers == []
    assert embeddings.limiter.in_flight == 0
    # every slot was given back: the next call gets all three again
    openai_server.latency = 0.05
    embeddings.limiter.reset_peak()
    texts = texts_of(9)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    assert embeddings.limiter.peak_in_flight == 3


async def test_overall_timeout_raises_embedding_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.hang_next(1, after=1)
    embeddings = make_embeddings(openai_server, batch_size=2, concurrency=1)
    with pytest.raises(EmbeddingError, match="did not finish within 1.0 s") as caught:
        await embeddings.aembed_documents(texts_of(6), sources=list("aabbcc"), timeout=1.0)
    assert caught.value.failed_count == 4
    assert caught.value.sources == ("b", "c")
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert isinstance(caught.value, EmbeddingTimeoutError) and caught.value.timeout == 1.0


async def test_query_goes_through_the_limiter_and_retries(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fail_next(1, status=502)
    embeddings = make_embeddings(openai_server)
    assert await embeddings.aembed_query("where is the borrow checker?") == fake_embedding(
        "where is the borrow checker?"
    )
    assert embeddings.stats["retries"] == 1
    openai_server.fail_next(1, status=401)
    with pytest.raises(EmbeddingError) as caught:
        await embeddings.aembed_query("q")
    assert caught.value.failed_count == 1


async def test_each_attempt_has_a_span_and_the_batch_counts_attempts(
    openai_server: FakeOpenAIServer,
) -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        pytest.skip("another test installed a non-SDK tracer provider")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    openai_server.fail_next(1, status=500)
    embeddings = make_embeddings(openai_server, batch_size=4)
    await embeddings.aembed_documents(texts_of(4))
    spans = exporter.get_finished_spans()
    exporter.shutdown()
    attempts = [dict(s.attributes or {}) for s in spans if s.name == "embed"]
    batches = [dict(s.attributes or {}) for s in spans if s.name == "embed_batch"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["batch_size"] == 4 for a in attempts)
    assert len(batches) == 1 and batches[0]["attempts"] == 2


# -- the sync twin ---------------------------------------------------------------------------


def test_sync_twin_embeds_in_order_with_retries(threaded_openai_server: FakeOpenAIServer) -> None:
    server = threaded_openai_server
    server.fail_next(1, status=429, retry_after=0.2)
    embeddings = make_embeddings(server, batch_size=3)
    texts = texts_of(10)
    assert embeddings.embed_documents(texts) == expected(texts)
    times = server.stats.request_times
    assert len(times) == 5  # 4 batches, one of them retried
    assert times[1] - times[0] >= 0.19
    assert embeddings.embed_query("q") == fake_embedding("q")
    assert embeddings.stats["rate_limited"] == 1


def test_sync_twin_is_paced_to_the_request_rate(threaded_openai_server: FakeOpenAIServer) -> None:
    embeddings = make_embeddings(
        threaded_openai_server, batch_size=1, rate_limit=RateLimitConfig(requests_per_minute=600)
    )
    started = time.monotonic()
    assert embeddings.embed_documents(texts_of(5)) == expected(texts_of(5))
    assert time.monotonic() - started >= 0.39  # four gaps of 0.1 s
    times = threaded_openai_server.stats.request_times
    assert times[-1] - times[0] >= 0.3  # unpaced, five requests take milliseconds


def test_sync_twin_reports_failed_texts(threaded_openai_server: FakeOpenAIServer) -> None:
    threaded_openai_server.fail_next(1, status=404, after=1)
    embeddings = make_embeddings(threaded_openai_server, batch_size=2)
    with pytest.raises(EmbeddingError) as caught:
        embeddings.embed_documents(texts_of(6), sources=["x", "x", "y", "y", "z", "z"])
    assert caught.value.failed_count == 4
    assert caught.value.sources == ("y", "z")
    assert isinstance(caught.value.__cause__, openai.NotFoundError)


# -- the standard LangChain suites -----------------------------------------------------------


@pytest.fixture(scope="module")
def module_openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer.run_in_thread() as server:
        yield server


class TestRateLimitedEmbeddingsStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[RateLimitedEmbeddings]:
        return RateLimitedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"inner": DeterministicFakeEmbedding(size=8), "limiter": ServiceLimiter("std")}


class TestRateLimitedEmbeddingsStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[RateLimitedEmbeddings]:
        return RateLimitedEmbeddings

    @pytest.fixture
    def model(self, module_openai_server: FakeOpenAIServer) -> Embeddings:
        return make_embeddings(module_openai_server, batch_size=2)


def test_backoff_follows_the_service_s_failures_in_a_row_not_the_request_s() -> None:
    from tenacity import RetryCallState

    from langchain_rag_async.embeddings.rate_limited import _Attempts

    wrapper = RateLimitedEmbeddings(
        DeterministicFakeEmbedding(size=4), limiter=ServiceLimiter("svc"), batch_size=2
    )
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = 6  # this request's sixth failure...
    failure = TimeoutError("no answer")
    wrapper._record_failure(failure, _Attempts())
    wrapper._record_success()  # ...but others succeed meanwhile: bad luck, retry soon
    wrapper._record_failure(failure, _Attempts())
    assert wrapper._wait(state) <= wrapper.retry.initial_backoff
    for _ in range(5):  # everything fails: the service is down, back off exponentially
        wrapper._record_failure(failure, _Attempts())
    assert wrapper._wait(state) >= wrapper.retry.initial_backoff * 2**5 / 2


# -- a limit the service enforces but does not state ---------------------------------------

PATIENT_RETRY = RetryConfig(
    max_attempts=40, retry_budget_min=0, retry_budget_ratio=0.0, persistent_probability=0.0
)


async def test_refusals_naming_no_limit_teach_a_rate_so_few_requests_are_refused(
    openai_server: FakeOpenAIServer,
) -> None:
    # A bucket of 8 requests/s that sends only Retry-After (up to 1/8 s): the requests
    # refused together must not all come back together. Before the learnt rate, 20
    # requests met 35-40 refusals; paced by what was admitted, a handful at most.
    openai_server.requests_per_second = 8.0
    embeddings = make_embeddings(openai_server, batch_size=2, concurrency=4, retry=PATIENT_RETRY)
    texts = texts_of(40)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    stats = openai_server.stats
    assert stats.status_counts[200] == 20
    assert 0 < stats.status_counts[429] <= 10
    rate = embeddings.limiter.learnt_rate
    assert rate is not None and 0.5 <= rate


@pytest.mark.parametrize("window", [1.0, 3.0])
async def test_a_silent_sliding_window_is_paced_with_few_refusals(
    openai_server: FakeOpenAIServer, window: float
) -> None:
    # At most 10 requests in any sliding window, no x-ratelimit-* headers: only the
    # Retry-After of its refusals tells the client anything.
    openai_server.sliding_window = SlidingWindowLimit(requests=10, seconds=window)
    openai_server.states_limits = False
    embeddings = make_embeddings(openai_server, batch_size=1, concurrency=4, retry=PATIENT_RETRY)
    texts = texts_of(30)
    assert await embeddings.aembed_documents(texts) == expected(texts)
    stats = openai_server.stats
    assert stats.status_counts[200] == 30
    assert stats.status_counts[429] <= 12
    assert embeddings.limiter.paced_windows == ()  # nothing stated, nothing read from headers
