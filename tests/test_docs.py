"""The documentation runs: every ```python block of the docs pages and of README.md is executed,
and the site builds with `mkdocs build --strict`.

The blocks of one page run in order in one fresh namespace (a later block may use the names of
an earlier one), with the working directory a temporary folder that holds a copy of
`examples/`, so that a page may read `examples/...` as from the repository root and writes
nothing into the repository. Blocks fenced as ```bash, ```text or ```toml are not run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# An opening fence of exactly "python" (at any indentation) to the closing fence at the same
# indentation.
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file: (line of the first code line, dedented code)."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        indent = match.group("indent")
        lines = match.group("code").splitlines()
        code = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        blocks.append((text.count("\n", 0, match.start("code")) + 1, code))
    return blocks


def pages() -> list[Path]:
    """Every docs page with Python examples, and README.md."""
    found = sorted(p for p in DOCS.glob("*.md") if python_blocks(p))
    return found + [ROOT / "README.md"]


def test_pages_with_examples_are_found():
    names = {p.name for p in pages()}
    assert {
        "getting-started.md",
        "howto-transfer.md",
        "howto-w-state.md",
        "howto-sweep.md",
        "howto-pulse-shaping.md",
        "README.md",
    } <= names


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_docs_examples_run(page: Path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MPLBACKEND", "Agg")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(page)
    assert blocks, f"{page.name} has no ```python blocks"
    namespace: dict = {"__name__": "__docs__"}
    try:
        for line, code in blocks:
            # Padding keeps the page's line numbers in tracebacks.
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
    finally:
        plt.close("all")


def test_docs_site_builds_without_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").exists()
