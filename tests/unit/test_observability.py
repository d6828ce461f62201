"""Logs carry context ids and never block the event loop; spans carry context ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from typing import Any

from langchain_rag_async import observability
from langchain_rag_async.observability import bind_request_id, bind_task_id, get_logger, span


def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


async def test_logs_carry_ids_and_tracebacks_render_off_the_loop() -> None:
    stream = io.StringIO()
    # (Re)configuring stops an earlier listener thread (a join): keep that off the loop.
    await asyncio.to_thread(observability.configure_logging, logging.INFO, json=True, stream=stream)
    try:
        log = get_logger("langchain_rag_async.test")

        async def worker(task: str) -> None:
            bind_task_id(task)
            try:
                raise ValueError(f"boom in {task}")
            except ValueError:
                # Rendering a traceback reads source files: it must happen off the loop
                # (the blocking-call guard of this async test would fail otherwise).
                log.exception("work failed", step=task)

        bind_request_id("req-1")
        await asyncio.gather(worker("a"), worker("b"))
        await asyncio.to_thread(wait_for, lambda: stream.getvalue().count("\n") >= 2)
    finally:  # stopping the old listener joins its thread: not on the loop
        await asyncio.to_thread(observability.configure_logging, logging.WARNING)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["task_id"] for line in lines} == {"a", "b"}
    assert all(line["request_id"] == "req-1" for line in lines)
    assert all("ValueError" in line["exception"] for line in lines)


def test_library_is_silent_without_configuration(capsys: Any) -> None:
    logging.getLogger("langchain_rag_async").handlers[:] = [logging.NullHandler()]
    get_logger("langchain_rag_async.quiet").warning("nobody should see this")
    captured = capsys.readouterr()
    assert "nobody should see this" not in captured.err + captured.out


def test_span_attributes_include_context_ids(spans: Any) -> None:
    bind_request_id("req-9")
    with span("unit", size=3, missing=None):
        pass
    (finished,) = spans.get_finished_spans()
    assert finished.attributes["rag.request_id"] == "req-9"
    assert finished.attributes["size"] == 3 and "missing" not in finished.attributes
