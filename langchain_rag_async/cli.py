"""The ``rag-async`` command line: ``index`` a directory, ``query`` it, ``ask`` it."""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

if TYPE_CHECKING:  # the rest is imported by the command that uses it (see main)
    import asyncio
    from collections.abc import Callable, Coroutine, Sequence

    from rich.console import Console
    from rich.progress import TaskID

    from langchain_rag_async.config import ObservabilityConfig, RAGConfig
    from langchain_rag_async.indexing.events import IndexingSummary
    from langchain_rag_async.tracing import Tracing

__all__ = ("EXIT_FILES_FAILED", "build_parser", "main")

P = ParamSpec("P")

EXIT_FILES_FAILED = 3
"""``rag-async index`` finished, but some files failed (listed); the next run retries them.
(1: ``ask``'s answer ended in an error, or ``doctor`` found problems; 2: a clear error
stopped the command; 130 and 143: interrupted by SIGINT or SIGTERM.)"""

_FULL_COLLECTIONS_RARER = 10
"""A one-shot command (not ``serve``/``mcp``) runs full garbage collections this many
times less often than CPython's default, for as long as :func:`main` runs.

Each full collection walks every object alive, and the imports alone leave ~200k: an
``index`` run of the rust-book made four of them (20, 45, 86 and 103 ms, the last one
stalling the event loop mid-pipeline) and none with this factor; whole-process time
fell by ~0.25 s (``docs/benchmarks.md``). Young collections, which find nearly all the
garbage, run as often as before, so memory stays bounded on long runs too."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rag-async``."""
    parser = argparse.ArgumentParser(
        prog="rag-async",
        description="Async-first RAG: index a directory, then query it or ask it questions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="index a directory incrementally")
    index.add_argument("path", type=Path, help="directory (or file) to index")
    _add_common(index)
    index.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    index.add_argument("--batch-size", type=int, help="texts per embedding request")
    index.add_argument("--concurrency", type=int, help="embedding requests in flight at most")
    index.add_argument("--rpm", type=float, help="embedding requests per minute at most")
    index.add_argument("--tpm", type=float, help="embedding tokens per minute at most")
    index.add_argument(
        "--include", action="append", default=[], metavar="GLOB", help="only files matching"
    )
    index.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip files matching"
    )
    index.add_argument("--no-progress", action="store_true", help="no live progress bar")
    index.add_argument(
        "--low-memory-mb",
        type=int,
        metavar="N",
        help="halve embed batches and queue depth while the system has under N MiB "
        "available, grow back after; 0: off (RAG_LOW_MEMORY_MB, default 512)",
    )
    _add_debug_async(index)
    index.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus /metrics on this port while indexing (RAG_METRICS_PORT)",
    )

    query = sub.add_parser("query", help="show the chunks most relevant to a question")
    query.add_argument("question", help="what to look for")
    _add_common(query)
    query.add_argument(
        "-k", type=int, default=None, help="how many chunks to show (default: the config's k)"
    )
    query.add_argument("--json", action="store_true", help="print results as JSON")

    ask = sub.add_parser("ask", help="answer a question from the index, streamed and cited")
    ask.add_argument("question", help="the question")
    _add_common(ask)
    ask.add_argument("-k", type=int, default=None, help="how many chunks the answer may use")
    ask.add_argument(
        "--llm", choices=["extractive", "openai", "local"], default=None, help="answer model"
    )
    ask.add_argument("--timeout", type=float, default=None, help="seconds for the whole answer")
    ask.add_argument("--json", action="store_true", help="print the final answer as JSON")
    _add_debug_async(ask)
    _add_serve(sub)
    doctor = sub.add_parser("doctor", help="check an index directory (and --repair it)")
    doctor.add_argument(
        "--index-dir", type=Path, default=None, help="index directory (default ./.rag-index)"
    )
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the sparse index (and a lost store from records + embedding cache), "
        "set damaged SQLite files aside, drop stale files",
    )
    doctor.add_argument(
        "--store-url",
        default=None,
        metavar="postgresql://...",
        help="check the index in PostgreSQL instead (RAG_STORE_URL): counts, model, "
        "dimension, indexes, run lock; --repair rebuilds indexes and drops orphan rows",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("-v", "--verbose", action="store_true", help="log details")
    _add_migrate(sub)
    return parser


def _add_migrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser(
        "migrate", help="copy an index directory into PostgreSQL (no re-embedding)"
    )
    migrate.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    migrate.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    migrate.add_argument("--json", action="store_true", help="print the counts as JSON")
    migrate.add_argument("-v", "--verbose", action="store_true", help="log details")


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve", help="serve the index over HTTP: OpenAI-compatible chat, SSE, MCP, a chat page"
    )
    _add_common(serve)
    _add_served(serve)
    serve.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback --host without RAG_API_KEY"
    )
    serve.add_argument(
        "--grace", type=float, default=None, help="seconds streams may finish after SIGTERM"
    )
    _add_debug_async(serve)
    mcp = sub.add_parser("mcp", help="serve the MCP tools (search, ask, index) over stdio")
    _add_common(mcp)
    _add_served(mcp)


