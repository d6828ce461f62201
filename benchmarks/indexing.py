"""Indexing throughput: ``aindex_directory`` against LangChain as users write it today.

Every approach embeds through the real ``OpenAIEmbeddings`` client talking to the local fake
OpenAI server; ``scripts/bench_async.py`` (its docstring tells the scenarios) parses the
command line and calls :func:`run`. Results and their explanations: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from langchain_rag_async import (
    EmbeddingConfig,
    LoaderConfig,
    RAGConfig,
    RateLimitConfig,
    SplitterConfig,
    SQLiteRecordManager,
    aindex_directory,
)

from . import llamaindex
from .corpus import corpus_files, langchain_glob, our_include, select_files, warm_page_cache
from .fake_openai import (
    MODEL,
    FakeOpenAIServer,
    keep_traffic_local,
    openai_embeddings,
    server_figures,
)
from .indexing_profile import SpanRecorder, profile_table, stage_profile
from .report import check, checks_table, machine, markdown_table, progress
from .timing import Heartbeat, fresh
from .whole_process import whole_process_seconds

__all__ = (
    "FLOOR_TARGET",
    "LLAMAINDEX_TARGET",
    "RATE_TARGET",
    "SPEEDUP_TARGET",
    "STALL_TARGET_MS",
    "SYNC_TARGET",
    "evaluate",
    "report_text",
    "run",
)

SPLITTER = SplitterConfig()  # 1000 / 150: the same numbers for LangChain's splitter

SPEEDUP_TARGET = 5.0
FLOOR_TARGET = 1.25  # ours in-process at most this many times the network floor
LLAMAINDEX_TARGET = 2.0  # ours at least this many times faster than LlamaIndex's arun
SYNC_TARGET = 10.0  # ... and than LangChain sync
STALL_TARGET_MS = 20.0  # the issue's bound on an event-loop stall
RATE_TARGET = 0.9


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


def _langchain_sync(
    lc: SimpleNamespace, corpus: Path, files: list[Path] | None, embeddings: Any
) -> tuple[list[Any], list[Any], Any]:
    loader = lc.DirectoryLoader(
        str(corpus), glob=langchain_glob(corpus, files), loader_cls=lc.TextLoader
    )
    docs = loader.load()
    splitter = lc.RecursiveCharacterTextSplitter(
        chunk_size=SPLITTER.chunk_size, chunk_overlap=SPLITTER.chunk_overlap
    )
    chunks = splitter.split_documents(docs)
    return docs, chunks, lc.FAISS.from_documents(chunks, embeddings)


def langchain_sync_index(
    lc: SimpleNamespace, corpus: Path, files: list[Path] | None, server: Any, args: Any
) -> int:
    """(a) as a child process runs it; the number of chunks."""
    embeddings = openai_embeddings(server.base_url, args.batch_size)
    return len(_langchain_sync(lc, corpus, files, embeddings)[1])


def run_langchain_sync(
    lc: SimpleNamespace, corpus: Path, files: list[Path] | None, server: FakeOpenAIServer, args: Any
) -> dict[str, Any]:
    """(a) DirectoryLoader + RecursiveCharacterTextSplitter + FAISS.from_documents."""
    embeddings = openai_embeddings(server.base_url, args.batch_size)
    server.reset_stats()
    cpu = time.process_time()
    started = time.monotonic()
    docs, chunks, store = _langchain_sync(lc, corpus, files, embeddings)
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


# -- verdicts and the report ------------------------------------------------------------------


def complete(result: dict[str, Any]) -> bool:
    """No failed file and every chunk embedded and stored."""
    return (
        not result["files_failed"]
        and result["chunks"] > 0
        and result["chunks_embedded"] == result["chunks"]
        and result["texts_embedded_by_server"] >= result["chunks"]
    )


def evaluate(scenarios: dict[str, dict[str, Any]], args: Any) -> list[dict[str, Any]]:
    """The verdicts: our concurrency, loop stall and completeness, speed-ups, rate use."""
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
    checks.extend(issue_checks(scenarios, args))
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


def network_floor(result: dict[str, Any], concurrency: int, latency: float) -> float:
    """Seconds the requests need at ``concurrency`` in flight, each taking ``latency``."""
    return float(result["requests"]) / concurrency * latency


def issue_checks(scenarios: dict[str, dict[str, Any]], args: Any) -> list[dict[str, Any]]:
    """Issue 11's targets: ours near the network floor, well ahead of the others."""
    ours = scenarios["ours"]
    floor = network_floor(ours, args.concurrency, args.latency)
    checks = [
        check(
            f"ours: in-process vs network floor ({ours['requests']} req / "
            f"{args.concurrency} x {args.latency:g} s = {floor:.2f} s)",
            f"{ours['seconds'] / floor:.2f}x",
            f"<= {FLOOR_TARGET:g}x",
            ours["seconds"] <= FLOOR_TARGET * floor,
        )
    ]
    for key, name, target in (
        ("llamaindex", "LlamaIndex arun", LLAMAINDEX_TARGET),
        ("langchain_sync", "(a) LangChain sync", SYNC_TARGET),
    ):
        if key in scenarios:
            ratio = scenarios[key]["seconds"] / ours["seconds"]
            checks.append(
                check(
                    f"ours vs {name}, in-process (wall time ratio)",
                    f"{ratio:.2f}x",
                    f">= {target:g}x",
                    ratio >= target,
                )
            )
        if (
            key in scenarios
            and scenarios[key].get("whole_process_s")
            and ours.get("whole_process_s")
        ):
            ratio = scenarios[key]["whole_process_s"] / ours["whole_process_s"]
            checks.append(
                check(
                    f"ours vs {name}, whole process (wall time ratio)",
                    f"{ratio:.2f}x",
                    "(reported)",
                    True,
                )
            )
    return checks


