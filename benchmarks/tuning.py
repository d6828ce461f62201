"""Sweeps for docs/performance_tuning.md: one setting varied per curve, the rest fixed.

Every run indexes the same files into a fresh index directory with ``aindex_directory``,
embedding through the real ``langchain_openai.OpenAIEmbeddings`` client against the local
fake OpenAI server (fixed latency per request; for the rate sweep, a server-side request
limit). The measuring is here; ``scripts/bench_tuning.py`` parses the command line, prints
the table and draws the plots.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async import (
    AsyncFAISS,
    EmbeddingConfig,
    LoaderConfig,
    RAGConfig,
    RateLimitConfig,
    aindex_directory,
)
from langchain_rag_async._text import estimate_tokens

from .corpus import our_include, select_files, warm_page_cache
from .fake_openai import MODEL, FakeOpenAIServer, keep_traffic_local, server_figures
from .report import machine, markdown_table, progress
from .timing import fresh

__all__ = ("SWEEPS", "plot", "report_text", "run")

SWEEPS = ("concurrency", "batch_size", "rpm", "tpm")


async def index_once(
    args: argparse.Namespace,
    files: list[Path] | None,
    server: FakeOpenAIServer,
    index_dir: Path,
    *,
    concurrency: int,
    batch_size: int,
    rpm: float | None = None,
    tpm: float | None = None,
) -> dict[str, Any]:
    """Index the corpus once into ``index_dir`` (fresh: nothing cached) and time it."""
    config = RAGConfig(
        loader=LoaderConfig(include=our_include(args.corpus, files)),
        embeddings=EmbeddingConfig(
            provider="openai",
            model=MODEL,
            openai_api_key="bench",
            openai_base_url=server.base_url,
            batch_size=batch_size,
            concurrency=concurrency,
            rate_limit=RateLimitConfig(requests_per_minute=rpm, tokens_per_minute=tpm),
        ),
    )
    server.reset_stats()
    started = time.monotonic()
    summary = await aindex_directory(
        args.corpus, index_dir=index_dir, config=config, timeout=args.timeout
    )
    seconds = time.monotonic() - started
    figures = server_figures(server, started)
    return {
        "concurrency": concurrency,
        "batch_size": batch_size,
        "rpm": rpm,
        "tpm": tpm,
        "seconds": round(seconds, 3),
        "files": summary.files_indexed,
        "chunks": summary.chunks_embedded,
        "chunks_per_s": round(summary.chunks_embedded / seconds, 1),
        "requests_per_s": round(figures["ok_requests"] / seconds, 2),
        "requests": figures["requests"],
        "refused_429": figures["rate_limited_responses"],
        "peak_in_flight": figures["peak_in_flight"],
    }


def corpus_tokens(index_dir: Path) -> int:
    """Estimated tokens of every chunk of an index (what TPM pacing counts)."""
    store = AsyncFAISS.load_local(index_dir, DeterministicFakeEmbedding(size=8))
    docs = store.get_by_ids([str(i) for i in store.index_to_docstore_id.values()])
    return estimate_tokens(d.page_content for d in docs)


def _sweep(
    args: argparse.Namespace,
    files: list[Path] | None,
    work: Path,
    name: str,
    points: Sequence[dict[str, Any]],
    *,
    server_rps: bool = False,
) -> list[dict[str, Any]]:
    rows = []
    for n, point in enumerate(points):
        settings = {"concurrency": args.concurrency, "batch_size": args.batch_size, **point}
        progress(f"{name}: {settings} ...")
        rps = settings["rpm"] / 60.0 if server_rps and settings.get("rpm") else None
        with FakeOpenAIServer.run_in_thread(
            dimension=args.dimension, latency=args.latency, requests_per_second=rps
        ) as server:
            row = fresh(index_once, args, files, server, work / f"{name}-{n}", **settings)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sweeps named in ``args.sweeps``; return the rows of each and the machine."""
    keep_traffic_local()
    files = select_files(args.corpus, args.files)
    warm_page_cache(files or sorted(args.corpus.rglob("*.md")))
    report: dict[str, Any] = {"machine": machine(), "settings": _settings(args), "sweeps": {}}
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        work = Path(tmp)
        sweeps = report["sweeps"]
        if "concurrency" in args.sweeps:
            points = [{"concurrency": c} for c in args.concurrency_values]
            sweeps["concurrency"] = _sweep(args, files, work, "concurrency", points)
        if "batch_size" in args.sweeps:
            points = [{"batch_size": b} for b in args.batch_values]
            sweeps["batch_size"] = _sweep(args, files, work, "batch_size", points)
        if "rpm" in args.sweeps:
            points = [{"rpm": r} for r in args.rpm_values]
            sweeps["rpm"] = _sweep(args, files, work, "rpm", points, server_rps=True)
        if "tpm" in args.sweeps:
            points = [{"tpm": t} for t in args.tpm_values]
            sweeps["tpm"] = _sweep(args, files, work, "tpm", points)
            report["corpus_tokens"] = corpus_tokens(work / "tpm-0")
    return report


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("files", "latency", "concurrency", "batch_size", "dimension")
    return {key: getattr(args, key) for key in keys} | {"corpus": args.corpus.name}


