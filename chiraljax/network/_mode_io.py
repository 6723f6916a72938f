"""Photon modes from measured samples: complex envelopes on a time grid, read from CSV or NPZ.

A measured envelope u(t_k) (e.g. a digitised output photon of another device) becomes a
`Sampled` pulse, linear between the samples and zero outside them, that a `PhotonInput` or an
`OutputMode` takes. Its norm int |u|^2 dt is computed exactly for the piecewise-linear
envelope: on a segment of length h from a to b,

    int_0^h |a + (b - a) s / h|^2 ds = h (|a|^2 + Re(a b^*) + |b|^2) / 3.

A photon mode must have norm 1: `normalise=True` divides the samples by the square root of the
norm, otherwise a norm off by more than `tolerance` is refused with its value.

`check_modes` refuses, before a simulation runs, every photon input or output mode of a network
whose norm over the window is not 1 (a zero or NaN mode, a window that cuts it off).
"""

from __future__ import annotations

import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._checks import concrete_float, is_traced
from chiraljax._errors import ValidationError, require
from chiraljax.network._pulses import Sampled


def sampled_norm(times, values) -> float:
    """int |u|^2 dt of the piecewise-linear envelope through (times, values)."""
    t, u = np.asarray(times, dtype=float), np.asarray(values, dtype=complex)
    a, b = u[:-1], u[1:]
    return float(np.sum(np.diff(t) * (np.abs(a) ** 2 + np.real(a * np.conj(b)) + np.abs(b) ** 2) / 3.0))


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times, complex samples) from a CSV of columns t, Re, Im (Im optional, a header line
    allowed) or an NPZ with arrays `t` and either `u` (complex) or `re` and `im`."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path) as data:
                require("t" in data, f"{path}: the NPZ file needs an array 't' of times")
                if "u" in data:
                    return np.asarray(data["t"], dtype=float), np.asarray(data["u"], dtype=complex)
                require("re" in data, f"{path}: the NPZ file needs 'u' (complex) or 're' (and 'im')")
                im = data["im"] if "im" in data else np.zeros_like(data["re"])
                return np.asarray(data["t"], dtype=float), np.asarray(data["re"], dtype=float) + 1j * np.asarray(im)
        except (OSError, ValueError) as err:
            raise ValidationError(f"{path}: not a readable NPZ file ({err})") from None
    try:
        table = np.genfromtxt(path, delimiter=",", comments="#", skip_header=0, dtype=float)
    except ValueError as err:
        raise ValidationError(f"{path}: not a CSV of numbers ({err})") from None
    table = np.atleast_2d(table)
    if table.shape[0] and np.isnan(table[0]).all():
        table = table[1:]  # a header line
    require(
        table.ndim == 2 and table.shape[1] in (2, 3) and table.shape[0] >= 2,
        f"{path}: expected at least two rows of columns t, Re[, Im], got shape {table.shape}",
    )
    im = table[:, 2] if table.shape[1] == 3 else 0.0
    return table[:, 0], table[:, 1] + 1j * im


def load_mode(path: str | os.PathLike[str], *, normalise: bool = False, tolerance: float = 1e-6) -> Sampled:
    """A photon mode from measured samples (CSV of t, Re, Im or NPZ; see `_read`).

    **Arguments:**

    - `path`: the file.
    - `normalise`: divide the samples by sqrt(int |u|^2 dt); otherwise a mode whose norm is
      off by more than `tolerance` is refused, with its norm in the message.

    **Returns:** a `Sampled` pulse (linear between the samples, zero outside them).
    """
    path = Path(path)
    require(path.is_file(), f"{path}: no such file")
    times, values = _read(path)
    require(
        bool(np.all(np.isfinite(times))) and bool(np.all(np.isfinite(values))),
        f"{path}: the samples contain NaN or infinity",
    )
    require(bool(np.all(np.diff(times) > 0)), f"{path}: the times must be strictly increasing")
    norm = sampled_norm(times, values)
    require(norm > 0, f"{path}: the mode is zero everywhere; a photon mode needs int |u|^2 dt = 1")
    if normalise:
        values = values / np.sqrt(norm)
    else:
        require(
            abs(norm - 1.0) <= tolerance,
            f"{path}: the mode has int |u|^2 dt = {norm:.9g}, not 1; normalise it (normalise=True) "
            "or check the units of t and u",
        )
    return Sampled(times, values if np.iscomplexobj(values) and np.any(values.imag) else values.real)


# ---- the norm of any mode over a window, checked before a simulation runs ------------------------

_MODE_SAMPLES = 4_001  # points of Simpson's rule on each smooth piece of a mode
_MODE_NORM_TOLERANCE = 1e-5


