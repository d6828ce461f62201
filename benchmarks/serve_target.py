"""A server under load for ``scripts/bench_serve.py``: ours, or the usual LangChain way.

Run as ``python -m benchmarks.serve_target --kind ours|langchain --index-dir DIR --port P``.
Both speak OpenAI's streaming chat format, so one load generator drives both. ``GET
/_bench/stats`` reports the largest event-loop stall since the last call and the RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from benchmarks.timing import Heartbeat

__all__ = ("main",)


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def add_stats(app: FastAPI) -> None:
    """``/_bench/stats``: largest loop stall (ms) since the last call, RSS (MiB), CPU seconds."""
    beats: list[Heartbeat] = []
    since = [time.monotonic()]

    @app.get("/_bench/stats")
    async def stats() -> dict[str, float]:
        if not beats:  # started on the server's loop by the first call
            beats.append(await Heartbeat().__aenter__())
        now = time.monotonic()
        stall = beats[0].max_stall_ms(since[0], now)
        since[0] = now
        times = os.times()
        return {
            "max_stall_ms": stall,
            "rss_mb": round(rss_mb(), 1),
            "cpu_s": round(times.user + times.system, 3),
        }


def ours(index_dir: Path, remote_llm: str | None) -> FastAPI:
    """``rag-async serve``'s app; with ``remote_llm``, answers come from that OpenAI URL."""
    from dataclasses import replace

    from langchain_rag_async import RAGConfig
    from langchain_rag_async.config import LLMConfig, ServerConfig
    from langchain_rag_async.server import create_app

    settings = ServerConfig(max_concurrent_generations=512, queue_timeout=120.0)
    config = RAGConfig(index_dir=index_dir, server=settings)
    if remote_llm is not None:  # a remote service: its limiter must not be the bottleneck
        llm = LLMConfig(
            provider="openai", openai_base_url=remote_llm, openai_api_key="bench", concurrency=512
        )
        config = replace(config, llm=llm)
    return create_app(config=config, warm_up=True)  # as rag-async serve


def langchain_way(index_dir: Path, remote_llm: str | None) -> FastAPI:
    """A FastAPI route calling LangChain's sync FAISS retriever + chain in the thread pool."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.output_parsers import StrOutputParser

    from langchain_rag_async import AsyncFAISS, LocalMiniLMEmbeddings
    from langchain_rag_async.chat_models import ExtractiveChatModel
    from langchain_rag_async.prompts import ANSWER_PROMPT, format_sources

    embeddings = LocalMiniLMEmbeddings()
    ours_store = asyncio.run(AsyncFAISS.aload_local(str(index_dir), embeddings))
    ids = list(ours_store.index_to_docstore_id.values())
    docs = ours_store.get_by_ids(ids)
    vectors = ours_store.index.reconstruct_n(0, ours_store.index.ntotal)
    store = FAISS.from_embeddings(
        [(d.page_content, list(map(float, v))) for d, v in zip(docs, vectors, strict=True)],
        embeddings,
        metadatas=[d.metadata for d in docs],
    )
    retriever = store.as_retriever(search_kwargs={"k": 6})
    model: Any = ExtractiveChatModel()
    if remote_llm is not None:
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr

        model = ChatOpenAI(base_url=remote_llm, api_key=SecretStr("bench"), model="gpt-4o-mini")
    chain = ANSWER_PROMPT | model | StrOutputParser()
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> StreamingResponse:  # sync: FastAPI runs it in a thread
        question = body["messages"][-1]["content"]
        found = retriever.invoke(question)

        def stream() -> Iterator[str]:
            cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
            for piece in chain.stream(
                {"question": question, "sources": format_sources(found), "history": []}
            ):
                chunk = {
                    "id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }  # fmt: skip
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def main(argv: list[str] | None = None) -> None:
    """Start one server and serve until terminated."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["ours", "langchain"], required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--remote-llm", default=None, help="OpenAI-compatible base URL")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAG_FREEZE_GC", "1")
    build = ours if args.kind == "ours" else langchain_way
    app = build(args.index_dir, args.remote_llm)
    add_stats(app)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=2048)


if __name__ == "__main__":
    main()
