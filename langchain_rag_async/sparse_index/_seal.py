"""The seal of a sparse index file: a digest of its contents, checked when it is opened.

SQLite checks the structure of its pages, and FTS5's ``integrity-check`` the index
against its rows, but a bit flipped inside a posting list, a document size or a chunk's
text passes both often enough (in our trials FTS5's check caught 24 of 60 random flips):
BM25 then ranks differently and nothing says so. The seal closes that gap. Writers
compute a digest of every row of every table the index keeps and store it in the
``seal`` table (:data:`SEAL_SQL`); a write that changes the rows removes the seal in its
own transaction (:data:`UNSEAL_SQL`), so a seal never describes other contents than the
ones beside it, whatever crashes. Readers recompute the digest (one statement, one
snapshot, so a concurrent writer cannot make it disagree) and compare.

The digest is order-free: the sum, modulo 2**128, of a BLAKE2b hash per row (table,
key and values, each value typed and length-prefixed), so no sort is needed and any
change to one row changes it. No I/O here: :class:`~.fts5.FTS5Index` runs the SQL.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any, Literal

__all__ = (
    "CHECK_SQL",
    "DIGEST_FUNCTION",
    "DIGEST_SQL",
    "HAS_SEAL_TABLE_SQL",
    "SEAL_SQL",
    "SealState",
    "UNSEAL_SQL",
    "combine",
    "judge",
    "register",
)

SealState = Literal["sound", "unsealed", "mismatch"]
"""``sound``: the contents match their seal; ``unsealed``: no seal to check (a file
written before seals existed, or a write whose seal had not landed yet); ``mismatch``:
the contents changed since they were sealed, without a write (damage)."""

DIGEST_FUNCTION = "rag_row_digest"
_MODULUS = 1 << 128
_SEAL_NAME = "contents"

# Every table FTS5 and the chunk table keep, by key. One statement: one read snapshot.
_DIGESTS = f"""
    (SELECT {DIGEST_FUNCTION}(0, pk, id, page_content, metadata) FROM chunks),
    (SELECT {DIGEST_FUNCTION}(1, id, block) FROM chunks_fts_data),
    (SELECT {DIGEST_FUNCTION}(2, segid, term, pgno) FROM chunks_fts_idx),
    (SELECT {DIGEST_FUNCTION}(3, id, sz) FROM chunks_fts_docsize),
    (SELECT {DIGEST_FUNCTION}(4, k, v) FROM chunks_fts_config)"""
DIGEST_SQL = f"SELECT {_DIGESTS}"
CHECK_SQL = f"SELECT {_DIGESTS}, (SELECT digest FROM seal WHERE name = '{_SEAL_NAME}')"
SEAL_SQL = f"INSERT OR REPLACE INTO seal (name, digest) VALUES ('{_SEAL_NAME}', ?)"
UNSEAL_SQL = "DELETE FROM seal"
HAS_SEAL_TABLE_SQL = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'seal'"


class _RowDigest:
    """SQL aggregate: the order-free digest of the rows it is given (see the module)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, *values: Any) -> None:
        row = hashlib.blake2b(digest_size=16)
        for value in values:
            row.update(_encode(value))
        self.total = (self.total + int.from_bytes(row.digest(), "big")) % _MODULUS

    def finalize(self) -> str:
        return f"{self.total:032x}"


def _encode(value: Any) -> bytes:
    """One SQL value, typed and length-prefixed, so no two rows encode alike."""
    if value is None:
        return b"n"
    if isinstance(value, bytes):
        return b"b%d:" % len(value) + value
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(data) + data
    if isinstance(value, int):
        return b"i%d;" % value
    return b"f" + repr(value).encode() + b";"


def register(conn: sqlite3.Connection) -> None:
    """Make :data:`DIGEST_FUNCTION` available on ``conn`` (every connection that seals)."""
    conn.create_aggregate(DIGEST_FUNCTION, -1, _RowDigest)  # type: ignore[arg-type]


def combine(parts: tuple[Any, ...]) -> str:
    """The seal of the contents from the per-table digests of :data:`DIGEST_SQL`."""
    return hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=32).hexdigest()


def judge(row: tuple[Any, ...]) -> SealState:
    """The state of a file from one :data:`CHECK_SQL` row (the digests, then the seal)."""
    *parts, sealed = row
    if sealed is None:
        return "unsealed"
    return "sound" if combine(tuple(parts)) == sealed else "mismatch"
