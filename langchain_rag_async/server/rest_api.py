"""Plain JSON and Server-Sent Events for custom front ends, and the health endpoints.

- ``POST /query``: the best chunks with their dense, sparse and fused scores and where
  they come from.
- ``POST /answer``: a streamed answer as SSE, typed events ``sources``, ``token``,
  ``done`` (the whole answer, its sources and timings) or ``error``.
- ``GET /healthz`` (the process is alive) and ``GET /readyz`` (the index is loaded).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from langchain_core.documents import Document
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from langchain_rag_async.answering import ErrorEvent
from langchain_rag_async.errors import RAGError, RequestError
from langchain_rag_async.metrics import exposition
from langchain_rag_async.server._answers import (
    StartedAnswer,
    merge_tokens,
    sources_payload,
    start_answer,
)
from langchain_rag_async.server._disconnect import cancel_on_disconnect
from langchain_rag_async.server.schemas import (
    AnswerRequest,
    QueryRequest,
    check_k,
    check_question_length,
    history_messages,
)
from langchain_rag_async.server.state import get_state

__all__ = ("router",)

router = APIRouter(tags=["rag"])

_READY_TIMEOUT = 30.0  # seconds /readyz waits for the index to load


@router.post("/query")
async def query(body: QueryRequest, request: Request) -> dict[str, Any]:
    """The ``k`` chunks most relevant to the question, best first, with their scores."""
    state = get_state(request)
    check_question_length(body.question, state.settings, "question")
    k = check_k(body.k, state.settings)
    docs = await cancel_on_disconnect(
        request, state.engine.aquery(body.question, k=k, filter=body.filter)
    )
    return {"hits": [_hit(doc) for doc in docs]}


def _hit(doc: Document) -> dict[str, Any]:
    metadata = dict(doc.metadata)
    scores = metadata.pop("scores", {})
    return {
        "id": doc.id,
        "source": metadata.get("source"),
        "start_index": metadata.get("start_index"),
        "text": doc.page_content,
        "scores": scores,
        "metadata": metadata,
    }


@router.post("/answer")
async def answer(body: AnswerRequest, request: Request) -> EventSourceResponse:
    """Stream a cited answer as Server-Sent Events."""
    state = get_state(request)
    check_question_length(body.question, state.settings, "question")
    if len(body.history) + 1 > state.settings.max_messages:
        raise RequestError(
            400,
            f"{len(body.history)} history turns; at most {state.settings.max_messages - 1}",
            param="history",
            code="too_many_messages",
        )
    history, k = history_messages(body.history), check_k(body.k, state.settings)
    started = await cancel_on_disconnect(request, start_answer(state, body.question, history, k))
    return EventSourceResponse(_sse(started), ping=15, background=BackgroundTask(started.release))


async def _sse(answer: StartedAnswer) -> AsyncIterator[ServerSentEvent]:
    async for batch in answer.batches():  # tokens ready at once leave as one event
        for event in merge_tokens(batch):
            if event.type == "sources":
                data: dict[str, Any] = {"sources": sources_payload(event.sources)}
            elif event.type == "token":
                data = {"text": event.text}
            elif isinstance(event, ErrorEvent):
                data = {"message": event.message, "kind": event.kind, "answer": event.answer}
            else:
                data = {
                    "answer": event.answer,
                    "sources": sources_payload(event.sources),
                    "timings": answer.timings(),
                }
            yield ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=event.type)


@router.get("/chunks/{chunk_id}")
async def chunk(chunk_id: str, request: Request) -> dict[str, Any]:
    """One indexed chunk by id (what a citation points to): its text and where it comes from."""
    retriever = await get_state(request).engine.aretriever()
    found = await retriever.vectorstore.aget_by_ids([chunk_id])
    if not found:
        raise RequestError(404, f"no chunk {chunk_id!r} in the index", code="chunk_not_found")
    return _hit(found[0])


@router.get("/metrics")
async def metrics() -> Response:
    """The library's Prometheus metrics, in the text exposition format."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers (no authentication needed)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, Any]:
    """Ready: the index is loaded and its query model is ready; 503 otherwise."""
    state = get_state(request)
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            retriever = await state.engine.aretriever()
    except (RAGError, TimeoutError) as exc:
        raise RequestError(
            503,
            f"not ready: {exc or 'the index did not load in time'}",
            type="server_error",
            code="not_ready",
        ) from exc
    store = retriever.vectorstore
    count = getattr(store, "acount", None)  # a database-backed store counts its rows
    chunks = await count() if count is not None else len(getattr(store, "index_to_docstore_id", {}))
    job = state.jobs.running
    return {
        "status": "ready",
        "index_dir": str(state.engine.config.index_dir),
        "chunks": chunks,
        "embeddings": state.engine.config.embeddings.model_name,
        "llm": state.engine.config.llm.provider,
        "index_job": None if job is None else job.id,
    }
