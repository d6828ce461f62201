"""Index jobs started over HTTP: one at a time per server, with progress for WebSocket clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_rag_async.engine import AsyncRAGEngine
from langchain_rag_async.errors import RAGError, RequestError
from langchain_rag_async.observability import get_logger

__all__ = ("IndexJob", "IndexJobs", "JobState")

logger = get_logger(__name__)

JobState = Literal["running", "succeeded", "failed", "cancelled"]
_FINAL_EVENTS = frozenset({"summary", "error", "cancelled"})
_SUBSCRIBER_BUFFER = 256  # events kept per slow WebSocket client (older progress is dropped)
_KEPT_JOBS = 100  # finished jobs remembered for GET /index/{job}


@dataclass(slots=True, eq=False)
class IndexJob:
    """One indexing run: its state, latest progress and outcome."""

    id: str
    path: str
    started: float = field(default_factory=time.monotonic)
    state: JobState = "running"
    finished: float | None = None
    plan: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    _subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """The job as ``GET /index/{job}`` shows it."""
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "job_id": self.id,
            "path": self.path,
            "state": self.state,
            "seconds": round(end - self.started, 3),
            "progress": self.progress,
            "summary": self.summary,
            "error": self.error,
        }

    def record(self, event: dict[str, Any]) -> None:
        """Take a progress event of the pipeline, add rate and ETA, and publish it."""
        kind = event.get("type")
        if kind == "plan":
            self.plan = dict(event)
            self._publish(self.plan)
        elif kind == "progress":
            self.progress = _with_rate(event, time.monotonic() - self.started)
            self._publish(self.progress)

    def finish(
        self, state: JobState, *, summary: dict[str, Any] | None = None, error: str = ""
    ) -> None:
        """End the job and send the last event to every subscriber."""
        self.state, self.finished = state, time.monotonic()
        self.summary = summary
        self.error = error or None
        self._publish(self.final_event())

    def final_event(self) -> dict[str, Any]:
        """The last event of the job's stream (``summary``, ``error`` or ``cancelled``)."""
        if self.state == "succeeded":
            return {"type": "summary", **(self.summary or {})}
        if self.state == "failed":
            return {"type": "error", "message": self.error or "indexing failed"}
        return {"type": "cancelled", "message": self.error or "the job was cancelled"}

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The job's events: what happened so far (plan, latest progress), then live ones."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_SUBSCRIBER_BUFFER)
        self._subscribers.add(queue)
        try:
            for past in (self.plan, self.progress):
                if past is not None:
                    yield past
            if self.state != "running":
                yield self.final_event()
                return
            while True:
                event = await queue.get()
                yield event
                if event.get("type") in _FINAL_EVENTS:
                    return
        finally:
            self._subscribers.discard(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():  # a slow client: progress is cumulative, drop the oldest
                queue.get_nowait()
            queue.put_nowait(event)


def _with_rate(event: dict[str, Any], elapsed: float) -> dict[str, Any]:
    enriched = dict(event)
    embedded = int(event.get("chunks_embedded", 0))
    done, total = int(event.get("files_done", 0)), int(event.get("files_total", 0))
    enriched["elapsed_seconds"] = round(elapsed, 3)
    enriched["chunks_per_second"] = round(embedded / elapsed, 2) if elapsed > 0 else 0.0
    eta = elapsed / done * (total - done) if done and total >= done else None
    enriched["eta_seconds"] = None if eta is None else round(eta, 2)
    return enriched


def _finish_if_running(job: IndexJob) -> None:
    """A job whose task ended without finishing it (cancelled before it ran) is cancelled."""
    if job.state == "running":
        job.finish("cancelled", error="the job was cancelled before it started")


class IndexJobs:
    """The server's index jobs: at most one runs; finished ones stay readable for a while."""

    __slots__ = ("_current", "_engine", "_jobs", "_roots")

    def __init__(self, engine: AsyncRAGEngine, roots: tuple[Path, ...] = ()) -> None:
        self._engine = engine
        self._roots = roots  # no file reached through a link may lie outside them
        self._jobs: dict[str, IndexJob] = {}
        self._current: IndexJob | None = None

    @property
    def running(self) -> IndexJob | None:
        """The job running now, if any."""
        current = self._current
        return current if current is not None and current.state == "running" else None

    def start(self, path: Path) -> IndexJob:
        """Start indexing ``path`` into the server's index.

        Raises:
            RequestError: 409 while another job runs.
        """
        if self.running is not None:
            raise RequestError(
                409,
                f"index job {self.running.id} is still running; wait for it "
                f"(GET /index/{self.running.id}) before starting another",
                code="job_running",
            )
        job = IndexJob(id=uuid.uuid4().hex, path=str(path))
        job.task = asyncio.get_running_loop().create_task(self._run(job, path))
        job.task.add_done_callback(lambda _: _finish_if_running(job))
        self._current = job
        self._jobs[job.id] = job
        self._forget_old()
        return job

    def get(self, job_id: str) -> IndexJob:
        """The job with this id.

        Raises:
            RequestError: 404 for an unknown id.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise RequestError(404, f"no index job {job_id!r}", code="job_not_found")
        return job

    async def aclose(self) -> None:
        """Cancel the running job (the index stays consistent) and wait for it to end."""
        job = self.running
        if job is not None and job.task is not None:
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)

    async def _run(self, job: IndexJob, path: Path) -> None:
        try:
            summary = await self._engine.aindex_directory(
                path, on_progress=job.record, confine_to=self._roots
            )
        except asyncio.CancelledError:
            job.finish("cancelled", error="the job was cancelled (server shutting down)")
            raise
        except RAGError as exc:
            job.finish("failed", error=str(exc))
        except Exception as exc:  # a bug: keep serving, tell the client, log the trace
            logger.exception("index_job_failed", job_id=job.id)
            job.finish("failed", error=f"internal error ({type(exc).__name__}); see the server log")
        else:
            job.finish("succeeded", summary=summary.to_dict())

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(self._jobs) - _KEPT_JOBS)]:
            del self._jobs[job.id]
