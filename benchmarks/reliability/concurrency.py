"""Concurrency across processes: two indexers, and queries while an indexer runs.

The corpus is a copy of some rust-book files (version 1), then changed into version 2
(files deleted, changed and added). Sub-scenarios:

- **two indexers**: two ``rag-async index`` on one fresh directory at once. The second must
  wait for the first (the run lock) and then find nothing to do: both exit 0, the index
  holds exactly the version-2 chunk ids, and no text was embedded twice.
- **indexer + queries (engine)**: a process runs rounds of 50 concurrent queries
  (:mod:`.query_load`, through ``AsyncRAGEngine``) on an index of version 1 while
  ``rag-async index`` brings it to version 2. Every query must succeed and return chunks of
  one generation (all of version 1 or all of version 2, never a mix), and the queries after
  the run must see version 2.
- **indexer + queries (server)**: the same, with the queries sent over HTTP to a
  ``rag-async serve`` of that index.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from langchain_rag_async.testing import FakeOpenAIServer

from . import (
    PROJECT_ROOT,
    ScenarioResult,
    chunk_ids,
    cli_command,
    cli_env,
    doctor,
    index_args,
    run_cli,
    spawn_cli,
)

__all__ = ("make_versions", "run")

_NEW_TEXT = "\n\nThis paragraph was added for version 2 of the corpus: {name}.\n"


def make_versions(source: Path, corpus: Path, files: int) -> tuple[list[Path], list[Path]]:
    """Copy ``files`` Markdown files of ``source`` into ``corpus`` (version 1).

    Returns:
        The files to change and the files to add for version 2 (see :func:`to_version_2`).
    """
    corpus.mkdir(parents=True)
    chosen = sorted(source.rglob("*.md"))[: files + 3]
    for path in chosen[:files]:
        shutil.copy2(path, corpus / path.name)
    return [corpus / p.name for p in chosen[:files]], chosen[files:]


def to_version_2(current: list[Path], extra: list[Path], corpus: Path) -> None:
    """Delete three files, append to three others, and add three new ones."""
    for path in current[:3]:
        path.unlink()
    for path in current[3:6]:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(_NEW_TEXT.format(name=path.name))
    for path in extra:
        shutil.copy2(path, corpus / f"new-{path.name}")


def run(
    trials: int,
    workdir: Path,
    *,
    source: Path,
    files: int = 40,
    concurrency: int = 50,
    latency: float = 0.05,
) -> list[ScenarioResult]:
    """Run each sub-scenario ``trials`` times.

    Args:
        trials: Trials per sub-scenario.
        workdir: Scratch directory.
        source: Where the corpus files are copied from (the rust-book).
        files: Files in version 1.
        concurrency: Queries per round.
        latency: Seconds the fake server takes per embedding request.
    """
    two = ScenarioResult("two indexers on one directory")
    engine = ScenarioResult("indexer + 50 concurrent queries (engine, another process)")
    served = ScenarioResult("indexer + 50 concurrent queries (rag-async serve)")
    corpus = workdir / "corpus"
    current, extra = make_versions(source, corpus, files)
    with FakeOpenAIServer.run_in_thread(latency=latency) as server:
        env = cli_env(server.base_url)
        v1_dir = workdir / "v1"
        first = run_cli(index_args(corpus, v1_dir), env=env)
        if first.returncode != 0:
            raise_for = f"indexing version 1 failed: {first.stderr[-500:]}"
            for result in (two, engine, served):
                result.record(False, raise_for)
            return [two, engine, served]
        old_ids = chunk_ids(v1_dir)
        to_version_2(current, extra, corpus)
        v2_dir = workdir / "v2"
        shutil.copytree(v1_dir, v2_dir)
        run_cli(index_args(corpus, v2_dir), env=env)
        new_ids = chunk_ids(v2_dir)
        for number in range(trials):
            two.record(*_two_indexers(server, env, corpus, workdir / f"two-{number}", new_ids))
            trial_dir = workdir / f"engine-{number}"
            shutil.copytree(v1_dir, trial_dir)
            engine.record(
                *_with_queries(
                    env, corpus, trial_dir, old_ids, new_ids, concurrency, engine.figures, url=None
                )
            )
            trial_dir = workdir / f"served-{number}"
            shutil.copytree(v1_dir, trial_dir)
            with _serving(env, trial_dir) as url:
                served.record(
                    *_with_queries(
                        env,
                        corpus,
                        trial_dir,
                        old_ids,
                        new_ids,
                        concurrency,
                        served.figures,
                        url=url,
                    )
                )
    return [two, engine, served]


def _two_indexers(
    server: FakeOpenAIServer,
    env: dict[str, str],
    corpus: Path,
    index_dir: Path,
    expected: set[str],
) -> tuple[bool, str]:
    server.reset_stats()
    runs = [spawn_cli(index_args(corpus, index_dir), env=env) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in runs]
    codes = [process.returncode for process in runs]
    if codes != [0, 0]:
        return False, f"exit codes {codes}: {[err[-300:] for _, err in outputs]}"
    ids = chunk_ids(index_dir)
    if ids != expected:
        return (
            False,
            f"chunk ids differ: {len(expected - ids)} missing, {len(ids - expected)} extra",
        )
    embedded = server.stats.embedded_texts
    if embedded > len(expected):
        return False, f"{embedded} texts embedded for {len(expected)} chunks (some twice)"
    report = doctor(index_dir)
    if not report.get("healthy"):
        return False, f"unhealthy: {report}"
    return True, ""


def _with_queries(
    env: dict[str, str],
    corpus: Path,
    index_dir: Path,
    old_ids: set[str],
    new_ids: set[str],
    concurrency: int,
    figures: dict[str, Any],
    *,
    url: str | None,
) -> tuple[bool, str]:
    stop = index_dir.parent / f"{index_dir.name}.stop"
    target = ["--url", url] if url else ["--index-dir", str(index_dir)]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        queries = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.reliability.query_load",
                *target,
                "--stop-file",
                str(stop),
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        # Kill a query process that never stops, so the reads below end.
        watchdog = threading.Timer(600, queries.kill)
        watchdog.start()
        try:
            if queries.stdout is None:
                return False, "no output pipe"
            # Every read goes through this one buffered stream: communicate() would read the
            # pipe underneath it and lose what readline() had already buffered.
            first_line = queries.stdout.readline()  # the first round is done: queries run
            if not first_line:
                queries.wait()
                stderr.seek(0)
                return False, f"the query process failed: {stderr.read()[-500:]}"
            indexer = run_cli(index_args(corpus, index_dir), env=env)
            stop.touch()
            rest = queries.stdout.read()
            queries.wait()
        finally:
            watchdog.cancel()
            if queries.poll() is None:
                queries.kill()
                queries.wait()
            if queries.stdout is not None:
                queries.stdout.close()
        stderr.seek(0)
        errors = stderr.read()
    if indexer.returncode != 0:
        return False, f"the indexer failed ({indexer.returncode}): {indexer.stderr[-500:]}"
    lines = [json.loads(line) for line in (first_line + rest).splitlines() if line.strip()]
    return _judge(lines, old_ids, new_ids, errors, figures)


def _judge(
    lines: list[dict[str, Any]],
    old_ids: set[str],
    new_ids: set[str],
    stderr: str,
    figures: dict[str, Any],
) -> tuple[bool, str]:
    figures["queries"] = figures.get("queries", 0) + len(lines)
    figures["saw version 1 only"] = figures.get("saw version 1 only", 0) + sum(
        1 for line in lines if line["ids"] and not set(line["ids"]) <= new_ids
    )
    failed = [line["error"] for line in lines if line["error"]]
    if failed:
        return False, f"{len(failed)} of {len(lines)} queries failed: {failed[0]}"
    mixed = [
        line for line in lines if not (set(line["ids"]) <= old_ids or set(line["ids"]) <= new_ids)
    ]
    if mixed:
        return False, f"{len(mixed)} of {len(lines)} queries mixed generations"
    final = [line for line in lines if line["final"]]
    stale = [line for line in final if not set(line["ids"]) <= new_ids]
    if not final or stale:
        return False, f"{len(stale)} of {len(final)} queries after the run missed version 2"
    if not any(line["ids"] for line in lines):
        return False, f"no query returned anything: {stderr[-300:]}"
    return True, ""


class _serving:
    """``rag-async serve`` of ``index_dir`` on a free loopback port, for the ``with`` block."""

    def __init__(self, env: dict[str, str], index_dir: Path) -> None:
        self._env = env
        self._index_dir = index_dir
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = ["serve", "--index-dir", str(self._index_dir), "--port", str(port)]
        self._process = subprocess.Popen(
            cli_command(*args),
            env=self._env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, self._process)
        return url

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"rag-async serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"rag-async serve at {url} was not ready within {timeout} s")