def _add_served(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a directory that may be indexed over HTTP/MCP (repeatable; RAG_SERVE_ROOTS)",
    )
    parser.add_argument(
        "--llm", choices=["extractive", "openai", "local"], default=None, help="answer model"
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index-dir", type=Path, default=None, help="index directory (default ./.rag-index)"
    )
    parser.add_argument(
        "--embeddings", choices=["local", "openai"], default=None, help="embedding provider"
    )
    parser.add_argument(
        "--store-url",
        default=None,
        metavar="postgresql://...",
        help="keep the index in PostgreSQL + pgvector instead of --index-dir (RAG_STORE_URL)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log retries, repairs and tracebacks"
    )
    parser.add_argument(
        "--log-format",
        choices=["console", "json"],
        help="log at info level (debug with -v) in this format, on stderr (RAG_LOG_FORMAT)",
    )


def _add_debug_async(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug-async",
        action="store_true",
        help="every 5 s print the event loop's tasks and what each awaits; warn when a "
        "callback blocks the loop (RAG_DEBUG_ASYNC, RAG_DEBUG_ASYNC_INTERVAL)",
    )


def _config_from_args(args: argparse.Namespace) -> RAGConfig:
    from dataclasses import replace

    from langchain_rag_async.config import LoaderConfig, RAGConfig

    config = RAGConfig.from_env().with_overrides(
        index_dir=args.index_dir,
        provider=args.embeddings,
        batch_size=getattr(args, "batch_size", None),
        concurrency=getattr(args, "concurrency", None),
        requests_per_minute=getattr(args, "rpm", None),
        tokens_per_minute=getattr(args, "tpm", None),
        store_url=getattr(args, "store_url", None),
        low_memory_mb=getattr(args, "low_memory_mb", None),
    )
    config = replace(config, observability=_observability(args))
    include = tuple(getattr(args, "include", ()) or ())
    exclude = tuple(getattr(args, "exclude", ()) or ())
    if include or exclude:
        loader: LoaderConfig = replace(config.loader, include=include, exclude=exclude)
        config = replace(config, loader=loader)
    if getattr(args, "debug_async", False):
        config = replace(config, debug_async=replace(config.debug_async, enabled=True))
    return config


def _in_span(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, int]]], Callable[P, Coroutine[Any, Any, int]]]:
    """Run a command inside one span, the root of its trace (``--help`` imports no tracing)."""

    def decorate(
        command: Callable[P, Coroutine[Any, Any, int]],
    ) -> Callable[P, Coroutine[Any, Any, int]]:
        @functools.wraps(command)
        async def run(*args: P.args, **kwargs: P.kwargs) -> int:
            from langchain_rag_async.observability import span

            with span(name):
                return await command(*args, **kwargs)

        return run

    return decorate


