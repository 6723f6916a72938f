"""Numerical precision: float64 by default.

Importing chiraljax switches on JAX's 64-bit mode, because the populations and fidelities the
library reports are differences of numbers close to one. Set the environment variable
`CHIRALJAX_PRECISION=float32` before the first import to keep JAX in single precision (for large
sweeps on accelerators); the benchmarks measure the error this costs.
"""

from __future__ import annotations

import os

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


def real_dtype() -> jnp.dtype:
    """The floating dtype chiraljax computes in (float64 unless switched off)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def complex_dtype() -> jnp.dtype:
    """The complex dtype matching `real_dtype()`."""
    return jnp.complex128 if jax.config.jax_enable_x64 else jnp.complex64
