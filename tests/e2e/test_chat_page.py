"""The web chat page in a real browser (Debian's chromium, driven headless by Playwright)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.server import create_app
from tests.unit.server_support import (
    GatedChatModel,
    LiveServer,
    build_index,
    config_for,
    embedding,
    live_server,
    write_topics,
)

pytestmark = [pytest.mark.e2e, pytest.mark.allow_blocking, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "page-key"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.sync_api")
if CHROMIUM is None:
    pytest.skip("no chromium on this machine (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page")
    build_index(write_topics(root / "docs"), root / "idx")
    return root / "idx"


@pytest.fixture
def gated() -> GatedChatModel:
    return GatedChatModel()


@pytest.fixture
def server(index_dir: Path, gated: GatedChatModel) -> Iterator[LiveServer]:
    engine = AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding(), llm=gated)
    with live_server(create_app(engine, ServerConfig(api_key=KEY))) as live:
        yield live


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 760})
        finally:
            browser.close()


def test_ask_stream_cite_and_open_the_chunk(
    server: LiveServer, page: Any, gated: GatedChatModel, tmp_path: Path
) -> None:
    gated.gate.set()
    page.goto(server.url)
    page.fill("#key", KEY)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#stats:has-text('3 chunks')")
    page.fill("#question", "What does Cargo do?")
    page.click("#send")
    page.wait_for_selector(".status:has-text('done in')", timeout=30_000)
    answer = page.inner_text(".turn:not(.q) .answer")
    assert "Cargo" in answer and re.search(r"\[\d\]", answer)
    page.click(".turn:not(.q) .answer .cite")
    page.wait_for_selector("#chunk-text:has-text('Cargo is the Rust build system')")
    assert "cargo.md" in page.inner_text("#chunk-where")
    shot = tmp_path / "chat.png"  # docs/server-chat.png is such a screenshot
    page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_stop_cancels_the_generation_on_the_server(
    server: LiveServer, page: Any, gated: GatedChatModel
) -> None:
    state = server.server.config.app.state.rag
    page.goto(server.url)
    page.fill("#key", KEY)
    page.dispatch_event("#key", "change")
    page.fill("#question", "What does Cargo do?")
    page.click("#send")
    assert gated.started.wait(30)  # the model is generating, held by the test
    page.click("#stop")
    page.wait_for_selector(".status:has-text('stopped')")
    deadline = time.monotonic() + 10
    while not gated.cancelled.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gated.cancelled.is_set(), "the server kept generating after Stop"
    while state.gate.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.gate.in_flight == 0


def test_without_the_key_the_page_says_so(server: LiveServer, page: Any) -> None:
    page.goto(server.url)
    page.wait_for_selector("#stats:has-text('API key')")
