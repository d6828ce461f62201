"""Index through a rate-limited OpenAI-compatible embeddings endpoint.

Run it from the project root:

    python examples/rate_limited_openai.py          # starts a local fake server, offline
    OPENAI_BASE_URL=http://localhost:8080/v1 OPENAI_API_KEY=... \\
        python examples/rate_limited_openai.py      # your endpoint (OpenAI, vLLM, Ollama...)

The embeddings go through the real ``openai`` client (``langchain-openai``), batched
(``batch_size`` texts per request), ``concurrency`` requests in flight, paced under the
configured requests per minute, and retried with backoff when the service answers 429.
Without ``OPENAI_BASE_URL`` the example starts ``FakeOpenAIServer`` from
``langchain_rag_async.testing`` on 127.0.0.1: a real HTTP server that answers like
OpenAI's embeddings API and refuses requests above its rate with 429 + ``Retry-After``.

Two runs show both halves of rate limiting:

1. the client is told the limit (``RateLimitConfig(requests_per_minute=...)``) and paces
   itself under it: no request is refused;
2. the client is told nothing: it finds the limit by being refused. At the first 429 it
   waits the ``Retry-After``, then sends one request at a time at 90 % of the rate the
   server admitted, speeding up slowly while nothing is refused: only a refusal or two
   in the run. Refused requests are retried; were a file to fail for good, it would be
   reported, not recorded, and the next run would retry exactly those files. Telling the
   client the limit, as in run 1, wastes no request at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_rag_async import (
    AsyncRAGEngine,
    EmbeddingConfig,
    RAGConfig,
    RateLimitConfig,
    SplitterConfig,
)

if TYPE_CHECKING:
    from langchain_rag_async.testing import FakeOpenAIServer

CORPUS = Path(__file__).resolve().parent / "corpus"
SERVER_RPS = 8.0  # the fake server's limit: 8 requests per second


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[tuple[str, FakeOpenAIServer | None]]:
    """Your endpoint when OPENAI_BASE_URL is set; otherwise a local fake one."""
    if os.environ.get("OPENAI_BASE_URL"):
        yield os.environ["OPENAI_BASE_URL"], None
        return
    from langchain_rag_async.testing import FakeOpenAIServer  # the `testing` extra

    async with FakeOpenAIServer(requests_per_second=SERVER_RPS, latency=0.02) as server:
        yield server.base_url, server


async def run(corpus: Path, index_dir: Path, base_url: str, rpm: float | None) -> int:
    """Index ``corpus`` once; return how many files failed."""
    config = RAGConfig(
        index_dir=index_dir,
        splitter=SplitterConfig(chunk_size=200, chunk_overlap=20),  # many small chunks
        embeddings=EmbeddingConfig(
            provider="openai",  # chosen explicitly: a key alone never switches to OpenAI
            model="text-embedding-3-small",
            openai_base_url=base_url,
            openai_api_key=os.environ.get("OPENAI_API_KEY", "not-needed-locally"),
            batch_size=2,  # texts per request (small here, to make many requests)
            concurrency=4,  # requests in flight at most
            rate_limit=RateLimitConfig(requests_per_minute=rpm),
        ),
    )
    async with AsyncRAGEngine(config=config) as engine:
        started = time.monotonic()
        summary = await engine.aindex_directory(corpus)
        seconds = time.monotonic() - started
        print(
            f"  {summary.files_indexed} files indexed, {summary.chunks_embedded} chunks embedded, "
            f"{len(summary.files_failed)} files failed, in {seconds:.1f} s; at most "
            f"{engine.limiter.peak_in_flight} requests in flight"
        )
        hit = (await engine.aquery("What does a 429 answer mean?", k=1))[0]
        print(f"  query: best chunk from {Path(hit.metadata['source']).name}")
        for failed in summary.files_failed:
            print(f"  failed: {Path(failed.path).name}: {failed.reason[:100]}...")
    return len(summary.files_failed)


def busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any one second."""
    arrivals = sorted(arrivals)
    return max(
        (
            sum(1 for later in arrivals[i:] if later - first < 1.0)
            for i, first in enumerate(arrivals)
        ),
        default=0,
    )


async def main(corpus: Path, work_dir: Path) -> None:
    async with endpoint() as (base_url, server):
        for number, rpm in enumerate((SERVER_RPS * 60 * 0.75, None), start=1):
            told = f"{rpm:.0f} requests/minute" if rpm else "no limit"
            print(f"run {number}: client told {told}")
            if server is not None:
                server.reset_stats()
            failed = await run(corpus, work_dir / f"index-{number}", base_url, rpm)
            for _ in range(3):  # failed files are not recorded: the next run retries them
                if not failed:
                    break
                print("  again (only the failed files are read and embedded):")
                failed = await run(corpus, work_dir / f"index-{number}", base_url, rpm)
            if server is not None:
                stats = server.stats
                print(
                    f"  server: {stats.requests} requests, {stats.status_counts[429]} "
                    f"refused with 429, {stats.embedded_texts} texts embedded, at most "
                    f"{busiest_second(stats.request_times)} arrived in one second "
                    f"(its limit: {SERVER_RPS:.0f})"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-ratelimit-") as scratch:
        asyncio.run(main(args.corpus, Path(scratch)))
