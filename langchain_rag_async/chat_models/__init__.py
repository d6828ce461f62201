"""Chat models of langchain-rag-async: the offline extractive answer model."""

from __future__ import annotations

from langchain_rag_async.chat_models.extractive import ExtractiveChatModel, compose_answer
from langchain_rag_async.chat_models.factory import abuild_chat_model, build_chat_model

__all__ = ("ExtractiveChatModel", "abuild_chat_model", "build_chat_model", "compose_answer")