def rate_checks(key: str, result: dict[str, Any], rate: float) -> list[dict[str, Any]]:
    """The verdicts of one rate-limited run: requests/s achieved, and nothing lost."""
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
    ("whole process, spawn to exit (s)", "whole_process_s"),
    ("  its own timer (s; ours: the pipeline's)", "whole_process_inner_s"),
    ("  requests it sent", "whole_process_requests"),
)


def scenario_table(
    scenarios: dict[str, dict[str, Any]], keys: Sequence[str], *, rate: bool = False
) -> str:
    """The scenarios ``keys`` side by side, one row per figure any of them has."""
    present = [k for k in keys if k in scenarios]
    header = ["figure", *(scenarios[k]["label"] for k in present)]
    fields = (
        [*ROWS, ("achieved req/s (200s / wall time)", "achieved_requests_per_s")] if rate else ROWS
    )
    rows = [[title, *(scenarios[k].get(field) for k in present)] for title, field in fields]
    rows = [r for r in rows if any(c is not None for c in r[1:])]
    return markdown_table(header, rows)


def report_text(report: dict[str, Any]) -> str:
    """The report as text: settings, the side-by-side tables and the verdicts."""
    scenarios = report["scenarios"]
    settings = report["settings"]
    parts = [
        f"machine: {report['machine']['summary']}",
        f"settings: {json.dumps(settings)}",
        "",
        "Indexing, unlimited server, latency "
        f"{settings['latency_s']:g} s/request, {settings['batch_size']} texts/request:",
        scenario_table(
            scenarios,
            ("langchain_sync", "langchain_aindex", "llamaindex", "ours", "ours_same_chunks"),
        ),
    ]
    if report.get("llamaindex_skipped"):
        parts.append(f"LlamaIndex row skipped: {report['llamaindex_skipped']}")
    if report.get("profile"):
        parts += ["", "Profile of ours (a separate run, spans recorded):"]
        parts.append(profile_table(report["profile"]))
    if "langchain_aindex" in scenarios:
        parts.append(f"(b) record manager: {scenarios['langchain_aindex']['record_manager']}")
    if "rate_paced" in scenarios:
        parts += [
            "",
            f"Rate-limited server: {settings['rate_per_s']:g} requests/s (429 + Retry-After "
            f"above), {settings['rate_batch_size']} texts/request:",
            scenario_table(scenarios, ("rate_paced", "rate_unpaced"), rate=True),
        ]
    parts += ["", "Targets:", checks_table(report["checks"])]
    return "\n".join(parts)


# -- driver -----------------------------------------------------------------------------------


def run_unlimited(
    args: argparse.Namespace, files: list[Path] | None, work: Path
) -> dict[str, dict[str, Any]]:
    """LangChain's two ways (unless skipped) and ours twice, against an unlimited server."""
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
        if not args.skip_llamaindex and llamaindex.missing() is None:
            progress("LlamaIndex IngestionPipeline.arun ...")
            scenarios["llamaindex"] = fresh(llamaindex.run_llamaindex, corpus, files, server, args)
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
        if args.whole_process and files is None:
            for key in ("langchain_sync", "llamaindex", "ours"):
                if key in scenarios:
                    progress(f"whole process: {scenarios[key]['label']} ...")
                    scenarios[key] |= whole_process_seconds(key, server, args, work)
    return scenarios


def run_profile(args: argparse.Namespace, files: list[Path] | None, work: Path) -> dict[str, Any]:
    """One more run of ours with the package's spans recorded: where its seconds go."""
    recorder = SpanRecorder()
    with FakeOpenAIServer.run_in_thread(dimension=args.dimension, latency=args.latency) as server:
        progress("ours, profiled ...")

        async def profiled() -> dict[str, Any]:
            recorder.clear()
            started_mono, started_wall = time.monotonic(), time.time_ns()
            result = await run_ours(
                args.corpus,
                files,
                server,
                args,
                work / "profiled",
                label="profiled",
                batch_size=args.batch_size,
            )
            return stage_profile(
                recorder.spans(),
                server,
                started_mono=started_mono,
                started_wall_ns=started_wall,
                seconds=result["seconds"],
                concurrency=args.concurrency,
            )

        return fresh(profiled)


def run_rate_limited(
    args: argparse.Namespace, files: list[Path] | None, work: Path
) -> dict[str, dict[str, Any]]:
    """Ours against a server limited to ``--rate`` requests/s: paced, then (unless skipped) not."""
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario ``args`` asks for; the report (machine, settings, scenarios, checks)."""
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
        profile = run_profile(args, files, work) if args.profile else None
    return {
        "machine": host,
        "llamaindex_skipped": None if args.skip_llamaindex else llamaindex.missing(),
        "profile": profile,
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
