"""Keep scripts/bench_tuning.py (and benchmarks/tuning.py) from rotting: a tiny sweep runs.

It asserts no speed: the figures are measurements for docs/performance_tuning.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_tuning.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tuning", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.allow_blocking
def test_tiny_sweep_of_every_setting_writes_tables_and_plots(
    rust_book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load_script()
    argv = [
        "--corpus", str(rust_book), "--files", "2", "--latency", "0.01",
        "--concurrency-values", "1,4", "--batch-values", "4,64",
        "--rpm-values", "3000,6000", "--tpm-values", "1000000,2000000",
        "--plot-dir", str(tmp_path), "--json",
    ]  # fmt: skip

    assert bench.main(argv) == 0

    report = json.loads(capsys.readouterr().out)
    sweeps = report["sweeps"]
    assert set(sweeps) == {"concurrency", "batch_size", "rpm", "tpm"}
    assert [row["concurrency"] for row in sweeps["concurrency"]] == [1, 4]
    assert [row["batch_size"] for row in sweeps["batch_size"]] == [4, 64]
    assert [row["rpm"] for row in sweeps["rpm"]] == [3000, 6000]
    assert [row["tpm"] for row in sweeps["tpm"]] == [1_000_000, 2_000_000]
    chunks = {row["chunks"] for rows in sweeps.values() for row in rows}
    assert len(chunks) == 1 and chunks.pop() > 0  # every run embedded the same, fresh
    # One request at a time at concurrency 1; more texts per request, fewer requests.
    assert sweeps["concurrency"][0]["peak_in_flight"] == 1
    small, large = sweeps["batch_size"]
    assert small["requests"] > large["requests"]
    assert report["corpus_tokens"] > 0
    for name in sweeps:
        png = tmp_path / f"tuning_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_unknown_sweep_is_refused() -> None:
    bench = _load_script()
    with pytest.raises(SystemExit):
        bench.parse_args(["--sweeps", "concurrency,threads"])
