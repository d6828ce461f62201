"""Argument checks shared by the retrievers, the answering functions and the engine (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_rag_async.errors import ArgumentTypeError, ConfigurationError, RetrievalError

__all__ = (
    "check_count",
    "check_filter",
    "check_query",
    "check_question",
    "check_search_kwargs",
)

_FILTER_SCALARS = (str, int, float)  # bool is an int
_IGNORED_KWARGS = frozenset({"verbose"})  # LangChain passes it along with invoke kwargs


def check_count(name: str, value: object) -> int:
    """``value`` if it is a whole number of at least 1, else a ConfigurationError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number of at least 1; got {value!r}")
    return value


def check_filter(value: object) -> dict[str, Any] | None:
    """Validate an exact-match metadata filter (FAISS and FTS5 both understand it).

    ``{}`` means no filter.

    Tuples become lists: FAISS treats a list (not a tuple) as "any of".
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"filter must be a dict of metadata key -> value; got {type(value).__name__} "
            "(callables only work on the vector store alone)"
        )
    checked: dict[str, Any] = {}
    for key, condition in value.items():
        if not isinstance(key, str) or not key or key.startswith("$") or '"' in key:
            raise ConfigurationError(
                f"filter key {key!r} is not supported: these retrievers filter by exact "
                "metadata values ($and, $or and other operators only work on the vector store)"
            )
        options = list(condition) if isinstance(condition, list | tuple) else [condition]
        if not all(v is None or isinstance(v, _FILTER_SCALARS) for v in options):
            raise ConfigurationError(
                f"filter value {condition!r} for {key!r} is not supported; use a string, "
                "number or boolean, a list of them, or None for 'missing'"
            )
        checked[key] = options if isinstance(condition, list | tuple) else condition
    return checked or None


def check_query(query: object, *, name: str = "query") -> str:
    """``query`` if it is a non-blank string, else a clear :class:`RetrievalError`.

    Args:
        query: What the caller passed.
        name: How the message calls it (``"query"`` for retrievers, ``"question"`` for
            the answering functions and the engine).
    """
    if not isinstance(query, str):
        raise RetrievalError(f"the {name} must be a string; got {type(query).__name__}")
    if not query.strip():
        raise RetrievalError(f"the {name} is empty; ask something, e.g. 'how does ownership work?'")
    return query


def check_question(question: object) -> str:
    """:func:`check_query` for a question to answer (the engine, the answer functions)."""
    return check_query(question, name="question")


def check_search_kwargs(
    retriever: str, overrides: Mapping[str, Any], accepted: frozenset[str]
) -> None:
    """:class:`ArgumentTypeError` (a ``TypeError``) naming what ``retriever`` accepts."""
    unknown = set(overrides) - accepted - _IGNORED_KWARGS
    if unknown:
        raise ArgumentTypeError(
            f"unexpected search argument(s) {sorted(unknown)}; "
            f"{retriever} accepts {sorted(accepted)}"
        )
