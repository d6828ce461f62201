"""Test helpers for users and for this package: a local OpenAI-compatible fake server."""

from __future__ import annotations

from langchain_rag_async.testing.faults import FaultMix, PersistentFault
from langchain_rag_async.testing.openai_server import FakeOpenAIServer, fake_embedding

__all__ = ("FakeOpenAIServer", "FaultMix", "PersistentFault", "fake_embedding")
