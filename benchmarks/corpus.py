"""The benchmarks' data sets: the rust-book Markdown corpus and BEIR SciFact (train)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document

__all__ = (
    "PROJECT_ROOT",
    "RUST_BOOK",
    "SCIFACT",
    "SciFact",
    "corpus_files",
    "langchain_glob",
    "load_scifact",
    "our_include",
    "select_files",
    "warm_page_cache",
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUST_BOOK = PROJECT_ROOT.parent / "shared" / "data" / "rust-book"
SCIFACT = PROJECT_ROOT.parent / "shared" / "data" / "scifact"


# -- the rust-book corpus (Markdown files) ----------------------------------------------------


def select_files(corpus: Path, limit: int | None) -> list[Path] | None:
    """The first ``limit`` Markdown files by name, or ``None`` for the whole corpus."""
    if limit is None:
        return None
    return sorted(corpus.rglob("*.md"))[:limit]


def corpus_files(corpus: Path, files: list[Path] | None) -> list[Path]:
    """The selected files, or every Markdown file of the corpus when there is no selection."""
    return files if files is not None else sorted(corpus.rglob("*.md"))


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read every file once (in place) so that no approach pays for a cold disk cache."""
    for path in paths:
        path.read_bytes()


def langchain_glob(corpus: Path, files: list[Path] | None) -> str | list[str]:
    """``**/*.md`` as users write it, or the selected files' names for a ``--files`` run."""
    if files is None:
        return "**/*.md"
    return [path.relative_to(corpus).as_posix() for path in files]


def our_include(corpus: Path, files: list[Path] | None) -> tuple[str, ...]:
    """The same selection for our loader (gitignore-style globs, ``/`` anchors at the root)."""
    if files is None:
        return ("*.md",)
    return tuple("/" + path.relative_to(corpus).as_posix() for path in files)


# -- BEIR SciFact -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SciFact:
    """The corpus, the queries that have judgements, and the judgements."""

    documents: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_scifact(root: Path = SCIFACT) -> SciFact:
    """One document per abstract (its title, a newline, its text) and the train judgements.

    Only queries with at least one positive judgement are kept.
    """
    documents = []
    with (root / "corpus.jsonl").open(encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            text = f"{row['title']}\n{row['text']}"
            documents.append(Document(id=str(row["_id"]), page_content=text))
    qrels: dict[str, dict[str, int]] = {}
    # newline="" keeps the CRLF; strip() below removes it.
    with (root / "qrels" / "train.tsv").open(encoding="utf-8", newline="") as file:
        lines = file.read().splitlines()
    for line in lines[1:]:  # header: query-id corpus-id score
        if not line.strip():
            continue
        query_id, corpus_id, score = line.strip().split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, {})[corpus_id] = int(score)
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return SciFact(documents=documents, queries=queries, qrels=qrels)
