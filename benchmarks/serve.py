"""Serving under load: ours against the usual LangChain way, side by side in one run.

Both servers run in their own process on loopback and speak OpenAI's streaming chat
format; one load generator (the ``openai`` async client) drives them with ``C``
concurrent streaming chats, then reports time to first token, whole-answer time,
tokens/s, requests/s, errors, the server's largest event-loop stall and its memory, and
the CPU seconds per request spent by the server process (all its threads) and by the load
generator: on a shared 2-core machine those bound requests/s whatever the scheduling.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai

from benchmarks.corpus import PROJECT_ROOT, RUST_BOOK, select_files
from benchmarks.report import check, checks_table, machine, markdown_table, progress

__all__ = ("QUESTIONS", "LoadResult", "run")

QUESTIONS = (
    "How do lifetimes work?",
    "What does the borrow checker do?",
    "How do I read a file?",
    "What is a trait object?",
    "How are closures different from functions?",
    "What is Cargo?",
    "How does pattern matching work with enums?",
    "What does the question mark operator do?",
    "How do threads share data safely?",
    "What is ownership?",
)


@dataclass
class LoadResult:
    """What one load run measured."""

    kind: str
    concurrency: int
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    tokens: int = 0
    wall: float = 0.0
    max_stall_ms: float = 0.0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def row(self) -> list[Any]:
        """The run as one row of the report table."""

        def q(values: list[float], p: float) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]:.0f}"

        return [
            self.kind, self.concurrency, self.ok, len(self.errors),
            q(self.ttft, 0.5), q(self.ttft, 0.99), q(self.total, 0.5), q(self.total, 0.99),
            f"{self.tokens / self.wall:.0f}" if self.wall else "-",
            f"{self.ok / self.wall:.1f}" if self.wall else "-",
            self.max_stall_ms, self.rss_idle_mb, self.rss_peak_mb,
            f"{1000 * self.server_cpu_s / self.ok:.1f}" if self.ok else "-",
            f"{1000 * self.client_cpu_s / self.ok:.1f}" if self.ok else "-",
        ]  # fmt: skip


HEADER = [
    "server", "clients", "ok", "errors", "TTFT p50 ms", "TTFT p99 ms", "total p50 ms",
    "total p99 ms", "tokens/s", "requests/s", "max loop stall ms", "RSS idle MiB",
    "RSS peak MiB", "server CPU ms/req", "client CPU ms/req",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_index(files: int, index_dir: Path) -> None:
    """Index the first ``files`` rust-book files with the bundled model (what serve uses)."""
    from langchain_rag_async import RAGConfig, RAGEngine
    from langchain_rag_async.config import LoaderConfig

    chosen = select_files(RUST_BOOK, files) or []
    include = tuple(p.relative_to(RUST_BOOK).as_posix() for p in chosen)
    config = RAGConfig(index_dir=index_dir, loader=LoaderConfig(include=include))
    with RAGEngine(config=config) as engine:
        summary = engine.index_directory(RUST_BOOK)
    progress(f"indexed {summary.files_indexed} files, {summary.chunks_added} chunks")


class Target:
    """One server process (``benchmarks.serve_target``)."""

    def __init__(self, kind: str, index_dir: Path, remote_llm: str | None = None) -> None:
        self.kind = kind if remote_llm is None else f"{kind} (remote LLM)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        remote = [] if remote_llm is None else ["--remote-llm", remote_llm]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve_target", "--kind", kind,
             "--index-dir", str(index_dir), "--port", str(self.port), *remote],
            cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )  # fmt: skip

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/_bench/stats", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"the {self.kind} server did not start")

    def stats(self) -> dict[str, float]:
        return dict(httpx.get(f"{self.url}/_bench/stats", timeout=10).json())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def one_chat(client: openai.AsyncOpenAI, question: str, result: LoadResult) -> None:
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    try:
        stream = await client.chat.completions.create(
            model="rag-async", messages=[{"role": "user", "content": question}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                tokens += len(chunk.choices[0].delta.content.split())  # words ~ tokens
                if first is None:
                    first = time.perf_counter()
    except Exception as exc:  # counted, not raised: the benchmark reports errors
        result.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    end = time.perf_counter()
    result.ok += 1
    result.tokens += tokens
    result.ttft.append((first or end) - started)
    result.total.append(end - started)


async def load(target: Target, concurrency: int) -> LoadResult:
    result = LoadResult(kind=target.kind, concurrency=concurrency)
    limits = httpx2.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency)
    async with (
        httpx2.AsyncClient(limits=limits, timeout=300) as http,  # the openai client's own httpx
        openai.AsyncOpenAI(
            base_url=f"{target.url}/v1", api_key="bench", max_retries=0, http_client=http
        ) as client,
    ):
        await one_chat(client, QUESTIONS[0], LoadResult(kind="warm-up", concurrency=1))
        idle = await asyncio.to_thread(target.stats)
        result.rss_idle_mb = idle["rss_mb"]
        peak = idle["rss_mb"]
        started, client_cpu = time.perf_counter(), _process_cpu()
        chats = [
            asyncio.create_task(one_chat(client, QUESTIONS[i % len(QUESTIONS)], result))
            for i in range(concurrency)
        ]
        while not all(task.done() for task in chats):
            await asyncio.sleep(0.25)
            peak = max(peak, (await asyncio.to_thread(target.stats))["rss_mb"])
        result.wall = time.perf_counter() - started
        result.client_cpu_s = _process_cpu() - client_cpu
        final = await asyncio.to_thread(target.stats)
        result.server_cpu_s = final["cpu_s"] - idle["cpu_s"]
        result.rss_peak_mb = max(peak, final["rss_mb"])
        result.max_stall_ms = final["max_stall_ms"]
    return result


def _process_cpu() -> float:
    """CPU seconds this process (the load generator) used so far, all threads."""
    times = os.times()
    return times.user + times.system


REMOTE_REPLY = "Cargo is the Rust build system and package manager [1]. " * 4
REMOTE_TOKEN_DELAY = 0.02  # seconds between a remote model's streamed tokens (~0.7 s a reply)


class RemoteModel:
    """A fake OpenAI-compatible chat service in its own process (a remote, I/O-bound LLM)."""

    def __init__(self) -> None:
        self.port = free_port()
        code = (
            "import sys, time\n"
            "from langchain_rag_async.testing.openai_server import FakeOpenAIServer\n"
            "with FakeOpenAIServer.run_in_thread(\n"
            f"    chat_reply={REMOTE_REPLY!r}, chat_token_delay={REMOTE_TOKEN_DELAY}\n"
            ") as running:\n"
            "    print(running.base_url, flush=True)\n"
            "    sys.stdin.read()\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if self.process.stdout is None:
            raise RuntimeError("no stdout from the fake model process")
        self.base_url = self.process.stdout.readline().strip()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run(
    *, files: int = 30, levels: tuple[int, ...] = (100, 200), remote: bool = False
) -> list[LoadResult]:
    """Build an index, then load each server at each concurrency level; print the report.

    With ``remote``, both servers also answer through a remote, latency-bound chat model
    (the fake OpenAI server in its own process), the case the async design is for.
    """
    print(machine()["summary"])
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        index_dir = Path(tmp) / "index"
        build_index(files, index_dir)
        model = RemoteModel() if remote else None
        try:
            remote_url = None if model is None else model.base_url
            for llm in (None, remote_url) if remote_url else (None,):
                for kind in ("ours", "langchain"):
                    target = Target(kind, index_dir, llm)
                    try:
                        target.wait_ready()
                        for level in levels:
                            progress(f"{target.kind}: {level} concurrent streaming chats")
                            results.append(asyncio.run(load(target, level)))
                    finally:
                        target.stop()
        finally:
            if model is not None:
                model.stop()
    print(markdown_table(HEADER, [r.row() for r in results]))
    print(checks_table(verdicts(results)))
    return results


def verdicts(results: list[LoadResult]) -> list[dict[str, Any]]:
    """The issue's targets, judged on this run."""
    by = {(r.kind, r.concurrency): r for r in results}
    checks = []
    for r in results:
        if r.kind == "ours":
            checks.append(check(f"ours, {r.concurrency} clients: errors", len(r.errors), "0",
                                not r.errors))  # fmt: skip
            checks.append(check(f"ours, {r.concurrency} clients: max loop stall (ms)",
                                r.max_stall_ms, "<= 50", r.max_stall_ms <= 50))  # fmt: skip
    ours100 = by.get(("ours", 100))
    if ours100 and ours100.ttft:
        p99 = sorted(ours100.ttft)[min(len(ours100.ttft) - 1, int(0.99 * len(ours100.ttft)))]
        checks.append(check("ours, 100 clients: TTFT p99 (s)", round(p99, 3), "<= 1.0", p99 <= 1.0))
    for suffix in ("", " (remote LLM)"):
        for level in sorted({r.concurrency for r in results}):
            mine, theirs = by.get(("ours" + suffix, level)), by.get(("langchain" + suffix, level))
            if mine and theirs and mine.wall and theirs.wall and theirs.ok:
                ratio = (mine.ok / mine.wall) / (theirs.ok / theirs.wall)
                checks.append(check(f"{level} clients{suffix}: requests/s ours / LangChain way",
                                    round(ratio, 2), ">= 3", ratio >= 3))  # fmt: skip
    return checks
