"""Score scales of :class:`AsyncFAISS`: what a search reports and how it maps to relevance.

Scores returned by ``similarity_search_with_score`` (what FAISS computes):

* ``EUCLIDEAN_DISTANCE``: squared L2 distance ``d²`` (lower is closer).
* ``MAX_INNER_PRODUCT`` / ``DOT_PRODUCT``: inner product ``s`` (higher is closer).
* ``COSINE``: cosine distance ``1 - cos`` (vectors are normalised; lower is closer).

Relevance scores (``similarity_search_with_relevance_scores``), always in ``[0, 1]``,
1 meaning identical direction or position:

* Euclidean, unit vectors (``normalize_L2=True``): ``1 - d²/4``, which equals
  ``(1 + cos) / 2`` because ``d² = 2 - 2 cos`` for unit vectors.
* Euclidean, raw vectors: ``1 / (1 + d)`` with ``d = sqrt(d²)`` (distances are unbounded).
* Cosine: ``1 - (1 - cos) / 2 = (1 + cos) / 2``.
* Inner product: ``(1 + s) / 2``, clipped to ``[0, 1]``; exact for unit-length vectors
  (most embedding models), only a clipped approximation for others.

A store whose FAISS index measures L2 uses the Euclidean rules whatever strategy it names
(LangChain's FAISS builds L2 indexes for ``COSINE``); inner-product indexes use the others.
"""

from __future__ import annotations

import math
from typing import Any

from langchain_community.vectorstores.faiss import dependable_faiss_import
from langchain_community.vectorstores.utils import DistanceStrategy

from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "INNER_PRODUCT_STRATEGIES",
    "check_strategy",
    "higher_is_closer",
    "new_index",
    "relevance",
    "to_score",
)

INNER_PRODUCT_STRATEGIES = (
    DistanceStrategy.MAX_INNER_PRODUCT,
    DistanceStrategy.DOT_PRODUCT,
    DistanceStrategy.COSINE,
)


def check_strategy(strategy: DistanceStrategy | str) -> DistanceStrategy:
    """Return the strategy as an enum member, refusing those FAISS flat indexes lack.

    Raises:
        ConfigurationError: The strategy is unknown or ``JACCARD``.
    """
    try:
        value = DistanceStrategy(strategy)
    except ValueError as exc:
        raise ConfigurationError(
            f"unknown distance strategy {strategy!r}; use EUCLIDEAN_DISTANCE, "
            "MAX_INNER_PRODUCT or COSINE"
        ) from exc
    if value == DistanceStrategy.JACCARD:
        raise ConfigurationError(
            "FAISS flat indexes have no Jaccard metric; use EUCLIDEAN_DISTANCE, "
            "MAX_INNER_PRODUCT or COSINE"
        )
    return value


def new_index(dimension: int, strategy: DistanceStrategy) -> Any:
    """An empty flat FAISS index measuring what ``strategy`` needs."""
    faiss = dependable_faiss_import()
    if strategy in INNER_PRODUCT_STRATEGIES:
        return faiss.IndexFlatIP(dimension)
    return faiss.IndexFlatL2(dimension)


def to_score(raw: float, *, inner_product: bool, strategy: DistanceStrategy) -> float:
    """Turn the value FAISS returns into the score the store reports."""
    if inner_product and strategy == DistanceStrategy.COSINE:
        return 1.0 - raw
    return raw


def higher_is_closer(*, inner_product: bool, strategy: DistanceStrategy) -> bool:
    """Whether larger scores mean closer documents (for ``score_threshold``)."""
    return inner_product and strategy != DistanceStrategy.COSINE


def relevance(
    score: float, *, inner_product: bool, strategy: DistanceStrategy, normalized: bool
) -> float:
    """Map a reported score to ``[0, 1]``, 1 being closest (formulas in the module doc)."""
    if inner_product and strategy == DistanceStrategy.COSINE:
        value = 1.0 - score / 2.0
    elif inner_product:
        value = (1.0 + score) / 2.0
    elif normalized:
        value = 1.0 - score / 4.0
    else:
        value = 1.0 / (1.0 + math.sqrt(max(score, 0.0)))
    return min(1.0, max(0.0, value))
