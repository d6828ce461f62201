"""Answering: the answer graph (rewrite → retrieve → generate) and its streaming API."""

from __future__ import annotations

from langchain_rag_async.answering.graph import (
    AnswerContext,
    AnswerInput,
    AnswerState,
    SourceInfo,
    build_answer_graph,
)
from langchain_rag_async.answering.stream import (
    AnswerEvent,
    AnswerResult,
    DoneEvent,
    ErrorEvent,
    ErrorKind,
    SourcesEvent,
    TokenEvent,
    aanswer,
    answer,
    astream_answer,
)

__all__ = (
    "AnswerContext",
    "AnswerEvent",
    "AnswerInput",
    "AnswerResult",
    "AnswerState",
    "DoneEvent",
    "ErrorEvent",
    "ErrorKind",
    "SourceInfo",
    "SourcesEvent",
    "TokenEvent",
    "aanswer",
    "answer",
    "astream_answer",
    "build_answer_graph",
)
