"""Where an indexing run's seconds go: a per-stage profile of ``aindex_directory``.

One run of ours against the fake OpenAI server, with an in-memory OpenTelemetry exporter
collecting the package's own spans (plan, load, split, embed, store, checkpoint, ...) and
the server stamping each request's arrival. The profile compares the run with its network
floor (requests / concurrency x latency) and splits the rest into: before the first request,
the middle (requests in flight below the bound), and after the last answer. Printed by
``scripts/bench_async.py --profile``; results in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from .fake_openai import FakeOpenAIServer
from .report import markdown_table

__all__ = ("MILESTONES", "SpanRecorder", "milestones", "profile_table", "stage_profile")


class SpanRecorder:
    """Install an SDK tracer provider whose spans land in memory (once per process)."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        trace.set_tracer_provider(provider)

    def spans(self) -> list[Any]:
        """The finished spans since the last :meth:`clear`."""
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        """Forget the spans recorded so far."""
        self.exporter.clear()


def _intervals(spans: list[Any], wall0_ns: int) -> dict[str, list[tuple[float, float]]]:
    """Spans by name as (start, end) seconds from ``wall0_ns``."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in spans:
        out[s.name].append(((s.start_time - wall0_ns) / 1e9, (s.end_time - wall0_ns) / 1e9))
    return out


def stage_profile(
    spans: list[Any],
    server: FakeOpenAIServer,
    *,
    started_mono: float,
    started_wall_ns: int,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """The per-stage profile of one run (times in seconds from its start)."""
    by_name = _intervals(spans, started_wall_ns)
    arrivals = [t - started_mono for t in server.stats.request_times]
    latency = server.latency
    requests = len(arrivals)
    floor = math.ceil(requests / concurrency) * latency if requests else 0.0
    first = arrivals[0] if arrivals else 0.0
    last_answer = (arrivals[-1] + latency) if arrivals else 0.0
    stages: list[dict[str, Any]] = []
    for name, spans_of in sorted(by_name.items(), key=lambda kv: min(a for a, _ in kv[1])):
        total = sum(b - a for a, b in spans_of)
        stages.append(
            {
                "span": name,
                "count": len(spans_of),
                "first_start_s": round(min(a for a, _ in spans_of), 3),
                "last_end_s": round(max(b for _, b in spans_of), 3),
                "sum_s": round(total, 3),
                "longest_s": round(max(b - a for a, b in spans_of), 3),
            }
        )
    return {
        "seconds": round(seconds, 3),
        "requests": requests,
        "floor_s": round(floor, 3),
        "first_request_s": round(first, 3),
        "last_request_s": round(arrivals[-1] if arrivals else 0.0, 3),
        "last_answer_s": round(last_answer, 3),
        "milestones": milestones(by_name, last_answer),
        "before_first_request_s": round(first, 3),
        "requests_span_s": round(last_answer - first, 3),
        "after_last_answer_s": round(seconds - last_answer, 3),
        "over_floor_s": round(seconds - floor, 3),
        "stages": stages,
    }


MILESTONES = (
    ("split done", "split_stage", 1),
    ("last store batch (FAISS add + staged FTS5 rows) done", "store_stage", 1),
    ("checkpoint starts", "checkpoint", 0),
    ("store saved (new generation, fsynced)", "vectorstore.save", 1),
    ("FTS5 sealed", "sparse.seal", 1),
    ("records committed", "records.commit", 1),
    ("stores, cache and clients closed", "close_index_resources", 1),
)
"""(what, span, 0: its first start / 1: its last end) of the run's critical path end."""


def milestones(
    by_name: dict[str, list[tuple[float, float]]], last_answer: float
) -> list[dict[str, Any]]:
    """When each step after the requests happened, and how long after the last answer."""
    out: list[dict[str, Any]] = []
    for what, name, end in MILESTONES:
        if name in by_name:
            at = max(b for _, b in by_name[name]) if end else min(a for a, _ in by_name[name])
            after = round(at - last_answer, 3)
            out.append({"what": what, "at_s": round(at, 3), "after_last_answer_s": after})
    return out


def profile_table(profile: dict[str, Any]) -> str:
    """The profile as text: the three phases against the floor, then every span."""
    head = (
        f"run {profile['seconds']} s = before the first request "
        f"{profile['before_first_request_s']} s + first request to last answer "
        f"{profile['requests_span_s']} s + after the last answer "
        f"{profile['after_last_answer_s']} s; floor ({profile['requests']} requests) "
        f"{profile['floor_s']} s, over it {profile['over_floor_s']} s"
    )
    rows = [
        [s["span"], s["count"], s["first_start_s"], s["last_end_s"], s["sum_s"], s["longest_s"]]
        for s in profile["stages"]
    ]
    table = markdown_table(
        ["span", "count", "first start (s)", "last end (s)", "sum (s)", "longest (s)"], rows
    )
    marks = [
        ["first request arrives", profile["first_request_s"], ""],
        ["last request arrives", profile["last_request_s"], ""],
        ["last answer (arrival + latency)", profile["last_answer_s"], 0.0],
        *([m["what"], m["at_s"], m["after_last_answer_s"]] for m in profile["milestones"]),
        ["run returns", profile["seconds"], profile["after_last_answer_s"]],
    ]
    timeline = markdown_table(["milestone", "at (s)", "after the last answer (s)"], marks)
    return f"{head}\n{timeline}\n\n{table}"


def wall_clocks() -> tuple[float, int]:
    """The start of a run in both clocks (monotonic for the server, wall ns for spans)."""
    return time.monotonic(), time.time_ns()
