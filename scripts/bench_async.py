"""Indexing throughput: langchain-rag-async against LangChain as users write it today.

Every approach embeds through the real ``langchain_openai.OpenAIEmbeddings`` client, talking
to the local fake OpenAI server (``127.0.0.1`` only, its own event loop in a thread) that
answers each request after ``--latency`` seconds. Compared in one run:

(a) ``DirectoryLoader`` + ``RecursiveCharacterTextSplitter`` + ``FAISS.from_documents`` (sync);
(b) the same loader and splitter (their async methods) + ``langchain_core.indexing.aindex``
    with a record manager into LangChain's FAISS;
ours: ``langchain_rag_async.aindex_directory`` with ``--concurrency`` requests in flight,
    with its default (Markdown-aware) splitter, and again with the plain splitter, which
    cuts exactly the chunks LangChain's does (the same work, request for request).

Then a rate-limited scenario: the server allows ``--rate`` requests/s (429 + Retry-After
above it); ours runs paced by its own limiter (``rpm = rate * 60``) and once unpaced, relying
on 429 handling. Each figure is printed next to its target with PASS/FAIL. The exit status
is 0 even when a target is missed: this is a measurement, not a test.

The fake server has its own event loop, so its work does not run on the measured loop, but
it shares this process's GIL and the machine's cores. Results are in docs/benchmarks.md.

    .venv/bin/python scripts/bench_async.py            # the full run (a few minutes)
    .venv/bin/python scripts/bench_async.py --files 10 --skip-langchain --json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from langchain_rag_async import aindex_directory
from langchain_rag_async.config import (
    EmbeddingConfig,
    LoaderConfig,
    RAGConfig,
    RateLimitConfig,
    SplitterConfig,
)
from langchain_rag_async.indexing.record_manager import SQLiteRecordManager
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = PROJECT_ROOT.parent / "shared/data/rust-book"
MODEL = "text-embedding-3-small"
SPLITTER = SplitterConfig()  # 1000 / 150: the same numbers for LangChain's splitter

SPEEDUP_TARGET = 5.0
STALL_TARGET_MS = 50.0
RATE_TARGET = 0.9
HEARTBEAT_INTERVAL = 0.005


# -- measuring --------------------------------------------------------------------------------


class Heartbeat:
    """A task that sleeps ``interval`` seconds in a loop and records how late each wake-up is.

    The lateness of a wake-up is how long the event loop could not run it (a stall) beyond
    the requested sleep. The CPU time the loop's thread used meanwhile tells why: close to
    the lateness, the loop itself was running something (code blocking the loop); close to
    zero, the thread was waiting for the GIL or for a CPU (contention from other threads or
    processes on this shared machine).
    """

    def __init__(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (wake-up, lateness, loop CPU)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat(), name="bench-heartbeat")
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves

    async def _beat(self) -> None:
        before, cpu_before = time.monotonic(), time.thread_time()
        while True:
            await asyncio.sleep(self.interval)
            now, cpu = time.monotonic(), time.thread_time()
            lateness = max(0.0, now - before - self.interval)
            self.samples.append((now, lateness, min(lateness, cpu - cpu_before)))
            before, cpu_before = now, cpu

    def max_stall_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest lateness of the wake-ups between ``start`` and ``end``, in ms."""
        late = [lateness for at, lateness, _ in self.samples if start <= at <= end]
        return round(1000.0 * max(late, default=0.0), 1)

    def max_busy_stall_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest CPU time the loop's thread spent within one stall, in ms."""
        busy = [cpu for at, _, cpu in self.samples if start <= at <= end]
        return round(1000.0 * max(busy, default=0.0), 1)