def _simpson_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Simpson's rule on n (odd) points of [0, 1]: the points, their ends taken just inside
    (one-sided values at jumps, no denormals), and the weights 1, 4, 2, ..., 4, 1. NumPy
    constants: computed in JAX inside the trace below, each would compile a program of its own
    (a second on the first call)."""
    s = np.linspace(0.0, 1.0, n)
    s[0], s[-1] = 1e-12, 1.0 - 1e-12
    weights = np.ones(n)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return s, weights


_UNIT_POINTS, _SIMPSON_WEIGHTS = _simpson_rule(_MODE_SAMPLES)
_UNIT_GRID = np.linspace(0.0, 1.0, _MODE_SAMPLES)  # the same points with the ends on 0 and 1 (smooth modes)


@eqx.filter_jit
def _piece_norm(mode, a, b, s, weights):
    """int_a^b |u|^2 dt by Simpson's rule at the points a + (b - a) s (`_simpson_rule`);
    compiled once per mode class."""
    values = jnp.abs(jax.vmap(mode)(a + (b - a) * s)) ** 2
    return (b - a) * (1.0 - 2e-12) / (3.0 * (_MODE_SAMPLES - 1)) * jnp.sum(weights * values)


_NORMS: dict = {}  # (mode class and values, window) -> norm: a repeated call checks for free
_MODE_ORTHOGONALITY_TOLERANCE = 1e-6


@eqx.filter_jit
def _overlap(a, b, t0, t1, s, weights):
    """<a|b> = int_{t0}^{t1} a^* b dt by Simpson's rule at t0 + (t1 - t0) s (smooth modes)."""
    t = t0 + (t1 - t0) * s
    values = jnp.conj(jax.vmap(a)(t)) * jax.vmap(b)(t)
    return (t1 - t0) / (3.0 * (_MODE_SAMPLES - 1)) * jnp.sum(weights * values)


def mode_overlap(a, b, t0: float, t1: float) -> complex:
    """<a|b> over the window of two concrete smooth modes (computed now, also inside a
    transformation around the caller)."""
    with jax.ensure_compile_time_eval():
        return complex(_overlap(a, b, float(t0), float(t1), _UNIT_GRID, _SIMPSON_WEIGHTS))


def mode_norm(mode, t0: float, t1: float) -> float:
    """int_{t0}^{t1} |u|^2 dt of a concrete mode by Simpson's rule on each piece between its
    jumps (cached by the mode's class and values and the window; computed now, also inside a
    transformation around the caller)."""
    leaves, treedef = jax.tree.flatten(mode)
    key = (treedef, tuple(np.asarray(x).tobytes() for x in leaves), t0, t1)
    if key not in _NORMS:
        jumps = sorted(j for j in (concrete_float(j) for j in mode.jump_times()) if j is not None and t0 < j < t1)
        edges = [t0, *jumps, t1]
        if len(_NORMS) > 256:
            _NORMS.clear()
        with jax.ensure_compile_time_eval():  # concrete: computed now, inside a jit around the caller too
            pieces = zip(edges[:-1], edges[1:])
            _NORMS[key] = sum(float(_piece_norm(mode, a, b, _UNIT_POINTS, _SIMPSON_WEIGHTS)) for a, b in pieces)
    return _NORMS[key]


def check_modes(network, t0: float, t1: float) -> None:
    """Refuse, before the run, a photon input or output mode that is not normalised inside
    the window (concrete modes; the norm by Simpson's rule between the mode's jumps):
    the kernel would model something else than one photon in that mode. Several inputs at one
    end (`chiraljax.network._input_cascade`) must be smooth inside the window and mutually
    orthogonal there."""
    for x in network.inputs + network.outputs:
        if is_traced(x.mode):
            continue  # a traced mode is not checked
        norm = mode_norm(x.mode, t0, t1)
        require(
            np.isfinite(norm) and abs(norm - 1.0) <= _MODE_NORM_TOLERANCE,
            f"simulate: the mode of {x.name!r} has int |u|^2 dt = {norm:.6g} over the window ({t0}, {t1}); a "
            "photon mode must be normalised to 1 and lie inside the window (widen t_span or normalise the mode)",
        )
    for end in ("left", "right"):
        group = [x for x in network.inputs if x.end == end and not is_traced(x.mode)]
        if len(group) < 2:
            continue
        for x in group:
            jumps = [j for j in (concrete_float(j) for j in x.mode.jump_times()) if j is None or t0 < j < t1]
            require(
                not jumps,
                f"simulate: photon input {x.name!r} shares the {end} end with other inputs, which needs a mode "
                "that is smooth inside the window, but it jumps there; send it from the other end or alone",
            )
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                overlap = mode_overlap(a.mode, b.mode, t0, t1)
                require(
                    abs(overlap) <= _MODE_ORTHOGONALITY_TOLERANCE,
                    f"simulate: photon inputs {a.name!r} and {b.name!r} at the {end} end have modes that overlap, "
                    f"|<u|v>| = {abs(overlap):.3g}; photons entering at one end need orthogonal modes (several "
                    "photons in one mode are one input with photons=n)",
                )
