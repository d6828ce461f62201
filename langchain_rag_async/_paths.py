"""Path helpers that keep filesystem calls off the event loop."""

from __future__ import annotations

from pathlib import Path

from langchain_core.runnables.config import run_in_executor

__all__ = ("aresolve",)


async def aresolve(path: str | Path) -> Path:
    """``Path(path).resolve()`` in an executor (it stats the filesystem)."""
    return await run_in_executor(None, Path(path).resolve)
