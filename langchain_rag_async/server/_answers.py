"""Shared by the chat and SSE endpoints: start an answer stream with HTTP errors up front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_rag_async.answering import AnswerEvent, ErrorEvent, TokenEvent
from langchain_rag_async.errors import RequestError
from langchain_rag_async.metrics import TIME_TO_FIRST_TOKEN
from langchain_rag_async.server.gate import GenerationSlot
from langchain_rag_async.server.state import ServerState

__all__ = ("StartedAnswer", "event_error", "merge_tokens", "sources_payload", "start_answer")

_STATUS_BY_KIND = {"retrieval": 503, "generation": 502, "timeout": 504, "internal": 500}


def event_error(event: ErrorEvent) -> RequestError:
    """The HTTP error that fits an answer that ended in ``event`` (503, 502, 504 or 500)."""
    status = _STATUS_BY_KIND.get(event.kind, 500)
    return RequestError(status, event.message, type="server_error", code=event.kind)


@dataclass(slots=True, eq=False)
class StartedAnswer:
    """An answer whose first event (the sources) is already there; iterate for the rest.

    Iterating to the end, or closing it (a client that went away), ends the run and
    gives the generation slot back; :meth:`release` does it too and may run twice.
    """

    first: AnswerEvent
    _events: AsyncGenerator[AnswerEvent, None]
    _slot: GenerationSlot
    started: float
    first_token_at: float | None = None
    sources_at: float = field(default_factory=time.perf_counter)

    async def __aiter__(self) -> AsyncIterator[AnswerEvent]:
        try:
            async with aclosing(self._events):
                yield self.first
                async for event in self._events:
                    if event.type == "token" and self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                        TIME_TO_FIRST_TOKEN.observe(self.first_token_at - self.started)
                    yield event
        finally:
            self._slot.release()

    async def batches(self) -> AsyncIterator[list[AnswerEvent]]:
        """The events in groups: each group is all that arrived while the last was written.

        Nothing waits for a group to fill: a token goes out as soon as the writer is free.
        But tokens that come faster than the server writes them (a busy server, a fast
        model) leave in one write instead of one write, one SSE frame and one client-side
        parse each. Closing this generator (a client that went away) cancels the answer.
        """
        ready: list[AnswerEvent] = []
        arrived = asyncio.Event()
        finished = False

        async def pump() -> None:
            nonlocal finished
            try:
                async for event in self:
                    ready.append(event)
                    arrived.set()
            finally:
                finished = True
                arrived.set()

        task = asyncio.create_task(pump(), name="rag-answer-events")
        try:
            while True:
                if not ready and not finished:
                    arrived.clear()
                    await arrived.wait()
                if ready:
                    batch = ready.copy()
                    ready.clear()
                    yield batch
                elif finished:
                    break
            await task  # its error, if it failed
        finally:
            task.cancel()
            await asyncio.wait([task])

    async def release(self) -> None:
        """Give the generation slot back (idempotent; the stream does it when it ends).

        A coroutine so that a response's background task runs it on the event loop:
        Starlette hands a plain function to its thread pool, a thread hop per request.
        """
        self._slot.release()

    def timings(self) -> dict[str, float | None]:
        """Milliseconds to the sources, to the first token and in all (so far)."""
        now = time.perf_counter()

        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - self.started) * 1000, 1)

        return {
            "retrieval_ms": ms(self.sources_at),
            "first_token_ms": ms(self.first_token_at),
            "total_ms": ms(now),
        }


async def start_answer(
    state: ServerState, question: str, history: Sequence[BaseMessage], k: int | None
) -> StartedAnswer:
    """Wait for a generation slot, run retrieval, and return the started answer.

    Errors that happen before the first event (no index, a bad question, a full server)
    raise here, so the client gets a proper HTTP status instead of a broken stream.

    Raises:
        RequestError: 429 when the server is full; the engine's RAGErrors pass through.
    """
    started = time.perf_counter()  # time to first token counts the wait for a slot too
    slot = await state.gate.acquire()
    events = state.engine.astream_answer(question, history=history, k=k)
    try:
        first = await anext(events)
    except StopAsyncIteration:
        slot.release()
        raise RequestError(
            500, "the answer stream ended before it began", type="server_error"
        ) from None
    except BaseException:
        slot.release()
        await events.aclose()
        raise
    if isinstance(first, ErrorEvent):
        slot.release()
        await events.aclose()
        raise event_error(first)
    return StartedAnswer(first=first, _events=events, _slot=slot, started=started)


def merge_tokens(batch: Sequence[AnswerEvent]) -> list[AnswerEvent]:
    """``batch`` with each run of consecutive token events joined into one (same text)."""
    merged: list[AnswerEvent] = []
    for event in batch:
        last = merged[-1] if merged else None
        if isinstance(event, TokenEvent) and isinstance(last, TokenEvent):
            merged[-1] = TokenEvent(text=last.text + event.text)
        else:
            merged.append(event)
    return merged


def sources_payload(sources: Sequence[Any]) -> list[dict[str, Any]]:
    """Sources as JSON objects: ``n``, ``source``, ``chunk_id``, ``score``, ``start_index``."""
    return [dict(source) for source in sources]
