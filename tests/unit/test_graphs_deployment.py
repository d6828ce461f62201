"""The graphs that deployments load (langgraph.json) work without a run context."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from graphs import answer, indexing
from langchain_rag_async.errors import IndexNotFoundError

ROOT = Path(__file__).resolve().parents[2]


def test_langgraph_json_lists_both_graphs() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert spec["graphs"] == {
        "indexing": "./graphs/indexing.py:graph",
        "answer": "./graphs/answer.py:graph",
    }


async def test_deployed_graphs_index_and_answer_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cargo.md").write_text(
        "# Cargo\n\nCargo is the Rust build system and package manager.\n", "utf-8"
    )
    (docs / "traits.md").write_text(
        "# Traits\n\nA trait defines functionality a type can share with other types.\n", "utf-8"
    )
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    state = await indexing.graph.ainvoke({"path": str(docs), "index_dir": str(tmp_path / "index")})
    assert state["summary"]["files_indexed"] == 2

    monkeypatch.setattr(answer, "_engine", None)  # built from the env at first use
    final = await answer.graph.ainvoke({"question": "What is Cargo?"})
    assert final["error"] is None
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", final["answer"])}
    assert cited and {Path(final["sources"][n - 1]["source"]).name for n in cited} == {"cargo.md"}
    await answer._engine.aclose()


async def test_deployed_answer_graph_without_an_index_says_how_to_build_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(answer, "_engine", None)
    with pytest.raises(IndexNotFoundError, match="rag-async index"):
        await answer.graph.ainvoke({"question": "What is Cargo?"})
