"""Peak RSS at 1x, 4x, 16x the rust-book: ``rag-async index`` against LangChain's sync path.

The larger corpora are generated into a temporary directory from the corpus read in place
(never copied into the project): copy ``i`` of every file is renamed ``NAME.rI.md`` and
every non-empty line gets `` rI`` appended, so no chunk of one copy equals a chunk of
another (neither our embedding cache nor FAISS sees a duplicate; LangChain's path and ours
embed the same number of distinct texts per copy). Each size runs both sides in their own
child processes through :func:`benchmarks.memory.measure`, the same way as the 1x figure.
The plot is drawn with matplotlib's Agg backend (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.fake_openai import FakeOpenAIServer, keep_traffic_local
from benchmarks.memory import ChildPeak, child_env, measure

__all__ = ("multiply_corpus", "plot", "report_text", "run_scaling")


def multiply_corpus(corpus: Path, factor: int, out: Path) -> int:
    """Write ``factor`` renamed, line-marked copies of ``corpus``'s ``.md`` files under ``out``.

    Returns:
        The number of files written.
    """
    written = 0
    for source in sorted(corpus.rglob("*.md")):
        text = source.read_text("utf-8")
        relative = source.relative_to(corpus)
        for i in range(factor):
            target = out / relative.parent / f"{relative.stem}.r{i}.md"
            target.parent.mkdir(parents=True, exist_ok=True)
            if i:
                text_i = "\n".join(
                    f"{line} r{i}" if line.strip() else line for line in text.split("\n")
                )
            else:
                text_i = text
            target.write_text(text_i, "utf-8")
            written += 1
    return written


def run_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Measure both sides at each factor in ``args.scaling`` (best of ``args.repeat``)."""
    keep_traffic_local()
    python = sys.executable
    rows: list[dict[str, Any]] = []
    with (
        FakeOpenAIServer.run_in_thread(dimension=args.dimension, latency=args.latency) as server,
        tempfile.TemporaryDirectory(prefix="bench-memory-scaling-") as work,
    ):
        env = child_env(server.base_url)
        for factor in args.scaling:
            corpus = Path(work) / f"corpus-{factor}x"
            files = multiply_corpus(args.corpus, factor, corpus)
            print(f"{factor}x: {files} files ...", file=sys.stderr, flush=True)
            ours: list[ChildPeak] = []
            langchain: list[ChildPeak] = []
            for n in range(args.repeat):
                command = [
                    python, "-m", "langchain_rag_async.cli", "index", str(corpus),
                    "--index-dir", f"{work}/ours-{factor}-{n}", "--embeddings", "openai",
                    "--batch-size", str(args.batch_size), "--include", "*.md", "--json",
                    "--no-progress",
                ]  # fmt: skip
                ours.append(measure("rag-async index", command, env=env, timeout=args.timeout))
                command = [
                    python, "-m", "benchmarks.langchain_child", str(corpus),
                    f"{work}/langchain-{factor}-{n}", server.base_url, str(args.batch_size),
                ]  # fmt: skip
                langchain.append(measure("LangChain sync", command, env=env, timeout=args.timeout))
            best_ours = min(ours, key=lambda r: r.peak_rss_mb)
            best_lc = min(langchain, key=lambda r: r.peak_rss_mb)
            rows.append(
                {
                    "factor": factor,
                    "files": files,
                    "ours_mb": best_ours.peak_rss_mb,
                    "langchain_mb": best_lc.peak_rss_mb,
                    "ours_seconds": best_ours.seconds,
                    "langchain_seconds": best_lc.seconds,
                    "ours_chunks": _get(best_ours.output, "chunks_added"),
                    "langchain_chunks": _get(best_lc.output, "chunks"),
                    "ok": best_ours.returncode == 0 and best_lc.returncode == 0,
                }
            )
    return {
        "corpus": str(args.corpus),
        "batch_size": args.batch_size,
        "dimension": args.dimension,
        "repeat": args.repeat,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "rows": rows,
        "growth": _growth(rows),
    }


def _get(output: Any, key: str) -> Any:
    return output.get(key) if isinstance(output, dict) else None


def _growth(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Peak above the smallest size, per extra copy of the corpus, for each side (MiB)."""
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    copies = last["factor"] - first["factor"]
    return {
        "ours_mb_per_copy": round((last["ours_mb"] - first["ours_mb"]) / copies, 2),
        "langchain_mb_per_copy": round((last["langchain_mb"] - first["langchain_mb"]) / copies, 2),
    }


def report_text(report: dict[str, Any]) -> str:
    """The peaks side by side per corpus size."""
    lines = [
        f"corpus {report['corpus']} x {[r['factor'] for r in report['rows']]}, "
        f"{report['batch_size']} texts/request, {report['dimension']} dims, "
        f"best of {report['repeat']}, load average {' '.join(report['loadavg'])}",
        f"  {'size':>5} {'files':>6} {'chunks ours/LC':>16} {'LangChain sync':>15} "
        f"{'rag-async index':>16} {'ours vs LC':>11}",
    ]
    for r in report["rows"]:
        chunks = f"{r['ours_chunks']}/{r['langchain_chunks']}"
        ratio = r["ours_mb"] / r["langchain_mb"] - 1 if r["langchain_mb"] else float("nan")
        lines.append(
            f"  {str(r['factor']) + 'x':>5} {r['files']:>6} {chunks:>16} "
            f"{r['langchain_mb']:>11.1f} MiB {r['ours_mb']:>12.1f} MiB {ratio:>+10.1%}"
            + ("" if r["ok"] else "  (a run failed: see stderr)")
        )
    growth = report["growth"]
    if growth:
        lines.append(
            f"  growth per extra copy of the corpus: ours {growth['ours_mb_per_copy']:.2f} MiB, "
            f"LangChain {growth['langchain_mb_per_copy']:.2f} MiB"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Draw peak RSS against corpus size, both sides, into ``path`` (PNG).

    Raises:
        ModuleNotFoundError: matplotlib is not installed (the ``bench`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = report["rows"]
    files = [r["files"] for r in rows]  # a linear axis: a straight line is linear growth
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(files, [r["langchain_mb"] for r in rows], "o-", label="LangChain sync (FAISS)")
    ax.plot(files, [r["ours_mb"] for r in rows], "s-", label="rag-async index")
    ax.set_xticks(files, [f"{r['factor']}x\n{r['files']} files" for r in rows])
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title(
        f"Indexing peak RSS vs corpus size (rust-book, {report['dimension']} dims)", fontsize=10
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def parse_factors(text: str) -> list[int]:
    """``"1,4,16"`` → ``[1, 4, 16]`` (argparse type)."""
    factors = sorted({int(part) for part in text.split(",") if part.strip()})
    if not factors or factors[0] < 1:
        raise argparse.ArgumentTypeError("factors are positive integers, e.g. 1,4,16")
    return factors