def server_figures(server: FakeOpenAIServer, started: float) -> dict[str, Any]:
    """What the fake server saw since its last ``reset_stats`` (times relative to ``started``).

    The server stamps requests with ``time.monotonic()``, the clock used here throughout.
    The mean number of requests in flight is estimated as (answered requests x latency) /
    (time from the first request's arrival to the last one's answer).
    """
    stats = server.stats
    times = stats.request_times or [started]
    ok = stats.status_counts.get(200, 0)
    busy = times[-1] - times[0] + server.latency
    return {
        "mean_in_flight": round(ok * server.latency / busy, 1) if busy > 0 else None,
        "first_request_at_s": round(times[0] - started, 3),
        "last_request_at_s": round(times[-1] - started, 3),
        "requests": stats.requests,
        "ok_requests": stats.status_counts.get(200, 0),
        "rate_limited_responses": stats.status_counts.get(429, 0),
        "peak_in_flight": stats.peak_in_flight,
        "texts_embedded_by_server": stats.embedded_texts,
    }


# -- the corpus -------------------------------------------------------------------------------


def select_files(corpus: Path, limit: int | None) -> list[Path] | None:
    """The first ``limit`` Markdown files by name, or ``None`` for the whole corpus."""
    if limit is None:
        return None
    return sorted(corpus.rglob("*.md"))[:limit]


def corpus_files(corpus: Path, files: list[Path] | None) -> list[Path]:
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


# -- LangChain as users write it --------------------------------------------------------------


def langchain_modules() -> SimpleNamespace:
    """Import LangChain's classes (quietly: langchain-community warns it is being sunset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import faiss
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.document_loaders import DirectoryLoader, TextLoader
        from langchain_community.vectorstores import FAISS
        from langchain_core.indexing import aindex
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    return SimpleNamespace(
        faiss=faiss,
        InMemoryDocstore=InMemoryDocstore,
        DirectoryLoader=DirectoryLoader,
        TextLoader=TextLoader,
        FAISS=FAISS,
        aindex=aindex,
        RecursiveCharacterTextSplitter=RecursiveCharacterTextSplitter,
    )


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


def run_langchain_sync(
    lc: SimpleNamespace, corpus: Path, files: list[Path] | None, server: FakeOpenAIServer, args: Any
) -> dict[str, Any]:
    """(a) DirectoryLoader + RecursiveCharacterTextSplitter + FAISS.from_documents."""
    embeddings = openai_embeddings(server.base_url, args.batch_size)
    server.reset_stats()
    cpu = time.process_time()
    started = time.monotonic()
    loader = lc.DirectoryLoader(
        str(corpus), glob=langchain_glob(corpus, files), loader_cls=lc.TextLoader
    )
    docs = loader.load()
    splitter = lc.RecursiveCharacterTextSplitter(
        chunk_size=SPLITTER.chunk_size, chunk_overlap=SPLITTER.chunk_overlap
    )
    chunks = splitter.split_documents(docs)
    store = lc.FAISS.from_documents(chunks, embeddings)
    seconds = time.monotonic() - started
    cpu = time.process_time() - cpu
    return {
        "label": "(a) LangChain FAISS.from_documents (sync)",
        "seconds": round(seconds, 3),
        "files": len(docs),
        "chunks": len(chunks),
        "chunks_stored": int(store.index.ntotal),
        "chunks_embedded": int(store.index.ntotal),
        "files_failed": [],
        "loop_stall_ms": None,
        "process_cpu_s": round(cpu, 2),
        **server_figures(server, started),
    }


async def langchain_record_manager(db_dir: Path) -> tuple[Any, str]:
    """langchain_classic's SQLRecordManager on aiosqlite if it works here, else ours."""
    url = f"sqlite+aiosqlite:///{db_dir / 'records.sqlite'}"
    try:
        from langchain_classic.indexes import SQLRecordManager

        classic = SQLRecordManager("bench", db_url=url, async_mode=True)
        await classic.acreate_schema()
        return classic, "langchain_classic SQLRecordManager (sqlite+aiosqlite)"
    except ImportError as exc:
        ours = SQLiteRecordManager("bench", db_path=db_dir / "records-ours.sqlite")
        await ours.acreate_schema()
        reason = str(exc).split(".")[0]
        return ours, f"langchain_rag_async SQLiteRecordManager (SQLRecordManager: {reason})"


