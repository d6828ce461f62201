"""Chat models of langchain-rag-async: the offline extractive answer model."""

from __future__ import annotations

from langchain_rag_async.chat_models.extractive import ExtractiveChatModel, compose_answer

__all__ = ["ExtractiveChatModel", "compose_answer"]
