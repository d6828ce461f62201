"""Words of English text, the one way the package cuts, filters and counts them (no I/O).

The sparse index's query builder, the extractive answerer's sentence ranking and the
rate limiters' token estimates all use these helpers, so a word means the same thing
everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ("ENGLISH_STOPWORDS", "WORD", "estimate_tokens")

WORD = re.compile(r"[^\W_]+")
"""Runs of Unicode letters and digits: what a word is (as FTS5's unicode61 tokenizer sees it)."""

ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    "a about an and are as at be been but by can could did do does for from had has have how "
    "i if in into is it its me my not of on or our should so than that the their them then "
    "there these they this those to was we were what when where which who whom why will "
    "with would you your".split()
)
"""Lower-case English function words dropped from questions before matching."""

CHARS_PER_TOKEN = 4


def estimate_tokens(texts: Iterable[str]) -> int:
    """Estimate the tokens of ``texts`` without a tokenizer: ~4 characters each, 1 at least.

    Args:
        texts: The texts of one request.

    Returns:
        The estimated token count (each text counts for at least one token).
    """
    return sum(max(1, len(text) // CHARS_PER_TOKEN) for text in texts)
