"""Whole-process times: each approach as a fresh interpreter, from spawn to exit.

Ours is the command users run (``rag-async index --json``); LangChain sync and LlamaIndex
run as ``python -m benchmarks.whole_process SCENARIO`` (imports, reading, splitting,
embedding, exit). All talk to the parent's fake server, whose counters the parent reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .fake_openai import MODEL, FakeOpenAIServer

__all__ = ("CHILD_SCENARIOS", "whole_process_seconds")

ROOT = Path(__file__).resolve().parents[1]
CHILD_SCENARIOS = ("langchain_sync", "llamaindex")


def _ours_command(corpus: Path, index_dir: Path, args: Any) -> list[str]:
    rag = Path(sys.executable).with_name("rag-async")
    return [
        str(rag),
        "index",
        str(corpus),
        "--index-dir",
        str(index_dir),
        "--embeddings",
        "openai",
        "--batch-size",
        str(args.batch_size),
        "--concurrency",
        str(args.concurrency),
        "--json",
        "--no-progress",
    ]


def whole_process_seconds(
    scenario: str, server: FakeOpenAIServer, args: Any, work: Path
) -> dict[str, Any]:
    """Run ``scenario`` in a child process; its wall time and what it reported."""
    env = dict(os.environ)
    env |= {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "bench",
        "RAG_EMBEDDINGS": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "PYTHONPATH": str(ROOT),
    }
    if scenario == "ours":
        index_dir = Path(tempfile.mkdtemp(prefix="whole-", dir=work))
        command = _ours_command(args.corpus, index_dir, args)
    else:
        command = [
            sys.executable,
            "-m",
            "benchmarks.whole_process",
            scenario,
            "--corpus",
            str(args.corpus),
            "--base-url",
            server.base_url,
            "--batch-size",
            str(args.batch_size),
        ]
    server.reset_stats()
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        return {"whole_process_s": None, "error": done.stderr.strip()[-500:]}
    report = json.loads(done.stdout)  # one JSON object (``rag-async index --json``, ours)
    return {
        "whole_process_s": round(seconds, 3),
        # ours: the pipeline's own timer; the others: from after the child's first imports
        "whole_process_inner_s": round(float(report["seconds"]), 3),
        "whole_process_requests": server.stats.requests,
    }


def _child(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one scenario, for a whole-process time")
    parser.add_argument("scenario", choices=CHILD_SCENARIOS)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    server = SimpleNamespace(base_url=args.base_url)
    settings = SimpleNamespace(batch_size=args.batch_size)
    started = time.monotonic()
    if args.scenario == "llamaindex":
        from .llamaindex import read_split_embed

        chunks = asyncio.run(read_split_embed(args.corpus, None, server, settings))
    else:
        from .indexing import langchain_modules, langchain_sync_index

        chunks = langchain_sync_index(langchain_modules(), args.corpus, None, server, settings)
    print(json.dumps({"seconds": time.monotonic() - started, "chunks": chunks}))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
