"""Hilbert spaces of qubits and transmons, full or truncated to an excitation-number sector.

A `Space` is a list of subsystems (a qubit has 2 levels, a transmon `d` levels, a virtual
cavity of the input-output method is a 2-level mode in the single-photon problems) and an
optional bound k on the total excitation number. With the bound the basis is

    { |n_1 ... n_N> : 0 <= n_j < d_j,  sum_j n_j <= k },

enumerated directly, never by slicing a full tensor-product matrix: for k = 1 it has N + 1
states, ordered |G>, |1_0>, |1_1>, ..., so index 0 is the ground state and index 1 + j has
subsystem j excited. Without the bound the basis is the full tensor product in the usual
order (first subsystem most significant), the order QuTiP uses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from chiraljax._errors import require

_FULL_SPACE_LIMIT = 1 << 14


def _sector_basis(dims: tuple[int, ...], k: int) -> list[tuple[int, ...]]:
    """All occupations with sum <= k, ordered by total excitation, then lexicographically
    with the first subsystem varying slowest among states of the same total."""
    states: list[tuple[int, ...]] = []

    def fill(prefix: tuple[int, ...], left: int, total: int) -> None:
        j = len(prefix)
        if j == len(dims):
            if left == 0:
                states.append(prefix)
            return
        for n in range(min(dims[j] - 1, left), -1, -1):
            fill(prefix + (n,), left - n, total)

    for total in range(k + 1):
        fill((), total, total)
    return states


def space_dimension(dims: tuple[int, ...], k: int | None) -> int:
    """The number of basis states of the occupations with sum <= k (all of them for k = None),
    counted without enumerating them: the coefficients of prod_j (1 + x + ... + x^{d_j - 1})
    up to x^k."""
    if k is None:
        return int(np.prod([int(d) for d in dims], dtype=object)) if dims else 1
    counts = [1] + [0] * int(k)  # counts[n]: occupations of the subsystems so far with sum n
    for d in dims:
        counts = [sum(counts[n - m] for m in range(min(int(d) - 1, n) + 1)) for n in range(int(k) + 1)]
    return int(sum(counts))


@dataclass(frozen=True)
class Space:
    """A composite space of named subsystems, optionally truncated to <= k excitations.

    **Arguments:**

    - `names`: one name per subsystem.
    - `dims`: the number of levels of each subsystem (2 for a qubit).
    - `max_excitations`: k, the bound on the total excitation number, or `None` for the
      full tensor-product space.
    """

    names: tuple[str, ...]
    dims: tuple[int, ...]
    max_excitations: int | None = None
    _index: dict = field(default=None, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        require(
            len(self.names) == len(self.dims),
            f"Space: {len(self.names)} names but {len(self.dims)} dims; give one of each per subsystem",
        )
        require(len(set(self.names)) == len(self.names), f"Space: subsystem names must be unique, got {self.names}")
        require(
            all(int(d) >= 2 for d in self.dims), f"Space: every subsystem needs at least 2 levels, got dims {self.dims}"
        )
        if self.max_excitations is None:
            size = int(np.prod(self.dims)) if self.dims else 1
            require(
                size <= _FULL_SPACE_LIMIT,
                f"Space: the full space of {len(self.dims)} subsystems has {size} states, above "
                f"{_FULL_SPACE_LIMIT}; use max_excitations=k (an excitation sector) instead",
            )
        else:
            require(int(self.max_excitations) >= 0, f"Space: max_excitations must be >= 0, got {self.max_excitations}")
        basis = self._enumerate()
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(basis)})

    @classmethod
    def qubits(cls, names: tuple[str, ...] | list[str], max_excitations: int | None = None) -> Space:
        """A space of two-level systems."""
        names = tuple(names)
        return cls(names, (2,) * len(names), max_excitations)

    def _enumerate(self) -> list[tuple[int, ...]]:
        if self.max_excitations is None:
            return list(itertools.product(*(range(d) for d in self.dims)))
        return _sector_basis(tuple(int(d) for d in self.dims), int(self.max_excitations))

    @cached_property
    def basis(self) -> np.ndarray:
        """Occupation numbers of the basis states, shape (dim, n_subsystems)."""
        return np.array(list(self._index), dtype=int).reshape(len(self._index), len(self.dims))

    @property
    def dim(self) -> int:
        """Number of basis states."""
        return len(self._index)

    @property
    def is_sector(self) -> bool:
        """True when truncated to an excitation-number sector."""
        return self.max_excitations is not None

    def subsystem(self, name: str | int) -> int:
        """Index of a subsystem given by name (or index)."""
        if isinstance(name, (int, np.integer)):
            require(0 <= int(name) < len(self.names), f"Space: no subsystem with index {name}")
            return int(name)
        require(name in self.names, f"Space: unknown subsystem {name!r}; known: {', '.join(self.names)}")
        return self.names.index(name)

    def index(self, occupation: tuple[int, ...]) -> int:
        """Index of the basis state with the given occupation numbers."""
        key = tuple(int(n) for n in occupation)
        require(key in self._index, f"Space: the state {key} is not in this space")
        return self._index[key]

    def excitation_numbers(self) -> np.ndarray:
        """Total excitation number of each basis state."""
        return self.basis.sum(axis=1)

    def destroy(self, name: str | int) -> np.ndarray:
        """The lowering operator a_j (sigma_j for a qubit) as a dense (dim, dim) matrix.

        Matrix elements <s - e_j| a_j |s> = sqrt(s_j); a state lowered out of a sector stays
        in it, so the operator is exact on the truncated basis."""
        j = self.subsystem(name)
        op = np.zeros((self.dim, self.dim), dtype=complex)
        for col, occ in enumerate(self.basis):
            n = occ[j]
            if n > 0:
                lowered = occ.copy()
                lowered[j] -= 1
                op[self._index[tuple(lowered)], col] = np.sqrt(n)
        return op

    def number(self, name: str | int) -> np.ndarray:
        """The number operator n_j = a_j^dag a_j (diagonal)."""
        j = self.subsystem(name)
        return np.diag(self.basis[:, j].astype(complex))

    def identity(self) -> np.ndarray:
        """The identity matrix."""
        return np.eye(self.dim, dtype=complex)

    def basis_state(self, occupation: dict[str, int] | None = None) -> np.ndarray:
        """The basis vector with the given subsystems excited (others in their ground state)."""
        occ = [0] * len(self.dims)
        for name, n in (occupation or {}).items():
            occ[self.subsystem(name)] = int(n)
        vec = np.zeros(self.dim, dtype=complex)
        vec[self.index(tuple(occ))] = 1.0
        return vec

    def conserves_excitations(self, op: np.ndarray, change: int = 0) -> bool:
        """True when `op` only connects states whose excitation numbers differ by `change`
        (0 for a Hamiltonian, -1 for a jump operator that lowers)."""
        n = self.excitation_numbers()
        rows, cols = np.nonzero(np.abs(op) > 0)
        return bool(np.all(n[rows] - n[cols] == change))
