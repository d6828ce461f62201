"""Indexing over HTTP: start a job, read its state, follow its progress over a WebSocket."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from langchain_rag_async.errors import RequestError
from langchain_rag_async.server.schemas import IndexRequest
from langchain_rag_async.server.security import aconfine_path
from langchain_rag_async.server.state import get_state

__all__ = ("router",)

router = APIRouter(prefix="/index", tags=["indexing"])

_WS_NOT_FOUND = 4404  # WebSocket close code for an unknown job (4000-4999: application)


@router.post("", status_code=202)
async def start_index(body: IndexRequest, request: Request) -> JSONResponse:
    """Start indexing ``path`` (under a configured root): 202 with the job; 409 while one runs."""
    state = get_state(request)
    path = await aconfine_path(body.path, state.settings.roots)
    job = state.jobs.start(path)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/index/{job.id}"})


@router.get("/{job_id}")
async def index_job(job_id: str, request: Request) -> dict[str, Any]:
    """A job's state, latest progress, and its summary or error once it ended."""
    return get_state(request).jobs.get(job_id).to_dict()


@router.websocket("/{job_id}/events")
async def index_events(websocket: WebSocket, job_id: str) -> None:
    """Progress events as JSON messages (files, chunks, rate, ETA), then the summary."""
    state = get_state(websocket)
    try:
        job = state.jobs.get(job_id)
    except RequestError as exc:
        await websocket.close(code=_WS_NOT_FOUND, reason=exc.message[:120])
        return
    await websocket.accept()
    try:
        async for event in job.events():
            await websocket.send_json(event)
    except WebSocketDisconnect:
        return
    await websocket.close()
