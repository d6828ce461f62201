"""OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client (the ``openai`` SDK, LangChain's ``ChatOpenAI``, chat front ends) can
talk to the index. The last user message is the question; earlier user and assistant
turns are the history. Each completion carries the cited sources in an extra top-level
``sources`` field (on the final chunk when streaming): a list of ``{"n", "source",
"chunk_id", "score", "start_index"}``, ``n`` matching the ``[n]`` citations. Token counts
in ``usage`` are estimates (about four characters a token).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.answering import ErrorEvent
from langchain_rag_async.errors import RequestError
from langchain_rag_async.server._answers import (
    StartedAnswer,
    event_error,
    merge_tokens,
    sources_payload,
    start_answer,
)
from langchain_rag_async.server._disconnect import cancel_on_disconnect
from langchain_rag_async.server.schemas import ChatCompletionRequest, check_k, split_chat
from langchain_rag_async.server.state import ServerState, get_state

__all__ = ("router",)

router = APIRouter(prefix="/v1", tags=["openai"])

_OWNER = "langchain-rag-async"


def _model_card(state: ServerState) -> dict[str, Any]:
    return {
        "id": state.settings.model_name,
        "object": "model",
        "created": int(state.started),
        "owned_by": _OWNER,
    }


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The one model this server answers as (its name is ``ServerConfig.model_name``)."""
    return {"object": "list", "data": [_model_card(get_state(request))]}


@router.get("/models/{model}")
async def retrieve_model(model: str, request: Request) -> dict[str, Any]:
    """One model by name; 404 in OpenAI's shape for any other name."""
    state = get_state(request)
    _check_model(model, state)
    return _model_card(state)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer the last user message from the index, streamed (SSE) or whole."""
    state = get_state(request)
    _check_model(body.model, state)
    question, history = split_chat(body.messages, state.settings)
    k = check_k(body.k, state.settings)
    meta = _Meta(
        model=body.model, prompt_tokens=estimate_tokens([question, *(m.text for m in history)])
    )
    if not body.stream:  # nothing is written until the end: watch for the client leaving
        return await cancel_on_disconnect(
            request, _complete(start_answer(state, question, history, k), meta)
        )
    # A client that leaves while queued or during retrieval stops it too; once streaming,
    # the response notices it when writing.
    answer = await cancel_on_disconnect(request, start_answer(state, question, history, k))
    usage = body.stream_options is not None and body.stream_options.include_usage
    return StreamingResponse(
        _stream(answer, meta, include_usage=usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(answer.release),
    )


def _check_model(model: str, state: ServerState) -> None:
    if model != state.settings.model_name:
        raise RequestError(
            404,
            f"The model '{model}' does not exist; this server answers as "
            f"'{state.settings.model_name}' (see GET /v1/models)",
            param="model",
            code="model_not_found",
        )


class _Meta:
    __slots__ = ("created", "id", "model", "prompt_tokens")

    def __init__(self, *, model: str, prompt_tokens: int) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens

    def usage(self, answer: str) -> dict[str, int]:
        completion = estimate_tokens([answer]) if answer else 0
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


async def _complete(starting: Awaitable[StartedAnswer], meta: _Meta) -> JSONResponse:
    answer = await starting
    text: list[str] = []
    sources: list[dict[str, Any]] = []
    async for event in answer:
        if event.type == "sources":
            sources = sources_payload(event.sources)
        elif event.type == "token":
            text.append(event.text)
        elif isinstance(event, ErrorEvent):
            raise event_error(event)
        elif event.type == "done":
            text, sources = [event.answer], sources_payload(event.sources)
    content = "".join(text)
    return JSONResponse(
        {
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": meta.usage(content),
            "sources": sources,
        }
    )


def _chunk(meta: _Meta, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    data = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(answer: StartedAnswer, meta: _Meta, *, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI chunks as SSE; what is ready at once leaves in one write, tokens merged."""
    frames = [_chunk(meta, {"role": "assistant", "content": ""})]
    text: list[str] = []
    async for batch in answer.batches():
        for event in merge_tokens(batch):
            if event.type == "token":
                text.append(event.text)
                frames.append(_chunk(meta, {"content": event.text}))
            elif isinstance(event, ErrorEvent):
                error = event_error(event)
                frames.append(f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n")
                yield "".join(frames)
                return
            elif event.type == "done":
                frames.append(_chunk(meta, {}, "stop", sources=sources_payload(event.sources)))
                if include_usage:
                    frames.append(_usage_chunk(meta, "".join(text)))
                frames.append("data: [DONE]\n\n")
        if frames:
            yield "".join(frames)
            frames = []


def _usage_chunk(meta: _Meta, answer: str) -> str:
    usage = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "usage": meta.usage(answer),
    }
    return f"data: {json.dumps(usage)}\n\n"
