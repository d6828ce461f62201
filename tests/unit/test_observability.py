"""Logs carry context ids and never block the event loop; spans carry context ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import time
from typing import Any

from langchain_rag_async import observability
from langchain_rag_async.observability import (
    bind_request_id,
    bind_task_id,
    get_logger,
    request_span,
    span,
)


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


def test_a_request_span_reuses_the_frameworks_span(spans: Any) -> None:
    bind_request_id("req-5")
    with request_span("POST /query", **{"http.route": "/query"}):
        pass  # no framework span: one of our own
    with span("framework"), request_span("POST /query", **{"http.route": "/query"}):
        pass  # inside the framework's span: annotated, not duplicated
    own, framework = spans.get_finished_spans()
    assert own.name == "POST /query" and own.attributes["rag.request_id"] == "req-5"
    assert own.attributes["http.route"] == "/query"
    assert framework.name == "framework" and "http.route" not in framework.attributes
    assert framework.attributes["rag.request_id"] == "req-5"


async def test_log_lines_inside_a_recorded_span_carry_its_ids(spans: Any) -> None:
    stream = io.StringIO()
    await asyncio.to_thread(observability.configure_logging, logging.INFO, json=True, stream=stream)
    try:
        log = get_logger("langchain_rag_async.test")
        log.info("outside")
        with span("work") as current:
            log.info("inside")
        await asyncio.to_thread(wait_for, lambda: stream.getvalue().count("\n") >= 2)
    finally:
        await asyncio.to_thread(observability.configure_logging, logging.WARNING)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    context = current.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


def test_levels_are_those_of_the_stdlib_loggers_read_at_each_call() -> None:
    stream = io.StringIO()
    observability.configure_logging(logging.WARNING, json=True, stream=stream)
    stdlib = logging.getLogger("langchain_rag_async.levels")
    log = get_logger("langchain_rag_async.levels")
    try:
        log.debug("dropped")
        log.info("dropped")
        log.warning("kept", n=1)
        stdlib.setLevel(logging.DEBUG)  # the level is read at each call
        log.debug("kept too")
        stdlib.disabled = True
        log.error("dropped: disabled logger")
    finally:
        stdlib.disabled = False
        stdlib.setLevel(logging.NOTSET)
        observability.configure_logging(logging.WARNING)  # writes what it still holds
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["level"]) for e in lines] == [("kept", "warning"), ("kept too", "debug")]
    assert lines[0]["n"] == 1


def test_structlog_is_imported_by_the_first_record_let_through() -> None:
    """A process that logs nothing (the CLI without -v) never imports structlog (9 MiB)."""
    code = """
import io, logging, sys
from langchain_rag_async import observability
from langchain_rag_async.observability import configure_logging, get_logger

stream = io.StringIO()
configure_logging(logging.CRITICAL, json=True, stream=stream)
log = get_logger("langchain_rag_async.probe")
log.info("below the level")
log.exception("below the level too")
before = "structlog" in sys.modules
log.critical("let through", n=1)
observability._stop_listener()  # flushes the listener thread
print(before, "structlog" in sys.modules, stream.getvalue().strip())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    before, after, line = done.stdout.split(" ", 2)
    assert (before, after) == ("False", "True")
    record = json.loads(line)
    assert record["event"] == "let through" and record["n"] == 1
    assert record["level"] == "critical"


def test_an_applications_own_structlog_configuration_stands() -> None:
    """Configured before the package's first record, structlog stays as the application set it."""
    code = """
import structlog
from langchain_rag_async.observability import get_logger

seen = []

def keep(logger, method, event_dict):
    seen.append(event_dict["event"])
    raise structlog.DropEvent

structlog.configure(processors=[keep])
get_logger("langchain_rag_async.probe").warning("ours")
structlog.get_logger("app").warning("theirs")
print(seen, structlog.get_config()["processors"] == [keep])
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['ours',", "'theirs']", "True"]
