"""Strict rate limits: requests/s achieved and 429s met against a sliding-window server.

The fake OpenAI server (this process, its own event loop in a thread) admits at most
``limit`` requests in any sliding window of ``window`` seconds and sends OpenAI's
``x-ratelimit-*`` headers on every answer. Each client run is a subprocess that embeds
``requests x batch_size`` rust-book chunks through ``RateLimitedEmbeddings`` around the real
``langchain_openai.OpenAIEmbeddings`` (``check_embedding_ctx_length=False``,
``max_retries=0``, its ``http_async_client`` built as ``embeddings/factory.py`` builds it),
``concurrency`` requests in flight, with the limit stated (``requests_per_minute``) or
not. The subprocess imports the code under test from a directory of its own, so one run
compares two versions of the library (e.g. ``main`` before a change and the working tree).
The ``rag-async index`` cases run the whole command on the rust-book instead (``--rpm 1200``
or nothing, ``--concurrency 16``); their time is the server's, from the first request's
arrival to the last one's answer (the process's start-up and teardown are not rate-limited).

``scripts/bench_rate_limits.py`` parses the command line and prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import PROJECT_ROOT, RUST_BOOK
from .report import check, markdown_table, progress

__all__ = (
    "BEFORE_REF",
    "CASES",
    "Case",
    "chunks",
    "evaluate",
    "export_ref",
    "main",
    "report_text",
    "run",
)

BEFORE_REF = "1d1c3a2"
"""The last commit before the sliding-window pacing (``main`` as it was)."""

STATED_TARGET = (0.95, 0.01)  # at least this share of the bound, at most this share of 429s
UNSTATED_TARGET = (0.90, 0.05)


@dataclass(frozen=True, slots=True)
class Case:
    """One scenario: the server's window, whether the limit is stated, how many requests."""

    key: str
    window: float
    stated: bool
    requests: int
    command: bool = False
    headers: bool = True  # False: the server sends no x-ratelimit-* headers, only retry-after


CASES = (
    Case("1s, stated", 1.0, True, 129),
    Case("1s, not stated", 1.0, False, 129),
    Case("1s, stated, rag-async index", 1.0, True, 0, command=True),
    Case("1s, not stated, rag-async index", 1.0, False, 0, command=True),
    Case("10s, stated", 10.0, True, 400),
    Case("10s, not stated", 10.0, False, 400),
    Case("1s, no headers", 1.0, False, 129, headers=False),
    Case("10s, no headers", 10.0, False, 400, headers=False),
)


def chunks(count: int, size: int = 1000) -> list[str]:
    """``count`` texts of about ``size`` characters cut from the rust-book, in order."""
    texts: list[str] = []
    for path in sorted(RUST_BOOK.rglob("*.md")):
        text = path.read_text("utf-8")
        texts.extend(text[i : i + size] for i in range(0, len(text), size))
        if len(texts) >= count:
            break
    while len(texts) < count:  # a short corpus: repeat it with a marker
        texts.append(f"{len(texts)} {texts[len(texts) % max(1, len(texts))]}")
    return texts[:count]


# -- the client: runs in a subprocess, with the library version under test ----------------------


async def _embed(args: argparse.Namespace) -> dict[str, Any]:
    import openai
    from langchain_openai import OpenAIEmbeddings
    from pydantic import SecretStr

    import langchain_rag_async
    from langchain_rag_async.config import RateLimitConfig
    from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
    from langchain_rag_async.limits import ServiceLimiter

    http_client = openai.DefaultAsyncHttpxClient()
    inner = OpenAIEmbeddings(
        http_async_client=http_client,
        model="text-embedding-3-small",
        api_key=SecretStr("bench"),
        base_url=args.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        chunk_size=args.batch_size,
        timeout=60,
    )
    rpm = args.rpm or None
    limiter = ServiceLimiter(
        "embeddings:openai",
        rate_limit=RateLimitConfig(requests_per_minute=rpm),
        max_concurrency=args.concurrency,
    )
    embeddings = RateLimitedEmbeddings(inner, limiter=limiter, batch_size=args.batch_size)
    texts = chunks(args.requests * args.batch_size)
    started = time.monotonic()
    vectors = await embeddings.aembed_documents(texts, timeout=args.timeout)
    seconds = time.monotonic() - started
    await http_client.aclose()
    return {
        "library": str(Path(langchain_rag_async.__file__).parent),
        "started": started,
        "seconds": seconds,
        "vectors": len(vectors),
        "client_stats": embeddings.stats,
        "final_concurrency_limit": limiter.concurrency_limit,
    }


def _client_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--rpm", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_embed(args))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the client subprocess (``python -P -m benchmarks.rate_limits ...``)."""
    return _client_main(sys.argv[1:] if argv is None else argv)


# -- the server side and the report --------------------------------------------------------------


