"""Tests of the chat model factory: offline extractive by default, ChatOpenAI on request."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.chat_models.factory import abuild_chat_model, build_chat_model
from langchain_rag_async.config import LLMConfig, RAGConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.testing.openai_server import FakeOpenAIServer, split_reply


def test_extractive_is_the_default() -> None:
    llm = build_chat_model(LLMConfig())
    assert isinstance(llm, ExtractiveChatModel)
    assert llm.model_name == "extractive"


def test_openai_model_is_built_streaming_with_the_settings() -> None:
    config = LLMConfig(
        provider="openai",
        model="gpt-test",
        temperature=0.3,
        openai_api_key="sk-test",
        request_timeout=12.5,
    )
    llm = build_chat_model(config)
    assert isinstance(llm, ChatOpenAI)
    assert llm.model_name == "gpt-test"
    assert llm.temperature == 0.3
    assert llm.streaming is True
    assert llm.max_retries == 2
    assert llm.request_timeout == 12.5
    assert isinstance(llm.openai_api_key, SecretStr)
    assert llm.openai_api_key.get_secret_value() == "sk-test"
    assert llm.openai_api_base is None


def test_openai_compatible_server_needs_no_key() -> None:
    llm = build_chat_model(LLMConfig(provider="openai", openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(llm, ChatOpenAI)
    assert llm.openai_api_base == "http://127.0.0.1:9/v1"
    assert llm.model_name == "gpt-4o-mini"  # the provider default


def test_openai_without_key_or_base_url_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_chat_model(LLMConfig(provider="openai"))
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "RAG_LLM=extractive" in message


def test_a_key_in_the_environment_alone_keeps_the_extractive_model() -> None:
    config = RAGConfig.from_env({"OPENAI_API_KEY": "sk-from-env"})
    assert config.llm.provider == "extractive"
    assert isinstance(build_chat_model(config.llm), ExtractiveChatModel)


def test_rag_llm_openai_from_the_environment() -> None:
    config = RAGConfig.from_env(
        {"RAG_LLM": "openai", "OPENAI_API_KEY": "sk-from-env", "RAG_CHAT_MODEL": "gpt-env"}
    )
    llm = build_chat_model(config.llm)
    assert isinstance(llm, ChatOpenAI)
    assert llm.model_name == "gpt-env"


async def test_async_twin_builds_off_the_loop_and_streams(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.chat_reply = "Borrowing lends a reference [1]."
    llm = await abuild_chat_model(
        LLMConfig(provider="openai", openai_base_url=openai_server.base_url)
    )
    assert isinstance(llm, ChatOpenAI)
    async with llm.root_async_client:
        chunks = [chunk.text async for chunk in llm.astream("what is borrowing?")]
    assert [c for c in chunks if c] == split_reply(openai_server.chat_reply)


async def test_async_twin_raises_the_same_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await abuild_chat_model(LLMConfig(provider="openai"))
    assert isinstance(await abuild_chat_model(LLMConfig()), ExtractiveChatModel)
