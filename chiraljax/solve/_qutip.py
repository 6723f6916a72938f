"""Operators and states between chiraljax's bases and QuTiP (or plain NumPy).

A simulation runs on a `Space`: the full tensor product of its subsystems (emitters, then the
virtual cavities of photon inputs and output modes), or its excitation sector, the states with
at most k excitations. A basis state is an occupation tuple (n_1, ..., n_N); in the full space
its index is the row-major index of that tuple (QuTiP's `tensor` order, first subsystem
slowest), and a sector keeps a subset of those states in its own order (`Space.basis`).

- An operator given on the full space (a `qutip.Qobj` with dims [[d_1, ..., d_N]] * 2, or a
  NumPy array of size prod d_j) is restricted to the simulation's basis: P O P, with P the
  projector on it. For a state rho inside that basis, Tr(O rho) = Tr(P O P rho), so
  expectation values are exact.
- A matrix in the simulation's own basis (size D) is taken as it is.
- A state of the simulation is embedded back into the full space (zeros outside the sector)
  for QuTiP.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from chiraljax._errors import ValidationError, require
from chiraljax.algebra._space import Space

#: The largest full space a state is embedded into (a sector of many emitters spans 2^N states).
MAX_FULL_DIM = 2**14


def full_indices(space: Space) -> np.ndarray:
    """The full-space index of every basis state of `space` (row-major in its dims)."""
    return np.ravel_multi_index(space.basis.T, space.dims).astype(int)


def _is_qobj(x: Any) -> bool:
    return type(x).__name__ == "Qobj" and hasattr(x, "full") and hasattr(x, "dims")


def operator_matrix(op: Any, space: Space, what: str = "operator") -> np.ndarray:
    """`op` as a (D, D) complex matrix in the basis of `space`.

    **Arguments:**

    - `op`: a `qutip.Qobj` on the full space (dims [[d_1, ..., d_N], [d_1, ..., d_N]], the
      subsystems in `space.names` order), or an array of shape (D, D) (the simulation's basis)
      or (F, F) with F = prod d_j (the full space, restricted to the basis).
    - `space`: the simulation's space.
    - `what`: the argument's name, for messages.
    """
    full_dim = math.prod(space.dims)
    if _is_qobj(op):
        dims = [list(map(int, d)) for d in op.dims]
        require(
            dims == [list(space.dims), list(space.dims)],
            f"{what}: a Qobj with dims {dims} does not act on the subsystems {list(space.names)} "
            f"(dims {[list(space.dims), list(space.dims)]})",
        )
        matrix = np.asarray(op.full(), dtype=complex)
    else:
        try:
            matrix = np.asarray(op, dtype=complex)
        except (TypeError, ValueError):
            raise ValidationError(f"{what}: expected a matrix or a qutip.Qobj, got {type(op).__name__}") from None
    require(
        matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1],
        f"{what}: expected a square matrix, got shape {matrix.shape}",
    )
    require(bool(np.all(np.isfinite(matrix))), f"{what}: the matrix holds NaN or infinity")
    if matrix.shape[0] == space.dim:
        return matrix
    require(
        matrix.shape[0] == full_dim,
        f"{what}: a {matrix.shape[0]} x {matrix.shape[0]} matrix fits neither the simulation's basis "
        f"({space.dim} states) nor the full space of {list(space.names)} ({full_dim} states)",
    )
    index = full_indices(space)
    return matrix[np.ix_(index, index)]


def embed(matrices: Any, space: Space) -> np.ndarray:
    """(..., D, D) matrices in the basis of `space` as (..., F, F) on the full space (zeros
    outside the sector)."""
    matrices = np.asarray(matrices)
    full_dim = math.prod(space.dims)
    if not space.is_sector:
        return matrices
    require(
        full_dim <= MAX_FULL_DIM,
        f"the full space of {len(space.dims)} subsystems has {full_dim} states, too many to embed a state "
        f"in; keep the sector basis (full=False)",
    )
    out = np.zeros(matrices.shape[:-2] + (full_dim, full_dim), dtype=matrices.dtype)
    index = full_indices(space)
    out[..., index[:, None], index[None, :]] = matrices
    return out


def to_qobj(matrix: Any, space: Space, full: bool = True):
    """A density matrix (D, D) of the simulation as a `qutip.Qobj`: on the full space with
    dims [[d_1, ..., d_N]] * 2 (`full=True`), or on the simulation's basis with dims [[D], [D]]."""
    try:
        import qutip
    except ImportError:  # pragma: no cover - qutip is a test dependency
        raise ValidationError("to_qobj needs QuTiP: pip install qutip") from None
    if full:
        return qutip.Qobj(embed(matrix, space), dims=[list(space.dims), list(space.dims)])
    return qutip.Qobj(np.asarray(matrix), dims=[[space.dim], [space.dim]])


def basis_labels(space: Space) -> tuple[str, ...]:
    """A label per basis state: the occupations in `space.names` order, e.g. '0100' (QuTiP's
    ket labels; levels above 9 in brackets)."""
    return tuple("".join(str(n) if n < 10 else f"[{n}]" for n in state) for state in space.basis)
