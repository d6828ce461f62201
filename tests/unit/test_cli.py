"""The ``rag-async`` command, run as users run it (a subprocess), offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_rag_async.cli import build_parser, main

pytestmark = pytest.mark.timeout(300)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "langchain_rag_async.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=280,
    )


def write_corpus(root: Path) -> Path:
    root.mkdir()
    (root / "lifetimes.md").write_text(
        "# Lifetimes\n\nLifetimes ensure that references are valid as long as we need them.\n",
        "utf-8",
    )
    (root / "closures.md").write_text(
        "# Closures\n\nClosures are anonymous functions that capture their environment.\n",
        "utf-8",
    )
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64)
    return root


def test_index_json_then_rerun_then_search(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    index_dir = tmp_path / "idx"
    first = run_cli("index", str(corpus), "--index-dir", str(index_dir), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    for key in (
        "files_indexed", "files_skipped", "files_failed", "chunks_added",
        "chunks_deleted", "chunks_embedded", "seconds",
    ):  # fmt: skip
        assert key in summary
    assert summary["files_indexed"] == 2 and summary["chunks_embedded"] == summary["chunks_added"]

    again = run_cli("index", str(corpus), "--index-dir", str(index_dir), "--json", cwd=tmp_path)
    rerun = json.loads(again.stdout)
    assert rerun["files_skipped"] == 2 and rerun["chunks_embedded"] == 0

    hits = run_cli(
        "query",
        "anonymous functions",
        "--index-dir",
        str(index_dir),
        "--json",
        "-k",
        "1",
        cwd=tmp_path,
    )
    assert hits.returncode == 0, hits.stderr
    top = json.loads(hits.stdout)[0]
    assert Path(top["source"]).name == "closures.md"
    assert set(top["scores"]) == {"dense", "sparse", "fused"}
    assert top["scores"]["sparse"] is not None and top["scores"]["dense"] is not None

    human = run_cli("query", "closures", "--index-dir", str(index_dir), "-k", "2", cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert "docs/closures.md" in human.stdout and "fused" in human.stdout

    answer = run_cli("ask", "What are closures?", "--index-dir", str(index_dir), cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert "[1]" in answer.stdout and "Sources:" in answer.stdout
    assert "closures.md" in answer.stdout.split("Sources:")[1]

    as_json = run_cli(
        "ask", "What are closures?", "--index-dir", str(index_dir), "--json", cwd=tmp_path
    )
    final = json.loads(as_json.stdout)
    assert final["error"] is None and "[" in final["answer"]
    assert any(Path(s["source"]).name == "closures.md" for s in final["sources"])


def test_human_summary_and_default_index_dir(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    done = run_cli("index", str(corpus), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Indexed 2 file(s)" in done.stdout
    assert (tmp_path / ".rag-index" / "manifest.json").is_file()


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli(
        "index", str(tmp_path / "missing"), "--index-dir", str(tmp_path / "i"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "missing" in done.stderr and "Traceback" not in done.stderr


def test_query_without_index_says_how_to_build_one(tmp_path: Path) -> None:
    done = run_cli("query", "anything", "--index-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2
    assert "rag-async index" in done.stderr


def test_openai_without_key_is_refused_clearly(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    done = run_cli(
        "index", str(corpus), "--index-dir", str(tmp_path / "i"), "--embeddings", "openai",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "OPENAI_API_KEY" in done.stderr


def test_flags_override_configuration() -> None:
    from langchain_rag_async.cli import _config_from_args

    args = build_parser().parse_args(
        ["index", "x", "--batch-size", "7", "--concurrency", "3", "--rpm", "120", "--tpm", "9000",
         "--embeddings", "openai", "--index-dir", "/tmp/i", "--include", "*.md"]
    )  # fmt: skip
    config = _config_from_args(args)
    assert config.embeddings.batch_size == 7 and config.embeddings.concurrency == 3
    assert config.embeddings.rate_limit.requests_per_minute == 120
    assert config.embeddings.rate_limit.tokens_per_minute == 9000
    assert config.embeddings.provider == "openai"
    assert str(config.index_dir) == "/tmp/i" and config.loader.include == ("*.md",)


def test_main_returns_exit_code_for_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "   ", "--index-dir", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["ask", "", "--index-dir", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err


def test_brackets_in_paths_and_text_are_printed_verbatim(tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "prompt[v2].md").write_text(
        "# Prompts\n\nA llama prompt ends with [/INST] markers and [bold]tags[/bold].\n", "utf-8"
    )
    index_dir = tmp_path / "idx"
    assert (
        run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=tmp_path).returncode == 0
    )
    done = run_cli("query", "llama prompt INST", "--index-dir", str(index_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "prompt[v2].md" in done.stdout and "[/INST]" in done.stdout


def test_index_dir_that_is_a_file_and_zero_values_are_clear_errors(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    done = run_cli("index", str(corpus), "--index-dir", str(not_a_dir), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "index directory" in done.stderr
    zero = run_cli(
        "index", str(corpus), "--batch-size", "0", "--index-dir", str(tmp_path / "i"), cwd=tmp_path
    )
    assert zero.returncode == 2 and "batch_size" in zero.stderr


def test_k_defaults_to_the_config_not_to_the_parser() -> None:
    # One source of defaults: without -k, the command takes RetrievalConfig.k.
    assert build_parser().parse_args(["query", "closures"]).k is None
    assert build_parser().parse_args(["ask", "What are closures?"]).k is None
    assert build_parser().parse_args(["query", "closures", "-k", "3"]).k == 3


def test_progress_view_outside_its_block_is_a_usage_error() -> None:
    from rich.console import Console

    from langchain_rag_async.cli import _ProgressView
    from langchain_rag_async.errors import UsageError

    with pytest.raises(UsageError, match="inside its `with` block"):
        _ProgressView(Console(quiet=True))({"type": "plan"})


def test_index_with_failed_files_exits_3_and_the_rerun_retries_them(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    (corpus / "broken.md").write_bytes(b"# Title\x00\x00binary\x00" * 20)
    index_dir = tmp_path / "idx"
    first = run_cli("index", str(corpus), "--index-dir", str(index_dir), "--json", cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    summary = json.loads(first.stdout)
    assert [Path(f["path"]).name for f in summary["files_failed"]] == ["broken.md"]
    assert summary["files_indexed"] == 2
    (corpus / "broken.md").write_text("# Fixed\n\nNow it is text about lifetimes.\n", "utf-8")
    rerun = run_cli("index", str(corpus), "--index-dir", str(index_dir), "--json", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["files_indexed"] == 1 and again["files_skipped"] == 2


def test_file_names_print_on_one_line_with_odd_characters_escaped() -> None:
    from langchain_rag_async.cli import _printable

    assert _printable("names/new\nline.md") == "names/new\\nline.md"
    assert _printable("bad\udcffname.md") == "bad\\udcffname.md"
    assert _printable("tab\there é.md") == "tab\\there é.md"


def test_json_into_a_pipe_is_the_text_rich_writes_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``index --json`` skips rich when stdout is not a terminal: the bytes stay the same."""
    import io

    from rich.console import Console

    from langchain_rag_async.cli import _Consoles, _print_json

    data = {
        "index_dir": "/tmp/café/日本 [bold]x[/bold]",
        "files_failed": [{"path": "a\tb\x1bc.md", "reason": 'quote " and \\ :smile:'}],
        "seconds": 1.5,
        "chunks_added": 3,
        "empty": [],
        "nothing": None,
        "long": "word " * 80,
    }
    rendered = io.StringIO()
    Console(file=rendered, soft_wrap=True).print_json(json.dumps(data))
    _print_json(_Consoles(), data)  # capsys: stdout is not a terminal
    assert capsys.readouterr().out == rendered.getvalue()
