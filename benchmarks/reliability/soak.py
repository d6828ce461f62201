"""Soak: many cycles of change files → index → query in one process; resources stay flat.

``python -m benchmarks.reliability.soak --cycles 200 --workdir DIR`` runs the cycles in one
:class:`~langchain_rag_async.AsyncRAGEngine` (embeddings through the real ``openai`` client
and the local fake server, in a thread of the same process) and prints one JSON object with
the resident memory (RSS), open file descriptors, threads and asyncio tasks after cycle 10,
after half the cycles (the warm-up: see :data:`RSS_GROWTH_MB`) and after the last one.
:func:`run` starts that process and judges the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import PROJECT_ROOT, ScenarioResult, cli_env

__all__ = ("run",)

RSS_GROWTH_MB = 10.0
"""Most the resident memory may grow over the second half of the cycles.

The first half is the warm-up: the SQLite page caches of the three databases, FAISS and the
allocator's arenas fill up over the first few dozen cycles (measured: about 1.6 MB per cycle
up to cycle 60, then flat; ``tracemalloc`` shows no Python object growing), so the
judgement is on the second half; the figures show the first cycles too."""


def _resources() -> dict[str, float]:
    rss_kb = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "open_fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": len(asyncio.all_tasks()),
    }


def _copy_corpus(source: Path, corpus: Path, files: int) -> list[Path]:
    corpus.mkdir(parents=True)
    return [Path(shutil.copy2(p, corpus / p.name)) for p in sorted(source.rglob("*.md"))[:files]]


async def _cycles(cycles: int, workdir: Path, paths: list[Path]) -> dict[str, Any]:
    from langchain_rag_async import AsyncRAGEngine, RAGConfig
    from langchain_rag_async.testing import FakeOpenAIServer

    corpus = paths[0].parent
    figures: dict[str, Any] = {"trace": []}
    with FakeOpenAIServer.run_in_thread() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url}
        config = RAGConfig.from_env(env)
        async with AsyncRAGEngine(workdir / "index", config) as engine:
            for cycle in range(cycles):
                changed = paths[cycle % len(paths)]
                with changed.open("a", encoding="utf-8") as handle:
                    handle.write(f"\n\nSoak cycle {cycle} appended this line.\n")
                summary = await engine.aindex_directory(corpus)
                if summary.files_failed:
                    raise OSError(f"cycle {cycle}: files failed: {summary.files_failed}")
                hits = await engine.aquery(f"soak cycle {cycle}", k=3)
                if not hits:
                    raise OSError(f"cycle {cycle}: the query found nothing")
                if cycle + 1 == 10:
                    figures["early"] = _resources()
                if cycle + 1 == cycles // 2:
                    figures["first"] = _resources()
                if (cycle + 1) % 10 == 0:
                    figures["trace"].append(_resources()["rss_mb"])
            figures["last"] = _resources()
    figures["cycles"] = cycles
    return figures


def run(
    trials: int,
    workdir: Path,
    *,
    source: Path,
    cycles: int = 200,
    rss_growth_mb: float = RSS_GROWTH_MB,
) -> ScenarioResult:
    """Run the soak process ``trials`` times and judge its first and last figures.

    Args:
        trials: Soak processes to run.
        workdir: Scratch directory.
        source: Where the corpus files are copied from (the rust-book).
        cycles: Cycles per process (at least 20).
        rss_growth_mb: Most the RSS may grow over the second half (short runs end
            inside the warm-up and need more).
    """
    result = ScenarioResult(f"soak: {cycles} cycles of change → index → query")
    env = cli_env("http://unused", RAG_EMBEDDING_MODEL="text-embedding-3-small")
    for number in range(trials):
        target = workdir / f"soak-{number}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.reliability.soak",
                "--cycles",
                str(cycles),
                "--workdir",
                str(target),
                "--source",
                str(source),
            ],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            result.record(False, f"the soak process failed: {done.stderr[-800:]}")
            continue
        figures = json.loads(done.stdout)
        first, last = figures["first"], figures["last"]
        result.figures[f"run {number}: after cycle 10"] = figures["early"]
        result.figures[f"run {number}: after cycle {cycles // 2}"] = first
        result.figures[f"run {number}: after cycle {cycles}"] = last
        problems = []
        if last["rss_mb"] - first["rss_mb"] > rss_growth_mb:
            problems.append(f"RSS grew {last['rss_mb'] - first['rss_mb']:.1f} MB")
        for name in ("open_fds", "threads", "tasks"):
            if last[name] > first[name]:
                problems.append(f"{name} grew from {first[name]} to {last[name]}")
        result.record(not problems, "; ".join(problems))
    return result


def main() -> None:
    """Run the cycles and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    paths = _copy_corpus(args.source, args.workdir / "corpus", args.files)
    figures = asyncio.run(_cycles(args.cycles, args.workdir, paths))
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
