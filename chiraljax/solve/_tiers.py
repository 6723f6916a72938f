"""Two builds of a kept program: a quick one for the first answer, the optimized one for loops.

Most of an XLA:CPU compile is LLVM's optimiser. With it off (XLA's backend optimisation level
0) the Lindblad kernel of the anchor problem compiles in 0.34-0.37 s instead of 0.71-0.82 s
and runs about 4x slower (4.6 against 1.1 ms at two modules, 15 against 3.4 ms at four). A
program asked once (a CLI run, the first answer of a session) wants the first; a loop wants the
second. So the first call of a kept program (`chiraljax.solve._program_cache`) whose optimized
build is not known to be on disk compiles the quick build. Once the quick build has run for
`QUICK_BUDGET_S` seconds in all, the optimized build compiles in a background thread while the
calls go on with the quick one, and takes over when it is done (a few hundred milliseconds of
slower calls at most, against a compile that would have delayed the first answer). The optimized
build then sits in JAX's persistent compilation cache, and a marker file beside the kept
program says so (one marker per value of `XLA_FLAGS`, under which the builds were compiled): a
later process loads it directly.

Both builds compute the same operations; they may differ in the last bits where LLVM fuses a
multiply and an add. A process waits for an optimized build still compiling before it exits
(the thread is not a daemon: a compile cut off at exit could crash the interpreter).

Set `CHIRALJAX_QUICK_BUILD=0` (or `off`, `false`, `no`) to compile the optimized build at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

ENV_VAR = "CHIRALJAX_QUICK_BUILD"
_OFF = frozenset({"0", "off", "false", "no"})
#: XLA options of the quick build: LLVM's optimiser off
QUICK_OPTIONS = {"xla_backend_optimization_level": 0}
#: seconds of calls the quick build serves before the optimized build is compiled (at two
#: modules about 10 calls, at four about 3)
QUICK_BUDGET_S = 0.05
_BUILDS: set[threading.Thread] = set()  # optimized builds compiling now


def quick_builds_enabled() -> bool:
    """Whether a first call may compile the quick build (`CHIRALJAX_QUICK_BUILD`)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF


def wait_for_optimized_builds(timeout: float | None = None) -> None:
    """Wait until every optimized build compiling in the background is done (benchmarks use it
    to time the steady state)."""
    for thread in list(_BUILDS):
        thread.join(timeout)
        if not thread.is_alive():
            _BUILDS.discard(thread)


class TieredProgram:
    """A jitted function called with fixed argument shapes, compiled quick first and optimized
    later (see the module docstring).

    **Arguments:**

    - `jitted`: the jitted function (`jax.jit(...)`), lowered on the first call.
    - `marker`: the file that says the optimized build is in the persistent compilation cache.
    """

    def __init__(self, jitted: Callable, marker: Path):
        self._jitted = jitted
        self._marker = marker
        self._lowered: Any = None
        self._compiled: Callable | None = None
        self._quick = False
        self._quick_seconds = 0.0
        self._upgrade: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def quick(self) -> bool:
        """Whether calls run the quick build now."""
        return self._quick

    def __call__(self, *args):
        compiled = self._compiled
        if compiled is None:
            compiled = self._build(args)
        if not self._quick:
            return compiled(*args)
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))  # the caller reads it at once anyway
        self._quick_seconds += time.perf_counter() - start
        if self._quick_seconds >= QUICK_BUDGET_S:
            self._start_upgrade()
        return out

    def _build(self, args) -> Callable:
        with self._lock:
            if self._compiled is None:
                self._lowered = self._jitted.lower(*args)
                if quick_builds_enabled() and not self._marker.exists():
                    try:
                        self._quick = True
                        self._compiled = self._lowered.compile(compiler_options=QUICK_OPTIONS)
                    except Exception:  # an XLA without the option: the optimized build
                        self._quick = False
                if self._compiled is None:
                    self._compiled = self._lowered.compile()
                    self._mark_optimized()
            return self._compiled

    def _mark_optimized(self) -> None:
        """Say that the optimized build is in the persistent compilation cache."""
        try:
            self._marker.touch()
        except OSError:
            pass

    def _start_upgrade(self) -> None:
        with self._lock:
            if self._upgrade is not None:
                return
            lowered = self._lowered

            def optimize() -> None:
                try:
                    compiled = lowered.compile()
                except Exception:  # the quick build goes on serving
                    return
                self._compiled = compiled
                self._quick = False
                self._mark_optimized()

            self._upgrade = threading.Thread(target=optimize, name="chiraljax-optimized-build")
            _BUILDS.add(self._upgrade)
            self._upgrade.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the optimized build, if one is compiling."""
        if self._upgrade is not None:
            self._upgrade.join(timeout)
