"""The client side of the local fake OpenAI server: the real client, and what the server saw.

The server itself is ``langchain_rag_async.testing.openai_server.FakeOpenAIServer`` (loopback
only, its own event loop in a thread).
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.langchain_child import MODEL, openai_embeddings
from langchain_rag_async.testing import FakeOpenAIServer

__all__ = ("MODEL", "FakeOpenAIServer", "keep_traffic_local", "openai_embeddings", "server_figures")


def keep_traffic_local() -> None:
    """Never route the benchmark's requests through a proxy: the server is on 127.0.0.1."""
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))


def server_figures(server: FakeOpenAIServer, started: float) -> dict[str, Any]:
    """What the fake server saw since its last ``reset_stats`` (times relative to ``started``).

    The server stamps requests with ``time.monotonic()``, the clock the benchmarks use
    throughout. The mean number of requests in flight is estimated as (answered requests x
    latency) / (time from the first request's arrival to the last one's answer).
    """
    stats = server.stats
    times = stats.request_times or [started]
    ok = stats.status_counts.get(200, 0)
    busy = times[-1] - times[0] + server.latency
    return {
        "mean_in_flight": round(ok * server.latency / busy, 1) if busy > 0 else None,
        "first_request_at_s": round(times[0] - started, 3),
        "last_request_at_s": round(times[-1] - started, 3),
        "requests": stats.requests,
        "ok_requests": stats.status_counts.get(200, 0),
        "rate_limited_responses": stats.status_counts.get(429, 0),
        "peak_in_flight": stats.peak_in_flight,
        "texts_embedded_by_server": stats.embedded_texts,
    }
