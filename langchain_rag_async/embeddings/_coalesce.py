"""Concurrent query embeddings coalesced into one request: one limiter slot, one model call.

A server answering many questions at once embeds one short query per question. Sent one
by one, each is a request of its own: behind a concurrency limit of one (the local model)
they queue, and against a remote service each costs a round trip and a slot of the rate
limit. Coalesced, the queries that arrive while a request is in flight go together in the
next one; a lone query goes at once (no timer, no added latency).

A query may come with a blocking step to run on its vector (``then``: a vector store's
search); the batch function then runs it where the vector is made (the local model's
executor call), so that a query costs one executor call, not two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ("EmbedBatch", "QueryCoalescer", "Then", "ThenFailed")

Then = Callable[[list[float]], Any]
"""A blocking step run on a query's vector (in the thread that made it, when it can)."""
EmbedBatch = Callable[[list[str], Sequence[Then | None]], Awaitable[list[Any]]]
"""Embeds a batch of texts (one request); per text its vector, or its ``then``'s result
(or a :class:`ThenFailed`) when it has one."""


@dataclass(frozen=True, slots=True)
class ThenFailed:
    """What a query's ``then`` raised, handed to that query's caller alone."""

    error: Exception


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
        self._pending: list[tuple[str, Then | None, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def embed(self, text: str, then: Then | None = None) -> Any:
        """The vector of ``text`` (or ``then(vector)``), embedded with the queries beside it.

        A caller cancelled while waiting leaves its result behind (the batch goes on for
        the others); an error of the batch is raised to every caller in it, an error of a
        ``then`` to its own caller only.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((text, then, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._flush(), name="rag-query-coalescer")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            waiting = [entry for entry in batch if not entry[2].done()]
            if not waiting:
                continue
            try:
                results = await self._embed(
                    [text for text, _, _ in waiting], [then for _, then, _ in waiting]
                )
            except asyncio.CancelledError:
                for _, _, future in waiting + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # handed to every caller of the batch
                for _, _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(waiting, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, ThenFailed):
                    future.set_exception(result.error)
                else:
                    future.set_result(result)
