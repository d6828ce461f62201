"""Indexing over HTTP: jobs, WebSocket progress, root confinement, one job at a time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from langchain_rag_async import AsyncRAGEngine, RAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.errors import IndexNotFoundError
from langchain_rag_async.server import create_app

from .server_support import GatedEmbedding, config_for, write_topics


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_topics(tmp_path / "root" / "docs")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.md").write_text("# Secret\n\nnot for indexing\n", "utf-8")
    return tmp_path / "root"


def make_client(tmp_path: Path, root: Path | None, embedding: GatedEmbedding) -> TestClient:
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding)
    roots = () if root is None else (root,)
    app = create_app(engine, ServerConfig(roots=roots))
    return TestClient(app, base_url="http://localhost")  # a loopback name, as the guard wants


@pytest.fixture
def embedding() -> GatedEmbedding:
    open_gate = GatedEmbedding(size=32)
    open_gate.gate.set()
    return open_gate


@pytest.fixture
def client(tmp_path: Path, root: Path, embedding: GatedEmbedding) -> Iterator[TestClient]:
    with make_client(tmp_path, root, embedding) as test_client:
        yield test_client


def wait_for(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/index/{job_id}").json()
        if job["state"] != "running":
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_a_job_indexes_under_a_root_and_queries_see_it(client: TestClient, root: Path) -> None:
    response = client.post("/index", json={"path": str(root / "docs")})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "running" and response.headers["location"] == f"/index/{job['job_id']}"
    done = wait_for(client, job["job_id"])
    assert done["state"] == "succeeded", done
    assert done["summary"]["files_indexed"] == 3 and done["error"] is None
    hits = client.post("/query", json={"question": "cargo build system", "k": 1}).json()["hits"]
    assert Path(hits[0]["source"]).name == "cargo.md"


def test_websocket_streams_progress_then_the_summary(client: TestClient, root: Path) -> None:
    job_id = client.post("/index", json={"path": str(root)}).json()["job_id"]
    events = []
    with client.websocket_connect(f"ws://localhost/index/{job_id}/events") as ws:
        while True:
            event = ws.receive_json()
            events.append(event)
            if event["type"] in ("summary", "error", "cancelled"):
                break
    assert events[-1]["type"] == "summary" and events[-1]["files_indexed"] == 3
    progress = [e for e in events if e["type"] == "progress"]
    assert progress, events
    last = progress[-1]
    assert {
        "files_total",
        "chunks_embedded",
        "chunks_stored",
        "chunks_per_second",
        "eta_seconds",
        "elapsed_seconds",
    } <= set(last)
    # a late subscriber still gets the outcome
    with client.websocket_connect(f"ws://localhost/index/{job_id}/events") as ws:
        seen = [ws.receive_json() for _ in range(3)]
    assert seen[-1]["type"] == "summary"


@pytest.mark.parametrize("kind", ["outside", "dotdot", "symlink", "missing-root"])
def test_paths_outside_the_roots_are_refused(
    tmp_path: Path, root: Path, embedding: GatedEmbedding, kind: str
) -> None:
    outside = tmp_path / "outside"
    if kind == "outside":
        path = str(outside)
    elif kind == "dotdot":
        path = str(root / "docs" / ".." / ".." / "outside")
    elif kind == "symlink":
        os.symlink(outside, root / "link")
        path = str(root / "link")
    else:
        path = str(root / "docs")
    with make_client(tmp_path, None if kind == "missing-root" else root, embedding) as client:
        response = client.post("/index", json={"path": path})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "path_not_allowed"


def test_bad_paths_and_unknown_jobs(client: TestClient, root: Path) -> None:
    assert client.post("/index", json={"path": ""}).status_code == 400
    assert client.post("/index", json={"path": str(root / "nope")}).status_code == 404
    assert client.post("/index", json={}).status_code == 422
    assert client.get("/index/does-not-exist").json()["error"]["code"] == "job_not_found"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("ws://localhost/index/nope/events") as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 4404


def test_one_job_at_a_time_and_queries_answer_meanwhile(tmp_path: Path, root: Path) -> None:
    held = GatedEmbedding(size=32)
    held.gate.set()
    with make_client(tmp_path, root, held) as client:  # a first generation to query
        first = client.post("/index", json={"path": str(root / "docs" / "cargo.md")}).json()
        assert wait_for(client, first["job_id"])["state"] == "succeeded"
        held.gate.clear()
        running = client.post("/index", json={"path": str(root / "docs")}).json()
        second = client.post("/index", json={"path": str(root / "docs")})
        assert second.status_code == 409 and second.json()["error"]["code"] == "job_running"
        hits = client.post("/query", json={"question": "closures", "k": 3}).json()["hits"]
        assert {Path(h["source"]).name for h in hits} == {"cargo.md"}  # the previous generation
        held.gate.set()
        assert wait_for(client, running["job_id"])["state"] == "succeeded"
        hits = client.post("/query", json={"question": "anonymous functions", "k": 3}).json()[
            "hits"
        ]
        assert "closures.md" in {Path(h["source"]).name for h in hits}  # the new one


def test_shutdown_cancels_a_running_job_and_leaves_the_index_usable(
    tmp_path: Path, root: Path
) -> None:
    held = GatedEmbedding(size=32)
    with make_client(tmp_path, root, held) as client:
        job_id = client.post("/index", json={"path": str(root / "docs")}).json()["job_id"]
        state = client.app.state.rag  # type: ignore[attr-defined]
        job = state.jobs.get(job_id)
    assert job.state == "cancelled"
    held.gate.set()
    with RAGEngine(config=config_for(tmp_path / "idx"), embeddings=held) as engine:
        try:
            engine.query("cargo")
        except IndexNotFoundError:
            pass  # nothing was saved yet: a clean "no index", not a corrupted one
        summary = engine.index_directory(root / "docs")
        assert summary.files_indexed == 3
        assert len(engine.query("cargo", k=3)) == 3


def test_a_link_inside_a_root_to_a_file_outside_is_not_read(
    client: TestClient, root: Path, tmp_path: Path
) -> None:
    os.symlink(tmp_path / "outside" / "secret.md", root / "docs" / "notes.md")
    job = client.post("/index", json={"path": str(root / "docs")}).json()
    done = wait_for(client, job["job_id"])
    assert done["state"] == "succeeded"
    failed = {Path(f["path"]).name: f["reason"] for f in done["summary"]["files_failed"]}
    assert "outside the directories allowed" in failed["notes.md"]
    assert done["summary"]["files_indexed"] == 3
    hits = client.post("/query", json={"question": "secret indexing", "k": 5}).json()["hits"]
    assert all("not for indexing" not in hit["text"] for hit in hits)


async def test_a_job_cancelled_before_it_starts_ends_cancelled(
    tmp_path: Path, root: Path, embedding: GatedEmbedding
) -> None:
    from langchain_rag_async.server.jobs import IndexJobs

    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding)
    jobs = IndexJobs(engine, (root,))
    job = jobs.start(root / "docs")
    await jobs.aclose()  # before the job's task ever ran
    assert job.state == "cancelled" and jobs.running is None
    assert [event async for event in job.events()][-1]["type"] == "cancelled"
    await engine.aclose()