class _ProgressView:
    """A rich progress display fed by the indexing graph's progress events."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._files: TaskID | None = None
        self._chunks: TaskID | None = None

    def __enter__(self) -> _ProgressView:
        self._progress.start()
        self._files = self._progress.add_task("files", total=None, detail="scanning")
        self._chunks = self._progress.add_task("embedded", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        if self._files is None or self._chunks is None:
            from langchain_rag_async.errors import UsageError

            raise UsageError("the progress view receives events only inside its `with` block")
        if event.get("type") == "plan":
            detail = f"{event['files_unchanged']} unchanged, {event['files_deleted']} deleted"
            self._progress.update(self._files, total=event["files_to_load"], detail=detail)
            return
        if event.get("type") != "progress":
            return
        self._progress.update(
            self._files,
            completed=event["files_done"],
            total=event["files_total"],
            detail=f"loaded {event['files_loaded']}",
        )
        task = self._progress.tasks[self._chunks]
        rate = task.speed or 0.0
        self._progress.update(
            self._chunks,
            completed=event["chunks_embedded"],
            total=event["chunks_to_embed"],
            detail=f"{event['chunks_total']} chunks, stored {event['chunks_stored']}, {rate:.0f}/s",
        )


def _print_summary(console: Console, summary: IndexingSummary) -> None:
    from rich.markup import escape

    console.print(
        f"[bold]Indexed[/bold] {summary.files_indexed} file(s), "
        f"skipped {summary.files_skipped} unchanged, "
        f"failed {len(summary.files_failed)}, deleted {summary.files_deleted}; "
        f"chunks: +{summary.chunks_added} -{summary.chunks_deleted}, "
        f"embedded {summary.chunks_embedded} (cached {summary.chunks_cached}) "
        f"in {summary.seconds:.1f}s → {escape(summary.index_dir)}"
    )
    for failed in summary.files_failed:
        path = escape(_printable(failed.path))
        console.print(f"  [red]failed[/red] {path}: {escape(failed.reason)}")
    if summary.files_failed:
        console.print("Failed files are not recorded: the next run retries them (exit code 3).")


async def _run_index(args: argparse.Namespace, consoles: _Consoles) -> int:
    from langchain_rag_async.metrics import serve_metrics, watch_event_loop_lag

    settings = _observability(args)
    if settings.metrics_port is None:
        return await _index(args, consoles)
    serve_metrics(settings.metrics_port, settings.metrics_host)  # a daemon thread
    async with watch_event_loop_lag():
        return await _index(args, consoles)


async def _index(args: argparse.Namespace, consoles: _Consoles) -> int:
    from langchain_rag_async.indexing.api import aindex_directory

    config = _config_from_args(args)
    show = not args.no_progress and not args.json
    if show:
        with _ProgressView(consoles.err) as view:
            summary = await aindex_directory(args.path, config=config, on_progress=view)
    else:
        summary = await aindex_directory(args.path, config=config)
    if args.json:
        _print_json(consoles, summary.to_dict())
    else:
        _print_summary(consoles.out, summary)
    return EXIT_FILES_FAILED if summary.files_failed else 0


class _Consoles:
    """The rich consoles of a command (stdout, stderr), each made at its first use.

    ``index --json`` or ``--no-progress`` into a pipe, as scripts run it, prints no rich
    text on success: it never imports rich (3 MiB of peak RSS; docs/benchmarks.md).
    """

    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(soft_wrap=True)

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True)


def _print_json(consoles: _Consoles, data: object) -> None:
    """Print ``data`` as JSON on stdout, highlighted by rich on a terminal.

    Into a pipe or a file it is the text rich would write there (indented, non-ASCII as
    is), without importing rich.
    """
    if sys.stdout.isatty():
        consoles.out.print_json(json.dumps(data))
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _printable(text: str) -> str:
    """A file name for a terminal, one name on one line.

    Newlines, control characters and undecodable bytes are shown as Python escapes; the
    JSON output keeps the exact path.
    """
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _location(source: object, cwd: Path) -> str:
    path = Path(str(source))
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def _score(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.4f}"


@_in_span("rag-async query")
async def _run_query(args: argparse.Namespace, out: Console) -> int:
    from rich.markup import escape

    from langchain_rag_async.engine import AsyncRAGEngine

    cwd = Path.cwd()
    config = _config_from_args(args)
    k = config.retrieval.k if args.k is None else args.k
    async with AsyncRAGEngine(config=config) as engine:
        docs = await engine.aquery(args.question, k=k)
    rows = [
        {
            "rank": rank,
            "id": doc.id,
            "source": doc.metadata.get("source"),
            "chunk_index": doc.metadata.get("chunk_index"),
            "start_index": doc.metadata.get("start_index"),
            "scores": doc.metadata.get("scores", {}),
            "text": doc.page_content,
        }
        for rank, doc in enumerate(docs, 1)
    ]
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    for row in rows:
        scores = row["scores"]
        out.print(
            f"[bold]{row['rank']}.[/bold] {escape(_printable(_location(row['source'], cwd)))} "
            f"(chunk {row['chunk_index']}, char {row['start_index']})  "
            f"dense {_score(scores.get('dense'))}  sparse {_score(scores.get('sparse'))}  "
            f"fused {_score(scores.get('fused'))}",
            highlight=False,
        )
        out.print("   " + " ".join(str(row["text"]).split())[:240], highlight=False, markup=False)
    if not rows:
        out.print("no results")
    return 0


@_in_span("rag-async ask")
async def _run_ask(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dataclasses import replace

    from rich.markup import escape

    from langchain_rag_async.engine import AsyncRAGEngine

    config = _config_from_args(args)
    if args.llm:
        config = replace(config, llm=replace(config.llm, provider=args.llm))
    cwd = Path.cwd()
    final: dict[str, Any] = {}
    async with AsyncRAGEngine(config=config) as engine:
        async for event in engine.astream_answer(args.question, k=args.k, timeout=args.timeout):
            if event.type == "token" and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif event.type in ("done", "error"):
                final = {
                    "answer": event.answer,
                    "sources": [dict(s) for s in event.sources],
                    "error": event.message if event.type == "error" else None,
                }
    if args.json:
        out.print_json(json.dumps(final))
    else:
        sys.stdout.write("\n\nSources:\n")
        for source in final.get("sources", []):
            sys.stdout.write(
                f"  [{source['n']}] {_location(source['source'], cwd)} "
                f"(char {source.get('start_index')})\n"
            )
        sys.stdout.flush()
    if final.get("error"):
        err.print(f"[red]error:[/red] {escape(str(final['error']))}")
        return 1
    return 0


async def _run_doctor(args: argparse.Namespace, out: Console) -> int:
    from rich.markup import escape

    from langchain_rag_async.config import RAGConfig
    from langchain_rag_async.embeddings.factory import embedding_model_id
    from langchain_rag_async.indexing.doctor import adiagnose

    config = RAGConfig.from_env()
    index_dir = args.index_dir or config.index_dir
    # The configured model names the cached vectors when a lost manifest cannot.
    model_id = embedding_model_id(config.embeddings)
    store_url = args.store_url or (None if args.index_dir else config.store_url)
    if store_url:
        from langchain_rag_async.postgres.doctor import adiagnose_postgres

        report = await adiagnose_postgres(store_url, repair=args.repair, model_id=model_id)
    else:
        report = await adiagnose(index_dir, repair=args.repair, model_id=model_id)
    if args.json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        marks = {"ok": "[green]ok[/green]", "warning": "[yellow]warn[/yellow]"}
        for f in report.findings:
            mark = "[green]fixed[/green]" if f.repaired else marks.get(f.level, "[red]ERROR[/red]")
            where = f" {escape(f.file)}:" if f.file else ""
            out.print(f"{mark:>5} {f.check}:{where} {escape(f.message)}")
        verdict = "healthy" if report.healthy else "problems found (see above)"
        out.print(f"{escape(report.index_dir)}: {verdict}")
    return 0 if report.healthy else 1


async def _run_migrate(args: argparse.Namespace, out: Console) -> int:
    from langchain_rag_async.postgres.migrate import amigrate_directory

    report = await amigrate_directory(args.source, args.target)
    if args.json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        out.print(
            f"copied {report.chunks} chunk(s), {report.files} file record(s), "
            f"{report.keys} chunk record(s) and {report.cached_vectors} cached vector(s) "
            f"from {args.source} (nothing re-embedded)",
            highlight=False,
            markup=False,
        )
    return 0


def _server_config(args: argparse.Namespace) -> RAGConfig:
    from dataclasses import replace

    config = _config_from_args(args)
    if args.llm:
        config = replace(config, llm=replace(config.llm, provider=args.llm))
    server = config.server
    server = replace(
        server,
        roots=tuple(args.root) or server.roots,
        host=getattr(args, "host", None) or server.host,
        port=server.port if getattr(args, "port", None) is None else args.port,
        insecure=getattr(args, "insecure", False) or server.insecure,
        grace=server.grace if getattr(args, "grace", None) is None else args.grace,
    )
    return replace(config, server=server)


def _server_loop_factory(command: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop ``serve`` runs on: uvloop when installed, as ``uvicorn.run`` picks it."""
    if command != "serve":
        return None
    try:
        from langchain_rag_async.server.run import serve_loop_factory
    except ImportError:  # no server extra: _run_server says what to install
        return None
    return serve_loop_factory()


