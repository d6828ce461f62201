"""What one running server holds: its engine, settings, generation gate and index jobs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request, WebSocket

from langchain_rag_async.config import ServerConfig
from langchain_rag_async.engine import AsyncRAGEngine
from langchain_rag_async.server.gate import GenerationGate
from langchain_rag_async.server.jobs import IndexJobs

__all__ = ("ServerState", "get_state")


@dataclass(slots=True, eq=False)
class ServerState:
    """The server's long-lived objects (one per app)."""

    engine: AsyncRAGEngine
    settings: ServerConfig
    gate: GenerationGate
    jobs: IndexJobs
    owns_engine: bool = False
    started: float = field(default_factory=time.time)

    @classmethod
    def create(
        cls, engine: AsyncRAGEngine, settings: ServerConfig, *, owns_engine: bool
    ) -> ServerState:
        """The state of a server over ``engine`` with ``settings``' limits."""
        return cls(
            engine=engine,
            settings=settings,
            gate=GenerationGate(settings.max_concurrent_generations, settings.queue_timeout),
            jobs=IndexJobs(engine, settings.roots),
            owns_engine=owns_engine,
        )

    async def aclose(self) -> None:
        """Cancel a running index job (the saved index stays consistent), close an owned engine."""
        await self.jobs.aclose()
        if self.owns_engine:
            await self.engine.aclose()


def get_state(connection: Request | WebSocket) -> ServerState:
    """The state of the app serving ``connection`` (set by ``create_app``)."""
    state: ServerState = connection.app.state.rag
    return state