async def run_langchain_aindex(
    lc: SimpleNamespace,
    corpus: Path,
    files: list[Path] | None,
    server: FakeOpenAIServer,
    args: Any,
    work: Path,
) -> dict[str, Any]:
    """(b) the loader's aload, the splitter's atransform_documents, then aindex into FAISS."""
    embeddings = openai_embeddings(server.base_url, args.batch_size)
    store = lc.FAISS(
        embedding_function=embeddings,
        index=lc.faiss.IndexFlatL2(args.dimension),
        docstore=lc.InMemoryDocstore(),
        index_to_docstore_id={},
    )
    loader = lc.DirectoryLoader(
        str(corpus), glob=langchain_glob(corpus, files), loader_cls=lc.TextLoader
    )
    splitter = lc.RecursiveCharacterTextSplitter(
        chunk_size=SPLITTER.chunk_size, chunk_overlap=SPLITTER.chunk_overlap
    )
    records, records_kind = await langchain_record_manager(work)
    try:
        server.reset_stats()
        cpu = time.process_time()
        async with Heartbeat() as beat, asyncio.timeout(args.timeout):
            started = time.monotonic()
            docs = await loader.aload()
            chunks = await splitter.atransform_documents(docs)
            index_started = time.monotonic()
            result = await lc.aindex(
                chunks,
                records,
                store,
                cleanup="incremental",
                source_id_key="source",
                key_encoder="sha256",
            )
            ended = time.monotonic()
        cpu = time.process_time() - cpu
    finally:
        close = getattr(records, "aclose", None) or getattr(records.engine, "dispose", None)
        if close is not None:
            await close()
    figures = server_figures(server, started)
    return {
        "label": "(b) LangChain aindex + FAISS",
        "seconds": round(ended - started, 3),
        "files": len(docs),
        "chunks": len(chunks),
        "chunks_stored": int(store.index.ntotal),
        "chunks_embedded": int(result["num_added"]),
        "files_failed": [],
        "loop_stall_ms": beat.max_stall_ms(started, ended),
        "loop_stall_ms_aindex_only": beat.max_stall_ms(index_started, ended),
        "loop_busy_stall_ms": beat.max_busy_stall_ms(started, ended),
        "process_cpu_s": round(cpu, 2),
        "record_manager": records_kind,
        **figures,
    }


# -- ours -------------------------------------------------------------------------------------


async def run_ours(
    corpus: Path,
    files: list[Path] | None,
    server: FakeOpenAIServer,
    args: Any,
    index_dir: Path,
    *,
    label: str,
    batch_size: int,
    requests_per_minute: float | None = None,
    splitter: SplitterConfig = SPLITTER,
) -> dict[str, Any]:
    """``aindex_directory`` into a fresh index directory (nothing cached)."""
    config = RAGConfig(
        loader=LoaderConfig(include=our_include(corpus, files)),
        splitter=splitter,
        embeddings=EmbeddingConfig(
            provider="openai",
            model=MODEL,
            openai_api_key="bench",
            openai_base_url=server.base_url,
            batch_size=batch_size,
            concurrency=args.concurrency,
            rate_limit=RateLimitConfig(requests_per_minute=requests_per_minute),
        ),
    )
    server.reset_stats()
    cpu = time.process_time()
    async with Heartbeat() as beat:
        started = time.monotonic()
        summary = await aindex_directory(
            corpus, index_dir=index_dir, config=config, timeout=args.timeout
        )
        ended = time.monotonic()
    cpu = time.process_time() - cpu
    seconds = ended - started
    figures = server_figures(server, started)
    return {
        "label": label,
        "seconds": round(seconds, 3),
        "files": summary.files_indexed,
        "chunks": summary.chunks_added,
        "chunks_stored": summary.chunks_added,
        "chunks_embedded": summary.chunks_embedded,
        "files_failed": [[f.path, f.reason] for f in summary.files_failed],
        "loop_stall_ms": beat.max_stall_ms(started, ended),
        "loop_busy_stall_ms": beat.max_busy_stall_ms(started, ended),
        "loop_stall_ms_after_first_request": beat.max_stall_ms(
            started + figures["first_request_at_s"], ended
        ),
        "process_cpu_s": round(cpu, 2),
        "batch_size": batch_size,
        "markdown_aware_splitter": splitter.markdown_aware,
        "requests_per_minute": requests_per_minute,
        "achieved_requests_per_s": round(figures["ok_requests"] / seconds, 2),
        **figures,
    }