async def _run_server(args: argparse.Namespace) -> int:
    from langchain_rag_async.errors import ConfigurationError

    try:
        from langchain_rag_async import server
    except ImportError as exc:
        raise ConfigurationError(
            f"`rag-async {args.command}` needs the server extra ({exc.name} is missing): "
            "pip install 'langchain-rag-async[server]'"
        ) from exc
    config = _server_config(args)
    if args.command == "mcp":
        await server.aserve_mcp_stdio(config)
    else:
        await server.aserve(config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rag-async``; returns the exit code.

    SIGINT and SIGTERM end every command in order with ``128 + signum`` (130, 143), also
    when they arrive before its work starts: Ctrl-C raises ``KeyboardInterrupt`` and SIGTERM
    :class:`~langchain_rag_async.errors.Interrupted` until the command's event loop takes
    them over (:func:`~langchain_rag_async.aio.signals.cancel_on_signal`).
    """
    previous = _interrupt_on_sigterm()
    try:
        args = build_parser().parse_args(argv)
        # `--help` and usage errors have exited by now, having imported nothing but argparse:
        # each command imports what it uses (pinned by tests/unit/test_cli_startup.py).
        if args.command in ("serve", "mcp") and previous is not None:
            # uvicorn takes the signals over and raises a caught one again after its orderly
            # shutdown: the default action then ends the process, as supervisors expect
            signal.signal(signal.SIGTERM, previous)
            previous = None
        atexit.unregister(_skip_final_collections)  # once per process, however often main runs
        atexit.register(_skip_final_collections)
        thresholds = gc.get_threshold()
        if args.command not in ("serve", "mcp"):  # a one-shot command (see the factor's note)
            gc.set_threshold(*thresholds[:2], thresholds[2] * _FULL_COLLECTIONS_RARER)
            from langchain_rag_async.gc_tuning import limit_malloc_arenas

            limit_malloc_arenas()  # before the command starts threads
        try:
            return _run(args)
        finally:
            gc.set_threshold(*thresholds)
    except KeyboardInterrupt:  # before the command's own handling began
        sys.stderr.write("interrupted\n")
        return 130
    except _Terminated as exc:
        sys.stderr.write("interrupted\n")
        return 128 + exc.signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM arrived before the command's event loop took the signals over."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def _interrupt_on_sigterm() -> Any:
    """Make SIGTERM raise :class:`_Terminated` (as SIGINT raises ``KeyboardInterrupt``).

    Returns:
        The handler it replaced (to restore), or ``None`` off the main thread, where
        handlers cannot be set (``main`` called from a thread keeps the process's own).
    """
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        return None


_PRELOADED = {
    "index": ("langchain_rag_async.indexing.api",),
    "query": ("langchain_rag_async.engine",),
    "ask": ("langchain_rag_async.engine",),
    "doctor": ("langchain_rag_async.indexing.doctor",),
}
"""Modules each one-shot command imports first thing on its event loop."""


def _preload(args: argparse.Namespace) -> None:
    """Import the modules the command is about to use, before its event loop starts.

    An import runs synchronously: on the loop, a signal's handler waits until the import in
    progress ends (the index command's imports take about 1 s, several on a loaded machine),
    so a Ctrl-C during start-up took that long to act. Before the loop, ``KeyboardInterrupt``
    (and :class:`_Terminated`) interrupt an import at once. Only modules the command imports
    anyway are loaded, so the import graph pinned by ``tests/unit/test_cli_startup.py`` is
    unchanged; the embedding provider's client is loaded for the commands that embed.
    """
    import importlib

    names = list(_PRELOADED.get(args.command, ()))
    if names and args.command != "doctor":
        provider = _config_from_args(args).embeddings.provider
        names.append(
            "langchain_openai" if provider == "openai" else "langchain_rag_async.embeddings.local"
        )
    for name in names:
        importlib.import_module(name)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from langchain_rag_async.errors import Interrupted, RAGError
    from langchain_rag_async.observability import configure_logging

    # Errors reach the user as one clear line; details (retries, tracebacks) with -v.
    configure_logging(logging.DEBUG if args.verbose else logging.CRITICAL)
    consoles = _Consoles()
    tracing: Tracing | None = None
    try:
        tracing = _start_telemetry(args)
        _preload(args)
        if args.command == "index":
            return asyncio.run(_until_signal(_debugged(args, _run_index(args, consoles))))
        if args.command == "query":
            return asyncio.run(_until_signal(_run_query(args, consoles.out)))
        if args.command == "doctor":
            return asyncio.run(_until_signal(_run_doctor(args, consoles.out)))
        if args.command == "migrate":
            return asyncio.run(_until_signal(_run_migrate(args, consoles.out)))
        if args.command in ("serve", "mcp"):
            # uvicorn handles the signals itself; serve runs on uvloop when installed
            with asyncio.Runner(loop_factory=_server_loop_factory(args.command)) as runner:
                return runner.run(_debugged(args, _run_server(args)))
        return asyncio.run(
            _until_signal(_debugged(args, _run_ask(args, consoles.out, consoles.err)))
        )
    except Interrupted as exc:
        _say_interrupted(args.command, consoles.err)
        return 128 + exc.signum
    except (RAGError, OSError) as exc:
        from rich.markup import escape

        consoles.err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        _say_interrupted(args.command, consoles.err)
        return 130
    finally:
        if tracing is not None:
            tracing.shutdown()  # bounded by the config's flush_timeout


def _observability(args: argparse.Namespace) -> ObservabilityConfig:
    """The environment's observability settings, with this command's flags over them."""
    from dataclasses import replace

    from langchain_rag_async.config import RAGConfig

    settings = RAGConfig.from_env().observability
    port = getattr(args, "metrics_port", None)
    return replace(
        settings,
        metrics_port=settings.metrics_port if port is None else port,
        log_format=getattr(args, "log_format", None) or settings.log_format,
    )


def _start_telemetry(args: argparse.Namespace) -> Tracing | None:
    """Logs in the chosen format (info level once one is chosen), and trace export if on."""
    import logging

    from langchain_rag_async.observability import configure_logging
    from langchain_rag_async.tracing import configure_tracing

    settings = _observability(args)
    chosen = getattr(args, "log_format", None) or settings.log_format != "console"
    if chosen:
        level = logging.DEBUG if args.verbose else logging.INFO
        json = settings.log_format == "json"
        configure_logging(level, json=json, everything=True, levels={"uvicorn": logging.INFO})
    return configure_tracing(settings)


def _skip_final_collections() -> None:
    """Freeze every object at exit, so the interpreter's last collections skip them.

    A finished command leaves some 200k objects, nearly all of them the imported
    libraries'. The collections CPython runs while it tears down its modules walk them
    all, several times: 0.4-0.6 s between an ``index`` command's last line and its exit
    (``docs/benchmarks.md``). Frozen objects are still freed by reference counting;
    only reference cycles among them are left to the operating system, as with any exit.
    """
    gc.freeze()


async def _until_signal(command: Coroutine[Any, Any, int]) -> int:
    """Run a command; SIGINT/SIGTERM cancel it in order (a second one exits at once)."""
    from langchain_rag_async.aio.signals import cancel_on_signal

    async with cancel_on_signal():
        return await command


async def _debugged(args: argparse.Namespace, command: Coroutine[Any, Any, int]) -> int:
    """Run a command under ``--debug-async`` (task dumps, blocked-loop warnings) if asked."""
    from langchain_rag_async.aio.debug import debug_async

    try:
        config = _config_from_args(args).debug_async
    except BaseException:
        command.close()  # never started: no "was never awaited" warning
        raise
    async with debug_async(config):
        return await command


def _say_interrupted(command: str, err: Console) -> None:
    if command == "index":
        err.print("interrupted: the saved index is as of its last checkpoint")
    else:
        err.print("interrupted")


if __name__ == "__main__":
    sys.exit(main())
