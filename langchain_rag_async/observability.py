"""Tracing and logging in one place: OpenTelemetry spans and structlog with context ids.

Every stage opens its span through :func:`span`; every log line goes through
:func:`get_logger` and carries the ``request_id`` and ``task_id`` bound in contextvars,
so interleaved concurrent work stays readable, and, inside a recorded span, its
``trace_id`` and ``span_id``, so logs and traces join. Only the API of OpenTelemetry is
used here: spans go nowhere until an application installs a provider
(:func:`langchain_rag_async.tracing.configure_tracing`).

structlog is imported by the first record a level lets through, not before: importing it
also imports ``rich``'s traceback renderer, pygments and greenlet when installed (9 MiB of
RSS), which a run that logs nothing (``rag-async index`` without ``-v``) never uses.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import logging.handlers
import queue
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

__all__ = (
    "TRACER_NAME",
    "bind_request_id",
    "bind_task_id",
    "configure_logging",
    "get_logger",
    "request_span",
    "request_id_var",
    "span",
    "task_id_var",
)

TRACER_NAME = "langchain_rag_async"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rag_request_id", default=None
)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rag_task_id", default=None
)

AttributeValue = str | bool | int | float


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def span(name: str, **attributes: AttributeValue | None) -> Iterator[Span]:
    """Run the block inside an OpenTelemetry span named ``name``.

    The current ``request_id`` / ``task_id`` are attached as attributes; ``None``
    attribute values are dropped. An exception marks the span as failed and is re-raised.

    Args:
        name: Span name, e.g. ``"embed"``.
        **attributes: Span attributes (str, bool, int or float).

    Yields:
        The span, to add attributes known only at the end (``set_attribute``).
    """
    attrs: dict[str, AttributeValue] = {k: v for k, v in attributes.items() if v is not None}
    request_id = request_id_var.get()
    if request_id is not None:
        attrs.setdefault("rag.request_id", request_id)
    task_id = task_id_var.get()
    if task_id is not None:
        attrs.setdefault("rag.task_id", task_id)
    with _tracer().start_as_current_span(
        name, attributes=attrs, record_exception=True, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


@contextmanager
def request_span(name: str, **attributes: AttributeValue | None) -> Iterator[Span]:
    """The span of a request: the framework's, when it opened one already, else a new one.

    Web frameworks with OpenTelemetry built in (FastAPI, Starlette) open the HTTP server
    span themselves, with the caller's ``traceparent`` and the semantic-convention
    attributes; a second span would duplicate it, so theirs only gets ``rag.request_id``.

    Args:
        name: Name of the span when a new one is opened, e.g. ``"POST /query"``.
        **attributes: Attributes of a new span (str, bool, int or float).

    Yields:
        The request's span.
    """
    current = trace.get_current_span()
    if not current.is_recording():
        with span(name, **attributes) as opened:
            yield opened
        return
    request_id = request_id_var.get()
    if request_id is not None:
        current.set_attribute("rag.request_id", request_id)
    yield current


def bind_request_id(request_id: str | None = None) -> str:
    """Set the ``request_id`` of the current context (a new one when not given)."""
    value = request_id or uuid.uuid4().hex[:12]
    request_id_var.set(value)
    return value


def bind_task_id(task_id: str) -> contextvars.Token[str | None]:
    """Set the ``task_id`` of the current context; returns the token to reset it."""
    return task_id_var.set(task_id)


def _add_context_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    task_id = task_id_var.get()
    if task_id is not None:
        event_dict.setdefault("task_id", task_id)
    context = trace.get_current_span().get_span_context()
    if context.is_valid:  # only with a tracer provider installed (configure_tracing)
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


_configured = False
_listener: logging.handlers.QueueListener | None = None

# A library never prints on its own: without an application handler, logs go nowhere.
logging.getLogger(TRACER_NAME).addHandler(logging.NullHandler())


def _stop_listener() -> None:
    """Flush and stop the log-writing thread (also at interpreter exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(_stop_listener)


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners and notebooks swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _RecordQueueHandler(logging.handlers.QueueHandler):
    """Queue the record as is: rendering (tracebacks included) happens in the listener."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def _capture_exc_info(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Turn ``exc_info=True`` into the exception itself while still in its thread (cheap)."""
    if event_dict.get("exc_info") is True:
        event_dict["exc_info"] = sys.exc_info()
    return event_dict


def _configure_structlog() -> None:
    global _configured
    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_context_ids,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            _capture_exc_info,
            # Rendering is left to the handler's ProcessorFormatter (in its own thread).
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # Through stdlib logging, so applications route our logs like any other library's.
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def configure_logging(
    level: int = logging.WARNING,
    *,
    json: bool = False,
    stream: TextIO | None = None,
    everything: bool = False,
    levels: Mapping[str, int] | None = None,
) -> None:
    """Send the package's logs to ``stream`` (stderr) without blocking the event loop.

    The calling thread only puts the record on a queue; a ``QueueListener`` thread renders
    it (tracebacks included, which read source files) and writes it, so a log line never
    stalls the event loop.

    Args:
        level: Lowest level shown.
        json: One JSON object per line instead of the console format.
        stream: Where to write; ``sys.stderr`` by default.
        everything: Write the records of every library the same way (the handler goes on
            the root logger; other libraries' loggers show warnings and above unless
            ``levels`` says otherwise), so that one stream holds one format.
        levels: Levels of other libraries' loggers, e.g. ``{"uvicorn": logging.INFO}``.
    """
    global _listener
    if "structlog" in sys.modules:  # (re)applied now; else at the first record let through
        _configure_structlog()
    handler = logging.StreamHandler(stream or _CurrentStderr())
    handler.setFormatter(_StructlogFormatter(json=json))
    _stop_listener()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    package_logger = logging.getLogger(TRACER_NAME)
    root = logging.getLogger()
    for logger in (package_logger, root):  # one handler, on one of them (no line twice)
        for old in [h for h in logger.handlers if isinstance(h, _RecordQueueHandler)]:
            logger.removeHandler(old)
    (root if everything else package_logger).addHandler(_RecordQueueHandler(records))
    package_logger.setLevel(level)
    if everything:
        root.setLevel(max(level, logging.WARNING))
    for name, other in (levels or {}).items():
        logging.getLogger(name).setLevel(other)


def _configure_structlog_once() -> None:
    """Our structlog configuration, unless structlog is configured already.

    An application (or a test's ``structlog.testing.capture_logs()``) that configured
    structlog before the package's first record keeps its configuration;
    :func:`configure_logging` applies ours whatever came before.
    """
    global _configured
    if _configured:
        return
    import structlog

    if structlog.is_configured():
        _configured = True
    else:
        _configure_structlog()


class _StructlogFormatter(logging.Formatter):
    """structlog's ``ProcessorFormatter``, built (and structlog imported) at the first record.

    Rendering happens in the listener thread: that is where the import lands too.
    """

    def __init__(self, *, json: bool) -> None:
        super().__init__()
        self._json = json
        self._built: logging.Formatter | None = None
        self._lock = threading.Lock()

    def format(self, record: logging.LogRecord) -> str:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = _processor_formatter(json=self._json)
        return self._built.format(record)


def _processor_formatter(*, json: bool) -> logging.Formatter:
    import structlog

    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    chain: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        chain.append(structlog.processors.format_exc_info)
    return structlog.stdlib.ProcessorFormatter(
        processors=[*chain, renderer],
        foreign_pre_chain=[  # records of other libraries' loggers
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso"),
        ],
    )


class _Logger:
    """A structlog logger that skips what its stdlib logger's level would drop.

    A record below the level (or of a disabled logger) costs one ``isEnabledFor`` call: no
    processor runs, and structlog is not imported until a record gets through, or until
    an attribute other than the level methods is asked for (``bind``, ...). This is
    structlog's own ``filter_by_level``, done before the processors instead of among them.
    """

    __slots__ = ("_bound", "_name", "_stdlib")

    def __init__(self, name: str) -> None:
        self._name = name
        self._stdlib = logging.getLogger(name)
        self._bound: Any = None

    def _structlog(self) -> Any:
        if self._bound is None:
            import structlog

            _configure_structlog_once()
            # structlog's own lazy proxy: it follows later structlog.configure() calls
            self._bound = structlog.get_logger(self._name)
        return self._bound

    def _emit(self, level: int, method: str, event: Any, args: Any, kw: Any) -> Any:
        if not self._stdlib.isEnabledFor(level):
            return None
        return getattr(self._structlog(), method)(event, *args, **kw)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.DEBUG, "debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.INFO, "info", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.WARNING, "warning", event, args, kw)

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.ERROR, "error", event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.ERROR, "exception", event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.CRITICAL, "critical", event, args, kw)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not ours (copy, pickle): never an import, nor a loop
            raise AttributeError(name)
        return getattr(self._structlog(), name)


def get_logger(name: str) -> Any:
    """Return a structlog logger carrying ``request_id`` and ``task_id`` from contextvars.

    Records below the level of the stdlib logger ``name`` are dropped before structlog's
    processors run (see :class:`_Logger`).

    Args:
        name: The module's ``__name__`` (under ``langchain_rag_async``).
    """
    return _Logger(name)
