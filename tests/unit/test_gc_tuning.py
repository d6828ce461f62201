"""The malloc arena limit of one-shot commands, checked with glibc's own arena report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not sys.platform.startswith("linux")
        or not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
        reason="malloc arenas are glibc's",
    ),
]

PROBE = """
import ctypes, sys, threading
from langchain_rag_async.gc_tuning import limit_malloc_arenas

limited = limit_malloc_arenas() if sys.argv[1] == "limit" else None
barrier = threading.Barrier(8)
kept = []


def work():
    kept.append(bytearray(64 * 1024))  # through malloc (pymalloc keeps small objects)
    barrier.wait(timeout=60)  # all eight alive at once: none reuses an exited thread's arena


threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(limited, flush=True)
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def arenas_after_eight_threads(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr.count("Arena ")


def test_one_shot_commands_keep_two_malloc_arenas() -> None:
    _, unlimited = arenas_after_eight_threads("default")
    limited, arenas = arenas_after_eight_threads("limit")
    assert unlimited > 2  # glibc's default: an arena per thread (up to 8 per core)
    assert (limited, arenas) == ("True", 2)


def test_the_environments_malloc_arena_max_stands() -> None:
    limited, arenas = arenas_after_eight_threads("limit", MALLOC_ARENA_MAX="3")
    assert limited == "False"
    assert arenas == 3  # glibc read the variable; the call changed nothing
