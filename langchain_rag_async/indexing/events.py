"""What an indexing run reports: progress events while it runs, a summary at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ("FailedFile", "IndexingProgress", "IndexingSummary")


@dataclass(frozen=True, slots=True)
class FailedFile:
    """A file that could not be indexed, and why."""

    path: str
    reason: str


@dataclass(kw_only=True, slots=True)
class IndexingProgress:
    """Running counters, sent as LangGraph ``custom`` stream events.

    Attributes:
        stage: The stage that changed last (``plan``, ``load``, ``split``, ``embed``,
            ``store``, ``done``).
        files_total: Files that need reading (changed or new).
        files_loaded: Files read so far.
        files_done: Files whose chunks are all stored.
        chunks_total: Chunks produced by the splitter so far.
        chunks_to_embed: Chunks that need a vector so far.
        chunks_embedded: Chunks embedded (cache hits included).
        chunks_stored: Chunks written to the store.
    """

    stage: str = "plan"
    files_total: int = 0
    files_loaded: int = 0
    files_done: int = 0
    chunks_total: int = 0
    chunks_to_embed: int = 0
    chunks_embedded: int = 0
    chunks_stored: int = 0

    def to_event(self) -> dict[str, Any]:
        """The event dict written to the stream (``{"type": "progress", ...}``)."""
        return {"type": "progress", **asdict(self)}


@dataclass(kw_only=True, slots=True)
class IndexingSummary:
    """The outcome of one indexing run.

    Attributes:
        files_indexed: Files (re)indexed in this run.
        files_skipped: Files skipped as unchanged.
        files_failed: Files that could not be indexed, with reasons.
        files_deleted: Files gone from disk whose chunks were removed.
        chunks_added: Chunks added to the index.
        chunks_deleted: Chunks removed (stale or from deleted files).
        chunks_embedded: Texts sent to the embedding model (cache misses).
        chunks_cached: Chunks whose vector came from the embedding cache.
        seconds: Wall time of the run.
        index_dir: Where the index lives.
    """

    files_indexed: int = 0
    files_skipped: int = 0
    files_failed: list[FailedFile] = field(default_factory=list)
    files_deleted: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    chunks_cached: int = 0
    seconds: float = 0.0
    index_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``rag-async index --json`` prints)."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexingSummary:
        """Rebuild a summary from :meth:`to_dict` output."""
        values = dict(data)
        values["files_failed"] = [FailedFile(**f) for f in values.get("files_failed", [])]
        return cls(**values)
