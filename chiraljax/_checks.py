"""The checks every part of chiraljax shares, in one place.

- `require(condition, message)`: raise a `ValidationError` with a message that names the field.
- `concrete(x)`, `concrete_float(x)`, `is_traced(...)`: whether a value is known now (a number
  or array) or traced (inside `jit`, `vmap`, `grad`), so that a check runs on what it can see
  and leaves traced values alone.
- `require_finite(owner, **values)`: no NaN or infinity among the concrete values.
- `did_you_mean(name, known)`: the closest valid names, for messages about an unknown name.
- `replaced(obj, **changes)`: a copy of a dataclass (or Module) with some fields replaced, its
  constructor's checks run again, unknown field names refused by name.
- `safe_sqrt(x)`: sqrt(max(x, 0)) with derivative 0 where the value is 0 (rates switched off).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._errors import ValidationError, require

__all__ = [
    "ValidationError",
    "as_array",
    "as_dtype",
    "concrete",
    "concrete_float",
    "did_you_mean",
    "is_traced",
    "replaced",
    "require",
    "require_finite",
    "safe_sqrt",
    "tracing",
    "derivative_tracer",
]


def concrete(x: Any) -> np.ndarray | None:
    """`x` as a NumPy array when its value is known now, else None (a tracer)."""
    if isinstance(x, jax.core.Tracer):  # (the conversion's error costs more than the check)
        return None
    try:
        return np.asarray(x)
    except Exception:  # a tracer inside a container cannot be converted either
        return None


def concrete_float(x: Any) -> float | None:
    """The real part of a concrete scalar as a float, or None when it is traced."""
    value = concrete(x)
    return None if value is None else float(np.real(value))


def as_array(value: Any, kind: type = float) -> Any:
    """`value` as an array of chiraljax's real (`kind=float`) or complex precision: a NumPy
    array when it is concrete (inside a transformation too, where it is a constant of the
    trace), a JAX array converted in the trace when it is traced.

    Concrete numbers stay on the host. `jnp.asarray` of a Python number would compile a
    conversion program (15-20 ms in every new process), and placing each number on the
    device costs 60-80 us: a network of two modules holds 42 of them, so building it took
    4.4 ms, and 1.0 ms with them on the host. The kernels take them packed into one vector per call
    (`chiraljax.solve._program_cache`), and JAX places them where a traced computation reads
    them. Inside an eager `jax.grad`, every `jnp` operation on a constant goes through the
    derivative's trace: building the network of an atom before a mirror from the number
    differentiated took 4-5 ms of `jnp.asarray` on its constant fields."""
    from chiraljax._precision import complex_dtype, real_dtype

    return as_dtype(value, real_dtype() if kind is float else complex_dtype())


def as_dtype(value: Any, dtype: Any) -> Any:
    """`value` as an array of `dtype`: a NumPy array when it is concrete (see `as_array`), a
    JAX array converted in the trace when it is traced."""
    if isinstance(value, jax.core.Tracer) and value.dtype == dtype and not value.aval.weak_type:
        return value  # a conversion to its own type would still be one more operation to trace
    known = concrete(value)
    if known is None:
        return jnp.asarray(value, dtype=dtype)
    return np.asarray(known, dtype=dtype)


def derivative_tracer(x: Any) -> str | None:
    """'jvp' when `x` is a tracer of JAX's forward mode (`jax.jvp`, `jax.jacfwd`), 'linearize'
    when it is one of `jax.grad`'s (JAX's direct linearization), None otherwise. The classes are
    JAX's internals, recognised by name: under another JAX the answer is None, and the callers
    then take their ordinary path."""
    return {"JVPTracer": "jvp", "LinearizeTracer": "linearize"}.get(type(x).__name__)


def tracing() -> bool:
    """True inside a JAX transformation (jit, vmap, grad), where values become part of the
    trace; True too when JAX cannot say (the traced path is right everywhere)."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:
        return True
    return not trace_state_clean()


def is_traced(*trees: Any) -> bool:
    """True when any leaf of the pytrees is a tracer."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def require_finite(owner: str, **values: Any) -> None:
    """Refuse NaN or infinity in the concrete values (traced ones are not checked)."""
    for field, value in values.items():
        arr = concrete(value)
        if arr is not None:
            require(
                bool(np.all(np.isfinite(arr))),
                f"{owner}: parameter {field!r} contains NaN or infinity; give finite values",
            )


def require_budget(name: str, budget: Any, minimum: int, unit: str, why: str) -> int:
    """`budget` as an int: an integer (not a bool) of at least `minimum` `unit`, or a
    `ValidationError` that names it, its value and `why` the minimum is what it is."""
    require(
        isinstance(budget, (int, np.integer)) and not isinstance(budget, bool),
        f"{name}: expected an integer number of {unit}, got {budget!r}",
    )
    require(budget >= minimum, f"{name}={budget}: {why}; give at least {minimum} {unit}")
    return int(budget)


def did_you_mean(name: str, known: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """ "did you mean 'a' or 'b'? " for the names of `known` closest to `name`, or "" when none
    is close (difflib's ratio >= `cutoff`)."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=cutoff)
    return f"did you mean {' or '.join(map(repr, close))}? " if close else ""


def replaced(obj: Any, **changes: Any) -> Any:
    """A copy of the dataclass `obj` with `changes` (field name -> value), made through its
    constructor so that every check runs on the new values."""
    owner = type(obj).__name__
    fields = [f.name for f in dataclasses.fields(obj) if f.init]
    for name in changes:
        require(
            name in fields,
            f"{owner}.replace: no field {name!r}; {did_you_mean(name, fields)}fields: {', '.join(fields)}",
        )
    return dataclasses.replace(obj, **changes)


@jax.custom_jvp
def safe_sqrt(x: Any) -> Any:
    """sqrt(x) for x >= 0, 0 below, with derivative 0 where the value is 0 (so that a rate
    switched off gives finite gradients)."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    positive = y > 0
    return y, jnp.where(positive, dx / (2.0 * jnp.where(positive, y, 1.0)), 0.0)
