"""Concurrent query embeddings coalesced into few requests: one model call for many queries.

A server answering many questions at once embeds one short query per question. Sent one
by one, each is a request of its own: behind a concurrency limit of one (the local model)
they queue, and against a remote service each costs a round trip, a slot of the rate
limit and the client's per-request CPU. Coalesced (:class:`~langchain_rag_async.aio.
coalesce.Coalescer`), a lone query goes at once and a burst becomes a few batched
requests, at most the service's concurrency limit of them in flight.

A query may come with a blocking step to run on its vector (``then``: a vector store's
search); the batch function then runs the batch's steps in one executor call (in the
local model's, where its vectors are made), so that a query costs no executor call of its
own.

Only for models whose ``aembed_query(q)`` is ``aembed_documents([q])[0]``
(:func:`queries_embed_as_documents`): the vector of a coalesced query is then exactly the
one an uncoalesced call gets.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_rag_async.aio.coalesce import Coalescer, Failed

__all__ = ("EmbedBatch", "QueryCoalescer", "Then", "ThenFailed", "queries_embed_as_documents")

Then = Callable[[list[float]], Any]
"""A blocking step run on a query's vector (in the thread that made it, when it can)."""
EmbedBatch = Callable[[list[str], Sequence[Then | None]], Awaitable[list[Any]]]
"""Embeds a batch of texts (one request); per text its vector, or its ``then``'s result
(or a :class:`ThenFailed`) when it has one."""
ThenFailed = Failed
"""What a query's ``then`` raised, handed to that query's caller alone."""


def queries_embed_as_documents(model: object) -> bool:
    """Whether ``model.aembed_query(q)`` is ``model.aembed_documents([q])[0]``.

    True for classes that say so (``queries_embed_as_documents = True``: the local model)
    and for ``langchain_openai.OpenAIEmbeddings`` (and subclasses such as
    ``AzureOpenAIEmbeddings``) that keep its ``aembed_query``, which is exactly
    ``(await self.aembed_documents([text]))[0]``; with ``check_embedding_ctx_length``
    each text is tokenized, cut and averaged on its own, so a batch changes no text's
    vector. Any other model (an ``aembed_query`` of its own, a query prefix or
    instruction) is not coalesced.
    """
    kind = type(model)
    if getattr(kind, "queries_embed_as_documents", False):
        return True
    if "aembed_query" in getattr(model, "__dict__", {}):  # replaced on the instance
        return False
    # Imported by whoever built the model; never imported here for a model that is not one.
    openai = sys.modules.get("langchain_openai.embeddings.base")
    base = getattr(openai, "OpenAIEmbeddings", None)
    return (
        isinstance(base, type)
        and issubclass(kind, base)
        and getattr(kind, "aembed_query", None) is getattr(base, "aembed_query", None)
    )


class QueryCoalescer(Coalescer[tuple[str, "Then | None"], Any]):
    """Queries of one event loop embedded in batches (see :class:`Coalescer`).

    Args:
        embed: Embeds a batch of texts (one request), in order.
        max_batch: The most texts in one request.
        max_flushes: How many requests may be in flight at once (read at each new
            query: the service's current concurrency limit); 1 by default.
    """

    __slots__ = ()

    def __init__(
        self, embed: EmbedBatch, max_batch: int, max_flushes: Callable[[], int] | None = None
    ) -> None:
        async def call(items: list[tuple[str, Then | None]]) -> list[Any]:
            return await embed([text for text, _ in items], [then for _, then in items])

        super().__init__(call, max_batch, max_flushes, name="rag-query-coalescer")

    async def embed(self, text: str, then: Then | None = None) -> Any:
        """The vector of ``text`` (or ``then(vector)``), embedded with the queries beside it."""
        return await self.submit((text, then))
