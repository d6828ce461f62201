"""Retrieval quality and latency of dense, sparse and hybrid search on BEIR SciFact (train).

Builds the indexes in-process, then prints nDCG@10 and recall@100 per method, the mean
sequential latency of hybrid vs dense-only and sparse-only, and the longest event-loop
stall while 100 hybrid searches run at once.

One document per abstract (``title + "\\n" + text``), no chunking: SciFact abstracts are
short (a few hundred words), so the whole abstract is one retrieval unit, as in BEIR.
Vectors come from the default offline model (LocalMiniLMEmbeddings) and are cached in
``.bench/scifact/`` (gitignored), so only the first run pays the ~5 minutes of embedding.
Only the train split is available, so every number here, tuning included, is on train
queries.

Usage:
    .venv/bin/python scripts/eval_retrieval.py [--limit-queries N] [--fusion rrf|weighted]
        [--dense-weight W] [--sparse-weight W] [--fetch-k N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_rag_async.embeddings.local import LOCAL_MODEL_ID, LocalMiniLMEmbeddings
from langchain_rag_async.retrievers import FTS5Index, HybridRetriever
from langchain_rag_async.vectorstores import AsyncFAISS

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
CACHE_DIR = ROOT / ".bench" / "scifact"
EMBED_CHUNK = 256  # texts per embedding call (progress is reported per chunk)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class SciFact:
    """The corpus, the queries that have judgements, and the judgements."""

    documents: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_scifact(root: Path = SCIFACT) -> SciFact:
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


# --------------------------------------------------------------------------- vectors


def _fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256(LOCAL_MODEL_ID.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


async def cached_vectors(
    name: str, texts: Sequence[str], embeddings: Embeddings
) -> npt.NDArray[np.float32]:
    """Vectors of ``texts``, from ``.bench/scifact/<name>-<fingerprint>.npy`` when present."""
    path = CACHE_DIR / f"{name}-{_fingerprint(texts)}.npy"
    if path.exists():
        vectors: npt.NDArray[np.float32] = np.load(path)
        return vectors
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        parts.append(await embeddings.aembed_documents(list(texts[start : start + EMBED_CHUNK])))
        done = min(start + EMBED_CHUNK, len(texts))
        rate = done / (time.perf_counter() - started)
        print(f"  embedded {done}/{len(texts)} {name} ({rate:.1f} texts/s)", file=sys.stderr)
    vectors = np.asarray([v for part in parts for v in part], dtype=np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors
