"""Time-dependent operators: matrices weighted by products of pulses.

An `Operator` on a `Space` is

    A(t) = sum_m mu_m(t) A_m,

where each mu_m(t) is a monomial, a product of time-dependent factors (pulses, their square
roots, complex conjugates), and A_m a dense matrix that may hold traced numbers (rates,
transmissions, phases). Terms with the same monomial are merged as soon as they appear, so sums,
products and adjoints cost one matrix operation per pair of monomials, and a solver evaluates
A(t) by computing each distinct pulse once and contracting a short coefficient vector with a
stack of matrices. Everything the SLH algebra does pointwise in time stays exact in this form.

A boolean sparsity `pattern` is carried along in NumPy, so structural checks (does H conserve the
excitation number? do the L_k lower it?) never look at traced values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Complex

from chiraljax._errors import require
from chiraljax.algebra._space import Space

Scalar = Any


@dataclass(frozen=True)
class Symbol:
    """A named scalar factor of a coefficient, resolved to a number only inside a kernel:
    `kind` 'param' (a function of the network's parameters, index into its parameter atoms) or
    'time' (a function of time, index into its time factors). Operators built from symbols hold
    plain NumPy matrices, so the algebra on them runs once, outside any trace."""

    kind: str
    index: int


@dataclass(frozen=True, eq=False)
class _Conj:
    """The complex conjugate of a time-dependent factor."""

    fn: Callable[[Any], Any]


def _base(f) -> Callable:
    return f.fn if isinstance(f, _Conj) else f


def factor_parts(f) -> tuple[Any, bool]:
    """(the factor without conjugation, whether it is conjugated) of a term's factor."""
    return _base(f), isinstance(f, _Conj)


def _conj_factor(f) -> Callable:
    return f.fn if isinstance(f, _Conj) else _Conj(f)


def _ident(f) -> tuple:
    b = _base(f)
    return (1, b.kind, b.index) if isinstance(b, Symbol) else (0, "", id(b))


def _key(fns: tuple) -> tuple:
    return tuple(sorted((_ident(f), isinstance(f, _Conj)) for f in fns))


def _is_python_number(c) -> bool:
    return isinstance(c, (int, float, complex))


@dataclass(frozen=True)
class Term:
    """mu(t) A: `fns` are the factors of the monomial mu, `matrix` is A (NumPy or JAX),
    `pattern` its structural nonzeros."""

    fns: tuple
    matrix: Complex[ArrayLike, "D D"]
    pattern: np.ndarray

    @functools.cached_property
    def key(self) -> tuple:
        """The monomial's identity (its factors, sorted): terms with equal keys merge."""
        return _key(self.fns)


def _add_matrices(a, b):
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a + b
    return jnp.asarray(a) + jnp.asarray(b)


def _matmul(a, b):
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a @ b
    return jnp.asarray(a) @ jnp.asarray(b)


class Operator:
    """A time-dependent operator sum_m mu_m(t) A_m on a `Space`.

    **Arguments:**

    - `space`: the space the matrices act on.
    - `terms`: the terms (merged by monomial); an empty tuple is the zero operator.
    """

    __slots__ = ("space", "terms")

    def __init__(self, space: Space, terms=(), *, _merged: tuple = ()):
        merged: dict[tuple, Term] = {t.key: t for t in _merged}
        for t in terms:
            if not t.pattern.any():
                continue
            k = t.key
            if k in merged:
                old = merged[k]
                merged[k] = Term(old.fns, _add_matrices(old.matrix, t.matrix), old.pattern | t.pattern)
            else:
                merged[k] = t
        self.space = space
        self.terms = tuple(merged.values())

    @classmethod
    def constant(cls, space: Space, matrix: np.ndarray, coefficient: Any = 1.0) -> Operator:
        """c A with a constant NumPy matrix A and a coefficient: a number, a traced value or a
        callable of time (a pulse)."""
        matrix = np.asarray(matrix, dtype=complex)
        require(
            matrix.shape == (space.dim, space.dim),
            f"Operator: matrix of shape {matrix.shape} does not act on a space of dimension {space.dim}",
        )
        pattern = np.abs(matrix) > 0
        if callable(coefficient) or isinstance(coefficient, Symbol):
            return cls(space, (Term((coefficient,), matrix, pattern),))
        return cls(space, (Term((), matrix, pattern),)).scale(coefficient)

    @classmethod
    def zero(cls, space: Space) -> Operator:
        return cls(space, ())

    def _check(self, other: Operator) -> None:
        require(
            other.space.dim == self.space.dim and other.space.names == self.space.names,
            f"Operator: cannot combine operators on different spaces "
            f"({self.space.names} of dim {self.space.dim} and {other.space.names} of dim {other.space.dim})",
        )

    def __add__(self, other: Operator) -> Operator:
        if not isinstance(other, Operator):
            return NotImplemented
        self._check(other)
        # self's terms are merged and nonzero already: only other's are keyed and checked
        return Operator(self.space, other.terms, _merged=self.terms)

    def __neg__(self) -> Operator:
        return self.scale(-1.0)

    def __sub__(self, other: Operator) -> Operator:
        return self + (-other)

    def scale(self, factor: Any) -> Operator:
        """Multiply by a scalar: a number, a traced value, a callable of time or a `Symbol`."""
        if callable(factor) or isinstance(factor, Symbol):
            return Operator(self.space, tuple(Term(t.fns + (factor,), t.matrix, t.pattern) for t in self.terms))
        if _is_python_number(factor):
            if factor == 0:
                return Operator.zero(self.space)
            if factor == 1:
                return self
            return Operator(self.space, tuple(Term(t.fns, t.matrix * factor, t.pattern) for t in self.terms))
        return Operator(self.space, tuple(Term(t.fns, jnp.asarray(t.matrix) * factor, t.pattern) for t in self.terms))

    def __mul__(self, factor: Any) -> Operator:
        return self.scale(factor)

    __rmul__ = __mul__

    def __matmul__(self, other: Operator) -> Operator:
        if not isinstance(other, Operator):
            return NotImplemented
        self._check(other)
        terms = []
        for a in self.terms:
            for b in other.terms:
                pattern = (a.pattern.astype(int) @ b.pattern.astype(int)) > 0
                if pattern.any():
                    terms.append(Term(a.fns + b.fns, _matmul(a.matrix, b.matrix), pattern))
        return Operator(self.space, terms)

    def dag(self) -> Operator:
        """The adjoint: sum_m mu_m(t)^* A_m^dag."""
        return Operator(
            self.space,
            tuple(Term(tuple(_conj_factor(f) for f in t.fns), t.matrix.conj().T, t.pattern.T) for t in self.terms),
        )

    @property
    def is_zero(self) -> bool:
        return not self.terms

    @property
    def is_constant(self) -> bool:
        return all(not t.fns for t in self.terms)

    def pattern(self) -> np.ndarray:
        """Boolean sparsity pattern: where any term's matrix can be nonzero."""
        out = np.zeros((self.space.dim, self.space.dim), dtype=bool)
        for t in self.terms:
            out |= t.pattern
        return out

    def __call__(self, t) -> jnp.ndarray:
        """A(t) as a dense JAX matrix."""
        (mats,), coefficients = stack_operators([self])
        return jnp.einsum("n,nij->ij", coefficients(t), mats)

    def __repr__(self) -> str:
        return f"Operator(dim={self.space.dim}, monomials={len(self.terms)})"


def stack_operators(operators: Sequence[Operator]) -> tuple[list[Any], Callable[[Any], Any]]:
    """Stack several operators for fast evaluation inside a time loop.

    Every distinct time-dependent factor f_i (pulse, square root of a pulse) among all terms is
    evaluated once per time; with v = (f_1, ..., f_F, f_1^*, ..., f_F^*, 1) each monomial is
    prod_j v[idx_mj], one gather and one product for all terms together.

    **Returns:** the matrices of each operator, shape (n_terms_op, dim, dim) (a zero matrix
    for the zero operator), and `coefficients(t)`: the monomials of all terms, concatenated in
    the same order, shape (sum of n_terms_op,).
    """
    bases: list[Callable] = []
    where: dict[int, int] = {}
    rows: list[list[tuple[int, bool]]] = []
    stacks = []
    for op in operators:
        terms = op.terms or (
            Term((), np.zeros((op.space.dim, op.space.dim), complex), np.zeros((op.space.dim, op.space.dim), bool)),
        )
        stacks.append(jnp.stack([jnp.asarray(t.matrix, dtype=complex) for t in terms]))
        for term in terms:
            row = []
            for f in term.fns:
                b = _base(f)
                if id(b) not in where:
                    where[id(b)] = len(bases)
                    bases.append(b)
                row.append((where[id(b)], isinstance(f, _Conj)))
            rows.append(row)
    n_f = len(bases)
    width = max([len(r) for r in rows] + [1])
    index = np.full((len(rows), width), 2 * n_f, dtype=int)
    for m, row in enumerate(rows):
        for j, (i, conj) in enumerate(row):
            index[m, j] = i + n_f * conj

    def coefficients(t):
        if n_f:
            v = jnp.stack([jnp.asarray(b(t), dtype=complex) for b in bases])
            ext = jnp.concatenate([v, jnp.conj(v), jnp.ones((1,), complex)])
        else:
            ext = jnp.ones((1,), complex)
        return jnp.prod(ext[index], axis=1)

    return stacks, coefficients
