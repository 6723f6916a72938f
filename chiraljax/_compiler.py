"""XLA compiler settings that chiraljax sets when it is imported: compile less, run faster.

XLA:CPU has two code generators for its fused loops: the MLIR fusion emitters (the default of
jaxlib 0.10) and the classic LLVM IR emitters. chiraljax's programs are many small fused loops
(a Runge-Kutta stage is a handful of them on matrices of 5 x 5 to 9 x 9), for which the classic
emitters compile 35-45 % faster and run as fast or faster (`bench/README.md`, "Compiler
settings": the anchor problem's Lindblad solve at M = 2 compiles in 0.8 s instead of 1.3 s, its
value-and-gradient in 1.2 s instead of 2.1 s). chiraljax therefore adds

    --xla_cpu_use_fusion_emitters=false

to the environment variable `XLA_FLAGS` on import. It also raises the size below which XLA:CPU
compiles a while loop as one function rather than running it a thunk (one dispatched
operation) at a time:

    --xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000

A Runge-Kutta step's stage loop and the discrete adjoint's loops are a few hundred small
operations each, and their dispatch was most of their time: with them compiled whole, a jitted
value-and-gradient in three numbers at two modules takes 1.8-1.9 ms instead of 2.5, a delay
solve 0.55 instead of 0.83 ms, a warm `simulate` 6-8 % less (`bench/README.md`, "Compiler
settings"); loops over large arrays stay above the threshold and run as before. The adaptive
step loop itself qualifies only without XLA's YNNPACK library fusions (a loop holding one is
never compiled whole), so chiraljax switches those off too:

    --xla_cpu_experimental_ynn_fusion_type=

which takes another 8-18 % off jitted solves and their gradients, 13-18 % off the sweeps'
batches and 30 % off their compile. The flags concern the CPU backend only (GPU programs are
unchanged), and XLA reads `XLA_FLAGS` when the first backend starts, so they take effect only
when chiraljax is imported before the first JAX computation of the process.

Each is left out when `XLA_FLAGS` sets the option already (the user's choice wins), when
`CHIRALJAX_XLA_FLAGS=0` (or `off`, `false`, `no`) is set before the import, and with a jaxlib
outside the versions known to have the option (0.5.3 to 0.10 for the emitters, 0.10.2 for the
other two): XLA stops the whole process on a flag it does not know, so a jaxlib that might have
dropped one gets JAX's defaults instead (move the bounds in `DEFAULT_FLAGS` once another jaxlib
is checked).

Batched programs are the exception: a vmapped batch of thousands of solves runs 8-10 % faster
with the fusion emitters, and its compile is paid once per sweep, so the sweep engine compiles
with `bulk_compiler_options()`, which asks for them back.
"""

from __future__ import annotations

import os
import re
import sys

ENV_VAR = "CHIRALJAX_XLA_FLAGS"
_OFF = frozenset({"0", "off", "false", "no"})
#: option -> (value, the first jaxlib version whose XLA knows it, the first version not checked)
#: Loops whose buffers XLA:CPU's cost analysis counts below this many bytes run as one compiled
#: function instead of a thunk per operation (its small-while-loop hoisting; see the module
#: docstring): 1 MB takes in every loop of a solve up to four modules, and no large one.
SMALL_LOOP_BYTES = 1_000_000
DEFAULT_FLAGS = {
    "xla_cpu_use_fusion_emitters": ("false", (0, 5, 3), (0, 11)),
    # an XLA backend option (keys with the `xla_` prefix that a backend does not know are
    # ignored, so a GPU backend passes it by); added for the jaxlib whose effect was measured
    "xla_backend_extra_options": (f"xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}", (0, 10, 2), (0, 11)),
    # no YNNPACK library fusions: they keep the adaptive step loop from being compiled whole
    "xla_cpu_experimental_ynn_fusion_type": ("", (0, 10, 2), (0, 11)),
}


def installed_jaxlib() -> tuple[int, ...]:
    """The installed jaxlib's version as numbers, e.g. (0, 10, 2); () when it cannot be read."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("jaxlib")
    except PackageNotFoundError:
        return ()
    numbers = []
    for part in text.split(".")[:3]:
        digits = re.match(r"\d+", part)  # "36rc1" -> 36
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def default_xla_flags(environ: dict | None = None, jaxlib: tuple[int, ...] | None = None) -> str | None:
    """The value `XLA_FLAGS` should have with chiraljax's defaults added (None: leave it as it
    is: switched off, every option set by the user already, or none checked for this jaxlib).

    **Arguments:**

    - `environ`: the environment to read (default `os.environ`).
    - `jaxlib`: the jaxlib version (default: the installed one).
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip().lower() in _OFF:
        return None
    jaxlib = installed_jaxlib() if jaxlib is None else jaxlib
    current = environ.get("XLA_FLAGS", "")
    given = _option_names(current)
    missing = [
        f"--{name}={value}"
        for name, (value, since, until) in DEFAULT_FLAGS.items()
        if name not in given and since <= jaxlib < until
    ]
    if not missing:
        return None
    return " ".join([current.strip(), *missing]).strip()


def apply_default_xla_flags() -> frozenset[str]:
    """Add chiraljax's defaults to `XLA_FLAGS` while no JAX backend has started; returns the
    options added (none when the variable was left as it was)."""
    bridge = sys.modules.get("jax._src.xla_bridge")  # not imported yet: no backend has started
    try:
        started = bridge is not None and bool(bridge.backends_are_initialized())
    except Exception:  # another JAX version: set the flag; if it comes too late it does nothing
        started = False
    if started:  # too late: XLA has read its flags
        return frozenset()
    before = os.environ.get("XLA_FLAGS", "")
    flags = default_xla_flags()
    if flags is None:
        return frozenset()
    os.environ["XLA_FLAGS"] = flags
    return frozenset(_option_names(flags) - _option_names(before))


def _option_names(flags: str) -> set[str]:
    return {word.lstrip("-").split("=", 1)[0] for word in flags.split()}


_APPLIED = apply_default_xla_flags()


def bulk_compiler_options(platform: str = "cpu") -> dict[str, bool]:
    """Per-program XLA options for large vmapped batches (sweeps) on `platform`: on the CPU the
    fusion emitters again, where chiraljax switched them off for the process; else nothing (the
    user's flags stand, and other platforms have their own emitters)."""
    ours = "xla_cpu_use_fusion_emitters" in _APPLIED
    return {"xla_cpu_use_fusion_emitters": True} if ours and platform == "cpu" else {}
