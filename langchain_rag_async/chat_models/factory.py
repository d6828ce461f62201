"""Build the answer chat model from configuration: extractive, OpenAI-compatible or local."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.chat_models.extractive import ExtractiveChatModel
from langchain_rag_async.chat_models.local import build_local_chat_model
from langchain_rag_async.config import LLMConfig
from langchain_rag_async.errors import ConfigurationError

__all__ = ("OPENAI_MAX_RETRIES", "abuild_chat_model", "build_chat_model")

OPENAI_MAX_RETRIES = 2
"""Retries of one chat request by the OpenAI client (connection errors, 429, 5xx)."""


def build_chat_model(config: LLMConfig) -> BaseChatModel:
    """Create the chat model that writes answers.

    ``"extractive"`` gives the offline :class:`ExtractiveChatModel`; ``"openai"`` gives a
    streaming ``ChatOpenAI`` for OpenAI or any OpenAI-compatible server; ``"local"`` gives
    SmolLM2 through llama.cpp (the ``local-llm`` extra). Only ``config.provider``
    chooses: an API key alone never switches to OpenAI.

    Args:
        config: Chat model settings.

    Returns:
        The chat model.

    Raises:
        ConfigurationError: OpenAI was asked for without a key or a base URL, or the local
            model without its extra.
    """
    if config.provider == "extractive":
        return ExtractiveChatModel(model=config.model_name)
    if config.provider == "local":
        return build_local_chat_model(config)
    if not config.openai_api_key and not config.openai_base_url:
        raise ConfigurationError(
            "RAG_LLM=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
            "OpenAI-compatible server); set it, or use the offline default RAG_LLM=extractive"
        )
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    return ChatOpenAI(
        model=config.model_name,
        # A local OpenAI-compatible server usually takes any key; the client needs one.
        api_key=SecretStr(config.openai_api_key or "not-needed"),
        base_url=config.openai_base_url,
        temperature=config.temperature,
        streaming=True,
        timeout=config.request_timeout,
        max_retries=OPENAI_MAX_RETRIES,
    )


async def abuild_chat_model(config: LLMConfig) -> BaseChatModel:
    """Async twin of :func:`build_chat_model`, for code running in an event loop.

    Creating a ``ChatOpenAI`` blocks (it imports modules, reads package metadata and
    loads the TLS certificates of its HTTP clients), so it runs in an executor.

    Raises:
        ConfigurationError: OpenAI was asked for without a key or a base URL.
    """
    if config.provider == "extractive":
        return build_chat_model(config)
    return await run_in_executor(None, build_chat_model, config)
