"""The SQL of :class:`~langchain_rag_async.sparse_index.FTS5Index` and the pure helpers around it.

The schema and every statement, the translation of a user question into a safe FTS5
``MATCH`` query (:func:`to_fts5_query`), metadata filters in SQL, write plans, lookups by
id in batches, and rows turned into documents. No I/O: the index module runs these.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any

from langchain_core.documents import Document

from langchain_rag_async._checks import check_count, check_filter
from langchain_rag_async._text import ENGLISH_STOPWORDS, WORD
from langchain_rag_async.errors import ConfigurationError

__all__ = ("ENGLISH_STOPWORDS", "MAX_QUERY_TERMS", "SCHEMA_VERSION", "to_fts5_query")

MAX_QUERY_TERMS = 64  # distinct words of a question that go into the FTS5 query
SCHEMA_VERSION = 2  # 2: the seal table (see _seal)


# Run by the SQLite layer in one transaction, which then sets PRAGMA user_version.
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    page_content TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    page_content, content='chunks', content_rowid='pk',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, page_content) VALUES (new.pk, new.page_content);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, page_content)
    VALUES ('delete', old.pk, old.page_content);
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE OF page_content ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, page_content)
    VALUES ('delete', old.pk, old.page_content);
    INSERT INTO chunks_fts(rowid, page_content) VALUES (new.pk, new.page_content);
END;
CREATE TABLE IF NOT EXISTS seal (name TEXT PRIMARY KEY, digest TEXT NOT NULL);
"""
UPSERT_SQL = """
INSERT INTO chunks (id, page_content, metadata) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET page_content = excluded.page_content, metadata = excluded.metadata
WHERE chunks.page_content IS NOT excluded.page_content OR chunks.metadata IS NOT excluded.metadata
"""
DELETE_SQL = "DELETE FROM chunks WHERE id = ?"
COUNT_SQL = "SELECT count(*) FROM chunks"
# FTS5's own check of its index against the rows (rank 1: against the content table too).
# SQLite's PRAGMA integrity_check only covers FTS5 from SQLite 3.44 on.
INTEGRITY_SQL = "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)"
IDS_SQL = "SELECT id FROM chunks"
# Without a filter, rank inside FTS5 first and read only the top rows' text (an OR query
# can match a third of the corpus; joining every match first is twice as slow).
RANKED_SEARCH_SQL = """
SELECT {columns}, m.score
FROM (
    SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts
    WHERE chunks_fts MATCH ? ORDER BY score DESC LIMIT ?
) AS m JOIN chunks AS c ON c.pk = m.rowid
ORDER BY m.score DESC, c.id
"""
SEARCH_SQL = """
SELECT {columns}, -bm25(chunks_fts) AS score
FROM chunks_fts JOIN chunks AS c ON c.pk = chunks_fts.rowid
WHERE chunks_fts MATCH ?{filters}
ORDER BY score DESC, c.id
LIMIT ?
"""
DOCUMENT_COLUMNS = "c.id, c.page_content, c.metadata"
GET_SQL = f"SELECT {DOCUMENT_COLUMNS} FROM chunks AS c WHERE c.id IN ({{marks}})"
GET_BATCH = 500  # ids per lookup, far below SQLite's limit on bound parameters


def to_fts5_query(
    text: str,
    *,
    stopwords: Set[str] = ENGLISH_STOPWORDS,
    max_terms: int = MAX_QUERY_TERMS,
) -> str | None:
    """Turn a free-text question into a safe FTS5 ``MATCH`` expression.

    The text is cut into words (runs of Unicode letters and digits); each distinct word
    becomes a quoted FTS5 string and the strings are joined with ``OR``, so BM25 ranks
    chunks matching more (and rarer) words higher. FTS5 syntax in the question (quotes,
    ``*``, ``NEAR``, ``AND``/``OR``/``NOT``, ``-``, ``:``, parentheses, ``^``) is treated
    as plain text and can never make the query fail.

    Args:
        text: The user's question.
        stopwords: Lower-case words to drop; when every word is a stop-word, all are kept.
        max_terms: Keep at most this many distinct words (the first ones).

    Returns:
        The MATCH expression, or ``None`` when the text holds no word at all.

    Raises:
        ConfigurationError: ``max_terms`` is smaller than 1 (also a ``ValueError``).
    """
    check_count("max_terms", max_terms)
    words = dict.fromkeys(w.lower() for w in WORD.findall(unicodedata.normalize("NFC", text)))
    terms = [w for w in words if w not in stopwords] or list(words)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms[:max_terms])


@dataclass(frozen=True, slots=True)
class WritePlan:
    """The rows one write transaction deletes and upserts (deletes run first)."""

    deletes: list[tuple[str]]
    rows: list[tuple[str, str, str]]

    @property
    def size(self) -> int:
        return len(self.deletes) + len(self.rows)


