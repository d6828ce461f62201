"""Words of English text, the one way the package cuts, filters, stems and counts them (no I/O).

The sparse index's query builder, the extractive answerer's sentence ranking and the
rate limiters' token estimates all use these helpers, so a word means the same thing
everywhere. :func:`terms` reproduces, in Python, what the sparse index's SQLite FTS5
tokenizer (``porter unicode61 remove_diacritics 2``) stores for a text, so the answerer
ranks sentences with the terms the sparse index ranked chunks with.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence, Set

from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately

__all__ = (
    "CHARS_PER_TOKEN",
    "ENGLISH_STOPWORDS",
    "QUESTION_STOPWORDS",
    "WORD",
    "estimate_message_tokens",
    "estimate_tokens",
    "fold",
    "porter_stem",
    "terms",
)

WORD = re.compile(r"[^\W_]+")
"""Runs of Unicode letters and digits: what a word is (as FTS5's unicode61 tokenizer sees it)."""

ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    "a about an and are as at be been but by can could did do does for from had has have how "
    "i if in into is it its me my not of on or our should so than that the their them then "
    "there these they this those to was we were what when where which who whom why will "
    "with would you your".split()
)
"""Lower-case English function words dropped from questions before matching."""

QUESTION_STOPWORDS: frozenset[str] = ENGLISH_STOPWORDS | frozenset(
    """
    above after again against all also am any because before being below between both
    doing done down during each either else etc ever every few further get gets got he her
    here hers herself him himself his however itself just let lets might more most much
    must myself no nor now off often once only onto other ought ours ourselves out over
    per please quite rather really same shall she since some such through thus too under
    until up upon us use used using very via whats whether while whose within without yet
    yours yourself yourselves explain describe tell mean means
    """.split()
)
""":data:`ENGLISH_STOPWORDS` plus words that say how to ask, not what about.

The extractive answerer matches a question against single sentences, where a word like
"explain", "using" or "however" would pick sentences for their phrasing, not their
subject. The sparse index keeps the shorter list: BM25's IDF already discounts such words
across chunks, and a user may search for them on purpose.
"""

CHARS_PER_TOKEN = 4
"""Characters per token of the package's estimates (English text with OpenAI-style BPE)."""


