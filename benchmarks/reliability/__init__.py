"""The chaos suite's scenarios: faults tried many times against the real CLI, with tallies.

Each scenario module (``service_faults``, ``kill``, ``signals``, ``concurrency``,
``storage``, ``hostile``, ``soak``) exposes ``run(trials, workdir, ...) -> ScenarioResult``.
``tests/reliability/`` runs every scenario with a few trials (its fast subset runs in
``make test``; ``make chaos`` runs them all with many trials), and
``scripts/chaos.py`` runs them with the published trial counts and writes
``docs/reliability.md``.

The helpers here are shared: running ``rag-async`` in a subprocess with an environment that
points it at the local fake OpenAI-compatible server, and reading an index directory's state
(``rag-async doctor --json`` and the chunk ids) to decide whether a trial survived.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = (
    "PROJECT_ROOT",
    "ScenarioResult",
    "cached_texts",
    "chunk_ids",
    "cli_command",
    "cli_env",
    "doctor",
    "index_args",
    "run_cli",
    "spawn_cli",
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_MODEL = "text-embedding-3-small"


@dataclass(slots=True)
class ScenarioResult:
    """The tally of one scenario.

    Attributes:
        name: Short name, the row of the table in ``docs/reliability.md``.
        trials: Trials run.
        survived: Trials whose outcome met every check of the scenario.
        failures: One line per failed trial: what went wrong.
        figures: Extra numbers worth publishing (e.g. the most texts re-embedded).
    """

    name: str
    trials: int = 0
    survived: int = 0
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def record(self, ok: bool, failure: str = "") -> None:
        """Count one trial; ``failure`` says why when ``ok`` is false."""
        self.trials += 1
        if ok:
            self.survived += 1
        else:
            self.failures.append(failure or "failed")

    @property
    def all_survived(self) -> bool:
        """Every trial survived (and at least one ran)."""
        return self.trials > 0 and self.survived == self.trials


def cli_command(*args: str) -> list[str]:
    """The argv that runs ``rag-async ARGS`` with this interpreter."""
    return [sys.executable, "-m", "langchain_rag_async.cli", *args]


def cli_env(base_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a ``rag-async`` subprocess.

    With ``base_url``, embeddings go to that OpenAI-compatible server (the local fake one)
    with a dummy key; without it, the bundled local model is used. Proxies are bypassed for
    loopback, progress bars are off, and ``extra`` is added last.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    if base_url is not None:
        env["RAG_EMBEDDINGS"] = "openai"
        env["RAG_EMBEDDING_MODEL"] = EMBEDDING_MODEL
        env["OPENAI_API_KEY"] = "chaos"
        env["OPENAI_BASE_URL"] = base_url
    env.update(extra)
    return env


def index_args(corpus: Path, index_dir: Path, *extra: str) -> list[str]:
    """The arguments of ``rag-async index CORPUS --index-dir DIR --no-progress EXTRA``."""
    return ["index", str(corpus), "--index-dir", str(index_dir), "--no-progress", *extra]


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float = 300.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``rag-async ARGS`` to completion; output captured as text."""
    return subprocess.run(
        cli_command(*args),
        env=dict(env),
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_cli(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``rag-async ARGS`` without waiting (to signal or kill it); output captured.

    The child gets SIGINT's default action back, as a command typed at a terminal has it:
    a harness started in the background (``cmd &`` in a script) runs with SIGINT ignored,
    which its children would inherit and, by convention, keep.
    """
    return subprocess.Popen(
        cli_command(*args),
        env=dict(env),
        cwd=cwd or PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - one signal call, no locks
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def doctor(index_dir: Path, *, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``rag-async doctor --json`` on ``index_dir``, parsed (``healthy`` and ``findings``)."""
    done = run_cli(["doctor", "--index-dir", str(index_dir), "--json"], env=env or cli_env())
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"healthy": False, "findings": [], "output": done.stdout + done.stderr}
    return report


def chunk_ids(index_dir: Path) -> set[str]:
    """The chunk ids the record manager holds for ``index_dir`` (read-only)."""
    path = index_dir / "records.sqlite"
    if not path.exists():
        return set()
    rows = _read_rows(path, "record_manager_keys", "SELECT key FROM record_manager_keys")
    return {str(row[0]) for row in rows}


def cached_texts(index_dir: Path) -> int:
    """How many vectors the embedding cache of ``index_dir`` holds (read-only; 0 if none)."""
    path = index_dir / "embedding_cache.sqlite"
    if not path.exists():
        return 0
    rows = _read_rows(path, "embedding_cache", "SELECT COUNT(*) FROM embedding_cache")
    return int(rows[0][0]) if rows else 0


def _read_rows(path: Path, table: str, sql: str) -> list[tuple[Any, ...]]:
    """``sql``'s rows from ``path`` (read-only), or none when ``table`` does not exist yet.

    A kill -9 can land after SQLite created the file and before the schema was written;
    that database holds nothing, which is what the trial must count, not an error.
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return list(connection.execute(sql).fetchall()) if exists else []
    finally:
        connection.close()
