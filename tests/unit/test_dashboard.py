"""The Grafana dashboard queries only metrics and labels that a real run exposes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_cli_startup import clean_env

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "docs" / "observability" / "grafana-dashboard.json"
)

RUN = """
import json, sys, time
from pathlib import Path

from fastapi.testclient import TestClient

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.metrics import REGISTRY
from langchain_rag_async.server import create_app
from tests.unit.server_support import config_for, embedding, write_topics

tmp = Path(sys.argv[1])
root = write_topics(tmp / "root" / "docs").parent
engine = AsyncRAGEngine(config=config_for(tmp / "idx"), embeddings=embedding())
app = create_app(engine, ServerConfig(roots=(root,)))
with TestClient(app, base_url="http://localhost") as client:  # a loopback Host, as the guard wants
    job = client.post("/index", json={"path": str(root)}).json()["job_id"]
    while client.get(f"/index/{job}").json()["state"] == "running":
        time.sleep(0.05)
    chat = {"model": "rag-async", "messages": [{"role": "user", "content": "What is Cargo?"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert client.post("/query", json={"question": "closures"}).status_code == 200
    time.sleep(0.6)  # one event-loop lag sample
samples = {}
for family in REGISTRY.collect():
    for sample in family.samples:
        samples.setdefault(sample.name, {}).setdefault("labels", set()).update(sample.labels)
        if "le" in sample.labels:
            samples[sample.name].setdefault("le", set()).add(sample.labels["le"])
print(json.dumps({k: {n: sorted(v) for n, v in d.items()} for k, d in samples.items()}))
"""
"""A server run in a fresh process (so no other test's metrics count): index, answer,
query; prints every sample name of the library's registry with its label names."""

SCRAPE_LABELS = {"job", "instance"}
"""Added by Prometheus when it scrapes."""


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path_factory.mktemp("run"))],
        cwd=DASHBOARD.parents[2],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, list[str]]] = json.loads(done.stdout.splitlines()[-1])
    return result


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    found = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((variable["name"], variable["definition"]))
    return found


def test_the_dashboard_has_a_panel_for_each_design_metric() -> None:
    queried = {name for _, expr in expressions() for name in re.findall(r"rag_\w+", expr)}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in queried}
    assert families == {
        "rag_documents_processed",
        "rag_embedding_requests",
        "rag_query_latency_seconds",
        "rag_chunks_embedded",
        "rag_chunks_cached",
        "rag_rate_limiter_wait_seconds",
        "rag_adaptive_concurrency",
        "rag_time_to_first_token_seconds",
        "rag_requests_in_flight",
        "rag_event_loop_lag_seconds",
    }


@pytest.mark.parametrize(("title", "expr"), expressions(), ids=[t for t, _ in expressions()])
def test_every_queried_metric_and_label_exists_after_a_run(
    exposed: dict[str, dict[str, Any]], title: str, expr: str
) -> None:
    names = re.findall(r"rag_\w+", expr)
    assert names, f"{title}: queries no rag_ metric"
    missing = [n for n in names if n not in exposed]
    assert not missing, f"{title}: not exposed after a run: {missing}"
    labels = set().union(*(exposed[n]["labels"] for n in names)) | SCRAPE_LABELS
    for name, matchers in re.findall(r"(rag_\w+)\{([^}]*)\}", expr):
        for key, value in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"", matchers):
            assert key in set(exposed[name]["labels"]) | SCRAPE_LABELS, f"{title}: {name}{{{key}}}"
            if key == "le":
                assert value in exposed[name]["le"], f"{title}: no bucket le={value}"
    for grouped in re.findall(r"by \(([^)]*)\)", expr):
        unknown = {label.strip() for label in grouped.split(",")} - labels
        assert not unknown, f"{title}: grouped by unknown labels {unknown}"