# -- checks and output ------------------------------------------------------------------------


def check(name: str, measured: Any, target: str, passed: bool) -> dict[str, Any]:
    return {"check": name, "measured": measured, "target": target, "passed": passed}


def complete(result: dict[str, Any]) -> bool:
    """No failed file and every chunk embedded and stored."""
    return (
        not result["files_failed"]
        and result["chunks"] > 0
        and result["chunks_embedded"] == result["chunks"]
        and result["texts_embedded_by_server"] >= result["chunks"]
    )


def evaluate(scenarios: dict[str, dict[str, Any]], args: Any) -> list[dict[str, Any]]:
    ours = scenarios["ours"]
    checks = [
        check(
            "ours: peak requests in flight (server) == --concurrency",
            ours["peak_in_flight"],
            f"== {args.concurrency}",
            ours["peak_in_flight"] == args.concurrency,
        ),
        check(
            "ours: largest event-loop stall (ms)",
            ours["loop_stall_ms"],
            f"<= {STALL_TARGET_MS:g}",
            ours["loop_stall_ms"] <= STALL_TARGET_MS,
        ),
        check(
            "ours: every chunk embedded, no failed file",
            f"{ours['chunks_embedded']}/{ours['chunks']}, {len(ours['files_failed'])} failed",
            "all, 0 failed",
            complete(ours),
        ),
    ]
    for mine, variant in (("ours", "ours"), ("ours_same_chunks", "ours (same chunks)")):
        for key, name in (("langchain_sync", "(a)"), ("langchain_aindex", "(b)")):
            if key in scenarios and mine in scenarios:
                ratio = scenarios[key]["seconds"] / scenarios[mine]["seconds"]
                checks.append(
                    check(
                        f"speed-up of {variant} vs {name} (wall time ratio)",
                        f"{ratio:.2f}x",
                        f">= {SPEEDUP_TARGET:g}x",
                        ratio >= SPEEDUP_TARGET,
                    )
                )
    for key in ("rate_paced", "rate_unpaced"):
        if key in scenarios:
            checks.extend(rate_checks(key, scenarios[key], args.rate))
    return checks


def rate_checks(key: str, result: dict[str, Any], rate: float) -> list[dict[str, Any]]:
    ratio = result["achieved_requests_per_s"] / rate
    return [
        check(
            f"{key}: achieved req/s vs server limit {rate:g}/s",
            f"{result['achieved_requests_per_s']:.1f}/s = {ratio:.0%}",
            f">= {RATE_TARGET:.0%}",
            ratio >= RATE_TARGET,
        ),
        check(
            f"{key}: every chunk embedded, no failed file",
            f"{result['chunks_embedded']}/{result['chunks']}, "
            f"{len(result['files_failed'])} failed, "
            f"{result['rate_limited_responses']} x 429",
            "all, 0 failed",
            complete(result),
        ),
    ]


