"""The one signature probe: which optional keywords a callable declares."""

from __future__ import annotations

from typing import Any

from langchain_rag_async._introspect import accepted_keywords


async def declares(
    texts: list[str], *, sources: list[str] | None = None, timeout: float = 1
) -> None:
    """Declares both keywords."""


async def positional(texts: list[str], sources: list[str] | None = None) -> None:
    """Declares ``sources`` as a positional-or-keyword parameter."""


async def forwards(texts: list[str], **kwargs: Any) -> None:
    """Forwards anything: must receive none of ours."""


def test_declared_keywords_are_found() -> None:
    assert accepted_keywords(declares, ("sources", "timeout")) == {"sources", "timeout"}
    assert accepted_keywords(positional, ("sources", "timeout")) == {"sources"}


def test_var_keyword_does_not_count() -> None:
    assert accepted_keywords(forwards, ("sources", "timeout")) == frozenset()


def test_a_callable_without_a_signature_accepts_none() -> None:
    assert accepted_keywords(print, ("sources",)) == frozenset()
    assert accepted_keywords(object(), ("sources",)) == frozenset()  # type: ignore[arg-type]
