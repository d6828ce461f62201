"""Peak memory of an indexing run: ``rag-async index`` against LangChain's sync path.

Each side runs in its own child process, so that neither pays for the other's imports or
for this process (the fake OpenAI server's thread, the benchmark's own modules). The
parent serves the embeddings (``FakeOpenAIServer`` on 127.0.0.1, its own event loop in a
thread) and samples the child's high-water mark (``VmHWM`` in ``/proc/PID/status``, every
20 ms): the child's own peak after ``exec``, not ``ru_maxrss``, which would also count
pages shared with this process before ``exec``.

- ours: ``rag-async index CORPUS --embeddings openai --batch-size B --include '*.md'``
  (the files LangChain's ``glob="**/*.md"`` reads; a fresh index directory, so nothing
  comes from the embedding cache);
- LangChain (sync): ``DirectoryLoader`` + ``RecursiveCharacterTextSplitter`` +
  ``FAISS.from_documents`` with ``OpenAIEmbeddings(chunk_size=B)``, then ``save_local``
  (what a user does to keep the index), run by ``python -m benchmarks.memory langchain``;
- the interpreter alone (``python -c pass``), to show what both start from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.fake_openai import MODEL, FakeOpenAIServer, keep_traffic_local
from benchmarks.langchain_child import langchain_chunks
from benchmarks.timing import high_water_kb

__all__ = (
    "OVERHEAD_TARGET",
    "ChildPeak",
    "child_env",
    "langchain_chunks",
    "measure",
    "report_text",
    "run",
)

OVERHEAD_TARGET = 0.10
"""The design's bound: our peak RSS at most 10 % above LangChain's sync path."""
_ROOT = Path(__file__).resolve().parents[1]
_OWN_PEAK = (  # the bare interpreter prints its own VmHWM: it can exit before the first sample
    "import sys; sys.stdout.write(next(line.split()[1] for line in open('/proc/self/status')"
    " if line.startswith('VmHWM:')))"
)


@dataclass(frozen=True, slots=True)
class ChildPeak:
    """One measured child process.

    Attributes:
        label: What ran.
        peak_rss_mb: Its peak resident set size (``VmHWM``), MiB.
        seconds: Wall time.
        returncode: Exit status (``None``: killed after the timeout).
        output: Its standard output, parsed as JSON when it is JSON.
    """

    label: str
    peak_rss_mb: float
    seconds: float
    returncode: int | None
    output: Any


def measure(
    label: str, command: Sequence[str], *, env: Mapping[str, str], timeout: float
) -> ChildPeak:
    """Run ``command`` and sample its ``VmHWM`` every 20 ms until it exits.

    A child whose whole output is one integer reports its own ``VmHWM`` in KiB (a child that
    exits within the first 20 ms is never sampled); the larger of the two counts.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), env=dict(env), stdout=out, stderr=err)
        peak_kb, returncode = 0, None
        while True:
            peak_kb = max(peak_kb, high_water_kb(process.pid))
            code = process.poll()
            if code is not None:
                returncode = code
                break
            if time.perf_counter() - started > timeout:
                process.kill()
                process.wait()
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode()
    if returncode != 0:
        print(f"{label} failed ({returncode}):\n{stderr[-2000:]}", file=sys.stderr)
    try:
        parsed: Any = json.loads(stdout)
    except json.JSONDecodeError:
        parsed = stdout[-500:]
    if isinstance(parsed, int):  # a child that reports its own VmHWM (KiB), like _OWN_PEAK
        peak_kb = max(peak_kb, parsed)
    return ChildPeak(label, round(peak_kb / 1024, 1), round(seconds, 2), returncode, parsed)


def child_env(base_url: str) -> dict[str, str]:
    """The environment of a measured child: the fake server's URL, this checkout importable."""
    return {
        **os.environ,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": base_url,
        "RAG_EMBEDDING_MODEL": MODEL,
        "PYTHONPATH": str(_ROOT),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the embeddings, measure each child in turn (``args.repeat`` times), report."""
    keep_traffic_local()
    python = sys.executable
    results: dict[str, list[ChildPeak]] = {"python": [], "ours": [], "langchain": []}
    with (
        FakeOpenAIServer.run_in_thread(dimension=args.dimension, latency=args.latency) as server,
        tempfile.TemporaryDirectory(prefix="bench-memory-") as work,
    ):
        env = child_env(server.base_url)
        for n in range(args.repeat):
            results["python"].append(
                measure("python -c pass", [python, "-c", _OWN_PEAK], env=env, timeout=60)
            )
            ours = [
                python, "-m", "langchain_rag_async.cli", "index", str(args.corpus),
                "--index-dir", f"{work}/ours-{n}", "--embeddings", "openai",
                "--batch-size", str(args.batch_size), "--include", "*.md", "--json",
                "--no-progress",
            ]  # fmt: skip
            results["ours"].append(measure("rag-async index", ours, env=env, timeout=args.timeout))
            langchain = [
                python, "-m", "benchmarks.langchain_child", str(args.corpus),
                f"{work}/langchain-{n}", server.base_url, str(args.batch_size),
            ]  # fmt: skip
            results["langchain"].append(
                measure("LangChain sync", langchain, env=env, timeout=args.timeout)
            )
    return _report(results, args)


def _report(results: dict[str, list[ChildPeak]], args: argparse.Namespace) -> dict[str, Any]:
    def best(key: str) -> float:  # the least disturbed run (other jobs share the machine)
        return min(r.peak_rss_mb for r in results[key])

    ours, langchain, python = best("ours"), best("langchain"), best("python")
    overhead = ours / langchain - 1
    return {
        "corpus": str(args.corpus),
        "batch_size": args.batch_size,
        "dimension": args.dimension,
        "repeat": args.repeat,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "peak_rss_mb": {"python": python, "ours": ours, "langchain_sync": langchain},
        "overhead": round(overhead, 3),
        "target": OVERHEAD_TARGET,
        "passed": overhead <= OVERHEAD_TARGET,
        "runs": {key: [asdict(r) for r in runs] for key, runs in results.items()},
    }


def report_text(report: dict[str, Any]) -> str:
    """The figures side by side, with the verdict."""
    peaks = report["peak_rss_mb"]
    verdict = "PASS" if report["passed"] else "FAIL"
    lines = [
        f"corpus {report['corpus']}, {report['batch_size']} texts/request, "
        f"best of {report['repeat']}, load average {' '.join(report['loadavg'])}",
        f"  {'python -c pass':<28}{peaks['python']:>8.1f} MiB",
        f"  {'LangChain sync (FAISS)':<28}{peaks['langchain_sync']:>8.1f} MiB",
        f"  {'rag-async index':<28}{peaks['ours']:>8.1f} MiB",
        f"  overhead {report['overhead']:+.1%} (target <= {report['target']:+.0%}): {verdict}",
    ]
    for key, runs in report["runs"].items():
        lines.append(f"  {key}: " + ", ".join(f"{r['peak_rss_mb']:.1f}" for r in runs))
    return "\n".join(lines)