def report_text(report: dict[str, Any]) -> str:
    """The report as Markdown: the settings, then one table per sweep."""
    lines = [f"machine: {report['machine']}", f"fixed: {report['settings']}"]
    if "corpus_tokens" in report:
        lines.append(f"estimated tokens of the corpus's chunks: {report['corpus_tokens']}")
    columns = (
        "concurrency", "batch_size", "rpm", "tpm", "seconds", "chunks", "chunks_per_s",
        "requests_per_s", "refused_429", "peak_in_flight",
    )  # fmt: skip
    for name, rows in report["sweeps"].items():
        lines += ["", f"### {name}", ""]
        lines.append(markdown_table(list(columns), [[row[c] for c in columns] for row in rows]))
    return "\n".join(lines)


def plot(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Draw one PNG per sweep into ``out_dir`` (matplotlib, Agg); return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    fixed = f"latency {settings['latency']} s/request, {settings['files'] or 'all'} files"
    specs = {
        "concurrency": ("concurrency", "seconds", "requests in flight (concurrency)",
                        "indexing time (s)", "Indexing time vs concurrency"),
        "batch_size": ("batch_size", "seconds", "texts per request (batch_size)",
                       "indexing time (s)", "Indexing time vs batch size"),
        "rpm": ("rpm", "chunks_per_s", "requests per minute (server limit = client pacing)",
                "chunks embedded per second", "Throughput vs request rate limit"),
        "tpm": ("tpm", "seconds", "tokens per minute (client pacing)",
                "indexing time (s)", "Indexing time vs token rate limit"),
    }  # fmt: skip
    written = []
    for name, rows in report["sweeps"].items():
        x_key, y_key, x_label, y_label, title = specs[name]
        xs = [row[x_key] for row in rows]
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        ax.plot(xs, [row[y_key] for row in rows], marker="o", label="measured")
        if name == "rpm":
            ceiling = [r["rpm"] / 60.0 * r["chunks"] / max(1, r["requests"]) for r in rows]
            ax.plot(xs, ceiling, ls="--", label="limit x texts per request")
        if name == "tpm" and report.get("corpus_tokens"):
            # The token limiter is a leaky bucket holding one minute's budget: the first
            # TPM tokens go at once, the rest at TPM per minute.
            base = min(row["seconds"] for row in rows)
            tokens = report["corpus_tokens"]
            model = [base + max(0.0, tokens - x) / x * 60.0 for x in xs]
            ax.plot(xs, model, ls="--", label=f"bucket model ({tokens} tokens)")
        if name in ("concurrency", "batch_size"):
            # Waiting on the server alone: requests x latency / requests in flight.
            latency = settings["latency"]
            floor = [r["requests"] * latency / r["concurrency"] for r in rows]
            ax.plot(xs, floor, ls="--", label="latency floor: requests x latency / concurrency")
            ax.set_xscale("log", base=2)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(f"{title}\n({fixed})", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"tuning_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
