"""The package's shape, pinned: imports point down, one bridge, one SQLite layer, one error tree.

These read the source (``ast``), so a change that breaks a rule fails here with the module
and line to look at.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "langchain_rag_async"

# Lower layers never import higher ones (a module may import its own layer or below).
LAYERS: dict[str, int] = {
    "errors": 0,
    **dict.fromkeys(
        ["config", "_text", "_checks", "aio", "observability", "_closing", "_paths",
         "_introspect", "ids", "gc_tuning", "prompts", "_model", "metrics"],
        1,
    ),
    **dict.fromkeys(["limits", "pacing", "_sqlite", "tracing"], 2),
    **dict.fromkeys(
        ["embeddings", "splitters", "loaders", "vectorstores", "sparse_index", "chat_models",
         "testing"],
        3,
    ),
    **dict.fromkeys(["retrievers", "indexing", "postgres"], 4),
    "answering": 5,
    "engine": 6,
    **dict.fromkeys(["cli", "server"], 7),
}  # fmt: skip
BUILTIN_ERRORS = {"ValueError", "TypeError", "RuntimeError", "AssertionError", "KeyError"}


def parse(source: str) -> ast.Module:
    """``ast.parse``, retried: CPython 3.11.7 shares the AST converter's recursion counter
    between threads, so a parse racing another thread's (the test servers' threads import
    and compile too) can fail with "SystemError: AST constructor recursion depth mismatch"."""
    for _ in range(4):
        try:
            return ast.parse(source)
        except SystemError:
            continue
    return ast.parse(source)


def modules() -> list[tuple[Path, ast.Module]]:
    return [(path, parse(path.read_text("utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))]


def part(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return relative.parts[0] if relative.parts[0] != "__init__" else ""


def imported(tree: ast.Module) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part(path) for path, _ in modules()} - {""}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


def test_imports_point_only_downward() -> None:
    wrong = []
    for path, tree in modules():
        here = part(path)
        if not here:
            continue  # the top-level facade re-exports everything
        for line, name in imported(tree):
            if name == "graphs" or name.startswith("graphs."):
                wrong.append(f"{path.name}:{line} imports {name} (graphs/ sits on the library)")
            if not name.startswith("langchain_rag_async."):
                continue
            target = name.split(".")[1]
            if target in LAYERS and LAYERS[target] > LAYERS[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({here}) imports {name}")
    assert not wrong, "\n".join(wrong)


def source_hits(pattern: str) -> set[str]:
    regex = re.compile(pattern)
    return {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if regex.search(path.read_text("utf-8"))
    }


def test_only_the_sync_bridge_and_the_cli_create_event_loops() -> None:
    assert source_hits(r"new_event_loop\(|asyncio\.run\(") == {"aio/portal.py", "cli.py"}


def test_only_the_sqlite_layer_opens_connections() -> None:
    assert source_hits(r"sqlite3\.connect\(|aiosqlite\.connect\(|aiosqlite\.Connection\(") == {
        "_sqlite.py"
    }


@pytest.mark.parametrize(("path", "tree"), modules(), ids=lambda v: getattr(v, "name", ""))
def test_no_assert_and_no_bare_builtin_errors(path: Path, tree: ast.Module) -> None:
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            wrong.append(f"line {node.lineno}: assert (raise a library error instead)")
        if isinstance(node, ast.Raise) and node.exc is not None:
            call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(call, ast.Name) and call.id in BUILTIN_ERRORS:
                wrong.append(f"line {node.lineno}: raise {call.id} (use the errors.py tree)")
    assert not wrong, f"{path.relative_to(PACKAGE)}: " + "; ".join(wrong)


def test_all_is_a_tuple_written_once() -> None:
    lists = []
    for path, tree in modules():
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                if not isinstance(node.value, ast.Tuple | ast.Call):
                    lists.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not lists, f"__all__ should be a tuple: {lists}"
