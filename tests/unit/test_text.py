"""The package's one way to cut, fold, stem and count words (``_text``), checked against SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_rag_async._text import (
    CHARS_PER_TOKEN,
    ENGLISH_STOPWORDS,
    QUESTION_STOPWORDS,
    WORD,
    estimate_message_tokens,
    estimate_tokens,
    fold,
    porter_stem,
    terms,
)

SPARSE_TOKENIZER = "porter unicode61 remove_diacritics 2"  # as sparse_index/_fts5_sql.py
RULE_SUFFIXES = (
    "s ies sses ed eed ing ational tional enci anci izer logi bli alli entli eli ousli ization "
    "ation ator alism iveness fulness ousness aliti iviti biliti icate ative alize iciti ical "
    "ful ness al ance ence er ic able ible ant ement ment ent sion tion ou ism ate iti ous ive "
    "ize e ll y"
).split()
"""Every suffix a Porter rule looks at, appended to real words to reach every rule."""
ODD_WORDS = [
    "café", "naïve", "Ångström", "Łódź", "résumé", "coöperation", "façade", "straße",
    "Здравствуйте", "Українська", "ελληνική", "日本語", "1990s", "x86_64", "i", "ab", "sses",
    "ies", "yyyy", "syzygy", "ÉCOLE",
]  # fmt: skip
"""Diacritics, other scripts, digits and tokens under the stemmer's 3-byte minimum."""


def fts5_terms(words: list[str]) -> list[list[str]]:
    """What SQLite FTS5, with the sparse index's tokenizer, stores for each word, in order."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute(f"CREATE VIRTUAL TABLE t USING fts5(w, tokenize='{SPARSE_TOKENIZER}')")
        con.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
        con.executemany("INSERT INTO t(rowid, w) VALUES (?, ?)", enumerate(words))
        found: dict[int, list[tuple[int, str]]] = {}
        for term, doc, offset in con.execute("SELECT term, doc, offset FROM v"):
            found.setdefault(doc, []).append((offset, term))
    finally:
        con.close()
    return [[term for _, term in sorted(found.get(i, []))] for i in range(len(words))]


def python_terms(word: str) -> list[str]:
    return [porter_stem(token) for token in WORD.findall(fold(word))]


def vocabulary(rust_book: Path) -> list[str]:
    words: set[str] = set()
    for path in sorted(rust_book.glob("ch0[4-8]*.md")):  # ownership to modules: ~40 files
        words.update(WORD.findall(path.read_text("utf-8")))
    return sorted(words)


def test_python_stemmer_agrees_with_fts5_on_the_rust_book(rust_book: Path) -> None:
    words = vocabulary(rust_book)
    assert len(words) > 2000, "too few words for the comparison to mean anything"
    lowered = sorted({word.lower() for word in words})
    derived = [stem + suffix for stem in lowered[::7] for suffix in RULE_SUFFIXES]
    everything = words + derived + ODD_WORDS
    expected = fts5_terms(everything)
    mismatches = [
        (word, want, got)
        for word, want in zip(everything, expected, strict=True)
        if (got := python_terms(word)) != want
    ]
    assert mismatches == []
    # The comparison is not vacuous: stemming changed many words.
    assert (
        sum(1 for word, want in zip(everything, expected, strict=True) if want != [fold(word)])
        > 5000
    )


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("caresses", "caress"), ("ponies", "poni"), ("cats", "cat"), ("agreed", "agre"),
        ("plastered", "plaster"), ("motoring", "motor"), ("hopping", "hop"), ("filing", "file"),
        ("happy", "happi"), ("relational", "relat"), ("conditional", "condit"),
        ("digitizer", "digit"), ("generalization", "gener"), ("triplicate", "triplic"),
        ("revival", "reviv"), ("adjustment", "adjust"), ("adoption", "adopt"),
        ("controlling", "control"), ("roll", "roll"), ("borrowing", "borrow"),
        ("ownership", "ownership"), ("owners", "owner"),
    ],
)  # fmt: skip
def test_porter_examples(word: str, stem: str) -> None:
    assert porter_stem(word) == stem


def test_fold_and_terms() -> None:
    assert fold("Café NAÏVE Ångström") == "cafe naive angstrom"
    assert fold("Здравствуйте") == "здравствуйте"  # only Latin letters lose their marks
    assert terms("What are the ownership rules of `String`?") == ["ownership", "rule", "string"]
    assert terms("Please explain the borrowing") == ["pleas", "explain", "borrow"]
    assert terms("Please explain the borrowing", QUESTION_STOPWORDS) == ["borrow"]
    assert ENGLISH_STOPWORDS < QUESTION_STOPWORDS  # one list, extended for questions


def test_one_token_estimate_for_texts_and_messages() -> None:
    text = "x" * 400
    assert estimate_tokens([text]) == 400 // CHARS_PER_TOKEN == 100
    assert estimate_tokens(["", "ab"]) == 2  # at least one token per text
    one = estimate_message_tokens([HumanMessage(text)])
    two = estimate_message_tokens([HumanMessage(text), AIMessage(text)])
    assert 100 <= one <= 110  # the text's estimate plus the role's few tokens
    assert two == one + estimate_message_tokens([AIMessage(text)])  # message by message
