"""A local OpenAI-compatible HTTP server for tests and benchmarks (loopback only, no keys).

Serves ``POST /v1/embeddings`` (deterministic vectors), ``POST /v1/chat/completions``
(plain and streamed) and ``GET /v1/models``, and can inject latency, rate limits (429 with
``Retry-After``; a bucket, or a strict sliding window that sends OpenAI's ``x-ratelimit-*``
headers on every answer), error statuses and hanging requests (queued, or drawn at random from a
seeded :class:`~langchain_rag_async.testing.faults.FaultMix`: resets, broken JSON, bad
vectors too), so that the real ``openai`` client and ``langchain-openai`` classes can be
exercised without a network.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.aio import BlockingPortal
from langchain_rag_async.errors import ConfigurationError, UsageError
from langchain_rag_async.testing.faults import (
    VECTOR_FAULTS,
    FaultKind,
    FaultMix,
    SlidingWindowLimit,
    SlidingWindowLog,
    WindowDecision,
    corrupt_vectors,
    draw_fault,
)

try:
    from aiohttp import web
except ImportError as exc:  # the `testing` extra; say how to get it
    raise ImportError(
        "langchain_rag_async.testing needs aiohttp: pip install 'langchain-rag-async[testing]'"
    ) from exc

__all__ = ("FakeOpenAIServer", "ServerStats", "fake_embedding", "split_reply")

DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_CHAT_MODEL = "gpt-4o-mini"
_HANG = -1  # marker status of a request that never answers
_PASS = 0  # marker status of a request let through before later faults
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fake_embedding(text: str | Sequence[int], dimension: int = 64) -> list[float]:
    """The vector the fake server returns for ``text``: unit length, seeded by its SHA-256.

    Values are float32 numbers, so JSON floats and base64 payloads decode to the same vector.

    Args:
        text: A string, or a list of token ids.
        dimension: Length of the vector.
    """
    key = text if isinstance(text, str) else "tokens:" + ",".join(str(int(t)) for t in text)
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    vector /= np.float32(np.linalg.norm(vector))
    return [float(x) for x in vector]


def _embedding_data(
    inputs: Sequence[str | list[int]],
    dimension: int,
    as_base64: bool,
    fault: FaultKind | None = None,
) -> list[dict[str, Any]]:
    vectors = corrupt_vectors(fault, [fake_embedding(item, dimension) for item in inputs])
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        payload: list[float] | str = (
            base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": payload})
    return data


def split_reply(reply: str) -> list[str]:
    """Cut a reply into word tokens (with their trailing spaces) that join back to it."""
    return re.findall(r"\S+\s*|\s+", reply)


@dataclass(slots=True)
class ServerStats:
    """What the fake server has seen since start or :meth:`FakeOpenAIServer.reset_stats`.

    Attributes:
        requests: Requests received (every endpoint, failures and hangs included).
        in_flight: Requests being handled now.
        peak_in_flight: Most requests handled at once.
        embedded_texts: Inputs answered with a vector.
        status_counts: Answers per HTTP status.
        request_times: ``time.monotonic()`` of each POST request's arrival.
        faults_injected: Faults drawn from the :class:`FaultMix`, per kind.
    """

    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    embedded_texts: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    request_times: list[float] = field(default_factory=list)
    faults_injected: Counter[str] = field(default_factory=Counter)

    def copy(self) -> ServerStats:
        """Return an independent snapshot."""
        return ServerStats(
            requests=self.requests,
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            embedded_texts=self.embedded_texts,
            status_counts=Counter(self.status_counts),
            request_times=list(self.request_times),
            faults_injected=Counter(self.faults_injected),
        )


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: float | None = None


class _BadRequest(Exception):
    """A request body the fake server refuses with 400."""


def _error_response(
    status: int, message: str, *, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": f"{seconds:.3f}", "retry-after-ms": str(max(1, round(seconds * 1000)))}


def _error_kind(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    return "server_error" if status >= 500 else "invalid_request_error"


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    return body


def _embedding_inputs(body: dict[str, Any]) -> list[str | list[int]]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        return [raw]  # one token-id list
    if isinstance(raw, list) and raw:
        if all(isinstance(item, str) for item in raw):
            return list(raw)
        if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in raw):
            return list(raw)
    raise _BadRequest("'input' must be a non-empty string, list of strings or token-id lists")


def _last_user_text(messages: object) -> str:
    if not isinstance(messages, list):
        raise _BadRequest("'messages' must be a list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
    return ""


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``127.0.0.1`` with injectable latency and failures.

    Use ``async with FakeOpenAIServer() as server`` inside a running loop, or
    ``with FakeOpenAIServer.run_in_thread() as server`` from sync code (on a
    :class:`~langchain_rag_async.aio.BlockingPortal` of its own: its own loop in a daemon
    thread). Point clients at :attr:`base_url`.

    Args:
        dimension: Length of the embedding vectors (unless a request asks for ``dimensions``).
        latency: Seconds every POST request waits before answering.
        requests_per_second: Server-side rate limit (a bucket of one second of requests);
            requests above it get 429 with ``Retry-After``. ``None``: unlimited.
        sliding_window: A strict limit: at most N POST requests in any sliding window of W
            seconds; every POST answer carries ``x-ratelimit-limit-requests``,
            ``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests`` (as
            OpenAI's do), a refusal is 429 with ``retry-after`` and ``retry-after-ms``.
            Checked after ``requests_per_second``. ``None``: none.
        states_limits: Whether the answers under ``sliding_window`` carry the
            ``x-ratelimit-*`` headers; ``False``: a service enforcing a limit it does not
            state (its refusals still carry ``retry-after``).
        chat_reply: Fixed chat reply; ``None`` echoes the last user message.
        chat_token_delay: Seconds between streamed chat chunks.
        fault_mix: Random and persistent faults of embeddings requests (see
            :meth:`set_fault_mix`); ``None``: none.

    Raises:
        ConfigurationError: A setting is out of range.
    """

    def __init__(
        self,
        *,
        dimension: int = 64,
        latency: float = 0.0,
        requests_per_second: float | None = None,
        chat_reply: str | None = None,
        chat_token_delay: float = 0.0,
        fault_mix: FaultMix | None = None,
        sliding_window: SlidingWindowLimit | None = None,
        states_limits: bool = True,
    ) -> None:
        if dimension < 1 or latency < 0 or chat_token_delay < 0:
            raise ConfigurationError("dimension must be positive and delays must not be negative")
        if requests_per_second is not None and requests_per_second <= 0:
            raise ConfigurationError("requests_per_second must be positive or None")
        self.dimension = dimension
        self.latency = latency
        self.requests_per_second = requests_per_second
        self.chat_reply = chat_reply
        self.chat_token_delay = chat_token_delay
        self._lock = threading.Lock()  # guards faults and stats (run_in_thread mode)
        self._faults: deque[_Fault] = deque()
        self._fault_mix = fault_mix
        self._fault_rng = random.Random(fault_mix.seed if fault_mix else 0)
        self._stats = ServerStats()
        self._bucket_level = 0.0
        self._bucket_checked = 0.0
        self._window: SlidingWindowLog | None = None
        self.sliding_window = sliding_window
        self.states_limits = states_limits
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._release_hangs: asyncio.Event | None = None
        self._in_flight_changed: asyncio.Condition | None = None

    @property
    def sliding_window(self) -> SlidingWindowLimit | None:
        """The strict sliding-window limit in force (``None``: none)."""
        return None if self._window is None else self._window.limit

    @sliding_window.setter
    def sliding_window(self, limit: SlidingWindowLimit | None) -> None:
        """Enforce ``limit`` from now on, with an empty window (``None``: stop)."""
        with self._lock:
            self._window = None if limit is None else SlidingWindowLog(limit)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``base_url=`` of OpenAI clients."""
        if self._port is None:
            raise UsageError("the fake OpenAI server is not running; call start() first")
        return f"http://127.0.0.1:{self._port}/v1"

    async def start(self) -> None:
        """Listen on a free loopback port in the running event loop."""
        if self._runner is not None:
            raise UsageError("the fake OpenAI server is already running")
        self._release_hangs = asyncio.Event()
        self._in_flight_changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Release hanging requests, close connections and stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._release_hangs is not None:
            self._release_hangs.set()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @classmethod
    @contextmanager
    def run_in_thread(
        cls,
        *,
        dimension: int = 64,
        latency: float = 0.0,
        requests_per_second: float | None = None,
        chat_reply: str | None = None,
        chat_token_delay: float = 0.0,
        fault_mix: FaultMix | None = None,
        sliding_window: SlidingWindowLimit | None = None,
        states_limits: bool = True,
    ) -> Iterator[FakeOpenAIServer]:
        """Run a server on its own event loop in a daemon thread, for sync callers.

        The loop is a :class:`~langchain_rag_async.aio.BlockingPortal` of the server's own
        (not the process's shared one), so a test's sync clients that use the shared
        portal never wait behind the server, nor the server behind them.

        Args are those of the constructor.

        Yields:
            The running server; it is stopped and its thread joined on exit.
        """
        server = cls(
            dimension=dimension,
            latency=latency,
            requests_per_second=requests_per_second,
            chat_reply=chat_reply,
            chat_token_delay=chat_token_delay,
            fault_mix=fault_mix,
            sliding_window=sliding_window,
            states_limits=states_limits,
        )
        portal = BlockingPortal(name="fake-openai-server")
        try:
            portal.call(server.start())
            yield server
        finally:
            try:
                portal.call(server.stop())
            finally:
                portal.stop()

    # -- fault injection and statistics ----------------------------------------------------

    def fail_next(
        self,
        count: int,
        *,
        status: int = 429,
        retry_after: float | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next ``count`` POST requests with ``status``.

        Injected faults queue up in call order (with those of :meth:`hang_next`).

        Args:
            count: How many requests fail.
            status: The HTTP error status to answer.
            retry_after: Seconds sent as ``retry-after`` and ``retry-after-ms`` headers.
            after: Let this many POST requests through normally first.
        """
        if not 400 <= status <= 599:
            raise ConfigurationError(f"status must be an HTTP error status; got {status}")
        self._queue_faults(_Fault(status, retry_after), count, after)

    def hang_next(self, count: int, *, after: int = 0) -> None:
        """Never answer the next ``count`` POST requests (until the client gives up or stop).

        Args:
            count: How many requests hang.
            after: Let this many POST requests through normally first.
        """
        self._queue_faults(_Fault(_HANG), count, after)

    @property
    def fault_mix(self) -> FaultMix | None:
        """The random and persistent faults of embeddings requests now in force."""
        return self._fault_mix

    def set_fault_mix(self, mix: FaultMix | None) -> None:
        """Draw faults of embeddings requests from ``mix`` from now on (``None``: stop).

        The generator restarts from ``mix.seed``. Queued faults (:meth:`fail_next`,
        :meth:`hang_next`) come first: a request that takes one draws nothing.
        Safe to call from any thread while the server runs.
        """
        with self._lock:
            self._fault_mix = mix
            self._fault_rng = random.Random(mix.seed if mix else 0)

    def clear_faults(self) -> None:
        """Forget the injected faults not used yet."""
        with self._lock:
            self._faults.clear()

    def _queue_faults(self, fault: _Fault, count: int, after: int) -> None:
        if count < 0 or after < 0:
            raise ConfigurationError("count and after must not be negative")
        with self._lock:
            self._faults.extend(_Fault(_PASS) for _ in range(after))
            self._faults.extend(fault for _ in range(count))

    async def wait_for_in_flight(self, count: int) -> None:
        """Wait until at least ``count`` requests are being handled (from the server's loop).

        Wrap it in ``asyncio.timeout`` in tests.
        """
        condition = self._in_flight_changed
        if condition is None:
            raise UsageError("the fake OpenAI server is not running; call start() first")
        async with condition:
            await condition.wait_for(lambda: self.stats.in_flight >= count)

    async def _notify_in_flight(self) -> None:
        condition = self._in_flight_changed
        if condition is not None:
            async with condition:
                condition.notify_all()

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (see :class:`ServerStats`)."""
        with self._lock:
            return self._stats.copy()

    def reset_stats(self) -> None:
        """Zero the counters (requests in flight stay counted as in flight)."""
        with self._lock:
            in_flight = self._stats.in_flight
            self._stats = ServerStats(in_flight=in_flight, peak_in_flight=in_flight)

    # -- request handling ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        is_post = request.method == "POST"
        with self._lock:
            stats = self._stats
            stats.requests += 1
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
            if is_post:
                stats.request_times.append(time.monotonic())
            fault = self._faults.popleft() if is_post and self._faults else None
        try:
            await self._notify_in_flight()
            response = await self._answer(request, handler, fault)
            with self._lock:
                self._stats.status_counts[response.status] += 1
            return response
        finally:
            with self._lock:
                self._stats.in_flight -= 1

    async def _answer(
        self, request: web.Request, handler: _Handler, fault: _Fault | None
    ) -> web.StreamResponse:
        if fault is not None and fault.status == _PASS:
            fault = None
        if fault is not None and fault.status == _HANG:
            return await self._hang()
        if fault is not None:
            headers = None if fault.retry_after is None else _retry_after_headers(fault.retry_after)
            message = f"injected failure with status {fault.status}"
            return _error_response(
                fault.status, message, kind=_error_kind(fault.status), headers=headers
            )
        limit_headers: dict[str, str] = {}
        if request.method == "POST":
            wait = self._take_rate_token()
            if wait > 0:
                return _error_response(
                    429,
                    "Rate limit reached for requests; please try again later.",
                    kind="rate_limit_exceeded",
                    headers=_retry_after_headers(wait),
                )
            decision = self._window_decision()
            if decision is not None:
                headers = decision.headers
                if not self.states_limits:
                    headers = {k: v for k, v in headers.items() if k.startswith("retry-after")}
                if not decision.admitted:
                    return _error_response(
                        429,
                        "Rate limit reached for requests; please try again later.",
                        kind="rate_limit_exceeded",
                        headers=headers,
                    )
                limit_headers = headers
            if self.latency:
                await asyncio.sleep(self.latency)
        try:
            response = await handler(request)
        except _BadRequest as exc:
            response = _error_response(400, str(exc), kind="invalid_request_error")
        if limit_headers and not response.prepared:  # a streamed answer has sent its headers
            response.headers.update(limit_headers)
        return response

    def _window_decision(self) -> WindowDecision | None:
        """Admit or refuse a POST request under the sliding window, if there is one."""
        with self._lock:
            window = self._window
            return None if window is None else window.admit(time.monotonic())

    async def _hang(self) -> web.Response:
        """Wait until the client gives up (the handler is cancelled) or the server stops."""
        if self._release_hangs is not None:
            await self._release_hangs.wait()
        return _error_response(503, "the server is shutting down", kind="server_error")

    def _draw_fault(self, inputs: Sequence[object]) -> tuple[FaultKind | None, int | None]:
        with self._lock:
            mix = self._fault_mix
            if mix is None:
                return None, None
            kind, status = draw_fault(mix, self._fault_rng, inputs)
            if kind is not None:
                self._stats.faults_injected[kind] += 1
            return kind, status

    async def _broken_answer(
        self, request: web.Request, kind: FaultKind, status: int | None
    ) -> web.StreamResponse:
        """The answer of a drawn fault that is not about the vectors."""
        if kind == "hang":
            return await self._hang()
        if status is not None:
            mix = self._fault_mix
            headers = None
            if kind == "429" and mix is not None:
                headers = _retry_after_headers(mix.retry_after)
            message = f"injected {kind} fault"
            return _error_response(status, message, kind=_error_kind(status), headers=headers)
        if kind == "malformed":
            return web.Response(
                body=b'{"object": "list", "data": [<html>bad gateway</html>',
                content_type="application/json",
            )
        if kind == "truncated":
            body = json.dumps({"object": "list", "data": [{"embedding": [0.5] * 64}]}).encode()
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:  # "reset" aborts; "truncated" closes after the half body
            if kind == "truncated":
                transport.close()
            else:
                transport.abort()
        return await self._hang()  # the handler is cancelled when the connection goes

    def _take_rate_token(self) -> float:
        """Spend one request from the server's bucket; return seconds to wait if empty."""
        rate = self.requests_per_second
        if rate is None:
            return 0.0
        capacity = max(1.0, rate)
        now = time.monotonic()
        with self._lock:
            if self._bucket_checked:
                elapsed = now - self._bucket_checked
                self._bucket_level = max(0.0, self._bucket_level - elapsed * rate)
            self._bucket_checked = now
            if self._bucket_level + 1.0 > capacity:
                return (self._bucket_level + 1.0 - capacity) / rate
            self._bucket_level += 1.0
            return 0.0

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        inputs = _embedding_inputs(body)
        dimension = body.get("dimensions") or self.dimension
        if not isinstance(dimension, int) or dimension < 1:
            raise _BadRequest("'dimensions' must be a positive integer")
        as_base64 = body.get("encoding_format") == "base64"
        fault, status = self._draw_fault(inputs)
        if fault is not None and fault not in VECTOR_FAULTS:
            return await self._broken_answer(request, fault, status)
        data = await run_in_executor(None, _embedding_data, inputs, dimension, as_base64, fault)
        tokens = sum(len(i) if isinstance(i, list) else estimate_tokens([i]) for i in inputs)
        if fault is None:
            with self._lock:
                self._stats.embedded_texts += len(inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or DEFAULT_EMBEDDING_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        messages = body.get("messages")
        echo = _last_user_text(messages)
        reply = self.chat_reply if self.chat_reply is not None else echo
        tokens = split_reply(reply)
        prompt_tokens = estimate_tokens(
            str(m.get("content", "")) for m in messages or [] if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        model = str(body.get("model") or DEFAULT_CHAT_MODEL)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            return await self._stream_chat(request, model, tokens, usage if include_usage else None)
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )

    async def _stream_chat(
        self,
        request: web.Request,
        model: str,
        tokens: list[str],
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        async for chunk in self._chat_chunks(model, tokens, usage):
            await response.write(b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _chat_chunks(
        self, model: str, tokens: list[str], usage: dict[str, int] | None
    ) -> AsyncIterator[dict[str, Any]]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {**base, "choices": [choice]}

        yield chunk({"role": "assistant", "content": ""})
        for position, token in enumerate(tokens):
            if position and self.chat_token_delay:
                await asyncio.sleep(self.chat_token_delay)
            yield chunk({"content": token})
        yield chunk({}, "stop")
        if usage is not None:
            yield {**base, "choices": [], "usage": usage}

    async def _models(self, request: web.Request) -> web.Response:
        models = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-openai-server"}
            for name in (DEFAULT_EMBEDDING_MODEL, DEFAULT_CHAT_MODEL)
        ]
        return web.json_response({"object": "list", "data": models})
