"""The fake OpenAI server speaks the API the real clients expect."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any

import aiohttp
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_rag_async.errors import ConfigurationError, UsageError
from langchain_rag_async.testing.faults import (
    SlidingWindowLimit,
    SlidingWindowLog,
    format_reset,
)
from langchain_rag_async.testing.openai_server import (
    FakeOpenAIServer,
    fake_embedding,
    split_reply,
)


async def _post_json(
    server: FakeOpenAIServer, path: str, body: object
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.base_url + path, json=body) as response,
    ):
        return response.status, await response.json()


def test_fake_embedding_is_deterministic_and_unit_length() -> None:
    first = fake_embedding("hello", 32)
    assert first == fake_embedding("hello", 32)
    assert first != fake_embedding("hello!", 32)
    assert len(first) == 32
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, rel_tol=1e-5)


def test_split_reply_joins_back() -> None:
    reply = "  Hello,  async world!\n bye "
    tokens = split_reply(reply)
    assert len(tokens) > 3
    assert "".join(tokens) == reply


async def test_embeddings_float_format(openai_server: FakeOpenAIServer) -> None:
    status, body = await _post_json(
        openai_server,
        "/embeddings",
        {"model": "m", "input": ["a", "b", "c"], "encoding_format": "float"},
    )
    assert status == 200
    assert body["object"] == "list"
    assert body["model"] == "m"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    assert [d["embedding"] for d in body["data"]] == [fake_embedding(t, 64) for t in "abc"]
    assert body["usage"]["prompt_tokens"] == 3
    assert openai_server.stats.embedded_texts == 3


async def test_embeddings_single_string_tokens_and_dimensions(
    openai_server: FakeOpenAIServer,
) -> None:
    _, one = await _post_json(openai_server, "/embeddings", {"model": "m", "input": "solo"})
    assert one["data"][0]["embedding"] == fake_embedding("solo", 64)

    _, tokens = await _post_json(
        openai_server, "/embeddings", {"model": "m", "input": [[1, 2, 3], [4]], "dimensions": 8}
    )
    vectors = [d["embedding"] for d in tokens["data"]]
    assert vectors == [fake_embedding([1, 2, 3], 8), fake_embedding([4], 8)]


async def test_real_openai_client_gets_base64_vectors(openai_server: FakeOpenAIServer) -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=openai_server.base_url, max_retries=0)
    async with client:
        response = await client.embeddings.create(model="text-embedding-3-small", input=["x", "y"])
    # The client asks for base64 unless told otherwise and decodes float32 values.
    assert [d.embedding for d in response.data] == [fake_embedding("x"), fake_embedding("y")]


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[1, 2]", json.dumps({"model": "m"}), json.dumps({"input": [1.5, "x"]})],
)
async def test_bad_embedding_requests_get_openai_shaped_400(
    openai_server: FakeOpenAIServer, payload: bytes | str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(openai_server.base_url + "/embeddings", data=payload) as response,
    ):
        body = await response.json()
    assert response.status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


async def test_real_client_raises_bad_request_on_malformed_input(
    openai_server: FakeOpenAIServer,
) -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=openai_server.base_url, max_retries=0)
    async with client:
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="m", input=[])


async def test_models_endpoint_lists_models(openai_server: FakeOpenAIServer) -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=openai_server.base_url, max_retries=0)
    async with client:
        models = [m.id async for m in client.models.list()]
    assert "text-embedding-3-small" in models


async def test_chat_completion_echoes_last_user_message(openai_server: FakeOpenAIServer) -> None:
    chat = ChatOpenAI(
        model="gpt-4o-mini",
        api_key=SecretStr("test"),
        base_url=openai_server.base_url,
        max_retries=0,
    )
    reply = await chat.ainvoke([("system", "be brief"), ("user", "echo this please")])
    assert reply.content == "echo this please"


async def test_chat_streaming_yields_word_chunks_and_usage(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.chat_reply = "Ownership moves values between bindings."
    openai_server.chat_token_delay = 0.001
    chat = ChatOpenAI(
        model="gpt-4o-mini",
        api_key=SecretStr("test"),
        base_url=openai_server.base_url,
        max_retries=0,
        stream_usage=True,
    )
    chunks = [chunk async for chunk in chat.astream("what is ownership?")]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) == len(split_reply(openai_server.chat_reply)) > 1
    assert "".join(str(t) for t in texts) == openai_server.chat_reply
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk)
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == len(texts)


async def test_fail_next_sends_status_and_retry_after(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, status=429, retry_after=1.5)
    openai_server.fail_next(1, status=503, after=1)
    body = {"model": "m", "input": "a"}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(4):
            async with session.post(openai_server.base_url + "/embeddings", json=body) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert r.headers["retry-after-ms"] == "1500"
                    assert float(r.headers["retry-after"]) == 1.5
                    assert (await r.json())["error"]["type"] == "rate_limit_exceeded"
    assert statuses == [429, 200, 503, 200]
    stats = openai_server.stats
    assert stats.requests == 4
    assert stats.status_counts == {429: 1, 200: 2, 503: 1}
    assert len(stats.request_times) == 4
    openai_server.reset_stats()
    assert openai_server.stats.requests == 0


async def test_server_side_rate_limit_answers_429(openai_server: FakeOpenAIServer) -> None:
    openai_server.requests_per_second = 1.0  # a bucket of one, refilled every second
    body = {"model": "m", "input": "a"}
    async with aiohttp.ClientSession() as session:
        statuses, waits = [], []
        for _ in range(5):
            async with session.post(openai_server.base_url + "/embeddings", json=body) as r:
                statuses.append(r.status)
                waits.append(r.headers.get("retry-after-ms"))
    assert statuses[0] == 200
    assert 429 in statuses[1:]
    assert all(0 < int(w or 0) <= 1000 for s, w in zip(statuses, waits, strict=True) if s == 429)


async def test_latency_lets_requests_overlap(openai_server: FakeOpenAIServer) -> None:
    openai_server.latency = 0.2
    body = {"model": "m", "input": "a"}
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(openai_server.base_url + "/embeddings", json=body) as r:
                return r.status

        assert await asyncio.gather(*(one() for _ in range(4))) == [200] * 4
    stats = openai_server.stats
    assert stats.peak_in_flight == 4
    assert stats.in_flight == 0


async def test_hanging_request_is_released_by_stop() -> None:
    server = FakeOpenAIServer()
    await server.start()
    server.hang_next(1)
    client = openai.AsyncOpenAI(api_key="test", base_url=server.base_url, max_retries=0)
    async with client:
        request = asyncio.create_task(client.embeddings.create(model="m", input="x"))
        async with asyncio.timeout(10):
            await server.wait_for_in_flight(1)
        assert not request.done()
        await server.stop()
        with pytest.raises(openai.APIError):
            await request


async def test_hanging_request_ends_when_the_client_gives_up(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.hang_next(1)
    client = openai.AsyncOpenAI(
        api_key="test", base_url=openai_server.base_url, max_retries=0, timeout=0.2
    )
    async with client:
        with pytest.raises(openai.APITimeoutError):
            await client.embeddings.create(model="m", input="x")
        # The next request is served normally.
        response = await client.embeddings.create(model="m", input="x")
    assert response.data[0].embedding == fake_embedding("x")


def test_run_in_thread_serves_sync_clients(threaded_openai_server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key="test", base_url=threaded_openai_server.base_url, max_retries=0)
    with client:
        response = client.embeddings.create(model="m", input=["sync"])
    assert response.data[0].embedding == fake_embedding("sync")
    assert threaded_openai_server.stats.requests == 1


def test_run_in_thread_stops_listening_on_exit() -> None:
    with FakeOpenAIServer.run_in_thread(dimension=8) as server:
        base_url = server.base_url
        with openai.OpenAI(api_key="test", base_url=base_url, max_retries=0) as client:
            assert len(client.embeddings.create(model="m", input="a").data[0].embedding) == 8
    with pytest.raises(UsageError, match="not running"):
        _ = server.base_url
    assert not any(t.name == "fake-openai-server" for t in threading.enumerate())
    with openai.OpenAI(api_key="test", base_url=base_url, max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError):
            client.embeddings.create(model="m", input="a")


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ConfigurationError):
        FakeOpenAIServer(dimension=0)
    with pytest.raises(ConfigurationError):
        FakeOpenAIServer(requests_per_second=0)
    with pytest.raises(ConfigurationError):
        FakeOpenAIServer().fail_next(1, status=200)
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError too
        FakeOpenAIServer().hang_next(-1)


def test_run_in_thread_uses_a_portal_of_its_own() -> None:
    with FakeOpenAIServer.run_in_thread() as server:
        names = {t.name for t in threading.enumerate()}
        assert "fake-openai-server" in names
        with openai.OpenAI(api_key="t", base_url=server.base_url, max_retries=0) as client:
            assert client.models.list().data  # served from the server's own loop
    assert not any(t.name == "fake-openai-server" for t in threading.enumerate())


async def test_starting_twice_is_a_usage_error() -> None:
    async with FakeOpenAIServer() as server:
        with pytest.raises(UsageError, match="already running"):
            await server.start()


# -- strict rate limits: a sliding window ---------------------------------------------------


def test_format_reset_writes_durations_as_openai_does() -> None:
    assert format_reset(0.02) == "20ms"
    assert format_reset(0.0) == "0ms"
    assert format_reset(1.0) == "1s"
    assert format_reset(8.64) == "8.64s"
    assert format_reset(360.0) == "6m0s"
    assert format_reset(3725.5) == "1h2m5.5s"


def test_sliding_window_admits_n_in_any_window_however_evenly_spread() -> None:
    log = SlidingWindowLog(SlidingWindowLimit(requests=20, seconds=1.0))
    # 32 a second (times exact in binary): a bucket of 20 refilled at 20/s would admit 20
    # at once and then 20 more every second
    decisions = [log.admit(i / 32) for i in range(60)]
    admitted = [i for i, d in enumerate(decisions) if d.admitted]
    assert admitted == [*range(20), *range(32, 52)]  # never 21 within one second
    first, full, refused = decisions[0], decisions[19], decisions[20]
    assert first.headers == {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "19",
        "x-ratelimit-reset-requests": "1s",
    }
    assert full.headers["x-ratelimit-remaining-requests"] == "0"
    assert full.headers["x-ratelimit-reset-requests"] == "1s"
    # refused at 0.625 s: the first admitted (at 0.0) leaves the window at 1.0 s
    assert refused.headers["retry-after-ms"] == "375"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "969ms"  # the newest leaves


def test_sliding_window_refusals_say_when_a_place_frees_and_do_not_count() -> None:
    log = SlidingWindowLog(SlidingWindowLimit(requests=2, seconds=10.0))
    assert log.admit(0.0).admitted
    assert log.admit(4.0).admitted
    refused = log.admit(6.0)
    assert not refused.admitted
    assert refused.headers["retry-after"] == "4.000"
    assert refused.headers["retry-after-ms"] == "4000"
    assert refused.headers["x-ratelimit-reset-requests"] == "8s"  # the one at 4.0 leaves at 14
    assert log.admit(10.0).admitted  # the refusal at 6.0 did not count
    assert not log.admit(13.9).admitted


def test_sliding_window_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        SlidingWindowLimit(requests=0, seconds=1.0)
    with pytest.raises(ConfigurationError):
        SlidingWindowLimit(requests=1, seconds=0.0)


async def test_sliding_window_server_sends_ratelimit_headers_on_every_answer(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.sliding_window = SlidingWindowLimit(requests=3, seconds=60.0)
    body = {"model": "m", "input": "a"}
    seen = []
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            async with session.post(openai_server.base_url + "/embeddings", json=body) as r:
                seen.append(
                    (
                        r.status,
                        r.headers["x-ratelimit-limit-requests"],
                        r.headers["x-ratelimit-remaining-requests"],
                        "retry-after-ms" in r.headers,
                    )
                )
        async with session.get(openai_server.base_url + "/models") as r:
            assert "x-ratelimit-limit-requests" not in r.headers  # only POSTs are limited
    assert seen == [
        (200, "3", "2", False),
        (200, "3", "1", False),
        (200, "3", "0", False),
        (429, "3", "0", True),
        (429, "3", "0", True),
    ]
    assert openai_server.stats.status_counts == {200: 4, 429: 2}  # the GET included
    openai_server.sliding_window = None
    async with aiohttp.ClientSession() as session:
        async with session.post(openai_server.base_url + "/embeddings", json=body) as r:
            assert r.status == 200
            assert "x-ratelimit-limit-requests" not in r.headers


async def test_real_client_sees_the_sliding_window_headers(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.sliding_window = SlidingWindowLimit(requests=1, seconds=60.0)
    client = openai.AsyncOpenAI(api_key="test", base_url=openai_server.base_url, max_retries=0)
    raw = await client.embeddings.with_raw_response.create(model="m", input="a")
    assert raw.headers["x-ratelimit-reset-requests"] == "1m0s"
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(model="m", input="b")
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    await client.close()