def export_ref(ref: str, into: Path) -> Path:
    """The package directory of git ``ref`` extracted under ``into`` (for ``PYTHONPATH``)."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", ref, "langchain_rag_async"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as tar_file:
        tar_file.write(archive)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file) as tar:
            tar.extractall(into, filter="data")
    return into


def _client(
    library_root: Path, base_url: str, case: Case, args: argparse.Namespace, limit: int
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(library_root), str(PROJECT_ROOT)])
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name, ""), "127.0.0.1", "localhost"]))
    command = [
        sys.executable,
        "-P",
        "-m",
        "benchmarks.rate_limits",
        f"--base-url={base_url}",
        f"--requests={case.requests}",
        f"--batch-size={args.batch_size}",
        f"--concurrency={args.concurrency}",
        f"--rpm={limit * 60.0 / case.window if case.stated else 0.0}",
        f"--timeout={args.timeout}",
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir()
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _index_command(
    library_root: Path, base_url: str, case: Case, args: argparse.Namespace, limit: int
) -> dict[str, Any]:
    from .reliability import cli_env

    env = cli_env(base_url, PYTHONPATH=str(library_root))
    rpm = ["--rpm", f"{limit * 60.0 / case.window:g}"] if case.stated else []
    with tempfile.TemporaryDirectory(prefix="bench-rate-limits-index-") as tmp:
        command = [
            sys.executable,
            "-P",
            "-m",
            "langchain_rag_async.cli",
            "index",
            str(RUST_BOOK),
            f"--index-dir={tmp}/index",
            f"--concurrency={args.concurrency}",
            f"--batch-size={args.batch_size}",
            "--no-progress",
            *rpm,
        ]
        started = time.monotonic()
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, cwd=tmp
        )
    result: dict[str, Any] = {"process_seconds": round(time.monotonic() - started, 3)}
    if done.returncode != 0:
        result["error"] = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return result


def measure(
    version: str, library_root: Path, case: Case, args: argparse.Namespace
) -> dict[str, Any]:
    """One client run of ``case`` with the library under ``library_root``; server figures."""
    from langchain_rag_async.testing.faults import SlidingWindowLimit

    from .fake_openai import FakeOpenAIServer

    limit = round(args.rate * case.window)
    window = SlidingWindowLimit(requests=limit, seconds=case.window)
    run_client = _index_command if case.command else _client
    with FakeOpenAIServer.run_in_thread(
        dimension=args.dimension,
        latency=args.latency,
        sliding_window=window,
        states_limits=case.headers,
    ) as server:
        result = run_client(library_root, server.base_url, case, args, limit)
        stats = server.stats
    posts = len(stats.request_times)
    ok = stats.status_counts.get(200, 0)
    refused = stats.status_counts.get(429, 0)
    if case.command and stats.request_times:  # the server's time: see the module docstring
        result["seconds"] = stats.request_times[-1] - stats.request_times[0] + args.latency
        result["vectors"] = None if "error" in result else ok * args.batch_size
    seconds = result.get("seconds")
    achieved = ok / seconds if seconds else 0.0
    requests = ok if case.command else case.requests
    return {
        "version": version,
        "case": case.key,
        "window_s": case.window,
        "limit": limit,
        "requests": requests,
        "stated_rpm": round(limit * 60.0 / case.window) if case.stated else None,
        "seconds": round(seconds, 3) if seconds else None,
        "server_requests": posts,
        "ok": ok,
        "answered_429": refused,
        "share_429": round(refused / posts, 4) if posts else None,
        "achieved_rps": round(achieved, 2),
        "of_bound": round(achieved / args.rate, 3),
        "complete": "error" not in result
        and (case.command or result.get("vectors") == case.requests * args.batch_size),
        **{k: v for k, v in result.items() if k not in ("seconds", "started")},
    }


def evaluate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdicts of the ``after`` rows against the targets of issue 11, item 4."""
    checks = []
    for row in rows:
        if row["version"] != "after":
            continue
        ratio_target, share_target = STATED_TARGET if row["stated_rpm"] else UNSTATED_TARGET
        share = row["share_429"] if row["share_429"] is not None else 1.0
        passed = row["complete"] and row["of_bound"] >= ratio_target and share <= share_target
        checks.append(
            check(
                f"{row['case']}: of bound / 429 share",
                f"{row['of_bound']:.0%} / {share:.1%}",
                f">= {ratio_target:.0%} / <= {share_target:.0%}",
                passed,
            )
        )
    return checks


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case with the ``before`` and ``after`` libraries; the report."""
    from .report import machine

    host = machine()
    rows: list[dict[str, Any]] = []
    cases = [c for c in CASES if c.window in args.windows and not (c.command and args.skip_index)]
    with tempfile.TemporaryDirectory(prefix="bench-rate-limits-") as tmp:
        versions = [("after", PROJECT_ROOT)]
        if args.before:
            versions.insert(0, ("before", export_ref(args.before, Path(tmp) / "before")))
        for case in cases:
            for version, root in versions:
                progress(f"{case.key}: {version} ...", prefix="rate-limits")
                rows.append(measure(version, root, case, args))
    return {
        "machine": host,
        "settings": {
            "rate_per_s": args.rate,
            "latency_s": args.latency,
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "before": args.before,
        },
        "rows": rows,
        "checks": evaluate(rows),
    }


def report_text(report: dict[str, Any]) -> str:
    """The table of every run (before and after side by side per case) and the verdicts."""
    from .report import checks_table

    settings = report["settings"]
    header = [
        "case",
        "version",
        "requests",
        "seconds",
        "req/s",
        "of bound",
        "429s",
        "429 share",
        "complete",
    ]
    rows = [
        [
            r["case"],
            r["version"],
            r["requests"],
            r["seconds"],
            r["achieved_rps"],
            f"{r['of_bound']:.0%}",
            r["answered_429"],
            f"{r['share_429']:.1%}" if r["share_429"] is not None else None,
            "yes" if r["complete"] else f"NO {r.get('error', '')}",
        ]
        for r in report["rows"]
    ]
    return "\n".join(
        [
            report["machine"]["summary"],
            f"Server: at most {settings['rate_per_s']:g} requests per second in a sliding "
            f"window (1 s: 20 in any 1 s; 10 s: 200 in any 10 s), {settings['latency_s']:g} s "
            f"per answer; client: {settings['concurrency']} in flight, "
            f"{settings['batch_size']} texts/request; 'stated': requests_per_minute = "
            f"{settings['rate_per_s'] * 60:g}; before = {settings['before'] or '(skipped)'}.",
            "",
            markdown_table(header, rows),
            "",
            checks_table(report["checks"]),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
