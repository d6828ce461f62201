"""Decide what an indexing run must do, before any file is read (pure functions)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_rag_async.indexing.record_manager import FileRecord, file_is_unchanged
from langchain_rag_async.loaders import FileInfo

__all__ = ("IndexPlan", "plan_indexing")


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """Files of one run, sorted into what to read, to skip and to forget.

    Attributes:
        to_load: New files and files whose size or mtime changed.
        unchanged: Files skipped because size and mtime match the file table.
        deleted: Sources in the file table (under the indexed root) gone from disk.
    """

    to_load: tuple[FileInfo, ...] = ()
    unchanged: tuple[FileInfo, ...] = ()
    deleted: tuple[str, ...] = field(default=())


def _under(path: str, root: Path) -> bool:
    root_str = str(root)
    return path == root_str or path.startswith(root_str.rstrip(os.sep) + os.sep)


def plan_indexing(
    root: Path,
    scanned: Sequence[FileInfo],
    known: Mapping[str, FileRecord],
    *,
    excluded: Sequence[str] = (),
    index_dir: Path | None = None,
) -> IndexPlan:
    """Compare the files on disk with the file table.

    Args:
        root: The resolved directory (or file) being indexed; only files under it can
            count as deleted, so indexing two folders into one index keeps both.
        scanned: Files found by the loader's walk.
        known: The file table, by source path.
        excluded: Paths the walk saw but refused (a file too large, a directory it could
            not list, ...): nothing at or under them counts as deleted, so their previously
            indexed chunks are kept.
        index_dir: The index directory; files under it are never indexed (an index
            inside the indexed tree would otherwise index its own files).

    Returns:
        The plan.
    """
    to_load: list[FileInfo] = []
    unchanged: list[FileInfo] = []
    if index_dir is not None:
        scanned = [info for info in scanned if not _under(info.source, index_dir)]
    seen = {info.source for info in scanned}
    kept = [Path(path) for path in excluded]
    for info in scanned:
        if file_is_unchanged(known.get(info.source), info.size, info.mtime):
            unchanged.append(info)
        else:
            to_load.append(info)
    deleted = sorted(
        path
        for path in known
        if path not in seen and _under(path, root) and not any(_under(path, k) for k in kept)
    )
    return IndexPlan(to_load=tuple(to_load), unchanged=tuple(unchanged), deleted=tuple(deleted))