ROWS = (
    ("wall time (s)", "seconds"),
    ("files", "files"),
    ("chunks", "chunks"),
    ("chunks embedded", "chunks_embedded"),
    ("requests sent", "requests"),
    ("answered 429", "rate_limited_responses"),
    ("peak requests in flight", "peak_in_flight"),
    ("mean requests in flight (estimate)", "mean_in_flight"),
    ("first request at (s)", "first_request_at_s"),
    ("last request at (s)", "last_request_at_s"),
    ("process CPU time (s), fake server included", "process_cpu_s"),
    ("largest loop stall (ms)", "loop_stall_ms"),
    ("  from the first request on (ms)", "loop_stall_ms_after_first_request"),
    ("  during aindex() only (ms)", "loop_stall_ms_aindex_only"),
    ("largest loop-thread CPU time within a stall (ms)", "loop_busy_stall_ms"),
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def scenario_table(
    scenarios: dict[str, dict[str, Any]], keys: Sequence[str], *, rate: bool = False
) -> str:
    present = [k for k in keys if k in scenarios]
    header = ["figure", *(scenarios[k]["label"] for k in present)]
    fields = (
        [*ROWS, ("achieved req/s (200s / wall time)", "achieved_requests_per_s")] if rate else ROWS
    )
    rows = [[title, *(scenarios[k].get(field) for k in present)] for title, field in fields]
    rows = [r for r in rows if any(c is not None for c in r[1:])]
    return markdown_table(header, rows)


def report_text(report: dict[str, Any]) -> str:
    scenarios = report["scenarios"]
    settings = report["settings"]
    parts = [
        f"machine: {report['machine']['summary']}",
        f"settings: {json.dumps(settings)}",
        "",
        "Indexing, unlimited server, latency "
        f"{settings['latency_s']:g} s/request, {settings['batch_size']} texts/request:",
        scenario_table(
            scenarios, ("langchain_sync", "langchain_aindex", "ours", "ours_same_chunks")
        ),
    ]
    if "langchain_aindex" in scenarios:
        parts.append(f"(b) record manager: {scenarios['langchain_aindex']['record_manager']}")
    if "rate_paced" in scenarios:
        parts += [
            "",
            f"Rate-limited server: {settings['rate_per_s']:g} requests/s (429 + Retry-After "
            f"above), {settings['rate_batch_size']} texts/request:",
            scenario_table(scenarios, ("rate_paced", "rate_unpaced"), rate=True),
        ]
    rows = [
        [c["check"], c["measured"], c["target"], "PASS" if c["passed"] else "**FAIL**"]
        for c in report["checks"]
    ]
    parts += ["", "Targets:", markdown_table(["check", "measured", "target", "result"], rows)]
    return "\n".join(parts)


def missed_banner(checks: Sequence[dict[str, Any]]) -> str:
    missed = [c for c in checks if not c["passed"]]
    if not missed:
        return f"ALL {len(checks)} TARGETS MET"
    lines = [f"!!! {len(missed)} OF {len(checks)} TARGETS MISSED !!!"]
    lines += [f"!!!   {c['check']}: {c['measured']} (target {c['target']})" for c in missed]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cpus = os.cpu_count()
    summary = (
        f"{platform.system()} {platform.machine()}, {cpus} logical CPUs (shared), "
        f"Python {platform.python_version()}, load average at start {load[0]:.2f}"
    )
    return {"cpus": cpus, "load_average_at_start": load[0], "summary": summary}


# -- driver -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--files", type=int, default=None, help="only the first N .md files")
    parser.add_argument("--concurrency", type=int, default=8, help="our requests in flight")
    parser.add_argument("--latency", type=float, default=0.1, help="server s/request")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per request")
    parser.add_argument("--dimension", type=int, default=256, help="vector length")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="server limit in requests/s (0: skip)"
    )
    parser.add_argument(
        "--rate-batch-size",
        type=int,
        default=4,
        help="texts per request in the rate-limited runs (smaller: more requests, longer run)",
    )
    parser.add_argument(
        "--skip-unpaced", action="store_true", help="skip the rate-limited run without --rpm"
    )
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.files is not None and args.files < 1:
        parser.error("--files must be at least 1")
    if not args.corpus.is_dir():
        parser.error(f"corpus not found: {args.corpus}")
    return args


