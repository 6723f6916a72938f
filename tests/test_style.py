"""The project's conventions are checked, not hoped for: `ruff check` (lint, import order) and
`ruff format --check` (one code style) pass on the whole repository, with the settings of
pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    pytest.importorskip("ruff")
    found = shutil.which("ruff", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_passes(command):
    done = subprocess.run(_ruff() + command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_imports_another_modules_private_names():
    """`from module import _name` across modules reaches into another's internals: a name
    shared between modules is public in the module that owns it (private modules themselves,
    `from . import _report`, are the package's own layout)."""
    import ast

    offenders = []
    for folder in ("chiraljax", "kernels", "optimize"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module not in (None, "__future__"):
                    folder = ROOT.joinpath(*node.module.split("."))
                    offenders += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                        and not a.name.startswith("__")
                        and not (folder / f"{a.name}.py").exists()  # a private module of that package
                    ]
    assert not offenders, offenders
