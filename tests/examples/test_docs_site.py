"""The documentation site builds with warnings as errors and documents every public name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import langchain_rag_async
from tests.examples.test_examples import PROJECT_ROOT


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_site_builds_strict_with_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    reference = (site / "reference" / "index.html").read_text()
    anchors = set(re.findall(r'id="langchain_rag_async\.[\w.]*?\.(\w+)"', reference))
    missing = sorted(set(langchain_rag_async.__all__) - anchors)
    assert not missing, f"public names without an entry in docs/reference.md: {missing}"
    pages = ("migration", "async_architecture", "architecture", "benchmarks", "reliability")
    for page in (*pages, "performance_tuning"):
        assert (site / page / "index.html").is_file(), page
    tuning = (site / "performance_tuning" / "index.html").read_text()
    for plot in re.findall(r'src="(\.\./img/tuning_\w+\.png)"', tuning) or ["no plot"]:
        assert (site / "performance_tuning" / plot).resolve().is_file(), plot


def test_relative_links_of_the_guides_resolve() -> None:
    """Links to repository files (examples/, other pages) point at files that exist.

    The site build only reports links outside docs/ (mkdocs.yml: ``not_found: info``).
    """
    pages = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "examples" / "README.md"]
    pages += sorted((PROJECT_ROOT / "docs").glob("*.md"))
    broken = [
        f"{page.name}: {target}"
        for page in pages
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        if not target.startswith(("http://", "https://", "#", "mailto:"))
        and not (page.parent / target.split("#")[0]).exists()
    ]
    assert not broken