def keep_traffic_local() -> None:
    """Never route the benchmark's requests through a proxy: the server is on 127.0.0.1."""
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fresh(run: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one scenario (a coroutine function on a new event loop, or a plain function).

    The garbage of earlier scenarios is collected first, outside any event loop, so that
    it is not collected (and its open clients closed) inside the next measurement.
    """
    gc.collect()
    if inspect.iscoroutinefunction(run):
        result: dict[str, Any] = asyncio.run(run(*args, **kwargs))
    else:
        result = run(*args, **kwargs)
    return result


def run_unlimited(
    args: argparse.Namespace, files: list[Path] | None, work: Path
) -> dict[str, dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = {}
    lc = None if args.skip_langchain else langchain_modules()
    corpus = args.corpus
    with FakeOpenAIServer.run_in_thread(dimension=args.dimension, latency=args.latency) as server:
        if lc is not None:
            progress("(a) LangChain FAISS.from_documents ...")
            scenarios["langchain_sync"] = fresh(run_langchain_sync, lc, corpus, files, server, args)
            progress("(b) LangChain aindex ...")
            scenarios["langchain_aindex"] = fresh(
                run_langchain_aindex, lc, corpus, files, server, args, work / "aindex"
            )
        progress(f"ours, concurrency {args.concurrency} ...")
        scenarios["ours"] = fresh(
            run_ours,
            corpus,
            files,
            server,
            args,
            work / "ours",
            label=f"ours, concurrency {args.concurrency}",
            batch_size=args.batch_size,
        )
        progress("ours, plain splitter (the same chunks as LangChain's) ...")
        scenarios["ours_same_chunks"] = fresh(
            run_ours,
            corpus,
            files,
            server,
            args,
            work / "ours-same-chunks",
            label="ours, same chunks as LangChain",
            batch_size=args.batch_size,
            splitter=SplitterConfig(
                chunk_size=SPLITTER.chunk_size,
                chunk_overlap=SPLITTER.chunk_overlap,
                markdown_aware=False,
            ),
        )
    return scenarios


def run_rate_limited(
    args: argparse.Namespace, files: list[Path] | None, work: Path
) -> dict[str, dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = {}
    runs = [("rate_paced", args.rate * 60.0, f"ours, --rpm {args.rate * 60:g}")]
    if not args.skip_unpaced:
        runs.append(("rate_unpaced", None, "ours, no --rpm (429 handling)"))
    for key, rpm, label in runs:
        progress(f"rate-limited server {args.rate:g}/s: {label} ...")
        with FakeOpenAIServer.run_in_thread(
            dimension=args.dimension, latency=args.latency, requests_per_second=args.rate
        ) as server:
            scenarios[key] = fresh(
                run_ours,
                args.corpus,
                files,
                server,
                args,
                work / key,
                label=label,
                batch_size=args.rate_batch_size,
                requests_per_minute=rpm,
            )
    return scenarios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    keep_traffic_local()
    host = machine()
    files = select_files(args.corpus, args.files)
    warm_page_cache(corpus_files(args.corpus, files))
    with tempfile.TemporaryDirectory(prefix="bench-async-") as tmp:
        work = Path(tmp)
        (work / "aindex").mkdir()
        scenarios = run_unlimited(args, files, work)
        if args.rate > 0:
            scenarios |= run_rate_limited(args, files, work)
    report = {
        "machine": host,
        "settings": {
            "corpus": str(args.corpus),
            "files_limit": args.files,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
            "batch_size": args.batch_size,
            "dimension": args.dimension,
            "rate_per_s": args.rate,
            "rate_batch_size": args.rate_batch_size,
        },
        "scenarios": scenarios,
        "checks": evaluate(scenarios, args),
    }
    banner = missed_banner(report["checks"])
    if args.json:
        print(json.dumps(report, indent=2))
        print(banner, file=sys.stderr)
    else:
        print(report_text(report))
        print()
        print(banner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
