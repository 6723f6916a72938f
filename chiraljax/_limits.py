"""Size and resource guards: what a run would need, estimated before anything runs.

A run that would exhaust the memory or compute for hours is refused up front with what it
needs, the limit and the setting that changes it, instead of dying later in an out-of-memory
traceback or hanging. Two environment variables move the limits:

- `CHIRALJAX_MAX_MEMORY_GB`: the memory one result or plan may take (default: half of this
  machine's physical memory).
- `CHIRALJAX_LIMITS=off`: no guard at all (for a machine and a run you know).
"""

from __future__ import annotations

import functools
import os

from chiraljax._errors import require

MEMORY_ENV = "CHIRALJAX_MAX_MEMORY_GB"
LIMITS_ENV = "CHIRALJAX_LIMITS"
_FORCE = f"set {LIMITS_ENV}=off to run it anyway"


def guards_on() -> bool:
    """False when the user switched the guards off (`CHIRALJAX_LIMITS=off`)."""
    return os.environ.get(LIMITS_ENV, "").strip().lower() not in ("off", "0", "no", "false")


@functools.cache
def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8.0 * 2**30


def memory_limit() -> float:
    """The bytes a single result or plan may take: `CHIRALJAX_MAX_MEMORY_GB`, or half of the
    physical memory."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        require(value > 0, f"{MEMORY_ENV}={text!r}: give a positive number of gigabytes")
        return value * 2**30
    return _physical_memory() / 2


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} bytes"


def require_memory(what: str, nbytes: float, knob: str) -> None:
    """Refuse `what` when it needs more than `memory_limit()` bytes.

    **Arguments:**

    - `what`: what needs the memory, as the message's subject ("simulate: 1e9 save times").
    - `nbytes`: the estimate.
    - `knob`: the setting that lowers it ("lower n_save").
    """
    if not guards_on():
        return
    limit = memory_limit()
    require(
        nbytes <= limit,
        f"{what} would need about {_size(nbytes)} of memory, above the limit of {_size(limit)}; "
        f"{knob} (or raise {MEMORY_ENV}, or {_FORCE})",
    )


def require_count(what: str, count: float, limit: float, knob: str) -> None:
    """Refuse `what` when its count (steps, operations) exceeds `limit`: a run of hours or a
    planner that would not return."""
    if not guards_on():
        return
    require(count <= limit, f"{what}: about {count:.3g}, above the limit of {limit:.3g}; {knob} (or {_FORCE})")
