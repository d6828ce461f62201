"""``--debug-async``: task dumps name what each task awaits; a blocked loop is reported."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from langchain_rag_async.aio.debug import AsyncDebugMonitor, await_chain, debug_async, format_tasks
from langchain_rag_async.config import DebugAsyncConfig, RAGConfig
from langchain_rag_async.errors import ConfigurationError


async def _wait_for(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _wait_for(event)


async def test_await_chain_follows_coroutines_down_to_the_event() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event), name="stuck-on-event")
    await asyncio.sleep(0)
    chain = await_chain(task)
    assert chain[0].startswith("_outer (") and "test_aio_debug.py" in chain[0]
    assert chain[1].startswith("_wait_for (")
    assert chain[2].startswith("Event.wait (") and "locks.py" in chain[2]
    assert chain[3].startswith("awaits <Future pending")
    event.set()
    await task
    assert await_chain(task) == []  # a finished coroutine awaits nothing


async def test_the_periodic_dump_names_a_stuck_task_and_what_it_awaits() -> None:
    stream = io.StringIO()
    event = asyncio.Event()
    stuck = asyncio.create_task(_outer(event), name="stuck-on-event")
    waiter = asyncio.create_task(asyncio.wait_for(stuck, None), name="waits-for-the-stuck-one")
    async with AsyncDebugMonitor(interval=0.05, slow_callback=5.0, stream=stream):
        await asyncio.sleep(0.3)
    event.set()
    await waiter
    text = stream.getvalue()
    dumps = text.count("--- debug-async ")
    assert dumps >= 2, text  # every interval, not once
    block = text.split("task 'stuck-on-event'")[1].split("task '")[0]
    assert "_outer" in block and "_wait_for" in block and "Event.wait" in block
    assert "awaits <Task pending name='stuck-on-event'" in text  # the other task's link
    assert "task 'rag-debug-async'" in text  # the monitor's own task is listed too


@pytest.mark.allow_blocking  # the point of the test: a callback that blocks the loop
async def test_a_callback_that_blocks_the_loop_is_reported_with_its_stack() -> None:
    stream = io.StringIO()

    def sleepy_parser() -> None:
        time.sleep(0.4)  # stands for CPU-bound work done on the loop by mistake

    async with AsyncDebugMonitor(interval=60, slow_callback=0.1, stream=stream) as monitor:
        await asyncio.sleep(0.05)
        sleepy_parser()
        await asyncio.sleep(0.1)  # the loop runs again: the end of the block is reported
    text = stream.getvalue()
    assert monitor.warnings == 1, text
    assert "WARNING: a callback has held the event loop" in text
    assert "in sleepy_parser" in text and "time.sleep(0.4)" in text
    ran_again = float(text.split("ran again after ")[1].split(" s")[0])
    assert 0.25 <= ran_again <= 1.0


async def test_a_loop_that_only_waits_gets_no_warning() -> None:
    stream = io.StringIO()
    async with AsyncDebugMonitor(interval=60, slow_callback=0.2, stream=stream) as monitor:
        await asyncio.sleep(0.4)
    assert monitor.warnings == 0 and "WARNING" not in stream.getvalue()


async def test_the_monitor_leaves_nothing_running() -> None:
    before = set(asyncio.all_tasks())
    async with debug_async(DebugAsyncConfig(enabled=True, interval=0.01), stream=io.StringIO()):
        await asyncio.sleep(0.05)
    assert set(asyncio.all_tasks()) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("rag-debug")]
    async with debug_async(DebugAsyncConfig(enabled=False)) as monitor:
        assert monitor is None


async def test_format_tasks_lists_every_task() -> None:
    text = format_tasks()
    assert "1 task(s)" in text and "test_format_tasks_lists_every_task" in text


def test_settings_come_from_the_environment_and_are_checked() -> None:
    config = RAGConfig.from_env(
        {
            "RAG_DEBUG_ASYNC": "1",
            "RAG_DEBUG_ASYNC_INTERVAL": "0.5",
            "RAG_DEBUG_ASYNC_SLOW_CALLBACK": "2",
        }
    )
    assert config.debug_async == DebugAsyncConfig(enabled=True, interval=0.5, slow_callback=2.0)
    assert RAGConfig.from_env({}).debug_async.enabled is False
    with pytest.raises(ConfigurationError, match="interval"):
        DebugAsyncConfig(interval=0)


@pytest.mark.slow
def test_rag_async_index_debug_async_dumps_its_pipeline_tasks(tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for n in range(3):
        (corpus / f"doc{n}.md").write_text(f"# Doc {n}\n\nOwnership and borrowing {n}.\n", "utf-8")
    env = {**os.environ, "RAG_DEBUG_ASYNC_INTERVAL": "0.05"}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "langchain_rag_async.cli", "index", str(corpus),
         "--index-dir", str(tmp_path / "idx"), "--json", "--debug-async"],
        capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--- debug-async " in done.stderr
    assert "task 'rag-debug-async'" in done.stderr
    assert "_until_signal" in done.stderr  # the command's own task and its await chain