def plan_write(upserts: Sequence[Document], deletes: Sequence[str]) -> WritePlan:
    """Validate a batch and convert it to SQL parameters (no I/O).

    Raises:
        ConfigurationError: A document has no id (also a ``ValueError``).
    """
    missing = [i for i, doc in enumerate(upserts) if not doc.id]
    if missing:
        raise ConfigurationError(
            f"{len(missing)} document(s) have no id (first at position {missing[0]}); "
            "give every chunk the same id it has in the vector store before indexing it"
        )
    rows = [
        (
            str(doc.id),
            doc.page_content,
            json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True, default=str),
        )
        for doc in upserts
    ]
    return WritePlan(deletes=[(str(i),) for i in deletes], rows=rows)


def filter_sql(filter: dict[str, Any] | None) -> tuple[str, list[Any]]:
    """Build the SQL conditions of an exact-match metadata filter.

    The filter is validated by :func:`~langchain_rag_async._checks.check_filter` (the one
    validator the vector store shares). A scalar value matches equal values; ``None``
    matches a missing or null value; a list or tuple matches any of its values.

    Raises:
        ConfigurationError: The filter is malformed (also a ``ValueError``).
    """
    checked = check_filter(filter)
    if not checked:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in checked.items():
        path = f'$."{key}"'  # check_filter refused keys holding '"'
        values = value if isinstance(value, list) else [value]
        scalars = [v for v in values if v is not None]
        options: list[str] = []
        if scalars:
            options.append(f"json_extract(c.metadata, ?) IN ({', '.join('?' * len(scalars))})")
            params.extend([path, *scalars])
        if len(scalars) < len(values):
            options.append("coalesce(json_type(c.metadata, ?), 'null') = 'null'")
            params.append(path)
        if not options:
            clauses.append("0")  # an empty list: "any of nothing"
        elif len(options) == 1:
            clauses.append(options[0])
        else:
            clauses.append(f"({' OR '.join(options)})")
    return "".join(f"\n  AND {clause}" for clause in clauses), params


def build_search(
    query: str, k: int, filter: dict[str, Any] | None, *, columns: str = DOCUMENT_COLUMNS
) -> tuple[str, list[Any]] | None:
    """Return the search SQL and its parameters, or ``None`` when nothing can match.

    Raises:
        ConfigurationError: ``k`` is not a whole number of at least 1, or the filter is
            malformed (also a ``ValueError``).
    """
    check_count("k", k)
    match = to_fts5_query(query)
    if match is None:
        return None
    if not filter:
        return RANKED_SEARCH_SQL.format(columns=columns), [match, k]
    conditions, params = filter_sql(filter)
    return SEARCH_SQL.format(columns=columns, filters=conditions), [match, *params, k]


SEARCH_BATCH = 64
"""The most searches in one statement (SQLite allows 500 parts in a compound SELECT)."""


def batch_searches(searches: Sequence[tuple[str, Sequence[Any]]]) -> tuple[str, list[Any]]:
    """One statement for several searches of :func:`build_search` (``columns="c.id"``).

    Each search stays the statement it is alone, as a subquery; its rows come back
    numbered by search (``search, id, score``) in its own order (score, then id: a total
    order), so :func:`split_searches` hands each search exactly the rows it gets alone.
    """
    members = [
        f"SELECT {number} AS search, id, score FROM ({statement})"
        for number, (statement, _) in enumerate(searches)
    ]
    params = [param for _, bound in searches for param in bound]
    return "\nUNION ALL\n".join(members) + "\nORDER BY search, score DESC, id", params


def split_searches(rows: Iterable[Sequence[Any]], count: int) -> list[list[tuple[str, float]]]:
    """The ``(id, score)`` results of each of ``count`` batched searches, in order."""
    results: list[list[tuple[str, float]]] = [[] for _ in range(count)]
    for number, doc_id, score in rows:
        results[number].append((str(doc_id), float(score)))
    return results


def to_result(row: Sequence[Any]) -> tuple[Document, float]:
    doc_id, content, metadata, score = row
    return Document(id=doc_id, page_content=content, metadata=json.loads(metadata)), float(score)


def to_id_result(row: Sequence[Any]) -> tuple[str, float]:
    doc_id, score = row
    return str(doc_id), float(score)


def to_document(row: Sequence[Any]) -> Document:
    doc_id, content, metadata = row
    return Document(id=doc_id, page_content=content, metadata=json.loads(metadata))


def get_batches(ids: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The lookups of :meth:`FTS5Index.aget_by_ids`: SQL and distinct ids, in batches."""
    distinct = list(dict.fromkeys(str(doc_id) for doc_id in ids))
    batches = [distinct[i : i + GET_BATCH] for i in range(0, len(distinct), GET_BATCH)]
    return [(GET_SQL.format(marks=", ".join("?" * len(b))), b) for b in batches]


def in_order(batches: Sequence[tuple[str, list[str]]], rows: Iterable[Any]) -> list[Document]:
    """The documents of ``rows`` in the order their ids were asked for (unknown skipped)."""
    by_id = {row[0]: row for row in rows}
    return [to_document(by_id[i]) for _, ids in batches for i in ids if i in by_id]
