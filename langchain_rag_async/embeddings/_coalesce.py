"""Concurrent query embeddings coalesced into one request: one limiter slot, one model call.

A server answering many questions at once embeds one short query per question. Sent one
by one, each is a request of its own: behind a concurrency limit of one (the local model)
they queue, and against a remote service each costs a round trip and a slot of the rate
limit. Coalesced, the queries that arrive while a request is in flight go together in the
next one; a lone query goes at once (no timer, no added latency).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ("QueryCoalescer",)

EmbedBatch = Callable[[list[str]], Awaitable[list[list[float]]]]


class QueryCoalescer:
    """Queries of one event loop, embedded in batches by one flushing task at a time.

    Args:
        embed: Embeds a batch of texts (one request), in order.
        max_batch: The most texts in one request.
    """

    __slots__ = ("_embed", "_flushing", "_max_batch", "_pending")

    def __init__(self, embed: EmbedBatch, max_batch: int) -> None:
        self._embed = embed
        self._max_batch = max(1, max_batch)
        self._pending: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def embed(self, text: str) -> list[float]:
        """The vector of ``text``, embedded with the queries queued beside it.

        A caller cancelled while waiting leaves its result behind (the batch goes on for
        the others); an error of the batch is raised to every caller in it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        self._pending.append((text, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._flush(), name="rag-query-coalescer")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            waiting = [(text, future) for text, future in batch if not future.done()]
            if not waiting:
                continue
            try:
                vectors = await self._embed([text for text, _ in waiting])
            except asyncio.CancelledError:
                for _, future in waiting + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # handed to every caller of the batch
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), vector in zip(waiting, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
