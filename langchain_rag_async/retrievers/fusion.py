"""Rank fusion: merge the ranked lists of several retrievers (dense, sparse) into one.

Pure functions, shared by the sync and async retrievers. Both fusions deduplicate by
:func:`document_key`, return copies of the documents with their per-retriever and fused
scores in ``metadata["scores"]``, and break ties deterministically.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.documents import Document

__all__ = [
    "DEFAULT_NAMES",
    "RRF_C",
    "RankedList",
    "document_key",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]

RankedList = Sequence[tuple[Document, float]]
"""One retriever's results: ``(document, score)`` pairs, best first."""
DEFAULT_NAMES = ("dense", "sparse")
"""Names of the ranked lists, in order, as they appear in ``metadata["scores"]``."""
RRF_C = 60
"""The damping constant of reciprocal rank fusion (Cormack et al., 2009)."""


def document_key(document: Document) -> str:
    """Return the identity used to deduplicate documents across ranked lists.

    The document's id when it has one, otherwise a hash of its text.
    """
    if document.id:
        return f"id:{document.id}"
    return "sha256:" + hashlib.sha256(document.page_content.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class _Candidate:
    """One distinct document seen in the ranked lists."""

    key: str
    document: Document
    ranks: list[int | None]
    scores: list[float | None]
    best_rank: int
    fused: float = field(default=0.0)


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
        ValueError: The weights or names do not match the lists, a weight is negative or
            all are zero, or ``c``/``k`` is negative.
    """
    if c < 0:
        raise ValueError(f"c must not be negative; got {c}")
    checked = _check_weights(ranked_lists, weights, names)
    candidates = _collect(ranked_lists)
    for cand in candidates:
        fused = 0.0
        for weight, rank in zip(checked, cand.ranks, strict=True):
            if rank is not None:
                fused += weight / (c + rank)
        cand.fused = fused
    return _finish(candidates, names, k)


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
        ValueError: The weights or names do not match the lists, a weight is negative or
            all are zero, a score is not finite, or ``k`` is negative.
    """
    checked = _check_weights(ranked_lists, weights, names)
    candidates = _collect(ranked_lists)
    ranges = [_min_max(i, candidates) for i in range(len(ranked_lists))]
    for cand in candidates:
        fused = 0.0
        for weight, (low, span), score in zip(checked, ranges, cand.scores, strict=True):
            if score is not None:
                # weight * normalised score, in this order: a list's best gets exactly weight
                fused += weight if span is None else weight * ((score - low) / span)
        cand.fused = fused
    return _finish(candidates, names, k)


def _check_weights(
    ranked_lists: Sequence[RankedList], weights: Sequence[float] | None, names: Sequence[str]
) -> list[float]:
    """Validate names and weights against the lists; return the weights to use."""
    count = len(ranked_lists)
    if len(names) != count or len(set(names)) != count or "fused" in names:
        raise ValueError(
            f"names must give one distinct name (not 'fused') per ranked list; got {count} "
            f"list(s) and names {tuple(names)!r}"
        )
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weight(s) for {count} ranked list(s); give one each")
    checked = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in checked):
        raise ValueError(f"weights must be finite and non-negative; got {tuple(weights)!r}")
    if count and not any(checked):
        raise ValueError("at least one weight must be positive; all are zero")
    return checked


def _collect(ranked_lists: Sequence[RankedList]) -> list[_Candidate]:
    """Merge the lists into distinct candidates (first occurrence in a list wins)."""
    by_key: dict[str, _Candidate] = {}
    width = len(ranked_lists)
    for index, ranked in enumerate(ranked_lists):
        for rank, (document, score) in enumerate(ranked, start=1):
            key = document_key(document)
            cand = by_key.get(key)
            if cand is None:
                cand = by_key[key] = _Candidate(
                    key, document, [None] * width, [None] * width, best_rank=rank
                )
            if cand.ranks[index] is None:
                cand.ranks[index] = rank
                cand.scores[index] = float(score)
                cand.best_rank = min(cand.best_rank, rank)
    return list(by_key.values())


def _min_max(index: int, candidates: Sequence[_Candidate]) -> tuple[float, float | None]:
    """``(low, high - low)`` of list ``index``'s scores; span ``None`` when all are equal."""
    scores = [s for cand in candidates if (s := cand.scores[index]) is not None]
    if any(not math.isfinite(s) for s in scores):
        raise ValueError(
            f"ranked list {index} holds a non-finite score; weighted fusion needs real "
            "numbers (use reciprocal_rank_fusion for lists without usable scores)"
        )
    low, high = min(scores, default=0.0), max(scores, default=0.0)
    return low, (None if high == low else high - low)


def _finish(candidates: list[_Candidate], names: Sequence[str], k: int | None) -> list[Document]:
    """Sort by fused score (ties: best rank, then key), truncate, and copy with scores."""
    if k is not None and k < 0:
        raise ValueError(f"k must not be negative; got {k}")
    candidates.sort(key=lambda cand: (-cand.fused, cand.best_rank, cand.key))
    return [_with_scores(cand, names) for cand in candidates[:k]]


def _with_scores(cand: _Candidate, names: Sequence[str]) -> Document:
    scores: dict[str, float | None] = dict(zip(names, cand.scores, strict=True))
    scores["fused"] = cand.fused
    doc = cand.document
    metadata = {**doc.metadata, "scores": scores}
    if type(doc) is Document:  # a plain copy is 3x cheaper than model_copy
        return Document(id=doc.id, page_content=doc.page_content, metadata=metadata)
    return doc.model_copy(update={"metadata": metadata})
