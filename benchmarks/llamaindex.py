"""LlamaIndex's async ingestion, as its docs recommend, against the same fake OpenAI server.

``IngestionPipeline(transformations=[SentenceSplitter(...), OpenAIEmbedding(...)]).arun(
documents=SimpleDirectoryReader(...).load_data(), num_workers=None)``: the reader and the
splitter run on the loop, then ``OpenAIEmbedding`` sends every batch of ``embed_batch_size``
texts at once (``asyncio.gather``, no bound). The ``openai`` client asks for base64 vectors,
as it does against the real API. LlamaIndex is optional (``pip install -e '.[bench]'``);
without it, :func:`missing` says so and the benchmark skips the row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .fake_openai import MODEL, FakeOpenAIServer, server_figures
from .timing import Heartbeat

__all__ = ("LABEL", "missing", "read_split_embed", "run_llamaindex")

LABEL = "LlamaIndex IngestionPipeline.arun"
CHUNK_SIZE = 1000
CHUNK_OVERLAP = 150
# LlamaIndex counts chunk sizes in tiktoken tokens (1000 tokens: ~400 chunks of the
# rust-book, 26 requests); counting characters, as LangChain's splitter and ours do, it cuts
# about as many chunks as they do, so that every row sends about as many requests.
_CHARACTERS = list


def missing() -> str | None:
    """Why the LlamaIndex scenario cannot run here, or ``None`` when it can."""
    try:
        import llama_index.core  # noqa: F401
        import llama_index.embeddings.openai  # noqa: F401
    except ImportError as exc:
        return f"LlamaIndex is not installed ({exc.name}): pip install -e '.[bench]' to add its row"
    return None


def _reader(corpus: Path, files: list[Path] | None) -> Any:
    from llama_index.core import SimpleDirectoryReader

    if files is not None:
        return SimpleDirectoryReader(input_files=[str(f) for f in files])
    return SimpleDirectoryReader(input_dir=str(corpus), recursive=True, required_exts=[".md"])


def pipeline(base_url: str, batch_size: int) -> Any:
    """The ingestion pipeline: sentence splitter, then the OpenAI embedding model."""
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.openai import OpenAIEmbedding

    return IngestionPipeline(
        transformations=[
            SentenceSplitter(
                chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, tokenizer=_CHARACTERS
            ),
            OpenAIEmbedding(
                model=MODEL,
                api_key="bench",
                api_base=base_url,
                embed_batch_size=batch_size,
                max_retries=0,
                timeout=60.0,
            ),
        ]
    )


def warm_up(ingest: Any) -> None:
    """Load what the splitter loads on first use (NLTK's sentence tokenizer), untimed."""
    from llama_index.core import Document

    ingest.transformations[0]([Document(text="Warm up. The splitter loads its data.")])


async def read_split_embed(corpus: Path, files: list[Path] | None, server: Any, args: Any) -> int:
    """The whole LlamaIndex run, as a child process does it; the number of chunks."""
    ingest = pipeline(server.base_url, args.batch_size)
    nodes = await ingest.arun(documents=_reader(corpus, files).load_data(), num_workers=None)
    return len(nodes)


async def run_llamaindex(
    corpus: Path, files: list[Path] | None, server: FakeOpenAIServer, args: Any
) -> dict[str, Any]:
    """Read, split and embed the corpus with LlamaIndex (in-process figures)."""
    ingest = pipeline(server.base_url, args.batch_size)
    warm_up(ingest)
    server.reset_stats()
    cpu = time.process_time()
    async with Heartbeat() as beat:
        started = time.monotonic()
        documents = _reader(corpus, files).load_data()
        nodes = await ingest.arun(documents=documents, num_workers=None)
        ended = time.monotonic()
    cpu = time.process_time() - cpu
    embedded = sum(1 for n in nodes if n.embedding is not None)
    return {
        "label": LABEL,
        "seconds": round(ended - started, 3),
        "files": len({d.metadata.get("file_path") for d in documents}),
        "chunks": len(nodes),
        "chunks_stored": len(nodes),
        "chunks_embedded": embedded,
        "files_failed": [],
        "loop_stall_ms": beat.max_stall_ms(started, ended),
        "loop_busy_stall_ms": beat.max_busy_stall_ms(started, ended),
        "process_cpu_s": round(cpu, 2),
        **server_figures(server, started),
    }
