"""Photon modes from measured samples: complex envelopes on a time grid, read from CSV or NPZ.

A measured envelope u(t_k) (e.g. a digitised output photon of another device) becomes a
`Sampled` pulse, linear between the samples and zero outside them, that a `PhotonInput` or an
`OutputMode` takes. Its norm int |u|^2 dt is computed exactly for the piecewise-linear
envelope: on a segment of length h from a to b,

    int_0^h |a + (b - a) s / h|^2 ds = h (|a|^2 + Re(a b^*) + |b|^2) / 3.

A photon mode must have norm 1: `normalise=True` divides the samples by the square root of the
norm, otherwise a norm off by more than `tolerance` is refused with its value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._errors import ValidationError, require
from ._pulses import Sampled


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
