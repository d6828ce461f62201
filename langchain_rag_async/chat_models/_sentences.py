"""Pure helpers of the extractive model: Markdown-aware sentence splitting and scoring.

Nothing here does I/O; every function is deterministic, so the sync and async paths of
:class:`~langchain_rag_async.chat_models.ExtractiveChatModel` give the same answer.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from langchain_rag_async._text import QUESTION_STOPWORDS, fold, porter_stem, terms

__all__ = (
    "ScoredSentence",
    "Sentence",
    "content_terms",
    "extract_sentences",
    "score_sentences",
    "select_sentences",
    "split_sentences",
    "stem",
)

MIN_WORDS = 4
"""Fragments with fewer words (headings, labels, list stubs) are not candidates."""
MAX_WORDS = 90
"""Longer "sentences" are run-on text (tables, unpunctuated lists) and not candidates."""

_BM25_K1 = 1.2
_BM25_B = 0.75
_HEADING_WEIGHT = 0.75
_RANK_BONUS = 0.25
_COLON_PENALTY = 0.5
_MIN_RELATIVE_SCORE = 0.4
_DUPLICATE_SIMILARITY = 0.8

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*(\S*)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_BLOCKQUOTE = re.compile(r"^\s*(?:>\s?)+")
_HTML_LINE = re.compile(r"^\s*(?:</?[A-Za-z][^>]*>\s*)+$")
_RULE_LINE = re.compile(r"^\s*(?:[-=*_]\s*){3,}$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LINK_DEFINITION = re.compile(r"^\s*\[[^\]]+\]:\s+\S+")
_INLINE_CODE = re.compile(r"`+[^`\n]*?`+")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^>\n]*>")
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]*_]*\s+")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "mr", "mrs", "ms", "dr", "fig"})
_SENTENCE_OPENERS = frozenset("\x00\"'“‘([*_`")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")


@dataclass(frozen=True, slots=True)
class Sentence:
    """A candidate sentence of one source.

    Attributes:
        source: The citation number of the source it comes from.
        position: Its index among the candidates of that source.
        text: The sentence, Markdown inline formatting kept, whitespace collapsed.
        heading: The nearest heading above it in the source ("" when none).
    """

    source: int
    position: int
    text: str
    heading: str = ""


@dataclass(frozen=True, slots=True)
class ScoredSentence:
    """A sentence with its relevance to the question.

    Attributes:
        sentence: The candidate.
        score: Relevance; higher is better, always positive.
        terms: The sentence's content terms, used to spot near-duplicates.
    """

    sentence: Sentence
    score: float
    terms: frozenset[str]


def stem(word: str) -> str:
    """Reduce a word to its Porter stem, as the sparse index does (``owners`` gives ``owner``).

    The one stemmer of the package, :func:`langchain_rag_async._text.porter_stem`, applied
    to the folded word (lower case, Latin diacritics removed).
    """
    return porter_stem(fold(word))


def content_terms(text: str) -> list[str]:
    """Return the stems of the content words of ``text``, in order (stop-words dropped).

    The sparse index's terms (:func:`langchain_rag_async._text.terms`), without the
    words that only say how a question is asked
    (:data:`~langchain_rag_async._text.QUESTION_STOPWORDS`).
    """
    return list(_cached_terms(text))


@functools.lru_cache(maxsize=1 << 15)  # sources repeat across questions: analyse them once
def _cached_terms(text: str) -> tuple[str, ...]:
    return tuple(terms(text, QUESTION_STOPWORDS))


def split_sentences(markdown: str) -> list[tuple[str, str]]:
    """Split Markdown into candidate sentences, each with the heading it sits under.

    Fenced code blocks, HTML-only lines, rules and link definitions are dropped; heading
    markers are stripped (headings become context, not candidates); list items and table
    rows start new sentences; inline code is kept intact; links keep their text.

    Args:
        markdown: The source text.

    Returns:
        ``(sentence, heading)`` pairs in reading order.
    """
    return list(_cached_sentences(markdown))


@functools.lru_cache(maxsize=1 << 12)
def _cached_sentences(markdown: str) -> tuple[tuple[str, str], ...]:
    result = []
    for paragraph, heading in _paragraphs(markdown.splitlines()):
        for sentence in _split_paragraph(paragraph):
            words = len(sentence.split())
            if MIN_WORDS <= words <= MAX_WORDS and any(ch.isalpha() for ch in sentence):
                result.append((sentence, heading))
    return tuple(result)


def _paragraphs(lines: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(paragraph, heading)`` for the prose blocks of Markdown ``lines``."""
    heading = ""
    current: list[str] = []
    in_fence = _starts_inside_fence(lines)
    for raw in lines:
        fence = _FENCE.match(_BLOCKQUOTE.sub("", raw))
        if fence or in_fence:
            if current:
                yield " ".join(current), heading
                current = []
            if fence:
                in_fence = not in_fence
            continue
        line = _BLOCKQUOTE.sub("", raw).rstrip()
        if match := _HEADING.match(line):
            if current:
                yield " ".join(current), heading
                current = []
            heading = match.group(1)
            continue
        item = _LIST_ITEM.match(line)
        if item or _is_break(line) or line.lstrip().startswith("|"):
            if current:
                yield " ".join(current), heading
                current = []
            if item:
                current.append(item.group(1).strip())
            elif line.lstrip().startswith("|") and not _TABLE_SEPARATOR.match(line):
                yield "; ".join(c.strip() for c in line.strip().strip("|").split("|")), heading
            continue
        current.append(line.strip())
    if current:
        yield " ".join(current), heading


