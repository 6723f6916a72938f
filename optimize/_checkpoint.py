"""The checkpoint file shared by the optimisers: one JSON header line, then the arrays.

The header carries `format`, `version`, the run's `identity` and the optimiser's counters and
history; the arrays follow, serialised with `eqx.tree_serialise_leaves`. Files are written to a
temporary file in the same folder, flushed, synced and moved into place (`chiraljax._files`), so
an interrupt never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx

from chiraljax._errors import ValidationError, require
from chiraljax._files import write_atomic

State = TypeVar("State")


def checkpointed_loop(
    state: State, advance: Callable[[State], tuple[State, str | None]], save: Callable[[State], None] | None
) -> tuple[State, str]:
    """The loop every optimiser driver runs: `advance(state)` returns the next state and, when
    the run is over, the reason it stopped; the state is saved after every step, at the end and
    on an interrupt (which is then re-raised), so nothing done is lost.

    **Returns:** the last state and the stop reason.
    """
    reason = None
    try:
        while reason is None:
            state, reason = advance(state)
            if save is not None:
                save(state)
    except KeyboardInterrupt:
        if save is not None:
            save(state)
        raise
    return state, reason


def write_checkpoint(path, header: dict[str, Any], arrays: Any) -> None:
    """Write `header` (JSON-ready) and the pytree `arrays` to `path` atomically."""

    def write(handle) -> None:
        handle.write(json.dumps(header).encode() + b"\n")
        eqx.tree_serialise_leaves(handle, arrays)

    write_atomic(path, write)


def read_checkpoint(
    path, template: Any, *, format: str, version: int, kind: str, check_header=None
) -> tuple[dict[str, Any], Any]:
    """Read a checkpoint written by `write_checkpoint`.

    **Arguments:**

    - `path`: the file; `template`: a pytree of the saved arrays' structure, shapes and dtypes.
    - `format`, `version`: what the file must declare; `kind`: a word for messages ('PPO').
    - `check_header`: optional function called on the header before the arrays are read (the
      caller's identity check).

    **Returns:** (header, arrays). Raises `ValidationError` for a foreign, outdated or damaged file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            header = json.loads(f.readline())
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
        require(
            isinstance(header, dict) and header.get("format") == format,
            f"checkpoint: {path!r} is not a chiraljax {kind} checkpoint; delete it or pass another path",
        )
        require(
            header.get("version") == version,
            f"checkpoint: {path!r} has version {header.get('version')}, this code reads version {version}",
        )
        if check_header is not None:
            check_header(header)
        try:
            arrays = eqx.tree_deserialise_leaves(f, template)
        except Exception as err:  # a damaged file fails inside numpy or equinox in many ways
            raise ValidationError(
                f"checkpoint: the arrays in {path!r} cannot be read ({err}); delete the file to start afresh"
            ) from None
    return header, arrays
