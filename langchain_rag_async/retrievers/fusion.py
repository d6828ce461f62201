"""Rank fusion: merge the ranked lists of several retrievers (dense, sparse) into one.

Pure functions, shared by the sync and async retrievers. The fusion itself works on
ranked lists of ids (:func:`fuse_ranked_ids`), so a caller may fuse first and build
documents only for the winners; :func:`reciprocal_rank_fusion` and
:func:`weighted_score_fusion` do the same on lists of documents, deduplicated by
:func:`document_key`, and return copies with the per-retriever and fused scores in
``metadata["scores"]``. Ties are broken deterministically.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence, Sized
from typing import NamedTuple

from langchain_core.documents import Document

from langchain_rag_async.config import FusionMethod, RetrievalConfig
from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "DEFAULT_NAMES",
    "RRF_C",
    "FusedHit",
    "RankedIds",
    "RankedList",
    "document_key",
    "fuse_ranked_ids",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
    "with_scores",
)

RankedList = Sequence[tuple[Document, float]]
"""One retriever's results: ``(document, score)`` pairs, best first."""
RankedIds = Sequence[tuple[str, float]]
"""One retriever's results as ``(id, score)`` pairs, best first."""
DEFAULT_NAMES = ("dense", "sparse")
"""Names of the ranked lists, in order, as they appear in ``metadata["scores"]``."""
RRF_C = RetrievalConfig().rrf_c
"""The damping constant of reciprocal rank fusion (Cormack et al., 2009); from RetrievalConfig."""


def document_key(document: Document) -> str:
    """Return the identity used to deduplicate documents across ranked lists.

    The document's id when it has one, otherwise a hash of its text.
    """
    if document.id:
        return f"id:{document.id}"
    return "sha256:" + hashlib.sha256(document.page_content.encode("utf-8")).hexdigest()


class FusedHit(NamedTuple):
    """One distinct id after fusion (a tuple: cheap to build for every candidate)."""

    id: str
    fused: float
    """The fused score (higher is better)."""
    scores: dict[str, float | None]
    """``{name: score or None, ..., "fused": fused}``, as put in ``metadata["scores"]``;
    copy it before changing it."""


def fuse_ranked_ids(
    ranked_lists: Sequence[RankedIds],
    *,
    method: FusionMethod = "rrf",
    weights: Sequence[float] | None = None,
    c: int = RRF_C,
    k: int | None = None,
    names: Sequence[str] = DEFAULT_NAMES,
) -> list[FusedHit]:
    """Fuse ranked lists of ids; the one implementation behind both document fusions.

    ``method="rrf"``: ``fused = sum_i weight_i / (c + rank_i)`` (ranks start at 1; only
    ranks matter). ``method="weighted"``: the sum of ``weight_i * normalised score``, each
    list's scores min-max mapped to ``[0, 1]`` (a list whose scores are all equal maps
    them to 1); scores must be "higher is better". An id missing from a list gets nothing
    from it; a repeated id within a list counts at its first (best) rank.

    Args:
        ranked_lists: One list of ``(id, score)`` per retriever, each best first.
        method: ``"rrf"`` or ``"weighted"``.
        weights: One non-negative weight per list (default: all 1).
        c: Damping constant of RRF; larger values flatten the rank differences.
        k: Return at most this many hits (default: all).
        names: One name per list, used as keys in :attr:`FusedHit.scores`.

    Returns:
        The distinct ids, best first (ties: best single rank, then id).

    Raises:
        ConfigurationError: The weights or names do not match the lists, a weight is negative or
            all are zero, ``c``/``k`` is negative, the method is unknown, or (weighted)
            a score is not finite.
    """
    if c < 0:
        raise ConfigurationError(f"c must not be negative; got {c}")
    if k is not None and k < 0:
        raise ConfigurationError(f"k must not be negative; got {k}")
    if method not in ("rrf", "weighted"):
        raise ConfigurationError(f"method must be 'rrf' or 'weighted'; got {method!r}")
    checked = _check_weights(ranked_lists, weights, names)
    firsts = [_first_occurrences(ranked) for ranked in ranked_lists]
    fused: dict[str, float] = {}  # summed list by list, in order: exact ties stay ties
    best: dict[str, int] = {}
    for index, (first, weight) in enumerate(zip(firsts, checked, strict=True)):
        if method == "rrf":
            for key, (rank, _score) in first.items():
                fused[key] = fused.get(key, 0.0) + weight / (c + rank)
        else:
            low, span = _min_max(index, [score for _rank, score in first.values()])
            for key, (_rank, score) in first.items():
                # weight * normalised score, in this order: a list's best gets exactly weight
                term = weight if span is None else weight * ((score - low) / span)
                fused[key] = fused.get(key, 0.0) + term
        for key, (rank, _score) in first.items():
            if rank < best.get(key, rank + 1):
                best[key] = rank
    order = sorted(fused, key=lambda key: (-fused[key], best[key], key))
    return [_hit(key, fused[key], firsts, names) for key in order[:k]]


