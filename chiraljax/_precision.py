"""Numerical precision: float64 by default.

Importing chiraljax switches on JAX's 64-bit mode, because the populations and fidelities the
library reports are differences of numbers close to one. Set the environment variable
`CHIRALJAX_PRECISION=float32` before the first import to keep JAX in single precision (for large
sweeps on accelerators); the benchmarks measure the error this costs. float32 resolves about
1.2e-7 relative, so an adaptive solve there cannot meet the default rtol 1e-8 (its steps shrink
until `max_steps` runs out): in float32 tolerances tighter than `FLOAT32_TOLERANCE_FLOOR` are
raised to it (`resolvable_tolerances`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

_CHOICES = ("float64", "float32")


def _configure() -> str:
    choice = os.environ.get("CHIRALJAX_PRECISION", "float64").strip().lower()
    if choice not in _CHOICES:
        raise ValueError(f"CHIRALJAX_PRECISION={choice!r} is not understood: use one of {', '.join(_CHOICES)}")
    jax.config.update("jax_enable_x64", choice == "float64")
    return choice


PRECISION = _configure()


def single_precision() -> bool:
    """True when chiraljax computes in float32 (`CHIRALJAX_PRECISION=float32`, or JAX's 64-bit
    mode switched off since): the test every precision-dependent setting reads."""
    return not jax.config.jax_enable_x64


def real_dtype() -> jnp.dtype:
    """The floating dtype chiraljax computes in (float64 unless switched off)."""
    return jnp.float32 if single_precision() else jnp.float64


def complex_dtype() -> jnp.dtype:
    """The complex dtype matching `real_dtype()`."""
    return jnp.complex64 if single_precision() else jnp.complex128


#: (rtol, atol) below which float32 cannot resolve an adaptive solve's error estimate (about 8
#: and 0.1 times its machine epsilon of 1.2e-7).
FLOAT32_TOLERANCE_FLOOR = (1e-6, 1e-8)


def resolvable_tolerances(rtol: float, atol: float) -> tuple[float, float]:
    """(rtol, atol) as asked, raised in float32 to `FLOAT32_TOLERANCE_FLOOR`."""
    if not single_precision():
        return rtol, atol
    floor_r, floor_a = FLOAT32_TOLERANCE_FLOOR
    return max(rtol, floor_r), max(atol, floor_a)


def full_precision_products(fn: Callable) -> Callable:
    """`fn` with every matrix product it traces at the full precision of its dtype. On a GPU,
    JAX multiplies float32 matrices in TF32 by default (a 10-bit mantissa): a float32 transfer
    came out 4e-4 off there against 2e-6 on a CPU. float64 products are exact either way."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return traced