def estimate_tokens(texts: Iterable[str]) -> int:
    """Estimate the tokens of ``texts`` without a tokenizer: ~4 characters each, 1 at least.

    The package counts tokens one way, by :data:`CHARS_PER_TOKEN`: exact counts need the
    model's own tokenizer (a download, and a different one per model), while budgets
    (rate limits, history kept in a prompt) only need the order of magnitude.

    Args:
        texts: The texts of one request.

    Returns:
        The estimated token count (each text counts for at least one token).
    """
    return sum(max(1, len(text) // CHARS_PER_TOKEN) for text in texts)


def estimate_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """Estimate the tokens of chat ``messages`` at :data:`CHARS_PER_TOKEN` characters each.

    The same estimate as :func:`estimate_tokens`, applied to messages: LangChain's
    ``count_tokens_approximately`` (given the package's ratio) also counts each message's
    role, name and tool calls, which plain texts do not have. Usable as the
    ``token_counter`` of ``trim_messages``.

    Args:
        messages: The messages.

    Returns:
        The estimated token count.
    """
    return count_tokens_approximately(messages, chars_per_token=CHARS_PER_TOKEN)


# --------------------------------------------------------------------------- terms

_LATIN_END = 0x0250  # Basic Latin to Latin Extended-B
_LATIN_EXTENDED_ADDITIONAL = range(0x1E00, 0x1F00)


def fold(text: str) -> str:
    """``text`` as FTS5's ``unicode61 remove_diacritics 2`` compares it: lower case, no accents.

    Like unicode61, only Latin letters lose their diacritics (``é`` gives ``e``); Greek,
    Cyrillic and other scripts keep theirs (``й`` stays ``й``).

    Args:
        text: Any text.

    Returns:
        The text in NFC, lower-cased, Latin letters without their diacritical marks.
    """
    lowered = unicodedata.normalize("NFC", text.lower())
    if lowered.isascii():
        return lowered
    return "".join(_strip_latin_marks(ch) if ord(ch) > 0x7F else ch for ch in lowered)


def _strip_latin_marks(ch: str) -> str:
    """A Latin letter without its combining marks; any other character unchanged."""
    code = ord(ch)
    if not (
        code < _LATIN_END
        or _LATIN_EXTENDED_ADDITIONAL.start <= code < _LATIN_EXTENDED_ADDITIONAL.stop
    ):
        return ch
    decomposed = unicodedata.normalize("NFD", ch)
    return "".join(c for c in decomposed if not unicodedata.combining(c)) or ch


def terms(text: str, stopwords: Set[str] = ENGLISH_STOPWORDS) -> list[str]:
    """The index terms of ``text``, in order: what the sparse index stores, minus stop-words.

    Words (:data:`WORD`) of the folded text (:func:`fold`), stop-words dropped (before
    stemming), the rest reduced by :func:`porter_stem`, as FTS5's
    ``porter unicode61 remove_diacritics 2`` tokenizer does.

    Args:
        text: Any text.
        stopwords: Folded words to drop; :data:`QUESTION_STOPWORDS` for questions matched
            against single sentences.

    Returns:
        The stemmed terms, repeats kept.
    """
    return [porter_stem(word) for word in WORD.findall(fold(text)) if word not in stopwords]


# The Porter stemmer (M. F. Porter, "An algorithm for suffix stripping", 1980), as SQLite's
# FTS5 "porter" tokenizer implements it: the published algorithm with Porter's own later
# changes in step 2 ("bli" -> "ble", "logi" -> "log"). Letters other than a, e, i, o, u
# (and y after a consonant) are consonants: digits and non-ASCII letters included. FTS5
# works on UTF-8 bytes, so where it matters (the *o and double-consonant rules) a non-ASCII
# letter counts as the two or more consonant bytes it is.

_PORTER_MIN_BYTES = 3  # shorter tokens pass unchanged (FTS5 measures UTF-8 bytes)
_PORTER_MAX_BYTES = 64  # so do longer ones

_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("logi", "log"),
    ("bli", "ble"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
_STEP4 = (
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
)


def _consonants(stem: str) -> list[bool]:
    """Whether each letter of ``stem`` is a consonant (``y`` is one after a vowel or first)."""
    flags: list[bool] = []
    previous_consonant = False
    for ch in stem:
        vowel = ch in "aeiou" or (ch == "y" and previous_consonant)
        previous_consonant = not vowel
        flags.append(previous_consonant)
    return flags


def _measure(stem: str) -> int:
    """Porter's *m*: the number of vowel-consonant sequences in ``stem``."""
    flags = _consonants(stem)
    return sum(1 for before, now in zip(flags, flags[1:], strict=False) if not before and now)


def _has_vowel(stem: str) -> bool:
    """Porter's ``*v*`` as FTS5 tests it: a, e, i, o, u anywhere, or y past the first letter."""
    return any(ch in "aeiou" or (ch == "y" and i > 0) for i, ch in enumerate(stem))


def _cvc(stem: str) -> bool:
    """Porter's ``*o``: ends consonant-vowel-consonant, the last not w, x or y.

    FTS5 looks at the last three UTF-8 bytes: a non-ASCII letter among the last two
    characters is two consonant bytes or more, so no vowel sits between consonants there.
    """
    if len(stem) < 3 or stem[-1] in "wxy" or not stem[-2:].isascii():
        return False
    flags = _consonants(stem)
    return flags[-3] and not flags[-2] and flags[-1]


def _replace(word: str, rules: Iterable[tuple[str, str]], min_measure: int) -> str:
    """Apply the first rule whose suffix ends ``word``, if the stem's *m* exceeds the minimum."""
    for suffix, replacement in rules:
        if word.endswith(suffix) and len(word) > len(suffix):
            stem = word[: -len(suffix)]
            return stem + replacement if _measure(stem) > min_measure else word
    return word


def _step1(word: str) -> str:
    if word.endswith("s"):
        if word.endswith("sses") and len(word) > 4 or word.endswith("ies") and len(word) > 3:
            word = word[:-2]
        elif not word.endswith("ss"):
            word = word[:-1]
    removed = False
    if word.endswith("eed") and len(word) > 3:
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    elif word.endswith("ed") and len(word) > 2 and _has_vowel(word[:-2]):
        word, removed = word[:-2], True
    elif word.endswith("ing") and len(word) > 3 and _has_vowel(word[:-3]):
        word, removed = word[:-3], True
    if removed:
        if word.endswith(("at", "bl", "iz")):
            word += "e"
        elif word[-2:] == word[-1] * 2 and word[-1] not in "aeioulsz" and word[-1].isascii():
            word = word[:-1]
        elif _measure(word) == 1 and _cvc(word):
            word += "e"
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _step4(word: str) -> str:
    for suffix in _STEP4:
        if word.endswith(suffix) and len(word) > len(suffix):
            stem = word[: -len(suffix)]
            if suffix == "ion" and not stem.endswith(("s", "t")):
                return word
            return stem if _measure(stem) > 1 else word
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        measure = _measure(stem)
        if measure > 1 or (measure == 1 and not _cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word[:-1]) > 1:
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 16)  # a corpus has far fewer distinct words; stems repeat
def porter_stem(word: str) -> str:
    """Reduce a folded word to its Porter stem, as FTS5's ``porter`` tokenizer does.

    ``ownership`` gives ``ownership``, ``owners`` and ``owner`` give ``owner``,
    ``borrowing`` and ``borrowed`` give ``borrow``. Words under 3 or over 64 UTF-8 bytes
    are returned unchanged, as FTS5 does.

    Args:
        word: One word, already folded (:func:`fold`).

    Returns:
        The stem.
    """
    size = len(word.encode("utf-8"))
    if size < _PORTER_MIN_BYTES or size > _PORTER_MAX_BYTES:
        return word
    word = _step1(word)
    word = _replace(word, _STEP2, 0)
    word = _replace(word, _STEP3, 0)
    word = _step4(word)
    return _step5(word)
