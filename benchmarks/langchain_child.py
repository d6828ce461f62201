"""LangChain's own sync indexing path, as the memory benchmarks' measured child runs it.

This module imports LangChain and nothing of ``langchain_rag_async`` (not even its fake
server's client helpers), so that the child's peak RSS is LangChain's alone: importing our
modules there added about 2.5 MiB to the side we are compared with.

``python -m benchmarks.langchain_child CORPUS OUT BASE_URL BATCH`` loads the Markdown files
with ``DirectoryLoader`` + ``TextLoader``, splits them with
``RecursiveCharacterTextSplitter(1000, 150)``, embeds with ``OpenAIEmbeddings`` against
``BASE_URL`` and runs ``FAISS.from_documents`` + ``save_local``; it prints
``{"files": N, "chunks": M}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from langchain_core.documents import Document
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

__all__ = ("CHUNK_OVERLAP", "CHUNK_SIZE", "MODEL", "langchain_chunks", "openai_embeddings")

MODEL = "text-embedding-3-small"
CHUNK_SIZE = 1000  # our SplitterConfig's defaults (a test checks they agree)
CHUNK_OVERLAP = 150


def openai_embeddings(base_url: str, batch_size: int) -> OpenAIEmbeddings:
    """The real LangChain OpenAI client, pointed at the fake server."""
    return OpenAIEmbeddings(
        model=MODEL,
        api_key=SecretStr("bench"),
        base_url=base_url,
        chunk_size=batch_size,
        check_embedding_ctx_length=False,  # would download a tiktoken table
        max_retries=0,
        timeout=60,
    )


def langchain_chunks(corpus: Path) -> tuple[list[Document], list[Document]]:
    """LangChain's usual load and split of ``corpus``: its documents and their chunks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.document_loaders import DirectoryLoader, TextLoader
        from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = DirectoryLoader(str(corpus), glob="**/*.md", loader_cls=TextLoader).load()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    return docs, splitter.split_documents(docs)


def main(argv: Sequence[str] | None = None) -> int:
    """The child's work: load, split, ``FAISS.from_documents``, ``save_local``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("base_url")
    parser.add_argument("batch_size", type=int)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.vectorstores import FAISS

    docs, chunks = langchain_chunks(args.corpus)
    store = FAISS.from_documents(chunks, openai_embeddings(args.base_url, args.batch_size))
    store.save_local(str(args.out_dir))
    print(json.dumps({"files": len(docs), "chunks": int(store.index.ntotal)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
