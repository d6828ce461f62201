"""Document loaders: the async, gitignore-aware directory loader."""

from __future__ import annotations

from langchain_rag_async.loaders.directory import AsyncDirectoryLoader, FileInfo

__all__ = ("AsyncDirectoryLoader", "FileInfo")
