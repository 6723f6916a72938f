"""Griffe extensions for the API reference (used by mkdocstrings, see mkdocs.yml).

- `PackageDirs`: pyproject's [tool.setuptools.package-dir] installs the folders kernels/ and
  optimize/ as chiraljax.kernels and chiraljax.optimize. Griffe reads sources by folder, so it
  would not find them under chiraljax/; this extension reads those folders and attaches them
  to the loaded package.
- `BraKets`: docstrings write expectation values and kets in plain text (`<n_j>(t)`,
  `|<W|c>|^2`), which Markdown would take for HTML tags and drop. Outside code spans and
  math, a `<` that could open a tag is escaped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

_ROOT = Path(__file__).resolve().parent.parent


class PackageDirs(griffe.Extension):
    """Attach subpackages that live in other folders: `packages` maps a dotted name (a direct
    child of a top-level package) to its folder, relative to the repository root."""

    def __init__(self, packages: dict[str, str]) -> None:
        super().__init__()
        self.packages = dict(packages)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for dotted, folder in self.packages.items():
            parent, _, name = dotted.rpartition(".")
            if parent == pkg.path and name not in pkg.members:
                self._attach(pkg, name, _ROOT / folder, loader)

    def _attach(self, parent: griffe.Module, name: str, folder: Path, loader: griffe.GriffeLoader) -> None:
        module = self._visit(parent, name, folder / "__init__.py", loader)
        for path in sorted(folder.glob("*.py")):
            if path.name != "__init__.py":
                self._visit(module, path.stem, path, loader)

    @staticmethod
    def _visit(parent: griffe.Module, name: str, path: Path, loader: griffe.GriffeLoader) -> griffe.Module:
        module = griffe.visit(
            name,
            path,
            path.read_text(encoding="utf-8"),
            extensions=loader.extensions,
            parent=parent,
            docstring_parser=loader.docstring_parser,
            docstring_options=loader.docstring_options,
            lines_collection=loader.lines_collection,
            modules_collection=loader.modules_collection,
        )
        parent.set_member(name, module)
        return module


# Code spans, display and inline math are left alone; everything else is searched for "<".
_PROTECTED = re.compile(r"(`+)(?:.|\n)*?\1|\$\$(?:.|\n)*?\$\$|\$[^$\n]+\$")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?|])")


def _escape(text: str) -> str:
    out, last = [], 0
    for match in _PROTECTED.finditer(text):
        out.append(_TAG_START.sub("&lt;", text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_TAG_START.sub("&lt;", text[last:]))
    return "".join(out)


class BraKets(griffe.Extension):
    """Escape `<` that would open an HTML tag in docstrings (outside code and math)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _escape(obj.docstring.value)
