"""Signals that reach ``rag-async`` before its work starts end it in order, and at once.

The chaos suite found that a Ctrl-C during start-up took seconds to act on a loaded machine:
the command imported its modules on the event loop, where a signal's handler only runs when
the import in progress has ended. Each test below delivers the signal at a fixed point (the
start of one import, through an import hook in the child), so nothing depends on timing: the
modules the child imported after that point show whether the signal cut the import short.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_rag_async.testing import FakeOpenAIServer

pytestmark = pytest.mark.timeout(300)

CHILD = """
import atexit, importlib.abc, json, os, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even when the
# test runs in a background job (which starts its children with SIGINT ignored)
report_path, trigger = sys.argv[1], sys.argv[2]
signum, argv = int(sys.argv[3]), json.loads(sys.argv[4])


class SignalAtImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == trigger:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signum)  # delivered at the next bytecode: inside this import
        return None


@atexit.register
def dump():
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(sorted(sys.modules), f)


sys.meta_path.insert(0, SignalAtImport())
from langchain_rag_async.cli import main

sys.exit(main(argv))
"""


def run_child(
    tmp_path: Path, trigger: str, signum: signal.Signals, argv: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(report), trigger, str(int(signum)), json.dumps(argv)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    modules = set(json.loads(report.read_text("utf-8"))) if report.exists() else set()
    return done, modules


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# Ownership\n\nEach value has an owner.\n", "utf-8")
    return root


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_start_up_imports_interrupts_them_at_once(
    tmp_path: Path, corpus: Path, signum: signal.Signals
) -> None:
    from tests.unit.test_cli_startup import openai_env

    with FakeOpenAIServer.run_in_thread() as server:
        done, modules = run_child(
            tmp_path,
            "langchain_rag_async.indexing.pipeline",  # imported by the index command's start
            signum,
            ["index", str(corpus), "--index-dir", str(tmp_path / "index"), "--no-progress"],
            openai_env(server),
        )
        assert server.stats.requests == 0
    assert done.returncode == 128 + signum, done.stderr
    assert "interrupted" in done.stderr
    assert "Traceback" not in done.stderr
    # cut short where it was: the modules the command would import next were never loaded
    assert "langchain_rag_async.indexing.api" not in modules
    assert "langchain_openai" not in modules
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_event_loop_starts_exits_in_order_without_a_traceback(
    tmp_path: Path, signum: signal.Signals
) -> None:
    from tests.unit.test_cli_startup import clean_env

    # rich is the first thing main() imports for a command, after its handlers are set
    done, _ = run_child(tmp_path, "rich.console", signum, ["query", "x"], clean_env())
    assert done.returncode == 128 + signum, done.stderr
    assert "interrupted" in done.stderr
    assert "Traceback" not in done.stderr