def _is_break(line: str) -> bool:
    return (
        not line.strip()
        or bool(_HTML_LINE.match(line))
        or bool(_RULE_LINE.match(line))
        or bool(_LINK_DEFINITION.match(line))
        or line.lstrip().startswith("{{#")
    )


def _starts_inside_fence(lines: Sequence[str]) -> bool:
    """Guess whether a chunk was cut out of the middle of a fenced code block.

    That is the case when it holds an odd number of fences and the first one is bare
    (a closing fence carries no language tag).
    """
    fences = [m for line in lines if (m := _FENCE.match(_BLOCKQUOTE.sub("", line)))]
    return len(fences) % 2 == 1 and not fences[0].group(2)


def _split_paragraph(paragraph: str) -> Iterator[str]:
    """Split one prose paragraph at sentence ends, keeping inline code spans whole."""
    spans: list[str] = []

    def protect(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"\x00{len(spans) - 1}\x00"

    text = _INLINE_CODE.sub(protect, paragraph)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        if not _starts_sentence(text[boundary.end() : boundary.end() + 1]):
            continue
        previous = _last_word(text[start : boundary.start()])
        if previous.lower() in _ABBREVIATIONS or (len(previous) == 1 and previous.isupper()):
            continue
        yield _restore(text[start : boundary.end()], spans)
        start = boundary.end()
    if text[start:].strip():
        yield _restore(text[start:], spans)


def _starts_sentence(char: str) -> bool:
    return bool(char) and (char.isupper() or char.isdigit() or char in _SENTENCE_OPENERS)


def _last_word(text: str) -> str:
    parts = text.rsplit(None, 1)
    return parts[-1] if parts else ""


def _restore(text: str, spans: Sequence[str]) -> str:
    return " ".join(_PLACEHOLDER.sub(lambda m: spans[int(m.group(1))], text).split())


def extract_sentences(sources: Iterable[tuple[int, str]]) -> list[Sentence]:
    """Split numbered sources into candidate sentences.

    Args:
        sources: ``(citation number, text)`` pairs.

    Returns:
        The candidates of every source, in source order then reading order.
    """
    return [
        Sentence(source=number, position=position, text=text, heading=heading)
        for number, body in sources
        for position, (text, heading) in enumerate(_cached_sentences(body))
    ]


def score_sentences(question: str, sentences: Sequence[Sentence]) -> list[ScoredSentence]:
    """Score candidates for relevance to ``question``; drop those sharing no term with it.

    The score is BM25 over the candidates (IDF computed among them), plus 3/4 of the IDF of
    question terms found only in the sentence's heading, times a bonus for better-ranked
    sources (``1 + 0.25 / n``); sentences ending in ``:`` (they introduce a list or code that
    is not quoted) count half.

    Args:
        question: The question.
        sentences: The candidates.

    Returns:
        The candidates that match at least one content term of the question.
    """
    query = set(content_terms(question))
    if not query or not sentences:
        return []
    documents = [_cached_terms(s.text) for s in sentences]
    average_length = sum(map(len, documents)) / len(documents) or 1.0
    frequency = Counter(t for doc in documents for t in set(doc) if t in query)
    count = len(documents)

    def idf(term: str) -> float:
        df = frequency[term]
        return math.log(1.0 + (count - df + 0.5) / (df + 0.5))

    scored = []
    for sentence, doc in zip(sentences, documents, strict=True):
        tf = Counter(doc)
        matched = query & tf.keys()
        if not matched:
            continue
        norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * len(doc) / average_length)
        score = sum(idf(t) * tf[t] * (_BM25_K1 + 1) / (tf[t] + norm) for t in matched)
        heading_only = (query & set(content_terms(sentence.heading))) - matched
        score += _HEADING_WEIGHT * sum(idf(t) for t in heading_only)
        score *= 1.0 + _RANK_BONUS / max(sentence.source, 1)
        if sentence.text.rstrip().endswith(":"):
            score *= _COLON_PENALTY
        scored.append(ScoredSentence(sentence=sentence, score=score, terms=frozenset(doc)))
    return scored


def select_sentences(scored: Sequence[ScoredSentence], limit: int) -> list[ScoredSentence]:
    """Pick up to ``limit`` sentences: relevant, not redundant, in reading order.

    Greedy maximal-marginal-relevance: each step takes the candidate whose score, reduced
    by its term overlap (Jaccard) with the sentences already taken, is highest. Near
    duplicates (overlap of 0.8 or more, as produced by overlapping chunks) are never taken,
    nor are candidates scoring under 40 % of the best one.

    Args:
        scored: Candidates from :func:`score_sentences`.
        limit: The most sentences to return.

    Returns:
        The chosen sentences, ordered by source number, then position in the source.
    """
    if not scored or limit < 1:
        return []
    floor = _MIN_RELATIVE_SCORE * max(s.score for s in scored)
    pool = [s for s in scored if s.score >= floor]
    chosen: list[ScoredSentence] = []
    while pool and len(chosen) < limit:
        best, best_value = None, 0.0
        for candidate in pool:
            overlap = max((_jaccard(candidate.terms, c.terms) for c in chosen), default=0.0)
            value = 0.0 if overlap >= _DUPLICATE_SIMILARITY else candidate.score * (1 - overlap)
            if value > best_value:
                best, best_value = candidate, value
        if best is None:
            break
        chosen.append(best)
        pool.remove(best)
    return sorted(chosen, key=lambda s: (s.sentence.source, s.sentence.position))


def _jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)
