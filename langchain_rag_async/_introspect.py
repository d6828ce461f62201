"""Which optional keywords a callable declares: the one signature probe of the package."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ("accepted_keywords",)

_KEYWORD_KINDS = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def accepted_keywords(func: Callable[..., Any], names: Iterable[str]) -> frozenset[str]:
    """Return which of ``names`` ``func`` declares as keyword parameters.

    ``**kwargs`` does not count: many clients forward unknown keywords to a remote API,
    which would refuse ours. A callable without a readable signature accepts none.

    Args:
        func: The callable to probe (e.g. an embeddings model's ``aembed_documents``).
        names: The optional keywords the caller would like to pass.
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(n for n in names if n in params and params[n].kind in _KEYWORD_KINDS)