def reciprocal_rank_fusion(
    ranked_lists: Sequence[RankedList],
    *,
    weights: Sequence[float] | None = None,
    c: int = RRF_C,
    k: int | None = None,
    names: Sequence[str] = DEFAULT_NAMES,
) -> list[Document]:
    """Fuse ranked lists by reciprocal rank: ``fused = sum_i weight_i / (c + rank_i)``.

    Ranks start at 1; a document missing from a list gets nothing from it. Only ranks
    matter, so the lists' scores may be on any scale (they are only reported).

    Args:
        ranked_lists: One list per retriever, each best first.
        weights: One non-negative weight per list (default: all 1).
        c: Damping constant; larger values flatten the rank differences.
        k: Return at most this many documents (default: all).
        names: One name per list, used as keys in ``metadata["scores"]``.

    Returns:
        Copies of the distinct documents, best first, each with
        ``metadata["scores"] = {name: score or None, ..., "fused": fused}``.

    Raises:
        ConfigurationError: The weights or names do not match the lists, a weight is negative or
            all are zero, or ``c``/``k`` is negative.
    """
    keyed, documents = _keyed(ranked_lists)
    hits = fuse_ranked_ids(keyed, method="rrf", weights=weights, c=c, k=k, names=names)
    return [with_scores(documents[hit.id], hit.scores) for hit in hits]


def weighted_score_fusion(
    ranked_lists: Sequence[RankedList],
    *,
    weights: Sequence[float] | None = None,
    k: int | None = None,
    names: Sequence[str] = DEFAULT_NAMES,
) -> list[Document]:
    """Fuse ranked lists by a weighted sum of min-max normalised scores.

    Each list's scores are mapped to ``[0, 1]`` (its best score to 1, its worst to 0; a
    list whose scores are all equal, e.g. a single result, maps them all to 1). Scores
    must be "higher is better" (relevance, not distance). A document missing from a list
    gets 0 from it.

    Args:
        ranked_lists: One list per retriever, each best first.
        weights: One non-negative weight per list (default: all 1).
        k: Return at most this many documents (default: all).
        names: One name per list, used as keys in ``metadata["scores"]``.

    Returns:
        Copies of the distinct documents, best first, each with
        ``metadata["scores"] = {name: score or None, ..., "fused": fused}``.

    Raises:
        ConfigurationError: The weights or names do not match the lists, a weight is negative or
            all are zero, a score is not finite, or ``k`` is negative.
    """
    keyed, documents = _keyed(ranked_lists)
    hits = fuse_ranked_ids(keyed, method="weighted", weights=weights, k=k, names=names)
    return [with_scores(documents[hit.id], hit.scores) for hit in hits]


def _check_weights(
    ranked_lists: Sequence[Sized], weights: Sequence[float] | None, names: Sequence[str]
) -> list[float]:
    """Validate names and weights against the lists; return the weights to use."""
    count = len(ranked_lists)
    if len(names) != count or len(set(names)) != count or "fused" in names:
        raise ConfigurationError(
            f"names must give one distinct name (not 'fused') per ranked list; got {count} "
            f"list(s) and names {tuple(names)!r}"
        )
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ConfigurationError(
            f"got {len(weights)} weight(s) for {count} ranked list(s); give one each"
        )
    checked = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in checked):
        raise ConfigurationError(f"weights must be finite and non-negative; got {tuple(weights)!r}")
    if count and not any(checked):
        raise ConfigurationError("at least one weight must be positive; all are zero")
    return checked


def _keyed(
    ranked_lists: Sequence[RankedList],
) -> tuple[list[list[tuple[str, float]]], dict[str, Document]]:
    """The lists as ``(key, score)`` pairs, and the first document seen under each key."""
    documents: dict[str, Document] = {}
    keyed: list[list[tuple[str, float]]] = []
    for ranked in ranked_lists:
        pairs = []
        for document, score in ranked:
            key = document_key(document)
            documents.setdefault(key, document)
            pairs.append((key, score))
        keyed.append(pairs)
    return keyed, documents


def _first_occurrences(ranked: RankedIds) -> dict[str, tuple[int, float]]:
    """``{id: (rank, score)}`` of one list, ranks from 1; a repeated id keeps its first."""
    first: dict[str, tuple[int, float]] = {}
    for rank, (key, score) in enumerate(ranked, start=1):
        if key not in first:
            first[key] = (rank, float(score))
    return first


def _min_max(index: int, scores: Sequence[float]) -> tuple[float, float | None]:
    """``(low, high - low)`` of list ``index``'s scores; span ``None`` when all are equal."""
    if not all(math.isfinite(s) for s in scores):
        raise ConfigurationError(
            f"ranked list {index} holds a non-finite score; weighted fusion needs real "
            "numbers (use reciprocal_rank_fusion for lists without usable scores)"
        )
    low, high = min(scores, default=0.0), max(scores, default=0.0)
    return low, (None if high == low else high - low)


def _hit(
    key: str,
    fused: float,
    firsts: Sequence[dict[str, tuple[int, float]]],
    names: Sequence[str],
) -> FusedHit:
    scores: dict[str, float | None] = {}
    for name, first in zip(names, firsts, strict=True):
        found = first.get(key)
        scores[name] = None if found is None else found[1]
    scores["fused"] = fused
    return FusedHit(key, fused, scores)


def with_scores(document: Document, scores: dict[str, float | None]) -> Document:
    """A copy of ``document`` with ``metadata["scores"] = scores`` (a copy of the dict)."""
    metadata = {**document.metadata, "scores": dict(scores)}
    if type(document) is Document:  # a plain copy is 3x cheaper than model_copy
        return Document(id=document.id, page_content=document.page_content, metadata=metadata)
    return document.model_copy(update={"metadata": metadata})
