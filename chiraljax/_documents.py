"""Reading the TOML and JSON documents users give (network files, sweep specs).

One reader for every kind of document, so every file gets the same checks and the same
one-line refusals: a missing file, an unknown suffix, a binary file, a syntax error, a JSON
object with a key given twice (JSON parsers keep the last one silently; TOML forbids it), and
nesting too deep to parse.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from chiraljax._errors import ValidationError, require

SUFFIXES = (".toml", ".json")

#: Deepest nesting of tables and lists a document may have (a network file needs 4): the same
#: refusal on every Python, whose parsers give up at depths that differ between versions.
MAX_DEPTH = 64


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is given twice in one object")
        out[key] = value
    return out


def parse_text(text: str, suffix: str) -> Any:
    """Parse the text of a `.toml` or `.json` document (JSON objects with a repeated key are
    refused). Raises `ValueError` with the parser's reason."""
    if suffix == ".toml":
        return tomllib.loads(text)
    return json.loads(text, object_pairs_hook=_unique_keys)


def nesting_depth(value: Any) -> int:
    """How deeply dicts and lists nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        x, depth = stack.pop()
        children = x.values() if isinstance(x, dict) else x if isinstance(x, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((c, depth + 1) for c in children)
    return deepest


def read_document(path: str | os.PathLike, what: str) -> Any:
    """Parse a TOML or JSON file (by suffix) into plain Python values.

    **Arguments:**

    - `path`: the file.
    - `what`: what the file is, for the messages ("network file", "sweep spec").

    **Raises:** `ValidationError` with a one-line reason that starts with the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    require(suffix in SUFFIXES, f"{path}: unknown file type {path.suffix!r}; name a {what} *.toml or *.json")
    require(path.is_file(), f"{path}: no such {what}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValidationError(f"{path}: not a text file ({err.reason})") from None
    except OSError as err:
        raise ValidationError(f"{path}: cannot read the file ({err.strerror})") from None
    name = suffix[1:].upper()
    require("\x00" not in text, f"{path}: not a text file (it holds NUL bytes)")
    too_deep = f"{path}: not valid {name}: nested too deeply (more than {MAX_DEPTH} levels)"
    try:
        document = parse_text(text, suffix)
    except RecursionError:
        raise ValidationError(too_deep) from None
    except ValueError as err:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        reason = " ".join(str(err).split())
        raise ValidationError(f"{path}: not valid {name}: {reason}") from None
    require(nesting_depth(document) <= MAX_DEPTH, too_deep)
    return document
